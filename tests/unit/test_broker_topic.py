"""Topics and subscriptions in the broker state machine: the retained log, replay, retention and consumers."""

from __future__ import annotations

from typing import Any

import pytest

from mom.broker import (
    Ack,
    Broker,
    Command,
    Declared,
    DeclareQueue,
    DeclareSubscription,
    DeclareTopic,
    Deleted,
    DeleteSubscription,
    DeleteTopic,
    Delivery,
    Entry,
    Nack,
    NewMessage,
    Publish,
    PublishedMessage,
    QueueAttrs,
    QueueRef,
    Receive,
    Settled,
    StartOffset,
    SubscriptionAttrs,
    SubscriptionRef,
    Tick,
    TopicAttrs,
    TopicRef,
)
from mom.errors import Conflict, InvalidInput, MomError, NotFound

T0 = 1_700_000_000_000
S = SubscriptionRef("t", "s")


class Node:
    def __init__(self) -> None:
        self.broker = Broker(dedup_window_ms=10_000)
        self.now = T0

    def __call__(self, command: Command) -> Any:
        return self.broker.apply(Entry(self.now, command))

    def rejects(self, command: Command, error: type[MomError]) -> MomError:
        before, deadline = self.broker.snapshot(), self.broker.next_deadline_ms()
        with pytest.raises(error) as caught:
            self(command)
        assert self.broker.snapshot() == before
        assert self.broker.next_deadline_ms() == deadline
        return caught.value

    def topic(self, name: str = "t", **attrs: Any) -> Declared:
        result = self(DeclareTopic(name, TopicAttrs(**attrs), "alice"))
        assert isinstance(result, Declared)
        return result

    def subscribe(self, name: str = "s", topic: str = "t", **attrs: Any) -> Declared:
        result = self(DeclareSubscription(topic, name, SubscriptionAttrs(**attrs), "bob"))
        assert isinstance(result, Declared)
        return result

    def publish(self, *bodies: str, topic: str = "t", **fields: Any) -> list[PublishedMessage]:
        messages = [NewMessage(f"id-{body}", body.encode(), **fields) for body in bodies]
        return list(self(Publish(TopicRef(topic), messages)).messages)

    def receive(self, n: int = 10, sub: str = "s") -> list[Delivery]:
        return list(self(Receive(SubscriptionRef("t", sub), n)).messages)

    def offsets(self, n: int = 10, sub: str = "s") -> list[int]:
        return [d.offset for d in self.receive(n, sub)]

    def sub_counts(self, sub: str = "s") -> tuple[int, int, int]:
        info = self.broker.subscription_info("t", sub, self.now)
        return info.next_offset, info.ready, info.in_flight

    def log(self, from_offset: int = 0, limit: int = 100) -> list[str]:
        return [m.body.decode() for m in self.broker.read_topic("t", from_offset, limit)]


@pytest.fixture
def node() -> Node:
    return Node()


# -- topics --------------------------------------------------------------------------------------------------


def test_declare_topic_is_idempotent_and_conflicts(node: Node) -> None:
    assert node.topic(retention_s=60).created
    assert not node.topic(retention_s=60).created
    error = node.rejects(DeclareTopic("t", TopicAttrs(retention_bytes=10), "alice"), Conflict)
    assert "retention_s" in error.detail and "retention_bytes" in error.detail
    node.rejects(DeclareTopic("bad name", TopicAttrs(), "alice"), InvalidInput)
    node.rejects(DeclareTopic("u", TopicAttrs(retention_bytes=0), "alice"), InvalidInput)


def test_publish_appends_to_the_log_and_replay_reads_it(node: Node) -> None:
    node.rejects(Publish(TopicRef("t"), [NewMessage("m", b"1")]), NotFound)
    node.topic()
    assert [p.offset for p in node.publish("a", "b", "c")] == [0, 1, 2]
    assert node.log() == ["a", "b", "c"]
    assert node.log(1, 1) == ["b"]
    assert node.log(3) == []
    (stored,) = node.broker.read_topic("t", 2, 5)
    assert (stored.id, stored.offset, stored.published_at_ms) == ("id-c", 2, T0)
    info = node.broker.topic_info("t", node.now)
    assert (info.first_offset, info.next_offset, info.messages, info.bytes) == (0, 3, 3, 3)
    with pytest.raises(NotFound):
        node.broker.read_topic("nope", 0, 1)


def test_topic_messages_cannot_be_delayed(node: Node) -> None:
    node.topic()
    node.rejects(Publish(TopicRef("t"), [NewMessage("m", b"1", delay_ms=5)]), InvalidInput)


def test_topic_dedup(node: Node) -> None:
    node.topic()
    node.publish("a", dedup_id="d")
    assert node.publish("b", dedup_id="d") == [PublishedMessage("id-a", 0, duplicate=True)]
    node.now += 10_000
    assert node.publish("c", dedup_id="d") == [PublishedMessage("id-c", 1)]


def test_retention_by_bytes_drops_the_oldest(node: Node) -> None:
    node.topic(retention_bytes=5)
    node.publish("aa", "bb")
    node.publish("cc")
    info = node.broker.topic_info("t", node.now)
    assert (info.first_offset, info.next_offset, info.bytes) == (1, 3, 4)
    assert node.log() == ["bb", "cc"]
    node.publish("toolarge")
    assert node.log() == []
    assert node.broker.topic_info("t", node.now).first_offset == 4


def test_retention_by_time_applies_at_publish_and_tick(node: Node) -> None:
    node.topic(retention_s=1)
    node.publish("a")
    node.now += 500
    node.publish("b")
    assert node.broker.next_deadline_ms() == T0 + 1_000
    node.now += 500
    node(Tick())
    assert node.log() == ["b"]
    assert node.broker.next_deadline_ms() == T0 + 1_500
    node.now += 600
    node.publish("c")
    assert node.log(0) == ["c"]


def test_long_retained_logs_stay_addressable_after_compaction(node: Node) -> None:
    node.topic(retention_bytes=100)
    node.subscribe(start="earliest")
    for i in range(30):
        node.publish(*[f"{i:02}{j:03}" for j in range(100)])
    assert node.log(0, 1) == ["29080"]
    assert node.offsets(3) == [2980, 2981, 2982]


def test_delete_topic_removes_its_subscriptions(node: Node) -> None:
    node.rejects(DeleteTopic("t"), NotFound)
    node.topic()
    node.subscribe()
    assert node(DeleteTopic("t")) == Deleted()
    node.rejects(Receive(S, 1), NotFound)
    node.topic()
    node.rejects(Receive(S, 1), NotFound)
    assert node.broker.list_topics(node.now)[0].subscriptions == []


# -- subscriptions -------------------------------------------------------------------------------------------


def test_subscription_declare_rules(node: Node) -> None:
    node.rejects(DeclareSubscription("t", "s", SubscriptionAttrs(), "bob"), NotFound)
    node.topic()
    assert node.subscribe().created
    assert not node.subscribe().created
    error = node.rejects(DeclareSubscription("t", "s", SubscriptionAttrs(start="earliest"), "bob"), Conflict)
    assert "start" in error.detail
    node.rejects(DeclareSubscription("t", "x y", SubscriptionAttrs(), "bob"), InvalidInput)
    node.rejects(DeclareSubscription("t", "d", SubscriptionAttrs(dead_letter_queue="dlq"), "bob"), InvalidInput)
    info = node.broker.subscription_info("t", "s", node.now)
    assert (info.owner, info.created_at_ms) == ("bob", T0)
    with pytest.raises(NotFound):
        node.broker.subscription_info("t", "nope", node.now)


@pytest.mark.parametrize(
    ("start", "cursor"),
    [("latest", 5), ("earliest", 2), (StartOffset(3), 3), (StartOffset(0), 2), (StartOffset(99), 5)],
)
def test_subscription_start(node: Node, start: Any, cursor: int) -> None:
    node.topic(retention_bytes=3)
    node.publish("a", "b", "c", "d", "e")
    node.subscribe(start=start)
    assert node.sub_counts() == (cursor, 5 - cursor, 0)
    node.publish("f")
    assert node.offsets() == list(range(max(cursor, 3), 6))


def test_every_subscription_gets_every_message(node: Node) -> None:
    node.topic()
    node.subscribe("one")
    node.subscribe("two")
    node.publish("a", "b")
    assert node.offsets(sub="one") == [0, 1]
    assert node.offsets(1, sub="two") == [0]
    assert node.offsets(sub="two") == [1]
    assert node.offsets(sub="one") == []


def test_subscription_leases_acks_and_redelivery_in_offset_order(node: Node) -> None:
    node.topic()
    node.subscribe(visibility_timeout_s=1)
    node.publish("a", "b", "c")
    a, b = node.receive(2)
    assert node.sub_counts() == (2, 1, 2)
    assert node(Ack(S, [b.receipt, b.receipt])) == Settled([b.receipt], [b.receipt])
    assert node.broker.ready_at(S, node.now) == node.now
    assert node.offsets(1) == [2]
    assert node.broker.ready_at(S, node.now) == T0 + 1_000
    node.now += 1_000
    assert node.sub_counts() == (3, 2, 0)
    redelivered = node.receive()
    assert [(d.offset, d.deliveries, d.body) for d in redelivered] == [(0, 2, b"a"), (2, 2, b"c")]
    assert node(Ack(S, [a.receipt])).unknown == [a.receipt]
    node(Nack(S, [redelivered[1].receipt], delay_ms=50))
    assert node.sub_counts() == (3, 0, 1)
    node.now += 50
    assert node.offsets() == [2]


def test_subscription_dead_letters_name_topic_and_subscription(node: Node) -> None:
    node(DeclareQueue("dlq", QueueAttrs(), "bob"))
    node.topic()
    node.subscribe(max_deliveries=1, dead_letter_queue="dlq", visibility_timeout_s=1)
    node(Publish(TopicRef("t"), [NewMessage("m", b"1", headers={"h": 1})]))
    node.receive()
    node.now += 1_000
    node(Tick())
    assert node.sub_counts() == (1, 0, 0)
    (dead,) = node(Receive(QueueRef("dlq"), 5)).messages
    assert (dead.id, dead.body) == ("m", b"1")
    assert dead.headers == {"h": 1, "x-death": {"queue": "t/s", "reason": "max_deliveries"}}


def test_subscription_malformed_receipts_and_missing_sources(node: Node) -> None:
    node.topic()
    node.subscribe()
    node.publish("a")
    (a,) = node.receive()
    node.rejects(Ack(S, [a.receipt, "x"]), InvalidInput)
    node.rejects(Ack(SubscriptionRef("t", "nope"), [a.receipt]), NotFound)
    node.rejects(Receive(SubscriptionRef("nope", "s"), 1), NotFound)


def test_receipts_do_not_survive_resubscribing(node: Node) -> None:
    node.topic()
    node.subscribe(start="earliest")
    node.publish("a")
    (a,) = node.receive()
    assert node(DeleteSubscription("t", "s")) == Deleted()
    node.rejects(DeleteSubscription("t", "s"), NotFound)
    node.subscribe(start="earliest")
    assert node.offsets() == [0]
    assert node(Ack(S, [a.receipt])).unknown == [a.receipt]


def test_retention_skips_unconsumed_messages_and_drops_their_leases(node: Node) -> None:
    node.topic(retention_bytes=3)
    node.subscribe(start="earliest")
    node.publish("a", "b", "c")
    (a,) = node.receive(1)
    node.publish("d", "e")
    assert node.sub_counts() == (2, 3, 0)
    assert node(Ack(S, [a.receipt])).unknown == [a.receipt]
    assert node.offsets() == [2, 3, 4]


def test_subscription_memory_does_not_grow_with_consumed_messages(node: Node) -> None:
    node.topic()
    node.publish(*[f"m{i}" for i in range(500)])
    bare = len(node.broker.snapshot())
    node.subscribe(start="earliest")
    for _ in range(5):
        node(Ack(S, [d.receipt for d in node.receive(100)]))
    assert node.sub_counts() == (500, 0, 0)
    assert len(node.broker.snapshot()) - bare < 150
