"""Liveness: once the faults stop, a leader is elected, every new proposal commits everywhere within a bounded
number of steps, and leadership returns to the preferred node."""

from __future__ import annotations

import os

import pytest

from tests.sim.cluster import SimCluster, SimConfig
from tests.sim.network import Faults

SEEDS = int(os.environ.get("MOM_SIM_SEEDS", "300")) // 6
ELECTION_BOUND = 400
COMMIT_BOUND = 150


def recover(cluster: SimCluster) -> None:
    """Stop the faults, then require a leader everyone follows and three commits, each within its bound."""
    cluster.stabilize()
    cluster.run_until(
        "a leader after healing", lambda: cluster.stable_leader() is not None, ELECTION_BOUND, chaos=False
    )
    for k in range(3):
        cluster.commit_through_leader(f"after the faults {k}".encode(), COMMIT_BOUND)
    history = [entry.payload for entry in cluster.checker.committed]
    assert all(node.applied == history for node in cluster.live())


@pytest.mark.parametrize("nodes", [3, 5])
@pytest.mark.parametrize("seed", range(SEEDS))
def test_cluster_recovers_after_faults_stop(seed: int, nodes: int) -> None:
    cluster = SimCluster(seed, SimConfig(nodes=nodes))
    try:
        cluster.run(400)
        recover(cluster)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nseed {seed}, {nodes} nodes") from exc


@pytest.mark.parametrize("seed", range(10))
def test_leadership_returns_to_the_preferred_leader(seed: int) -> None:
    config = SimConfig(nodes=3, preferred_leader="n1", faults=Faults(max_delay=2))
    cluster = SimCluster(seed, config)
    cluster.run_until("a leader", lambda: cluster.stable_leader() is not None, ELECTION_BOUND, chaos=False)
    cluster.crash("n1")
    cluster.run_until("another leader", lambda: cluster.stable_leader() is not None, ELECTION_BOUND, chaos=False)
    cluster.run(50, chaos=False)
    cluster.start("n1")

    def preferred_leads() -> bool:
        leader = cluster.stable_leader()
        return leader is not None and leader.node_id == "n1"

    cluster.run_until("n1 leading again", preferred_leads, ELECTION_BOUND, chaos=False)
    cluster.commit_through_leader(b"under the preferred leader", COMMIT_BOUND)
    leader = cluster.stable_leader()
    assert leader is not None and leader.node_id == "n1"


def test_preferred_leader_is_left_alone_when_it_leads() -> None:
    """No transfer churn: with the preferred node leading, the term stays put."""
    cluster = SimCluster(3, SimConfig(nodes=3, preferred_leader="n1", faults=Faults(max_delay=2)))

    def preferred_leads() -> bool:
        leader = cluster.stable_leader()
        return leader is not None and leader.node_id == "n1"

    cluster.run_until("n1 leading", preferred_leads, ELECTION_BOUND, chaos=False)
    term = cluster.nodes["n1"].core.term  # type: ignore[union-attr]
    cluster.run(300, chaos=False)
    assert preferred_leads()
    assert cluster.nodes["n1"].core.term == term  # type: ignore[union-attr]
