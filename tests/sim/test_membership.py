"""Single-server membership changes (`mom.replication.membership`) in the Raft simulation: scenarios on a quiet
network, then random changes mixed with every fault the simulation has (crashes, partitions, loss, duplication,
reordering, power loss with damaged or wiped disks), the checker of `cluster.py` running after every step.

MOM_SIM_MEMBERSHIP_SEEDS=N runs N seeds per cluster size (default 150), from MOM_SIM_MEMBERSHIP_FIRST (default 0);
odd seeds run with quiescence and the node liveness. A failure prints its replay command.
"""

from __future__ import annotations

import os

import pytest

from mom.errors import MembershipChangeRefused
from mom.replication.membership import Membership
from mom.replication.raft import Change, NotLeader
from tests.sim.cluster import SimCluster, SimConfig, SimNode
from tests.sim.network import Faults

SEEDS = int(os.environ.get("MOM_SIM_MEMBERSHIP_SEEDS", "150"))
FIRST = int(os.environ.get("MOM_SIM_MEMBERSHIP_FIRST", "0"))
"""The first seed (to run other seeds than the default ones)."""
STEPS = 600


def quiet(nodes: int, spares: int, **options: object) -> SimCluster:
    config = SimConfig(nodes=nodes, spares=spares, faults=Faults(max_delay=1), disk_delay=1, **options)  # type: ignore[arg-type]
    cluster = SimCluster(1, config)
    cluster.run_until("a leader", lambda: cluster.stable_leader() is not None, 300, chaos=False, propose=False)
    return cluster


def leader_of(cluster: SimCluster) -> SimNode:
    cluster.run_until("a leader", lambda: cluster.stable_leader() is not None, 400, chaos=False, propose=False)
    leader = cluster.stable_leader()
    assert leader is not None
    return leader


def change(cluster: SimCluster, kind: Change, node: str, limit: int = 600) -> None:
    """Make the change through whoever leads (again after a refusal or a lost leadership) until it is committed
    and applied, as the cluster level does; `promote` waits for the learner to catch up."""
    for _ in range(limit):
        leader = leader_of(cluster)
        index = cluster.change(leader, kind, node)
        if index is not None and committed(cluster, leader, index, limit):
            return
        cluster.run(5, chaos=False, propose=False)
    raise AssertionError(f"{kind} {node} never committed ({cluster.describe()})")


def committed(cluster: SimCluster, leader: SimNode, index: int, limit: int) -> bool:
    """Whether `leader`'s entry at `index` commits (False: it lost leadership first); waits until it is applied."""
    core = leader.core
    term = core.term
    cluster.run_until(
        "committed", lambda: core.commit_index >= index or core.role != "leader", limit, chaos=False, propose=False
    )
    if core.commit_index < index or core.log.term_at(index) not in (None, term):
        return False
    cluster.run_until("applied", lambda: len(cluster.checker.committed) >= index, limit, chaos=False, propose=False)
    return True


def settle(cluster: SimCluster, payload: bytes) -> list[bytes]:
    """Commit `payload` and check every member of the committed configuration applied the same history."""
    cluster.commit_through_leader(payload, 600, among=list(cluster.checker.record.members))
    cluster.run(20, chaos=False, propose=False)  # a change still pending commits (or is lost) meanwhile
    history = [entry.payload for entry in cluster.checker.committed]
    for node_id in cluster.checker.record.members:
        node = cluster.nodes[node_id]
        if node is None:
            continue  # crashed
        cluster.run_until(
            f"{node_id} applies everything", lambda n=node: len(n.applied) == len(history), 400, chaos=False
        )
        assert node.applied == history
    return history


def test_replace_a_voter_three_to_four_to_three() -> None:
    cluster = quiet(3, 1)
    settle(cluster, b"before")
    change(cluster, "add_learner", "n4")
    assert cluster.checker.record == Membership(("n1", "n2", "n3"), ("n4",))
    settle(cluster, b"with a learner")
    change(cluster, "promote", "n4")
    assert cluster.checker.record == Membership(("n1", "n2", "n3", "n4"))
    victim = next(n for n in ("n1", "n2", "n3") if n != leader_of(cluster).node_id)
    change(cluster, "remove", victim)
    assert set(cluster.checker.record.voters) == {"n1", "n2", "n3", "n4"} - {victim}
    assert victim not in cluster.nodes  # stopped and erased, as the manager does
    settle(cluster, b"after the replacement")


def test_grow_three_to_five_and_shrink_back() -> None:
    cluster = quiet(3, 2)
    for node in ("n4", "n5"):
        change(cluster, "add_learner", node)
        change(cluster, "promote", node)
    assert cluster.checker.record == Membership(("n1", "n2", "n3", "n4", "n5"))
    settle(cluster, b"five voters")
    cluster.crash("n1")
    cluster.crash("n2")  # a majority of five survives two crashes
    settle(cluster, b"two down")
    cluster.start("n1")
    cluster.start("n2")
    for node in ("n4", "n5"):
        change(cluster, "remove", node)
    assert cluster.checker.record == Membership(("n1", "n2", "n3"))
    settle(cluster, b"three again")


def test_shrink_five_to_three() -> None:
    cluster = quiet(5, 0)
    settle(cluster, b"five")
    change(cluster, "remove", "n5")
    change(cluster, "remove", "n4")
    assert cluster.checker.record == Membership(("n1", "n2", "n3"))
    settle(cluster, b"three")
    cluster.crash("n1")  # two of three still commit
    settle(cluster, b"one down")


def test_removing_the_leader_makes_it_step_down_once_the_change_commits() -> None:
    cluster = quiet(3, 0, min_voters=1)
    settle(cluster, b"the leader's term committed")
    old = leader_of(cluster)
    index = cluster.change(old, "remove", old.node_id)
    assert index is not None
    assert old.core.role == "leader"  # it leads on until the change commits, not counting itself
    cluster.run_until("the removal committed", lambda: cluster.checker.record.voters != ("n1", "n2", "n3"), 300)
    assert old.node_id not in cluster.nodes or cluster.nodes[old.node_id] is None or old.core.role != "leader"
    new = leader_of(cluster)
    assert new.node_id != old.node_id and len(cluster.checker.record.voters) == 2
    settle(cluster, b"under the new leader")


def test_a_learner_that_needs_a_snapshot_catches_up_and_is_promoted() -> None:
    cluster = quiet(3, 1)
    for i in range(30):  # far beyond `compact_every`: the leader's log no longer starts at 1
        settle(cluster, f"before {i}".encode()) if i % 10 == 9 else cluster.commit_through_leader(f"p{i}".encode(), 300)
    assert leader_of(cluster).core.snapshot.index > 0
    change(cluster, "add_learner", "n4")
    learner = cluster.nodes["n4"]
    assert learner is not None
    cluster.run_until("n4 installed a snapshot", lambda: learner.core.snapshot.index > 0, 600, chaos=False)
    cluster.run_until("n4 has the configuration", lambda: "n4" in learner.core.membership, 600, chaos=False)
    assert learner.core.membership == Membership(("n1", "n2", "n3"), ("n4",))
    assert not learner.core.voting
    change(cluster, "promote", "n4")
    settle(cluster, b"n4 votes")
    cluster.crash("n1")
    cluster.crash("n2")
    with pytest.raises(AssertionError):
        cluster.commit_through_leader(b"no majority of four", 100)  # n3 and n4 are no majority of four


def test_refusals() -> None:
    cluster = quiet(3, 2)
    settle(cluster, b"the leader's term committed")
    leader = leader_of(cluster)
    with pytest.raises(MembershipChangeRefused):
        leader.core.change_membership("promote", "n4")  # not a learner
    cluster.start("n4")
    first = leader.core.change_membership("add_learner", "n4")
    with pytest.raises(MembershipChangeRefused):
        leader.core.change_membership("add_learner", "n5")  # one change at a time
    assert leader.core.change_membership("add_learner", "n4") == first  # idempotent
    follower = next(n for n in cluster.live() if n.core.role == "follower")
    with pytest.raises(NotLeader):
        follower.core.change_membership("remove", "n4")
    cluster.run_until("committed", lambda: leader.core.commit_index >= first, 300, chaos=False, propose=False)
    assert leader.core.change_membership("remove", "n5") == first  # not a member: nothing to do


def run_schedule(seed: int, nodes: int, spares: int, steps: int = STEPS) -> SimCluster:
    quiesce = seed % 2 == 1  # half the schedules with quiescence and the node liveness (false suspicions too)
    config = SimConfig(
        nodes=nodes,
        spares=spares,
        membership_probability=0.03,
        quiesce=quiesce,
        false_suspicion=0.01 if quiesce else 0.0,
    )
    cluster = SimCluster(seed, config)
    try:
        cluster.run(steps)
        cluster.stabilize()
        settle(cluster, b"healed")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\nchanges: {cluster.changes}\ndata lost: {cluster.data_lost}\\nseed {seed}, {nodes}+{spares} "
            f"nodes; replay with: MOM_SIM_SEED={seed} MOM_SIM_NODES={nodes} .venv/bin/pytest "
            "tests/sim/test_membership.py -k replay"
        ) from exc
    return cluster


@pytest.mark.parametrize(("nodes", "spares"), [(3, 2), (5, 1)])
@pytest.mark.parametrize("seed", range(FIRST, FIRST + SEEDS))
def test_random_changes_with_faults_are_safe_and_complete(seed: int, nodes: int, spares: int) -> None:
    run_schedule(seed, nodes, spares)


def test_random_changes_happen() -> None:
    """Guards the test itself: schedules that never change the configuration would prove nothing."""
    clusters = [run_schedule(seed, 3, 2) for seed in range(10)]
    assert sum(len(c.changes) for c in clusters) >= 20
    assert sum(c.checker.record != Membership(("n1", "n2", "n3")) for c in clusters) >= 3


def test_replay() -> None:
    seed = int(os.environ.get("MOM_SIM_SEED", "0"))
    nodes = int(os.environ.get("MOM_SIM_NODES", "3"))
    run_schedule(
        seed, nodes, int(os.environ.get("MOM_SIM_SPARES", "2")), int(os.environ.get("MOM_SIM_STEPS", str(STEPS)))
    )
