"""Quiescence in the simulation: idle groups stop heartbeating and ticking, and nothing Raft promises changes.

Random schedules (loss, duplication, reordering, partitions, crashes, data loss, and false suspicions of live
nodes by the liveness) with quiesce on are checked after every step like the others; fewer proposals leave the
group idle often enough to quiesce, which a guard test makes sure of. The scenarios pin the mechanics: an idle
group goes silent, a proposal wakes it, a dead leader's node makes its followers elect another within the usual
bounds, and a follower that missed the quiesce heartbeat wakes the leader rather than campaigning forever.
MOM_SIM_SEEDS=N scales the seeds as for the other random schedules.
"""

from __future__ import annotations

import os

import pytest

from tests.sim.cluster import SimCluster, SimConfig
from tests.sim.network import Faults
from tests.sim.test_raft_liveness import recover

SEEDS = int(os.environ.get("MOM_SIM_SEEDS", "1000")) // 4
STEPS = 600
ELECTION_BOUND = 400
COMMIT_BOUND = 150


def quiescing(seed: int, nodes: int, **options: object) -> SimConfig:
    return SimConfig(nodes=nodes, quiesce=True, propose_probability=0.03, false_suspicion=0.01, **options)  # type: ignore[arg-type]


def run_schedule(seed: int, nodes: int) -> tuple[SimCluster, int]:
    """Run a random schedule; returns the cluster and the steps at which some node was quiesced."""
    cluster = SimCluster(seed, quiescing(seed, nodes))
    quiet_steps = 0
    try:
        for _ in range(STEPS):
            cluster.step()
            quiet_steps += bool(cluster.quiesced())
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\ndata lost: {cluster.data_lost}\nseed {seed}, {nodes} nodes, quiesce on ({cluster.describe()})"
        ) from exc
    return cluster, quiet_steps


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(SEEDS))
def test_random_schedule_with_quiescence_is_safe(seed: int, nodes: int) -> None:
    run_schedule(seed, nodes)


def test_random_schedules_quiesce_and_still_commit() -> None:
    """Guards the test above: its schedules do quiesce, elect and commit, or they would prove nothing."""
    runs = [run_schedule(seed, 3) for seed in range(20)]
    assert sum(quiet for _, quiet in runs) > 500
    assert sum(len(c.checker.committed) for c, _ in runs) > 200
    assert sum(len(c.checker.leader_of_term) for c, _ in runs) >= 20


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(max(1, SEEDS // 10)))
def test_cluster_with_quiescence_recovers_after_faults_stop(seed: int, nodes: int) -> None:
    cluster = SimCluster(seed, quiescing(seed, nodes))
    cluster.run(STEPS)
    recover(cluster)


def idle_cluster(nodes: int = 3, seed: int = 1) -> SimCluster:
    """A reliable cluster whose group has elected its preferred leader and gone quiet on every node."""
    config = SimConfig(nodes=nodes, quiesce=True, preferred_leader="n1", faults=Faults(max_delay=1), disk_delay=1)
    cluster = SimCluster(seed, config)
    cluster.run_until("all quiet", lambda: len(cluster.quiesced()) == nodes, ELECTION_BOUND, chaos=False, propose=False)
    return cluster


def test_an_idle_group_goes_silent() -> None:
    cluster = idle_cluster()
    leader = cluster.stable_leader()
    assert leader is not None and leader.node_id == "n1"
    cluster.run(5, chaos=False, propose=False)  # the answers to the quiesce heartbeat arrive
    sent = sum(cluster.net.delivered.values())
    cluster.run(500, chaos=False, propose=False)
    assert sum(cluster.net.delivered.values()) == sent  # 500 steps, ~250 ticks per node: not one message
    assert len(cluster.quiesced()) == 3


def test_a_proposal_wakes_the_group_and_commits() -> None:
    cluster = idle_cluster()
    steps = cluster.commit_through_leader(b"wake up", COMMIT_BOUND)
    assert steps < 20
    cluster.run_until("quiet again", lambda: len(cluster.quiesced()) == 3, ELECTION_BOUND, chaos=False, propose=False)


@pytest.mark.parametrize("seed", range(10))
def test_the_dead_leaders_followers_elect_another(seed: int) -> None:
    """Crashing a quiesced leader: its node is declared dead, a follower campaigns within the usual bound
    (the same as without quiescence: an election timeout), and nothing committed is lost."""
    cluster = idle_cluster(5, seed)
    cluster.commit_through_leader(b"before the crash", COMMIT_BOUND)
    cluster.run_until("quiet again", lambda: len(cluster.quiesced()) == 5, ELECTION_BOUND, chaos=False, propose=False)
    cluster.crash("n1")
    taken = cluster.run_until(
        "a new leader", lambda: cluster.stable_leader() is not None, ELECTION_BOUND, chaos=False, propose=False
    )
    assert taken < 2 * 2 * cluster.config.election_ticks + 20  # ticks come every other step on average
    cluster.commit_through_leader(b"after the crash", COMMIT_BOUND)
    leader = cluster.stable_leader()
    assert leader is not None and b"before the crash" in leader.applied


def test_a_follower_that_missed_the_quiesce_heartbeat_wakes_the_leader() -> None:
    """A restarted follower (fast enough that no one declared it dead) has no leader: its pre-votes are refused
    by the quiet followers' lease, but they wake the leader, whose heartbeats bring it back."""
    cluster = idle_cluster()
    cluster.crash("n3")
    cluster.start("n3")  # within the same step: the liveness never saw it down
    cluster.run_until(
        "n3 follows n1 again",
        lambda: cluster.stable_leader() is not None and cluster.stable_leader().node_id == "n1",  # type: ignore[union-attr]
        ELECTION_BOUND,
        chaos=False,
        propose=False,
    )
    cluster.run_until("quiet again", lambda: len(cluster.quiesced()) == 3, ELECTION_BOUND, chaos=False, propose=False)


def test_a_leader_stays_awake_until_every_follower_answered_since_it_woke() -> None:
    """A follower's node went down: the leader wakes, and goes quiet again without it once the live majority is
    caught up (thousands of groups must not heartbeat a dead node). When the node is back, the leader wakes and
    must not go quiet again on what it knew before (the follower may come back with its group not running yet):
    it heartbeats until the follower answers."""
    cluster = idle_cluster()
    cluster.crash("n3")
    cluster.run(200, chaos=False, propose=False)
    leader = cluster.nodes["n1"]
    assert leader is not None and leader.core.role == "leader" and leader.core.quiesced
    cluster.start("n3")
    cluster.run_until("quiet again", lambda: len(cluster.quiesced()) == 3, ELECTION_BOUND, chaos=False, propose=False)
    restarted = cluster.nodes["n3"]
    assert restarted is not None and restarted.core.leader_id == "n1"
