"""Queues in the broker state machine: declare, publish, receive, ack, nack, leases, dead letters, TTL."""

from __future__ import annotations

from typing import Any

import pytest

from mom.broker import (
    Ack,
    Broker,
    Command,
    Declared,
    DeclareQueue,
    Deleted,
    DeleteQueue,
    Delivery,
    Entry,
    Nack,
    NewMessage,
    Publish,
    PublishedMessage,
    QueueAttrs,
    QueueRef,
    Receive,
    RegisterClient,
    Registered,
    RegisterUser,
    Settled,
    Tick,
    Ticked,
)
from mom.errors import Conflict, InvalidInput, MomError, NotFound, QueueFull

T0 = 1_700_000_000_000
Q = QueueRef("q")


class Node:
    """A broker and the time at which the next entry is applied."""

    def __init__(self, dedup_window_ms: int = 10_000) -> None:
        self.broker = Broker(dedup_window_ms=dedup_window_ms)
        self.now = T0

    def __call__(self, command: Command) -> Any:
        return self.broker.apply(Entry(self.now, command))

    def rejects(self, command: Command, error: type[MomError]) -> MomError:
        """Apply a command that must fail, and check that it changed nothing."""
        before, deadline = self.broker.snapshot(), self.broker.next_deadline_ms()
        with pytest.raises(error) as caught:
            self(command)
        assert self.broker.snapshot() == before
        assert self.broker.next_deadline_ms() == deadline
        return caught.value

    def declare(self, name: str = "q", **attrs: Any) -> Declared:
        result = self(DeclareQueue(name, QueueAttrs(**attrs), "alice"))
        assert isinstance(result, Declared)
        return result

    def publish(self, *bodies: str, queue: str = "q", **fields: Any) -> list[PublishedMessage]:
        messages = [NewMessage(f"id-{body}", body.encode(), **fields) for body in bodies]
        return list(self(Publish(QueueRef(queue), messages)).messages)

    def receive(self, n: int = 10, queue: str = "q", lease_ms: int | None = None) -> list[Delivery]:
        return list(self(Receive(QueueRef(queue), n, lease_ms)).messages)

    def bodies(self, n: int = 10, queue: str = "q") -> list[str]:
        return [d.body.decode() for d in self.receive(n, queue)]

    def info(self, queue: str = "q") -> tuple[int, int, int, int]:
        info = self.broker.queue_info(queue, self.now)
        return info.ready, info.delayed, info.in_flight, info.messages


@pytest.fixture
def node() -> Node:
    return Node()


# -- declare and delete --------------------------------------------------------------------------------------


def test_declare_is_idempotent_and_conflicts_name_what_differs(node: Node) -> None:
    assert node.declare(visibility_timeout_s=5) == Declared(created=True)
    assert node.declare(visibility_timeout_s=5) == Declared(created=False)
    error = node.rejects(DeclareQueue("q", QueueAttrs(visibility_timeout_s=6), "alice"), Conflict)
    assert "visibility_timeout_s" in error.detail and "max_length" not in error.detail
    info = node.broker.queue_info("q", node.now)
    assert (info.owner, info.created_at_ms, info.attrs.visibility_timeout_s) == ("alice", T0, 5)


@pytest.mark.parametrize("name", ["", "a b", "x" * 201, "ü"])
def test_declare_rejects_bad_names(node: Node, name: str) -> None:
    node.rejects(DeclareQueue(name, QueueAttrs(), "alice"), InvalidInput)


def test_declare_checks_attribute_constraints(node: Node) -> None:
    node.rejects(DeclareQueue("q", QueueAttrs(visibility_timeout_s=0), "alice"), InvalidInput)
    node.rejects(DeclareQueue("q", QueueAttrs(max_length=0), "alice"), InvalidInput)


def test_dead_letter_queue_must_exist_and_differ(node: Node) -> None:
    node.rejects(DeclareQueue("q", QueueAttrs(dead_letter_queue="dlq"), "alice"), InvalidInput)
    node.rejects(DeclareQueue("q", QueueAttrs(dead_letter_queue="q"), "alice"), InvalidInput)
    node.declare("dlq")
    assert node.declare(dead_letter_queue="dlq").created


def test_delete_removes_messages_and_old_receipts_never_match_again(node: Node) -> None:
    node.rejects(DeleteQueue("q"), NotFound)
    node.declare()
    node.publish("a", "b")
    receipts = [d.receipt for d in node.receive(1)]
    assert node(DeleteQueue("q")) == Deleted()
    node.rejects(Receive(Q, 1), NotFound)
    node.declare()
    node.publish("c")
    assert [d.offset for d in node.receive()] == [0]
    assert node(Ack(Q, receipts)) == Settled([], receipts)
    assert node.info() == (0, 0, 1, 1)


def test_list_queues_is_sorted(node: Node) -> None:
    for name in ["b", "c", "a"]:
        node.declare(name)
    assert [q.name for q in node.broker.list_queues(node.now)] == ["a", "b", "c"]


# -- publish -------------------------------------------------------------------------------------------------


def test_publish_assigns_consecutive_offsets(node: Node) -> None:
    node.declare()
    assert [p.offset for p in node.publish("a", "b")] == [0, 1]
    assert node.publish("c") == [PublishedMessage("id-c", 2)]
    assert node.info() == (3, 0, 0, 3)


def test_publish_to_missing_queue_and_negative_delay_are_rejected(node: Node) -> None:
    node.rejects(Publish(Q, [NewMessage("m", b"1")]), NotFound)
    node.declare()
    node.rejects(Publish(Q, [NewMessage("m", b"1"), NewMessage("n", b"1", delay_ms=-1)]), InvalidInput)


def test_dedup_returns_the_first_publish_within_the_window(node: Node) -> None:
    node.declare()
    first = node(Publish(Q, [NewMessage("m1", b"1", dedup_id="d"), NewMessage("m2", b"2", dedup_id="d")]))
    assert first.messages == [PublishedMessage("m1", 0), PublishedMessage("m1", 0, duplicate=True)]
    node.now += 9_999
    again = node(Publish(Q, [NewMessage("m3", b"3", dedup_id="d"), NewMessage("m4", b"4", dedup_id="e")]))
    assert again.messages == [PublishedMessage("m1", 0, duplicate=True), PublishedMessage("m4", 1)]
    node.now += 1
    assert node(Publish(Q, [NewMessage("m5", b"5", dedup_id="d")])).messages == [PublishedMessage("m5", 2)]
    assert node.bodies() == ["1", "4", "5"]


def test_dedup_ids_are_per_destination_and_forgotten_on_tick(node: Node) -> None:
    node.declare("q")
    node.declare("r")
    assert not node.publish("a", dedup_id="d")[0].duplicate
    assert not node.publish("a", queue="r", dedup_id="d")[0].duplicate
    deadline = node.broker.next_deadline_ms()
    assert deadline is not None and deadline >= T0 + 10_000
    before = len(node.broker.snapshot())
    node.now = deadline
    node(Tick())
    assert len(node.broker.snapshot()) < before
    assert node.broker.next_deadline_ms() is None


def test_delayed_messages_stay_invisible_until_due(node: Node) -> None:
    node.declare()
    node.publish("late", delay_ms=500)
    node.publish("now")
    assert node.info() == (1, 1, 0, 2)
    assert node.broker.ready_at(Q, node.now) == node.now
    assert node.bodies() == ["now"]
    assert node.broker.ready_at(Q, node.now) == T0 + 500
    assert node.broker.queue_info("q", T0 + 500).ready == 1
    node.now += 499
    assert node.bodies() == []
    node.now += 1
    assert node.bodies() == ["late"]


def test_max_length_rejects_the_whole_batch(node: Node) -> None:
    node.declare(max_length=3)
    node.publish("a", "b")
    node.rejects(Publish(Q, [NewMessage("c", b"c"), NewMessage("d", b"d")]), QueueFull)
    node.publish("c")
    node.rejects(Publish(Q, [NewMessage("d", b"d")]), QueueFull)
    assert node.info()[3] == 3


def test_max_length_ignores_duplicates_and_counts_leased_messages(node: Node) -> None:
    node.declare(max_length=2)
    node.publish("a", dedup_id="x")
    node.receive()
    assert node.publish("b", "c", dedup_id="x")[0].duplicate
    node.publish("d")
    node.rejects(Publish(Q, [NewMessage("e", b"e")]), QueueFull)


def test_max_length_counts_what_housekeeping_frees_without_rejecting_with_changes(node: Node) -> None:
    node.declare(max_length=2, message_ttl_s=1, visibility_timeout_s=60)
    node.publish("leased")
    node.receive()
    node.now += 1
    node.publish("old")
    node.now += 1_100
    assert node.publish("new") == [PublishedMessage("id-new", 2)]
    assert node.info() == (1, 0, 1, 2)
    node.now += 100
    node.rejects(Publish(Q, [NewMessage("x", b"x")]), QueueFull)


def test_queue_full_leaves_due_housekeeping_undone(node: Node) -> None:
    node.declare("dlq")
    node.declare(max_length=1, max_deliveries=5, dead_letter_queue="dlq", visibility_timeout_s=1)
    node.publish("a")
    node.receive()
    node.now += 1_000
    node.rejects(Publish(Q, [NewMessage("b", b"b")]), QueueFull)
    assert node.info() == (1, 0, 0, 1)


# -- receive, ack, nack --------------------------------------------------------------------------------------


def test_receive_leases_in_offset_order_with_fresh_receipts(node: Node) -> None:
    node.declare(visibility_timeout_s=2)
    node.publish("a", "b", "c")
    first = node.receive(2)
    assert [(d.body, d.offset, d.deliveries, d.published_at_ms) for d in first] == [
        (b"a", 0, 1, T0),
        (b"b", 1, 1, T0),
    ]
    assert node.info() == (1, 0, 2, 3)
    node.now += 2_000
    second = node.receive(5)
    assert [(d.offset, d.deliveries) for d in second] == [(0, 2), (1, 2), (2, 1)]
    receipts = [d.receipt for d in first + second]
    assert len(set(receipts)) == len(receipts)


def test_receive_validates_its_arguments(node: Node) -> None:
    node.rejects(Receive(Q, 1), NotFound)
    node.declare()
    node.publish("a")
    node.rejects(Receive(Q, 0), InvalidInput)
    node.rejects(Receive(Q, 1, visibility_timeout_ms=0), InvalidInput)


def test_visibility_timeout_override(node: Node) -> None:
    node.declare(visibility_timeout_s=30)
    node.publish("a")
    node.receive(lease_ms=100)
    assert node.broker.ready_at(Q, node.now) == T0 + 100
    node.now += 100
    assert [d.deliveries for d in node.receive()] == [2]
    assert node.broker.ready_at(Q, node.now) == T0 + 100 + 30_000


def test_returned_messages_go_back_to_their_place(node: Node) -> None:
    node.declare()
    node.publish("a", "b", "c", "d")
    a, b = node.receive(2)
    node(Nack(Q, [b.receipt]))
    assert node.bodies(1) == ["b"]
    node(Nack(Q, [a.receipt]))
    assert node.bodies() == ["a", "c", "d"]


def test_ack_settles_current_deliveries_only(node: Node) -> None:
    node.declare(visibility_timeout_s=1)
    node.publish("a", "b")
    (a, _) = node.receive()
    node.now += 1_000
    (a2, b2) = node.receive()
    result = node(Ack(Q, [a.receipt, a2.receipt, a2.receipt, "9.0.1", "1.7.1", "1.1.0"]))
    assert result == Settled([a2.receipt], [a.receipt, a2.receipt, "9.0.1", "1.7.1", "1.1.0"])
    assert node.info() == (0, 0, 1, 1)
    assert node(Ack(Q, [b2.receipt])) == Settled([b2.receipt], [])
    assert node.info() == (0, 0, 0, 0)


def test_ack_after_lease_expiry_but_before_redelivery_settles(node: Node) -> None:
    node.declare(visibility_timeout_s=1)
    node.publish("a")
    (a,) = node.receive()
    node.now += 5_000
    node(Tick())
    assert node.info() == (1, 0, 0, 1)
    assert node(Ack(Q, [a.receipt])).settled == [a.receipt]
    assert node.receive() == []


@pytest.mark.parametrize("bad", ["", "1.2", "1.2.3.4", "a.b.c", "1.2.-3", "\u0661.\u0662.\u0663", "1" * 40 + ".1.1"])
def test_malformed_receipt_rejects_the_whole_command(node: Node, bad: str) -> None:
    node.declare()
    node.publish("a")
    (a,) = node.receive()
    node.rejects(Ack(Q, [a.receipt, bad]), InvalidInput)
    node.rejects(Nack(Q, [a.receipt, bad]), InvalidInput)


def test_ack_and_nack_on_missing_queue(node: Node) -> None:
    node.rejects(Ack(Q, []), NotFound)
    node.rejects(Nack(Q, []), NotFound)
    node.declare()
    node.rejects(Nack(Q, [], delay_ms=-1), InvalidInput)


def test_nack_with_delay(node: Node) -> None:
    node.declare()
    node.publish("a", "b")
    a, _ = node.receive()
    assert node(Nack(Q, [a.receipt], delay_ms=300)).settled == [a.receipt]
    assert node.info() == (0, 1, 1, 2)
    assert node.broker.ready_at(Q, node.now) == T0 + 300
    assert node.receive() == []
    node.now += 300
    assert [(d.body, d.deliveries) for d in node.receive()] == [(b"a", 2)]


def test_lease_expiry_counts_as_ready_in_views_before_any_tick(node: Node) -> None:
    node.declare(visibility_timeout_s=1)
    node.publish("a", "b")
    node.receive(1)
    assert node.broker.queue_info("q", T0 + 999).in_flight == 1
    info = node.broker.queue_info("q", T0 + 1_000)
    assert (info.ready, info.in_flight, info.messages) == (2, 0, 2)


# -- dead letters and TTL ------------------------------------------------------------------------------------


def dead_letter_setup(node: Node, **attrs: Any) -> None:
    node.declare("dlq", **attrs)
    node.declare(visibility_timeout_s=1, max_deliveries=2, dead_letter_queue="dlq")


def test_lease_expiry_after_max_deliveries_dead_letters(node: Node) -> None:
    dead_letter_setup(node)
    node(Publish(Q, [NewMessage("m", b"x", binary=True, headers={"k": "v"})]))
    node.receive()
    node.now += 1_000
    node.receive()
    node.now += 1_000
    assert node.broker.next_deadline_ms() == node.now
    assert node(Tick()) == Ticked()
    assert node.info() == (0, 0, 0, 0)
    (dead,) = node.receive(queue="dlq")
    assert (dead.id, dead.body, dead.binary, dead.offset, dead.deliveries) == ("m", b"x", True, 0, 1)
    assert dead.headers == {"k": "v", "x-death": {"queue": "q", "reason": "max_deliveries"}}
    assert dead.published_at_ms == node.now


def test_nack_after_max_deliveries_dead_letters(node: Node) -> None:
    dead_letter_setup(node)
    node.publish("a")
    node(Nack(Q, [node.receive()[0].receipt]))
    node(Nack(Q, [node.receive()[0].receipt]))
    assert node.info() == (0, 0, 0, 0)
    assert node.bodies(queue="dlq") == ["a"]


def test_max_deliveries_without_dead_letter_queue_drops(node: Node) -> None:
    node.declare(max_deliveries=1)
    node.publish("a")
    node(Nack(Q, [node.receive()[0].receipt]))
    assert node.info() == (0, 0, 0, 0)


def test_full_or_deleted_dead_letter_queue_drops(node: Node) -> None:
    dead_letter_setup(node, max_length=1)
    node.publish("a", "b")
    for _ in range(2):
        node(Nack(Q, [d.receipt for d in node.receive()]))
    assert node.info() == (0, 0, 0, 0)
    assert node.bodies(queue="dlq") == ["a"]
    node(DeleteQueue("dlq"))
    node.publish("c")
    for _ in range(2):
        node(Nack(Q, [d.receipt for d in node.receive()]))
    assert node.info() == (0, 0, 0, 0)


def test_ttl_expires_unleased_messages_to_the_dead_letter_queue(node: Node) -> None:
    node.declare("dlq")
    node.declare(message_ttl_s=1, dead_letter_queue="dlq", visibility_timeout_s=5)
    node.publish("a", "b", "c")
    node(Publish(Q, [NewMessage("d", b"d", delay_ms=2_000)]))
    node.receive(1)
    node.now += 999
    assert node.info() == (2, 1, 1, 4)
    assert node.broker.next_deadline_ms() == T0 + 1_000
    node.now += 1
    node(Tick())
    assert node.info() == (0, 0, 1, 1)
    expired = node.receive(queue="dlq")
    assert [d.body for d in expired] == [b"b", b"c", b"d"]
    assert {d.headers["x-death"]["reason"] for d in expired} == {"expired"}
    node.now += 4_000
    node(Tick())
    assert node.info() == (0, 0, 0, 0)
    assert [d.headers["x-death"] for d in node.receive(queue="dlq")] == [{"queue": "q", "reason": "expired"}]


def test_ttl_is_applied_by_commands_that_touch_the_queue(node: Node) -> None:
    node.declare(message_ttl_s=1)
    node.publish("a")
    node.now += 1_000
    assert node.receive() == []


def test_leased_message_can_be_acked_after_its_ttl(node: Node) -> None:
    node.declare(message_ttl_s=1)
    node.publish("a")
    (a,) = node.receive()
    node.now += 1_500
    node(Tick())
    assert node(Ack(Q, [a.receipt])).settled == [a.receipt]


# -- time ----------------------------------------------------------------------------------------------------


def test_time_going_backwards_is_clamped(node: Node) -> None:
    node.declare(visibility_timeout_s=1)
    node.publish("a")
    node.now += 1_000
    node.receive()
    node.now -= 5_000
    node.publish("b")
    assert node.broker.ready_at(Q, 0) == 0
    assert node.broker.queue_info("q", 0).in_flight == 1
    assert [d.published_at_ms for d in node.receive()] == [T0 + 1_000]
    assert node.broker.ready_at(Q, 0) == T0 + 2_000


def test_ready_at_and_next_deadline_when_idle(node: Node) -> None:
    assert node.broker.next_deadline_ms() is None
    node.declare()
    assert node.broker.ready_at(Q, node.now) is None
    with pytest.raises(NotFound):
        node.broker.ready_at(QueueRef("nope"), node.now)
    with pytest.raises(NotFound):
        node.broker.queue_info("nope", node.now)
    assert node(Tick()) == Ticked()


# -- accounts ------------------------------------------------------------------------------------------------


def test_register_users_and_clients(node: Node) -> None:
    assert node(RegisterUser("ann", "h1", ["mom.read:*"])) == Registered()
    node.rejects(RegisterUser("ann", "h2", []), Conflict)
    node.now += 5
    assert node(RegisterClient("svc", "s1", ["mom.write:*"], "ann")) == Registered()
    node.rejects(RegisterClient("svc", "s2", [], "ann"), Conflict)
    user, client = node.broker.user("ann"), node.broker.client("svc")
    assert user is not None and (user.password_hash, user.scopes, user.created_at_ms) == (
        "h1",
        ["mom.read:*"],
        T0,
    )
    assert client is not None and (client.owner, client.created_at_ms) == ("ann", T0 + 5)
    assert node.broker.user("bob") is None and node.broker.client("x") is None
    assert node.broker.user_count() == 1


def test_leases_and_delays_stay_exact_through_many_settled_deliveries(node: Node) -> None:
    node.declare(visibility_timeout_s=10)
    node.publish("keep", "wait")
    _, wait = node.receive(2)
    node(Nack(Q, [wait.receipt], delay_ms=5_000))
    for i in range(300):
        node.publish(f"m{i}")
        node(Ack(Q, [d.receipt for d in node.receive(1)]))
    assert node.info() == (0, 1, 1, 2)
    node.now += 4_999
    assert node.bodies() == []
    node.now += 1
    assert node.bodies() == ["wait"]
    node.now += 5_000
    assert node.bodies(1) == ["keep"]
