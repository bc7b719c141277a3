"""External dead letters: the outbox that holds them until the leader has published them to another Broker."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest

from mom.broker import (
    Broker,
    Command,
    DeclareQueue,
    DeclareSubscription,
    DeclareTopic,
    Destination,
    Entry,
    Forwarded,
    ForwardedDeadLetters,
    Nack,
    NewMessage,
    OutboxLetter,
    Publish,
    QueueAttrs,
    QueueRef,
    Receive,
    Received,
    Result,
    Source,
    SubscriptionAttrs,
    SubscriptionRef,
    Tick,
    TopicAttrs,
    TopicRef,
)
from mom.errors import InvalidInput, MomError

T0 = 1_700_000_000_000
Q, SUB = QueueRef("q"), SubscriptionRef("t", "s")
DESTINATIONS: list[Destination] = [Q, QueueRef("r"), TopicRef("t")]
SOURCES: list[Source] = [Q, QueueRef("r"), SUB]


class Node:
    """A broker in external dead-letter mode (unless told otherwise) and the time of its next entry."""

    def __init__(self, external: bool = True) -> None:
        self.broker = Broker(dedup_window_ms=10_000, external_dead_letters=external)
        self.now = T0

    def __call__(self, command: Command) -> Any:
        return self.broker.apply(Entry(self.now, command))

    def rejects(self, command: Command, error: type[MomError]) -> None:
        before = self.broker.snapshot()
        with pytest.raises(error):
            self(command)
        assert self.broker.snapshot() == before

    def publish(self, *bodies: str, destination: QueueRef | TopicRef = Q) -> None:
        self(Publish(destination, [NewMessage(f"id-{body}", body.encode(), headers={"h": body}) for body in bodies]))

    def receipts(self, source: QueueRef | SubscriptionRef = Q) -> list[str]:
        result = self(Receive(source, 10))
        assert isinstance(result, Received)
        return [delivery.receipt for delivery in result.messages]

    def nack_all(self, source: QueueRef | SubscriptionRef = Q) -> None:
        self(Nack(source, self.receipts(source)))

    def seqs(self) -> list[int]:
        return [letter.seq for letter in self.broker.outbox(1000)]


def letter(seq: int, body: str, source: str = "q", reason: str = "max_deliveries") -> OutboxLetter:
    headers = {"h": body, "x-death": {"queue": source, "reason": reason}}
    return OutboxLetter(seq, "dlq", f"id-{body}", body.encode(), False, headers)


@pytest.fixture
def node() -> Node:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(max_deliveries=2, dead_letter_queue="dlq", visibility_timeout_s=1), "o"))
    return node


# -- declaring ------------------------------------------------------------------------------------------------


def test_a_dead_letter_queue_held_elsewhere_is_accepted_only_in_external_mode() -> None:
    queue = DeclareQueue("q", QueueAttrs(dead_letter_queue="elsewhere"), "o")
    sub = DeclareSubscription("t", "s", SubscriptionAttrs(dead_letter_queue="elsewhere"), "o")
    local, external = Node(external=False), Node()
    for node in (local, external):
        node(DeclareTopic("t", TopicAttrs(), "o"))
    local.rejects(queue, InvalidInput)
    local.rejects(sub, InvalidInput)
    assert external(queue).created and external(sub).created
    external.rejects(DeclareQueue("self", QueueAttrs(dead_letter_queue="self"), "o"), InvalidInput)


# -- what goes to the outbox ----------------------------------------------------------------------------------


def test_nack_past_the_limit_puts_letters_in_the_outbox_in_order(node: Node) -> None:
    node(DeclareQueue("dlq", QueueAttrs(), "o"))
    node.publish("a", "b")
    node.nack_all()
    assert node.broker.outbox_size() == 0
    node.nack_all()
    assert node.broker.outbox() == [letter(0, "a"), letter(1, "b")]
    assert node.broker.outbox_size() == 2
    assert node.broker.queue_info("q", node.now).messages == 0
    assert node.broker.queue_info("dlq", node.now).messages == 0, "a local queue of that name is not the target"


def test_lease_expiry_past_the_limit_goes_to_the_outbox_on_tick(node: Node) -> None:
    node.publish("a")
    node.receipts()
    node.now += 1_000
    node.receipts()
    assert node.broker.outbox_size() == 0
    node.now += 1_000
    assert node.broker.next_deadline_ms() == node.now
    node(Tick())
    assert node.broker.outbox() == [letter(0, "a")]


def test_ttl_expiry_goes_to_the_outbox() -> None:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(message_ttl_s=1, dead_letter_queue="dlq"), "o"))
    node.publish("a", "b")
    node.now += 1_000
    node(Tick())
    assert node.broker.outbox() == [letter(0, "a", reason="expired"), letter(1, "b", reason="expired")]


def test_subscription_dead_letters_go_to_the_outbox() -> None:
    node = Node()
    node(DeclareTopic("t", TopicAttrs(), "o"))
    node(DeclareSubscription("t", "s", SubscriptionAttrs(max_deliveries=1, dead_letter_queue="dlq"), "o"))
    node.publish("a", destination=TopicRef("t"))
    node.nack_all(SUB)
    assert node.broker.outbox() == [letter(0, "a", source="t/s")]


def test_outbox_letters_do_not_count_towards_max_length() -> None:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(max_length=1, max_deliveries=1, dead_letter_queue="dlq"), "o"))
    node.publish("a")
    node.nack_all()
    node.publish("b")
    assert node.broker.queue_info("q", node.now).messages == 1
    assert node.broker.outbox_size() == 1


def test_without_a_dead_letter_queue_nothing_reaches_the_outbox() -> None:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(max_deliveries=1), "o"))
    node.publish("a")
    node.nack_all()
    assert node.broker.outbox_size() == 0 and node.broker.queue_info("q", node.now).messages == 0


# -- forwarding -----------------------------------------------------------------------------------------------


def test_forwarded_trims_exactly_and_seqs_never_repeat(node: Node) -> None:
    node.publish("a", "b", "c")
    node.nack_all()
    node.nack_all()
    assert node(ForwardedDeadLetters(0)) == Forwarded()
    assert node.seqs() == [1, 2]
    node.publish("d")
    node.nack_all()
    node.nack_all()
    assert node.seqs() == [1, 2, 3]
    node(ForwardedDeadLetters(2))
    assert node.broker.outbox() == [letter(3, "d")]
    node(ForwardedDeadLetters(3))
    assert node.broker.outbox() == [] and node.broker.outbox_size() == 0


def test_stale_and_repeated_forwarded_commands_change_nothing(node: Node) -> None:
    node.publish("a", "b")
    node.nack_all()
    node.nack_all()
    node(ForwardedDeadLetters(0))
    before = node.broker.snapshot()
    for upto in (0, -1, -5):
        assert node(ForwardedDeadLetters(upto)) == Forwarded()
        assert node.broker.snapshot() == before


def test_forwarding_a_seq_not_given_out_yet_is_refused(node: Node) -> None:
    node.rejects(ForwardedDeadLetters(0), InvalidInput)
    node.publish("a")
    node.nack_all()
    node.nack_all()
    node.rejects(ForwardedDeadLetters(1), InvalidInput)
    assert node.seqs() == [0]


def test_outbox_reads_the_oldest_first_up_to_a_limit(node: Node) -> None:
    node.publish("a", "b", "c")
    node.nack_all()
    node.nack_all()
    assert [letter.seq for letter in node.broker.outbox(2)] == [0, 1]
    assert node.broker.outbox(0) == []
    with pytest.raises(InvalidInput):
        node.broker.outbox(-1)


# -- snapshots and determinism --------------------------------------------------------------------------------


def test_snapshot_keeps_the_outbox_and_its_next_seq(node: Node) -> None:
    node.publish("a", "b")
    node.nack_all()
    node.nack_all()
    node(ForwardedDeadLetters(0))
    restored = Broker.restore(node.broker.snapshot(), dedup_window_ms=10_000, external_dead_letters=True)
    assert restored == node.broker
    assert restored.outbox() == [letter(1, "b")]
    node.broker = restored
    node.publish("c")
    node.nack_all()
    node.nack_all()
    assert node.seqs() == [1, 2]


def test_a_snapshot_from_before_the_outbox_restores_with_an_empty_one(node: Node) -> None:
    node.publish("a")
    old_layout = msgspec.msgpack.decode(node.broker.snapshot())[:-1]
    restored = Broker.restore(msgspec.msgpack.encode(old_layout), external_dead_letters=True)
    assert restored.outbox_size() == 0
    assert restored.queue_info("q", T0).messages == 1


def scenario(seed: int, steps: int = 300) -> list[Entry]:
    """Random traffic on a queue and a subscription with external dead letters, forwarded now and then."""
    rng = random.Random(seed)
    broker = Broker(dedup_window_ms=2_000, external_dead_letters=True)
    entries: list[Entry] = []
    receipts: list[tuple[QueueRef | SubscriptionRef, str]] = []
    now = T0

    def apply(command: Command) -> None:
        entries.append(Entry(now, command))
        try:
            result = broker.apply(entries[-1])
        except MomError:
            return
        if isinstance(result, Received) and isinstance(command, Receive):
            receipts.extend((command.source, d.receipt) for d in result.messages)

    apply(DeclareQueue("q", QueueAttrs(visibility_timeout_s=0.2, max_deliveries=2, dead_letter_queue="dq"), "o"))
    apply(DeclareQueue("r", QueueAttrs(message_ttl_s=0.5, max_length=5, dead_letter_queue="dr"), "o"))
    apply(DeclareTopic("t", TopicAttrs(), "o"))
    apply(DeclareSubscription("t", "s", SubscriptionAttrs(max_deliveries=1, dead_letter_queue="dq"), "o"))
    for step in range(steps):
        now += rng.choice([0, 10, 100, 300])
        roll = rng.random()
        if roll < 0.3:
            apply(
                Publish(rng.choice(DESTINATIONS), [NewMessage(f"m{step}.{i}", b"x") for i in range(rng.randint(1, 3))])
            )
        elif roll < 0.55:
            apply(Receive(rng.choice(SOURCES), rng.randint(1, 3)))
        elif roll < 0.75 and receipts:
            source, receipt = receipts.pop(rng.randrange(len(receipts)))
            apply(Nack(source, [receipt]))
        elif roll < 0.85:
            apply(Tick())
        else:
            pending = broker.outbox(rng.randint(1, 4))
            upto = pending[-1].seq if pending else -1
            apply(ForwardedDeadLetters(upto + rng.choice([-2, 0, 0, 1])))
    return entries


def replay(broker: Broker, entries: list[Entry]) -> list[Result | tuple[str, str]]:
    out: list[Result | tuple[str, str]] = []
    for entry in entries:
        try:
            out.append(broker.apply(entry))
        except MomError as exc:
            out.append((type(exc).__name__, exc.detail))
    return out


def test_every_letter_takes_the_next_seq_and_leaves_only_when_forwarded() -> None:
    broker = Broker(dedup_window_ms=2_000, external_dead_letters=True)
    seen: dict[int, OutboxLetter] = {}
    acknowledged, forwarded, refused = -1, 0, 0
    for entry in scenario(seed=5):
        try:
            result = broker.apply(entry)
        except InvalidInput:
            refused += isinstance(entry.command, ForwardedDeadLetters)
            continue
        except MomError:
            continue
        if isinstance(entry.command, ForwardedDeadLetters):
            assert isinstance(result, Forwarded)
            forwarded += 1
            acknowledged = max(acknowledged, entry.command.upto_seq)
        letters = broker.outbox(10_000)
        assert [x.seq for x in letters] == list(range(acknowledged + 1, acknowledged + 1 + len(letters)))
        assert all(seen.setdefault(x.seq, x) == x for x in letters), "a letter changed while waiting"
    assert forwarded > 5 and refused > 0 and len(seen) > 20


@pytest.mark.parametrize("seed", [1, 2])
def test_replay_and_restore_are_deterministic(seed: int) -> None:
    entries = scenario(seed)
    reference = Broker(dedup_window_ms=2_000, external_dead_letters=True)
    expected = replay(reference, entries)
    again = Broker(dedup_window_ms=2_000, external_dead_letters=True)
    assert replay(again, entries) == expected and again.snapshot() == reference.snapshot()
    assert any(
        isinstance(e.command, ForwardedDeadLetters) and e.command.upto_seq >= 0 and isinstance(r, Forwarded)
        for e, r in zip(entries, expected, strict=True)
    ), "some letters were forwarded"
    for cut in range(0, len(entries), 25):
        original = Broker(dedup_window_ms=2_000, external_dead_letters=True)
        replay(original, entries[:cut])
        restored = Broker.restore(original.snapshot(), dedup_window_ms=2_000, external_dead_letters=True)
        assert restored == original and restored.outbox(10_000) == original.outbox(10_000)
        assert replay(restored, entries[cut:]) == expected[cut:]
        assert restored == reference
