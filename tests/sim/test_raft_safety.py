"""Raft's safety properties under random schedules: loss, delay, duplication, reordering, partitions, crashes.

The checker in `cluster.py` runs after every step; a failure names the seed and how to replay it alone.
MOM_SIM_SEEDS=N runs N seeds per cluster size instead of the default.
"""

from __future__ import annotations

import os

import pytest

from tests.sim.cluster import SimCluster, SimConfig
from tests.sim.network import Faults

SEEDS = int(os.environ.get("MOM_SIM_SEEDS", "1000"))
STEPS = 400


def run_schedule(seed: int, nodes: int, steps: int = STEPS) -> SimCluster:
    cluster = SimCluster(seed, SimConfig(nodes=nodes))
    try:
        cluster.run(steps)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nseed {seed}, {nodes} nodes; replay with: "
            f"MOM_SIM_SEED={seed} MOM_SIM_NODES={nodes} .venv/bin/pytest tests/sim -k replay"
        ) from exc
    return cluster


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_schedule_is_safe(seed: int, nodes: int) -> None:
    run_schedule(seed, nodes)


def test_random_schedules_make_progress_despite_faults() -> None:
    """Guards the test itself: schedules that never elect or commit would prove nothing."""
    clusters = [run_schedule(seed, 3) for seed in range(10)]
    assert sum(len(c.checker.committed) for c in clusters) > 500
    assert sum(len(c.checker.leader_of_term) for c in clusters) >= 10


def test_replay() -> None:
    """Runs the one schedule named by MOM_SIM_SEED (and MOM_SIM_NODES, default 3); seed 0 when unset."""
    seed = int(os.environ.get("MOM_SIM_SEED", "0"))
    nodes = int(os.environ.get("MOM_SIM_NODES", "3"))
    steps = int(os.environ.get("MOM_SIM_STEPS", str(STEPS)))
    run_schedule(seed, nodes, steps)


def quiet(nodes: int, **options: object) -> SimCluster:
    """A cluster on a reliable network (messages are still reordered within a step)."""
    config = SimConfig(nodes=nodes, faults=Faults(max_delay=1), disk_delay=1, **options)  # type: ignore[arg-type]
    cluster = SimCluster(1, config)
    cluster.run_until("a leader", lambda: cluster.stable_leader() is not None, 300, chaos=False, propose=False)
    return cluster


def test_leader_crash_mid_replication_loses_nothing_committed() -> None:
    cluster = quiet(5)
    old = cluster.stable_leader()
    assert old is not None
    for _ in range(4):
        old.core.propose([cluster.new_payload() for _ in range(3)])
        cluster.process(old)
        cluster.step(chaos=False, propose=False)
    cluster.crash(old.node_id)
    cluster.run_until("a new leader", lambda: cluster.stable_leader() is not None, 300, chaos=False, propose=False)
    new = cluster.stable_leader()
    assert new is not None and new.node_id != old.node_id
    committed_before = len(cluster.checker.committed)
    cluster.commit_through_leader(b"after the crash", 200)
    cluster.start(old.node_id)
    cluster.commit_through_leader(b"with the old leader back", 200)
    history = [entry.payload for entry in cluster.checker.committed]
    assert len(history) > committed_before
    assert all(node.applied == history[: len(node.applied)] for node in cluster.live())
    assert all(len(node.applied) == len(history) for node in cluster.live())


def test_partitioned_old_leader_never_commits_and_is_overwritten() -> None:
    cluster = quiet(5)
    old = cluster.stable_leader()
    assert old is not None
    others = [n for n in cluster.ids if n != old.node_id]
    cluster.net.partition(others, [old.node_id])
    stranded = []
    for _ in range(60):
        if old.core.role == "leader":
            payload = cluster.new_payload()
            old.core.propose([payload])
            stranded.append(payload)
            cluster.process(old)
        cluster.step(chaos=False, propose=False)
    assert stranded, "the isolated leader should have kept taking writes for a while"
    assert old.core.role != "leader", "CheckQuorum: an isolated leader steps down"
    cluster.run_until("a majority leader", lambda: len(cluster.leaders()) == 1, 300, chaos=False, propose=False)
    cluster.commit_through_leader(b"majority write", 200, among=others)
    cluster.net.heal()
    cluster.commit_through_leader(b"after healing", 300)
    history = [entry.payload for entry in cluster.checker.committed]
    assert not set(stranded) & set(history)
    assert old.applied == history
    new_leader = cluster.stable_leader()
    assert new_leader is not None
    assert old.core.log.last_index == new_leader.core.log.last_index


def test_far_behind_follower_catches_up_from_a_snapshot() -> None:
    cluster = quiet(3, compact_every=4)
    leader = cluster.stable_leader()
    assert leader is not None
    lagging = next(n for n in cluster.ids if n != leader.node_id)
    cluster.crash(lagging)
    for k in range(30):
        cluster.commit_through_leader(f"while {lagging} is down: {k}".encode(), 200)
    assert leader.core.snapshot.index > cluster.disks[lagging].snapshot.index + 4
    cluster.start(lagging)
    cluster.commit_through_leader(b"after the restart", 300)
    assert cluster.net.delivered["InstallSnapshot"] >= 1
    node = cluster.nodes[lagging]
    assert node is not None
    assert node.applied == [entry.payload for entry in cluster.checker.committed]


def test_single_node_group_commits_alone_and_survives_restart() -> None:
    cluster = quiet(1)
    for k in range(5):
        cluster.commit_through_leader(f"solo {k}".encode(), 20)
    cluster.crash("n1")
    cluster.start("n1")
    cluster.run_until("leader again", lambda: cluster.stable_leader() is not None, 100, chaos=False, propose=False)
    cluster.commit_through_leader(b"after restart", 20)
    node = cluster.nodes["n1"]
    assert node is not None
    assert [p for p in node.applied if p] == [f"solo {k}".encode() for k in range(5)] + [b"after restart"]
