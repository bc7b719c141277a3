"""Raft's safety properties under random schedules: loss, delay, duplication, reordering, partitions, crashes.

The checker in `cluster.py` runs after every step; a failure names the seed and how to replay it alone.
MOM_SIM_SEEDS=N runs N seeds per cluster size instead of the default.
"""

from __future__ import annotations

import os

import pytest

from tests.sim.cluster import SimCluster, SimConfig, SimDisk, SimNode
from tests.sim.network import Faults

SEEDS = int(os.environ.get("MOM_SIM_SEEDS", "1000"))
STEPS = 400


def run_schedule(seed: int, nodes: int, steps: int = STEPS) -> SimCluster:
    cluster = SimCluster(seed, SimConfig(nodes=nodes))
    try:
        cluster.run(steps)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\ndata lost: {cluster.data_lost}\nseed {seed}, {nodes} nodes; replay with: "
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
    for _ in range(120):  # CheckQuorum steps down after two election timeouts (20 ticks) without a quorum
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


def lose_data(cluster: SimCluster, node_id: str, *, keep: int | None) -> None:
    """Crash `node_id`, then restart it with its log cut after `keep` entries (a learner), or wiped (None)."""
    cluster.crash(node_id)
    if keep is None:
        cluster.disks[node_id] = SimDisk(wiped=True)
    else:
        cluster.disks[node_id].damage(keep)
    cluster.start(node_id)


def node(cluster: SimCluster, node_id: str) -> SimNode:
    found = cluster.nodes[node_id]
    assert found is not None
    return found


@pytest.mark.parametrize("keep", [2, None], ids=["damaged", "wiped"])
def test_a_replica_that_lost_acknowledged_entries_cannot_vote_them_away(keep: int | None) -> None:
    """Entries acknowledged by a leader and one follower only; the follower loses them, the leader dies: the
    third replica, which never had them, must not be elected with the amnesiac's vote. The group waits for the
    old leader instead, and nothing committed is lost."""
    cluster = quiet(3, data_loss=False)
    leader = cluster.stable_leader()
    assert leader is not None
    follower, third = (n for n in cluster.ids if n != leader.node_id)
    cluster.commit_through_leader(b"everyone has this", 200)
    cluster.crash(third)
    for k in range(5):
        cluster.commit_through_leader(f"only on two replicas: {k}".encode(), 200)
    committed = len(cluster.checker.committed)
    lose_data(cluster, follower, keep=keep)
    cluster.crash(leader.node_id)
    cluster.start(third)
    cluster.run(400, chaos=False, propose=False)
    assert cluster.leaders() == [], "a leader without the acknowledged entries was elected"
    amnesiac = node(cluster, follower).core
    assert amnesiac.learner or amnesiac.joining, "wiped, it cannot even tell that the group exists yet"
    cluster.start(leader.node_id)
    cluster.commit_through_leader(b"after the old leader came back", 400)
    history = [entry.payload for entry in cluster.checker.committed]
    assert len(history) > committed
    assert all(n.applied == history for n in cluster.live())
    cluster.run_until(  # a learner since the third answered: promoted by the leader's next message once caught up
        "the learner got its vote back",
        lambda: not any(n.core.learner or n.core.joining for n in cluster.live()),
        50,
        chaos=False,
        propose=False,
    )


@pytest.mark.parametrize("keep", [0, 3, None], ids=["cut-to-nothing", "damaged", "wiped"])
def test_a_learner_catches_up_from_the_leader_and_votes_again(keep: int | None) -> None:
    cluster = quiet(3, data_loss=False)
    leader = cluster.stable_leader()
    assert leader is not None
    for k in range(8):
        cluster.commit_through_leader(f"before: {k}".encode(), 200)
    victim = next(n for n in cluster.ids if n != leader.node_id)
    lose_data(cluster, victim, keep=keep)
    assert node(cluster, victim).core.learner or node(cluster, victim).core.joining
    cluster.commit_through_leader(b"while it recovers", 300)

    def promoted() -> bool:
        core = node(cluster, victim).core
        return not core.learner and not core.joining

    cluster.run_until("the learner votes again", promoted, 300, chaos=False, propose=False)
    cluster.run_until(
        "that persisted", lambda: not cluster.disks[victim].hard_state.learner, 10, chaos=False, propose=False
    )
    assert node(cluster, victim).applied == [entry.payload for entry in cluster.checker.committed]
    cluster.crash(leader.node_id)
    cluster.commit_through_leader(b"the recovered replica helps elect and commit", 400)


def test_a_fresh_group_bootstraps_with_every_replica_a_voter() -> None:
    cluster = SimCluster(3, SimConfig(nodes=5, faults=Faults(max_delay=2), data_loss=False))
    assert all(n.core.joining for n in cluster.live())
    cluster.run_until("a leader", lambda: cluster.stable_leader() is not None, 400, chaos=False, propose=False)
    cluster.commit_through_leader(b"first", 200)
    assert not any(n.core.joining or n.core.learner for n in cluster.live())


# A new group's first term without an election (`RaftCore(first_term=True)`): every replica that finds the group
# new votes for the preferred leader in term 1, which leads term 1 at once when every voter answered that it holds
# nothing. The same random schedules (crashes, restarts, partitions, wiped and damaged disks, loss, duplication,
# reordering), starting from empty disks as a destination created a moment ago does.

FIRST_TERM_SEEDS = int(os.environ.get("MOM_SIM_SEEDS", "100"))


def run_first_term(seed: int, nodes: int, steps: int = STEPS) -> SimCluster:
    cluster = SimCluster(seed, SimConfig(nodes=nodes, preferred_leader="n1", first_term=True))
    try:
        cluster.run(steps)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ndata lost: {cluster.data_lost}\nfirst-term seed {seed}, {nodes} nodes") from exc
    return cluster


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(FIRST_TERM_SEEDS))
def test_first_term_without_election_is_safe(seed: int, nodes: int) -> None:
    run_first_term(seed, nodes)


def test_first_term_leader_needs_no_election() -> None:
    """On a reliable network the preferred leader leads term 1 without a vote, and the group commits in term 1."""
    config = SimConfig(nodes=3, faults=Faults(max_delay=1), disk_delay=1, preferred_leader="n1", first_term=True)
    cluster = SimCluster(1, config)
    cluster.run_until("a leader", lambda: cluster.stable_leader() is not None, 300, chaos=False, propose=False)
    leader = cluster.stable_leader()
    assert leader is not None and leader.node_id == "n1" and leader.core.term == 1
    assert cluster.checker.leader_of_term == {1: "n1"}
    cluster.commit_through_leader(b"first", 100)
    assert all(node.core.term == 1 for node in cluster.live())


def test_first_term_crashes_during_creation_stay_safe() -> None:
    """Crashes and wiped disks right at the start, while the replicas probe and the first leader takes over."""
    for seed in range(FIRST_TERM_SEEDS):
        config = SimConfig(nodes=3, preferred_leader="n1", first_term=True, fault_probability=0.3)
        cluster = SimCluster(seed, config)
        try:
            cluster.run(60)
            config.fault_probability = 0.0
            cluster.stabilize()
            cluster.run(200)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\ndata lost: {cluster.data_lost}\nseed {seed}") from exc
