"""Per-destination totals, bytes, oldest age and subscription lag: replicated state that every replica agrees on."""

from __future__ import annotations

from typing import Any

from mom.broker import (
    Ack,
    Broker,
    Command,
    DeclareQueue,
    DeclareSubscription,
    DeclareTopic,
    Entry,
    Nack,
    NewMessage,
    Publish,
    QueueAttrs,
    QueueRef,
    Receive,
    SubscriptionAttrs,
    SubscriptionRef,
    Tick,
    TopicAttrs,
    TopicRef,
)
from mom.broker.commands import Totals

T0 = 1_700_000_000_000


class Node:
    def __init__(self) -> None:
        self.broker = Broker(dedup_window_ms=10_000)
        self.now = T0

    def __call__(self, command: Command) -> Any:
        return self.broker.apply(Entry(self.now, command))


def message(i: int, body: bytes = b'"x"', dedup_id: str | None = None) -> NewMessage:
    return NewMessage(f"m{i}", body, dedup_id=dedup_id)


def test_queue_totals_follow_publish_receive_ack_nack_and_dead_letters() -> None:
    node = Node()
    node(DeclareQueue("dlq", QueueAttrs(), "alice"))
    node(DeclareQueue("q", QueueAttrs(max_deliveries=2, dead_letter_queue="dlq"), "alice"))
    node(Publish(QueueRef("q"), [message(1, b'"abc"'), message(2, b"[1,2]", dedup_id="d"), message(3, dedup_id="d")]))
    info = node.broker.queue_info("q", node.now)
    assert info.totals == Totals(published=2)  # the duplicate stored nothing
    assert info.bytes == len(b'"abc"') + len(b"[1,2]")

    first = node(Receive(QueueRef("q"), 2)).messages
    node(Ack(QueueRef("q"), [first[0].receipt]))
    node(Nack(QueueRef("q"), [first[1].receipt]))
    again = node(Receive(QueueRef("q"), 1)).messages
    node(Nack(QueueRef("q"), [again[0].receipt]))  # second delivery of max 2: dead-lettered
    info = node.broker.queue_info("q", node.now)
    assert info.totals == Totals(published=2, delivered=3, acked=1, nacked=2, dead_lettered=1)
    assert info.messages == 0 and info.bytes == 0 and info.oldest_age_ms is None
    dlq = node.broker.queue_info("dlq", node.now)
    assert dlq.totals.published == 1 and dlq.bytes == len(b"[1,2]")


def test_expiry_counts_as_dead_lettered_even_without_a_dead_letter_queue() -> None:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(message_ttl_s=1), "alice"))
    node(Publish(QueueRef("q"), [message(1)]))
    node.now += 2_000
    node(Tick())
    assert node.broker.queue_info("q", node.now).totals == Totals(published=1, dead_lettered=1)


def test_oldest_age_is_the_oldest_message_held() -> None:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(), "alice"))
    node(Publish(QueueRef("q"), [message(1)]))
    node.now += 1_500
    node(Publish(QueueRef("q"), [message(2)]))
    node(Receive(QueueRef("q"), 1))  # leased: still held, still the oldest
    assert node.broker.queue_info("q", node.now + 500).oldest_age_ms == 2_000


def test_subscription_lag_in_messages_and_age() -> None:
    node = Node()
    node(DeclareTopic("t", TopicAttrs(), "alice"))
    node(DeclareSubscription("t", "s", SubscriptionAttrs(start="earliest"), "alice"))
    sub = SubscriptionRef("t", "s")
    info = node.broker.subscription_info("t", "s", node.now)
    assert (info.lag, info.lag_ms) == (0, 0)

    node(Publish(TopicRef("t"), [message(1), message(2)]))
    node.now += 1_000
    node(Publish(TopicRef("t"), [message(3)]))
    info = node.broker.subscription_info("t", "s", node.now + 1_000)
    assert (info.lag, info.lag_ms) == (3, 2_000)

    delivered = node(Receive(sub, 1)).messages
    info = node.broker.subscription_info("t", "s", node.now)
    assert info.lag == 3  # delivered but not acked is still behind
    node(Ack(sub, [delivered[0].receipt]))
    info = node.broker.subscription_info("t", "s", node.now)
    assert info.lag == 2 and info.lag_ms == 1_000  # message 2 was published with message 1
    assert info.totals == Totals(delivered=1, acked=1)
    topic = node.broker.topic_info("t", node.now)
    assert topic.totals == Totals(published=3, delivered=1, acked=1)


def test_totals_survive_a_snapshot_and_agree_between_replicas() -> None:
    node = Node()
    node(DeclareQueue("q", QueueAttrs(), "alice"))
    node(DeclareTopic("t", TopicAttrs(), "alice"))
    node(DeclareSubscription("t", "s", SubscriptionAttrs(start="earliest"), "alice"))
    node(Publish(QueueRef("q"), [message(1), message(2)]))
    node(Publish(TopicRef("t"), [message(3)]))
    node(Receive(QueueRef("q"), 1))
    node(Receive(SubscriptionRef("t", "s"), 1))
    restored = Broker.restore(node.broker.snapshot(), dedup_window_ms=10_000)
    assert restored == node.broker
    for broker in (node.broker, restored):
        queue = broker.queue_info("q", node.now)
        assert queue.totals == Totals(published=2, delivered=1) and queue.bytes == 2 * len(b'"x"')
        assert broker.subscription_info("t", "s", node.now).totals == Totals(delivered=1)
        assert broker.topic_info("t", node.now).totals == Totals(published=1, delivered=1)
