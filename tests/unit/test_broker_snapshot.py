"""Determinism and snapshots: the same entries give the same state and answers, from scratch or restored."""

from __future__ import annotations

import random

import msgspec
import pytest

from mom.broker import (
    Ack,
    Broker,
    Command,
    DeclareQueue,
    DeclareSubscription,
    DeclareTopic,
    DeleteQueue,
    DeleteSubscription,
    Destination,
    Entry,
    Nack,
    NewMessage,
    Publish,
    QueueAttrs,
    QueueRef,
    Receive,
    Received,
    RegisterUser,
    Result,
    Source,
    StartOffset,
    SubscriptionAttrs,
    SubscriptionRef,
    Tick,
    TopicAttrs,
    TopicRef,
    decode_entry,
    encode_entry,
)
from mom.errors import MomError, StorageError

T0 = 1_700_000_000_000
SOURCES: list[Source] = [
    QueueRef("q"),
    QueueRef("dlq"),
    SubscriptionRef("t", "s"),
    SubscriptionRef("t", "late"),
]
DESTINATIONS: list[Destination] = [QueueRef("q"), TopicRef("t"), QueueRef("dlq")]


def scenario(seed: int, steps: int = 400) -> list[Entry]:
    """A random but valid-looking history touching every feature, including commands that fail."""
    rng = random.Random(seed)
    broker = Broker(dedup_window_ms=2_000)
    entries: list[Entry] = []
    receipts: list[tuple[QueueRef | SubscriptionRef, str]] = []
    now = T0

    def apply(command: Command) -> None:
        entry = Entry(now, command)
        entries.append(entry)
        try:
            result = broker.apply(entry)
        except MomError:
            return
        if isinstance(result, Received) and isinstance(command, Receive):
            receipts.extend((command.source, d.receipt) for d in result.messages)

    apply(DeclareQueue("dlq", QueueAttrs(max_length=15, message_ttl_s=4), "o"))
    apply(
        DeclareQueue(
            "q",
            QueueAttrs(
                visibility_timeout_s=0.3,
                max_deliveries=3,
                dead_letter_queue="dlq",
                max_length=12,
                message_ttl_s=2.5,
            ),
            "o",
        )
    )
    apply(DeclareTopic("t", TopicAttrs(retention_s=3, retention_bytes=40), "o"))
    apply(
        DeclareSubscription(
            "t",
            "s",
            SubscriptionAttrs(start="earliest", visibility_timeout_s=0.2, max_deliveries=2, dead_letter_queue="dlq"),
            "o",
        )
    )
    for step in range(steps):
        now += rng.choice([0, 1, 7, 50, 120, 400, -300])
        roll = rng.random()
        if roll < 0.3:
            destination = rng.choice(DESTINATIONS)
            delay = rng.choice([0, 0, 150]) if isinstance(destination, QueueRef) else 0
            messages = [
                NewMessage(
                    f"m{step}.{i}",
                    b"x" * rng.randint(1, 9),
                    delay_ms=delay,
                    dedup_id=rng.choice([None, "a", "b"]),
                )
                for i in range(rng.randint(1, 4))
            ]
            apply(Publish(destination, messages))
        elif roll < 0.55:
            apply(Receive(rng.choice(SOURCES), rng.randint(1, 4), rng.choice([None, 100])))
        elif roll < 0.75 and receipts:
            picked = [receipts.pop(rng.randrange(len(receipts))) for _ in range(min(len(receipts), 2))]
            source = picked[0][0]
            texts = [text for _, text in picked]
            apply(Ack(source, texts) if rng.random() < 0.6 else Nack(source, texts, rng.choice([0, 80])))
        elif roll < 0.85:
            apply(Tick())
        elif roll < 0.9:
            apply(DeclareSubscription("t", "late", SubscriptionAttrs(start=StartOffset(rng.randint(0, 30))), "o"))
        elif roll < 0.93:
            apply(DeleteSubscription("t", "late"))
        elif roll < 0.96:
            churn: list[Command] = [DeleteQueue("dlq"), DeclareQueue("dlq", QueueAttrs(max_length=15), "o")]
            apply(rng.choice(churn))
        else:
            apply(RegisterUser(f"u{rng.randint(0, 5)}", "hash", ["mom.admin"]))
    return entries


def replay(broker: Broker, entries: list[Entry]) -> list[Result | tuple[str, str]]:
    """Apply entries, recording each result or the error it raised."""
    out: list[Result | tuple[str, str]] = []
    for entry in entries:
        try:
            out.append(broker.apply(entry))
        except MomError as exc:
            out.append((type(exc).__name__, exc.detail))
    return out


@pytest.fixture(scope="module")
def entries() -> list[Entry]:
    return scenario(seed=7)


def test_scenario_exercises_failures_dead_letters_and_redeliveries(entries: list[Entry]) -> None:
    results = replay(Broker(dedup_window_ms=2_000), entries)
    errors = {r[0] for r in results if isinstance(r, tuple)}
    assert {"QueueFull", "NotFound"} <= errors
    deliveries = [d for r in results if isinstance(r, Received) for d in r.messages]
    assert any(d.deliveries > 1 for d in deliveries)
    assert any("x-death" in d.headers for d in deliveries)


def test_replay_is_deterministic(entries: list[Entry]) -> None:
    first, second = Broker(dedup_window_ms=2_000), Broker(dedup_window_ms=2_000)
    assert replay(first, entries) == replay(second, entries)
    assert first.snapshot() == second.snapshot()
    assert first == second and first.state_digest() == second.state_digest()


def test_entries_survive_the_log_encoding(entries: list[Entry]) -> None:
    decoded = [decode_entry(encode_entry(entry)) for entry in entries]
    direct, via_log = Broker(dedup_window_ms=2_000), Broker(dedup_window_ms=2_000)
    assert replay(direct, entries) == replay(via_log, decoded)
    assert direct == via_log


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_restoring_at_any_point_continues_identically(seed: int) -> None:
    entries = scenario(seed, steps=250)
    reference = Broker(dedup_window_ms=2_000)
    expected = replay(reference, entries)
    for cut in range(0, len(entries), 5):
        original = Broker(dedup_window_ms=2_000)
        replay(original, entries[:cut])
        restored = Broker.restore(original.snapshot(), dedup_window_ms=2_000)
        assert restored == original
        early, exact = restored.next_deadline_ms(), original.next_deadline_ms()
        assert early is None if exact is None else early is not None and early <= exact
        assert replay(restored, entries[cut:]) == expected[cut:]
        assert restored == reference


def test_views_of_a_restored_broker_match(entries: list[Entry]) -> None:
    original = Broker(dedup_window_ms=2_000)
    replay(original, entries)
    restored = Broker.restore(original.snapshot(), dedup_window_ms=2_000)
    for now in (T0, T0 + 60_000):
        assert original.list_queues(now) == restored.list_queues(now)
        assert original.list_topics(now) == restored.list_topics(now)
        for source in SOURCES:
            try:
                assert original.ready_at(source, now) == restored.ready_at(source, now)
            except MomError:
                continue
    assert original.read_topic("t", 0, 100) == restored.read_topic("t", 0, 100)
    assert original.user_count() == restored.user_count() > 0


def test_snapshot_is_compact_msgpack() -> None:
    broker = Broker()
    broker.apply(Entry(T0, DeclareQueue("q", QueueAttrs(), "o")))
    broker.apply(Entry(T0, Publish(QueueRef("q"), [NewMessage(f"{i:06}", b"{}") for i in range(1000)])))
    data = broker.snapshot()
    assert len(data) < 32 * 1000, "a small message should cost about 30 bytes"
    assert isinstance(msgspec.msgpack.decode(data), list)


def test_unreadable_snapshots_raise_storage_error() -> None:
    with pytest.raises(StorageError):
        Broker.restore(b"\x00garbage")
    wrong_version = msgspec.msgpack.decode(Broker().snapshot())
    wrong_version[0] = 999
    with pytest.raises(StorageError, match="version"):
        Broker.restore(msgspec.msgpack.encode(wrong_version))
