"""Queue features SQS needs, in the state machine: FIFO groups, content-based dedup, default delays, attribute
updates, tags, visibility changes, purge and peek."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from mom.broker import (
    Ack,
    Broker,
    ChangeVisibility,
    Command,
    DeclareQueue,
    Entry,
    Nack,
    NewMessage,
    Publish,
    Purge,
    Purged,
    QueueAttrs,
    QueueRef,
    Receive,
    Settled,
    TagQueue,
    Tick,
    Updated,
    UpdateQueue,
)
from mom.errors import InvalidInput, MomError, NotFound

T0 = 1_700_000_000_000
F = QueueRef("f.fifo")


class Node:
    def __init__(self) -> None:
        self.broker = Broker(dedup_window_ms=10_000)
        self.now = T0

    def __call__(self, command: Command) -> Any:
        return self.broker.apply(Entry(self.now, command))

    def rejects(self, command: Command, error: type[MomError]) -> MomError:
        before = self.broker.snapshot()
        with pytest.raises(error) as caught:
            self(command)
        assert self.broker.snapshot() == before
        return caught.value

    def fifo(self, name: str = "f.fifo", **attrs: Any) -> None:
        self(DeclareQueue(name, QueueAttrs(fifo=True, **attrs), "alice"))

    def send(self, queue: str, *pairs: tuple[str, str], **fields: Any) -> list[Any]:
        messages = [
            NewMessage(f"id-{body}", body.encode(), group_id=group, dedup_id=f"d-{body}", **fields)
            for group, body in pairs
        ]
        return list(self(Publish(QueueRef(queue), messages)).messages)

    def receive(self, n: int = 10, queue: str = "f.fifo", lease_ms: int | None = None) -> list[Any]:
        return list(self(Receive(QueueRef(queue), n, lease_ms)).messages)


@pytest.fixture
def node() -> Node:
    return Node()


# -- FIFO ----------------------------------------------------------------------------------------------------


def test_fifo_name_and_kind_must_agree(node: Node) -> None:
    node.rejects(DeclareQueue("plain", QueueAttrs(fifo=True), "a"), InvalidInput)
    node.rejects(DeclareQueue("x.fifo", QueueAttrs(), "a"), InvalidInput)
    node.rejects(DeclareQueue("q", QueueAttrs(content_based_dedup=True), "a"), InvalidInput)


def test_fifo_publish_needs_a_group_and_a_dedup_id_and_no_own_delay(node: Node) -> None:
    node.fifo()
    node.rejects(Publish(F, [NewMessage("m", b"1", dedup_id="d")]), InvalidInput)
    node.rejects(Publish(F, [NewMessage("m", b"1", group_id="g")]), InvalidInput)
    node.rejects(Publish(F, [NewMessage("m", b"1", group_id="g", dedup_id="d", delay_ms=5)]), InvalidInput)


def test_a_group_with_a_message_in_flight_gives_out_no_other(node: Node) -> None:
    node.fifo()
    node.send("f.fifo", ("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2"), ("c", "c1"))
    first = node.receive(1)
    assert [d.body for d in first] == [b"a1"] and first[0].group_id == "a"
    assert [d.body for d in node.receive(10)] == [b"b1", b"b2", b"c1"]
    assert node.receive(10) == []
    assert node.broker.ready_at(F, node.now) is not None and node.broker.ready_at(F, node.now) > node.now
    node(Ack(F, [first[0].receipt]))
    assert [d.body for d in node.receive(10)] == [b"a2"]


def test_a_receive_takes_consecutive_messages_of_a_group_in_order(node: Node) -> None:
    node.fifo()
    node.send("f.fifo", ("a", "1"), ("a", "2"), ("a", "3"), ("b", "4"))
    assert [d.body for d in node.receive(2)] == [b"1", b"2"]
    assert [d.body for d in node.receive(5)] == [b"4"]


def test_a_nacked_head_comes_back_first_and_an_expired_lease_reopens_the_group(node: Node) -> None:
    node.fifo(visibility_timeout_s=1)
    node.send("f.fifo", ("a", "1"), ("a", "2"))
    head = node.receive(1)[0]
    node(Nack(F, [head.receipt]))
    again = node.receive(1)
    assert [(d.body, d.deliveries) for d in again] == [(b"1", 2)]
    node.now += 1_000
    assert [(d.body, d.deliveries) for d in node.receive(1)] == [(b"1", 3)]


def test_content_based_dedup_uses_the_body_hash(node: Node) -> None:
    node.fifo(content_based_dedup=True)
    first = node(Publish(F, [NewMessage("m1", b"same", group_id="g")])).messages
    again = node(Publish(F, [NewMessage("m2", b"same", group_id="h")])).messages
    assert again[0].duplicate and again[0].id == first[0].id
    explicit = node(Publish(F, [NewMessage("m3", b"same", group_id="g", dedup_id="own")])).messages
    assert not explicit[0].duplicate
    assert hashlib.sha256(b"same").hexdigest()  # the id content-based dedup derives


def test_fifo_dead_letters_keep_their_group_and_need_a_fifo_dlq(node: Node) -> None:
    node(DeclareQueue("plain-dlq", QueueAttrs(), "a"))
    node.rejects(DeclareQueue("f.fifo", QueueAttrs(fifo=True, dead_letter_queue="plain-dlq"), "a"), InvalidInput)
    node.fifo("dlq.fifo")
    node.fifo(max_deliveries=1, dead_letter_queue="dlq.fifo")
    node.send("f.fifo", ("g", "x"))
    node(Nack(F, [node.receive(1)[0].receipt]))
    dead = node.receive(1, "dlq.fifo")
    assert [(d.body, d.group_id, d.headers["x-death"]["queue"]) for d in dead] == [(b"x", "g", "f.fifo")]


def test_fifo_groups_survive_a_snapshot(node: Node) -> None:
    node.fifo()
    node.send("f.fifo", ("a", "1"), ("a", "2"), ("b", "3"))
    node.receive(1)
    node.broker = Broker.restore(node.broker.snapshot(), dedup_window_ms=10_000)
    assert [d.body for d in node.receive(10)] == [b"3"]


# -- default delay, updates and tags -------------------------------------------------------------------------


def test_the_queue_delay_applies_unless_the_message_names_its_own(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(delay_s=2), "a"))
    node(Publish(QueueRef("q"), [NewMessage("late", b"1"), NewMessage("now", b"2", delay_ms=0)]))
    assert [d.body for d in node.receive(10, "q")] == [b"2"]
    node.now += 2_000
    assert [d.body for d in node.receive(10, "q")] == [b"1"]


def test_update_changes_only_the_named_attributes_and_checks_them(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(visibility_timeout_s=5, max_length=9), "a"))
    assert node(UpdateQueue("q", {"visibility_timeout_s": 7, "delay_s": 1})) == Updated(changed=True)
    attrs = node.broker.queue_info("q", node.now).attrs
    assert (attrs.visibility_timeout_s, attrs.delay_s, attrs.max_length) == (7, 1, 9)
    assert node(UpdateQueue("q", {"visibility_timeout_s": 7})) == Updated(changed=False)
    node.rejects(UpdateQueue("q", {"visibility_timeout_s": 0}), InvalidInput)
    node.rejects(UpdateQueue("q", {"colour": "red"}), InvalidInput)
    node.rejects(UpdateQueue("q", {"fifo": True}), InvalidInput)
    node.rejects(UpdateQueue("q", {"replication_factor": 2}), InvalidInput)
    node.rejects(UpdateQueue("q", {"dead_letter_queue": "missing"}), InvalidInput)
    node.rejects(UpdateQueue("nope", {"delay_s": 1}), NotFound)


def test_a_new_ttl_applies_to_messages_held_already(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(), "a"))
    node(Publish(QueueRef("q"), [NewMessage("m", b"1")]))
    node(UpdateQueue("q", {"message_ttl_s": 1}))
    node.now += 1_000
    node(Tick())
    assert node.broker.queue_info("q", node.now).messages == 0


def test_a_new_visibility_timeout_applies_to_the_next_leases(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(visibility_timeout_s=10), "a"))
    node(Publish(QueueRef("q"), [NewMessage("m", b"1")]))
    node(UpdateQueue("q", {"visibility_timeout_s": 1}))
    node.receive(1, "q")
    node.now += 1_000
    assert [d.deliveries for d in node.receive(1, "q")] == [2]


def test_tags_are_set_and_removed(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(), "a"))
    node(TagQueue("q", {"team": "x", "env": "dev"}))
    node(TagQueue("q", {"env": "prod"}, remove=["team"]))
    assert node.broker.queue_info("q", node.now).tags == {"env": "prod"}
    node.rejects(TagQueue("q", {"": "v"}), InvalidInput)
    node.rejects(TagQueue("q", {f"k{i}": "v" for i in range(51)}), InvalidInput)


# -- visibility, purge, peek ---------------------------------------------------------------------------------


def test_change_visibility_keeps_the_receipt_valid(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(visibility_timeout_s=10), "a"))
    q = QueueRef("q")
    node(Publish(q, [NewMessage("m", b"1"), NewMessage("n", b"2")]))
    first, second = node.receive(2, "q")
    result = node(ChangeVisibility(q, [first.receipt, second.receipt, "1.9.1"], [60_000, 0, 5]))
    assert result == Settled([first.receipt, second.receipt], ["1.9.1"])
    again = node.receive(5, "q")
    assert [(d.body, d.deliveries) for d in again] == [(b"2", 2)]
    node.now += 30_000
    assert [d.id for d in node.receive(5, "q")] == ["n"], "the first message's lease was extended to 60 s"
    assert node(Ack(q, [first.receipt])) == Settled([first.receipt], [])
    node.rejects(ChangeVisibility(q, ["bad"], [1]), InvalidInput)
    node.rejects(ChangeVisibility(q, [first.receipt], [43_200_001]), InvalidInput)


def test_change_visibility_of_a_message_not_in_flight_is_unknown(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(), "a"))
    q = QueueRef("q")
    node(Publish(q, [NewMessage("m", b"1")]))
    delivery = node.receive(1, "q")[0]
    node(ChangeVisibility(q, [delivery.receipt], [0]))
    assert node(ChangeVisibility(q, [delivery.receipt], [5_000])) == Settled([], [delivery.receipt])


def test_purge_removes_everything_and_old_receipts_match_nothing(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(), "a"))
    q = QueueRef("q")
    node(Publish(q, [NewMessage(f"m{i}", b"x", delay_ms=1000 if i == 0 else None) for i in range(4)]))
    leased = node.receive(1, "q")[0]
    assert node(Purge(q)) == Purged(4)
    info = node.broker.queue_info("q", node.now)
    assert (info.ready, info.delayed, info.in_flight, info.messages) == (0, 0, 0, 0)
    assert node(Ack(q, [leased.receipt])) == Settled([], [leased.receipt])
    node(Publish(q, [NewMessage("new", b"y")]))
    assert [d.offset for d in node.receive(5, "q")] == [4]
    node.rejects(Purge(QueueRef("missing")), NotFound)


def test_peek_shows_messages_and_their_state_without_leasing(node: Node) -> None:
    node(DeclareQueue("q", QueueAttrs(visibility_timeout_s=10), "a"))
    q = QueueRef("q")
    node(Publish(q, [NewMessage("a", b"1"), NewMessage("b", b"2", delay_ms=500), NewMessage("c", b"3")]))
    node.receive(1, "q")
    before = node.broker.snapshot()
    peeked = node.broker.peek_queue("q", 0, 10, node.now)
    assert node.broker.snapshot() == before
    assert [(p.id, p.state, p.deliveries, p.visible_at_ms) for p in peeked] == [
        ("a", "in_flight", 1, T0 + 10_000),
        ("b", "delayed", 0, T0 + 500),
        ("c", "ready", 0, None),
    ]
    assert [p.id for p in node.broker.peek_queue("q", 1, 1, node.now)] == ["b"]
    assert [p.state for p in node.broker.peek_queue("q", 0, 10, T0 + 600)][1] == "ready"
    with pytest.raises(InvalidInput):
        node.broker.peek_queue("q", -1, 10, node.now)
