"""The rebalancer's planner: which moves, in which order, and never more than the throttle allows."""

from __future__ import annotations

from collections import Counter

from mom.broker.commands import MemberRecord, Move
from mom.broker.members import ACTIVE, DRAINING, moved, rendezvous
from mom.replication.rebalance import plan


def members(*ids: str, draining: tuple[str, ...] = ()) -> list[MemberRecord]:
    return [MemberRecord(i, f"r-{i}", f"p-{i}", DRAINING if i in draining else ACTIVE) for i in ids]


def placements(groups: int, nodes: list[str], factor: int = 3) -> dict[str, list[str]]:
    return {f"q.g{i}": rendezvous(f"q.g{i}", nodes, factor) for i in range(groups)}


def run_to_completion(
    current: dict[str, list[str]], cluster: list[MemberRecord], limit: int
) -> tuple[dict[str, list[str]], int]:
    """Plan and finish moves round by round until the planner has nothing left; returns the final sets."""
    rounds = 0
    while moves := plan(current, cluster, [], limit):
        assert len(moves) <= limit
        assert len({m.group for m in moves}) == len(moves), "one move per group at a time"
        for move in moves:
            current[move.group] = moved(current[move.group], move)
        rounds += 1
        assert rounds < 1000
    return current, rounds


def test_an_unchanged_cluster_plans_nothing() -> None:
    nodes = ["mom1", "mom2", "mom3"]
    assert plan(placements(30, nodes), members(*nodes), [], 4) == []


def test_a_new_node_gets_a_fair_share_of_replicas_and_leaders() -> None:
    nodes = ["mom1", "mom2", "mom3"]
    final, rounds = run_to_completion(placements(40, nodes), members(*nodes, "mom4"), 3)
    load = Counter(node for replicas in final.values() for node in replicas)
    assert max(load.values()) - min(load.values()) <= 1
    assert load["mom4"] == 30
    leaders = Counter(replicas[0] for replicas in final.values())
    assert leaders["mom4"] >= 5, leaders
    assert all(len(set(r)) == 3 for r in final.values())
    assert rounds >= 10, "bounded: 30 moves at 3 per round"


def test_draining_moves_every_replica_off_first() -> None:
    nodes = ["mom1", "mom2", "mom3", "mom4"]
    current = placements(20, nodes)
    cluster = members(*nodes, draining=("mom2",))
    first = plan(current, cluster, [], 100)
    assert first and all(m.source == "mom2" for m in first[: sum("mom2" in r for r in current.values())])
    final, _ = run_to_completion(current, cluster, 2)
    assert all("mom2" not in r and len(set(r)) == 3 for r in final.values())


def test_a_removed_dead_node_is_replaced_in_every_group() -> None:
    current = placements(10, ["mom1", "mom2", "mom3"])
    final, _ = run_to_completion(current, members("mom1", "mom3", "mom5"), 4)
    assert all(sorted(r) == ["mom1", "mom3", "mom5"] for r in final.values())


def test_the_throttle_counts_moves_in_flight_and_skips_their_groups() -> None:
    nodes = ["mom1", "mom2", "mom3"]
    current = placements(12, nodes)
    cluster = members(*nodes, "mom4")
    busy = plan(current, cluster, [], 2)
    assert len(busy) == 2
    assert plan(current, cluster, busy, 2) == []
    more = plan(current, cluster, busy[:1], 2)
    assert len(more) == 1 and more[0].group != busy[0].group


def test_moved_keeps_the_leavers_rank() -> None:
    assert moved(["a", "b", "c"], Move("g", "a", "d")) == ["d", "b", "c"]
    assert moved(["a", "b"], Move("g", None, "d")) == ["a", "b", "d"]


def test_an_uneven_unchanged_cluster_is_not_balanced_unless_asked() -> None:
    nodes = ["mom1", "mom2", "mom3", "mom4", "mom5"]
    current = placements(40, nodes)
    load = Counter(node for replicas in current.values() for node in replicas)
    assert max(load.values()) - min(load.values()) > 1, "rendezvous is uneven on this sample"
    assert plan(current, members(*nodes), [], 4, balance=False) == []
    assert plan(current, members(*nodes), [], 4) != []
