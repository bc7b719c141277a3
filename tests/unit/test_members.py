"""Membership as catalog state: seed, add, drain, remove, explicit replica sets and moves, through `Broker.apply`."""

from __future__ import annotations

import pytest

from mom.broker.commands import (
    AddNode,
    DeclareQueue,
    DeleteQueue,
    DrainNode,
    Entry,
    FinishMove,
    MemberRecord,
    Move,
    QueueAttrs,
    RemoveNode,
    SeedMembers,
    StartMove,
)
from mom.broker.members import DRAINING, rendezvous
from mom.broker.state import Broker
from mom.errors import Conflict, InvalidInput, NotFound, Unavailable
from mom.replication.placement import replicas as placement_replicas


def node(n: int) -> MemberRecord:
    return MemberRecord(f"mom{n}", f"127.0.0.1:{8080 + n}", f"127.0.0.1:{9080 + n}")


def seeded(nodes: int = 3, factor: int = 3) -> Broker:
    broker = Broker()
    broker.apply(Entry(1, SeedMembers([node(n) for n in range(1, nodes + 1)], factor)))
    return broker


def apply(broker: Broker, *commands: object) -> None:
    for command in commands:
        broker.apply(Entry(2, command))  # type: ignore[arg-type]


def test_seed_places_destinations_exactly_as_the_static_rendezvous_did() -> None:
    broker = seeded(5)
    apply(broker, DeclareQueue("orders", QueueAttrs(), "user:a"))
    ids = [f"mom{n}" for n in range(1, 6)]
    assert broker.members.replicas("q.orders", None) == placement_replicas("q.orders", ids, 3)
    assert broker.members.explicit("q.orders") is None, "an unchanged cluster records no replica sets"
    assert broker.apply(Entry(3, SeedMembers([node(9)], 1))).changed is False, "only the first seed counts"
    assert [m.id for m in broker.members.members()] == ["mom1", "mom2", "mom3", "mom4", "mom5"]


def test_add_node_rejects_duplicates_of_id_or_address() -> None:
    broker = seeded()
    apply(broker, AddNode(node(4)))
    assert broker.apply(Entry(3, AddNode(node(4)))).changed is False, "the same add again changes nothing"
    with pytest.raises(Conflict):
        apply(broker, AddNode(MemberRecord("mom4", "127.0.0.1:1", "127.0.0.1:2")))
    with pytest.raises(Conflict):
        apply(broker, AddNode(MemberRecord("mom5", node(1).rest, "127.0.0.1:2")))
    with pytest.raises(InvalidInput):
        apply(broker, AddNode(MemberRecord("mom6", "127.0.0.1:3", "127.0.0.1:4", DRAINING)))


def test_destinations_declared_after_a_change_get_explicit_replicas_on_active_nodes() -> None:
    broker = seeded()
    apply(broker, AddNode(node(4)), DrainNode("mom1"))
    apply(broker, *(DeclareQueue(f"q{i}", QueueAttrs(), "user:a") for i in range(20)))
    for i in range(20):
        explicit = broker.members.explicit(f"q.q{i}")
        assert explicit == rendezvous(f"q.q{i}", ["mom2", "mom3", "mom4"], 3)
    apply(broker, DeleteQueue("q0"))
    assert broker.members.explicit("q.q0") is None


def test_drain_and_remove_refuse_what_would_lose_replicas() -> None:
    broker = seeded()
    apply(broker, DeclareQueue("orders", QueueAttrs(), "user:a"))
    with pytest.raises(NotFound):
        apply(broker, DrainNode("mom9"))
    with pytest.raises(NotFound):
        apply(broker, RemoveNode("mom9"))
    with pytest.raises(Conflict, match="fewer than the replication factor"):
        apply(broker, DrainNode("mom1"))
    with pytest.raises(Conflict, match="fewer than the replication factor"):
        apply(broker, RemoveNode("mom1"))
    apply(broker, AddNode(node(4)))
    with pytest.raises(Conflict, match="drain it first"):
        apply(broker, RemoveNode("mom1"))
    apply(broker, DrainNode("mom1"))
    assert broker.apply(Entry(3, DrainNode("mom1"))).changed is False
    move = Move("q.orders", "mom1", "mom4")
    apply(broker, StartMove(move))
    with pytest.raises(Conflict):
        apply(broker, StartMove(Move("q.orders", "mom2", "mom4")))
    with pytest.raises(Conflict, match="drain it first"):
        apply(broker, RemoveNode("mom1"))
    before = broker.members.replicas("q.orders", None)
    apply(broker, FinishMove(move, [("mom4" if n == "mom1" else n) for n in before]))
    assert "mom4" in broker.members.replicas("q.orders", None)
    apply(broker, RemoveNode("mom1"))
    assert [m.id for m in broker.members.members()] == ["mom2", "mom3", "mom4"]


def test_start_move_checks_the_replica_set_and_the_target() -> None:
    broker = seeded(4)
    apply(broker, DeclareQueue("orders", QueueAttrs(), "user:a"))
    current = broker.members.replicas("q.orders", None)
    outside = next(f"mom{n}" for n in range(1, 5) if f"mom{n}" not in current)
    with pytest.raises(Conflict):
        apply(broker, StartMove(Move("q.orders", current[0], current[1])))
    with pytest.raises(Conflict):
        apply(broker, StartMove(Move("q.orders", current[0], "mom9")))
    with pytest.raises(Conflict):
        apply(broker, StartMove(Move("q.orders", outside, current[0])))
    apply(broker, StartMove(Move("q.orders", current[0], outside)))
    assert broker.members.move_of("q.orders") == Move("q.orders", current[0], outside)


def test_membership_survives_a_snapshot() -> None:
    broker = seeded()
    apply(broker, AddNode(node(4)), DeclareQueue("orders", QueueAttrs(), "user:a"))
    apply(broker, AddNode(node(5)))
    current = broker.members.replicas("q.orders", None)
    outside = next(m.id for m in broker.members.members() if m.id not in current)
    apply(broker, StartMove(Move("q.orders", current[0], outside)))
    restored = Broker.restore(broker.snapshot())
    assert restored == broker
    assert restored.members.moves() == [Move("q.orders", current[0], outside)]
    assert restored.members.member("mom4") == node(4)


def test_a_move_planned_before_its_destination_was_deleted_is_refused() -> None:
    """The rebalancer plans from the catalog, then submits: a delete committed in between must not leave a move
    of a group nobody serves (no leader ever carries it out, so it would hold a slot of `max_moves` and block
    removing its source or target forever)."""
    broker = seeded()
    apply(broker, DeclareQueue("orders", QueueAttrs(), "user:a"), AddNode(node(4)), DrainNode("mom1"))
    planned = Move("q.orders", "mom1", "mom4")
    apply(broker, DeleteQueue("orders"))
    with pytest.raises(NotFound):
        apply(broker, StartMove(planned))
    assert broker.members.moves() == []
    assert broker.members.explicit("q.orders") is None
    apply(broker, RemoveNode("mom1"))
    assert [m.id for m in broker.members.members()] == ["mom2", "mom3", "mom4"]


def test_a_finished_move_records_only_one_of_its_two_outcomes() -> None:
    """`FinishMove` comes from the group's leader, or from any admin over POST /v1/cluster/moves: every node stops
    (and erases) its replica of a group the catalog no longer places on it, so a replica set that is neither
    the move done nor the move abandoned would drop replicas the group really has. It is refused (400) and
    changes nothing."""
    broker = seeded()
    apply(broker, DeclareQueue("orders", QueueAttrs(), "user:a"), AddNode(node(4)), DrainNode("mom1"))
    move = Move("q.orders", "mom1", "mom4")
    apply(broker, StartMove(move))
    before = broker.members.replicas("q.orders", None)
    done = [("mom4" if n == "mom1" else n) for n in before]
    for bad in (["mom9"], ["mom4"], [*done, "mom1"], list(reversed(done)) if done != done[::-1] else ["mom2"]):
        with pytest.raises(InvalidInput):
            apply(broker, FinishMove(move, bad))
        assert broker.members.move_of("q.orders") == move and broker.members.replicas("q.orders", None) == before
    apply(broker, FinishMove(move, before, done=False))  # abandoned: the set as it was
    assert broker.members.moves() == [] and broker.members.replicas("q.orders", None) == before
    apply(broker, StartMove(move))
    apply(broker, FinishMove(move, done))
    assert broker.members.moves() == [] and broker.members.replicas("q.orders", None) == done


def test_no_node_is_added_before_the_seed_members_are_recorded() -> None:
    """The seed replaces the whole member list when it is recorded: a node added before it (an admin's add
    racing the metadata leader's first seconds) was answered 201 and then silently dropped. It is refused (503,
    retry shortly) and the seed is what the catalog holds."""
    broker = Broker()
    with pytest.raises(Unavailable, match="not recorded yet"):
        apply(broker, AddNode(node(4)))
    assert broker.members.members() == []
    broker.apply(Entry(3, SeedMembers([node(n) for n in (1, 2, 3)], 3)))
    apply(broker, AddNode(node(4)))
    assert [m.id for m in broker.members.members()] == ["mom1", "mom2", "mom3", "mom4"]
