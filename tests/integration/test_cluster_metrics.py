"""/metrics and the cluster views of a real 3-node cluster (over MOM_TRANSPORT): per-peer traffic, series from
the leader only, a node's own view through any node, and what a failover does to the counters."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.integration.harness import Cluster
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.transport


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster for the module: the failover test, which kills a node, comes last."""
    running = Cluster(tmp_path_factory.mktemp("metrics") / "cluster").start()
    yield running
    running.kill_all()


def eventually(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


def test_per_peer_traffic_and_destination_series_from_the_leader_only(cluster: Cluster) -> None:
    api = cluster.api("mom1")
    assert api.retrying("PUT", "/v1/queues/orders", json={}).status_code == 201
    api.publish("orders", *range(10))
    for node_id, node in cluster.nodes.items():
        samples = scrape(node.url)
        peers = [p for p in cluster.nodes if p != node_id]
        for peer in peers:  # a follower everywhere talks only to leaders: a series per peer, traffic to some
            assert value(samples, "mom_peer_up", peer=peer) == 1
            assert value(samples, "mom_transport_sent_bytes_total", peer=peer) >= 0
        assert sum(value(samples, "mom_transport_sent_bytes_total", peer=p) for p in peers) > 0
        assert sum(value(samples, "mom_transport_received_frames_total", peer=p) for p in peers) > 0
        assert value(samples, "mom_node_info", node=node_id, transport=cluster.transport) == 1

    series = ("mom_queue_messages", (("queue", "orders"), ("state", "ready")))
    found: dict[str, object] = {}

    def one_exporter_the_leader() -> bool:  # leadership may still move to the preferred node after start
        found["leader"] = cluster.leader_of("orders")
        found["exporters"] = [n for n, node in cluster.nodes.items() if series in scrape(node.url)]
        return found["exporters"] == [found["leader"]]

    eventually(one_exporter_the_leader, "exactly one node, the leader, exporting the queue's series")
    leader = str(found["leader"])
    samples = scrape(cluster.nodes[leader].url)
    assert value(samples, "mom_queue_messages", queue="orders", state="ready") == 10
    for replica in cluster.nodes:
        assert value(samples, "mom_raft_replica_lag_entries", kind="queue", name="orders", replica=replica) >= 0
    assert value(samples, "mom_raft_campaign_limit") >= 4  # the campaign gate: no storm, nothing waits
    assert value(samples, "mom_raft_campaigns_waiting") == 0
    assert value(samples, "mom_raft_groups_dormant") == 0  # a node's groups are recovered soon after its start

    # each node's own view, through any node: the leader's has the replica lag
    view = api.get("/v1/cluster", params={"node": leader}).json()
    assert view["node_id"] == leader
    entry = next(d for d in view["destinations"] if d["name"] == "orders")
    assert entry["leader"] == leader and set(entry["replica_lag"]) == set(cluster.nodes)
    assert api.get("/v1/cluster", params={"node": "nobody"}).status_code == 404


def test_a_failover_moves_the_series_keeps_the_totals_and_counts_the_election(cluster: Cluster) -> None:
    api = cluster.api("mom1")
    assert api.retrying("PUT", "/v1/queues/jobs", json={}).status_code == 201
    api.publish("jobs", *range(5))

    def settled() -> bool:  # the preferred replica leads: leadership will not move by itself any more
        entry = next(d for d in cluster.cluster_view("mom1")["destinations"] if d["name"] == "jobs")
        return bool(entry["leader"] == entry["replicas"][0])

    eventually(settled, "jobs led by its preferred replica")
    old = cluster.leader_of("jobs")
    assert old is not None
    survivors = [n for n in cluster.nodes if n != old]
    before = {n: scrape(cluster.nodes[n].url) for n in survivors}

    cluster.nodes[old].kill()
    via = cluster.api(survivors[0])

    def moved() -> bool:
        view = via.get("/v1/cluster").json()
        entry = next(d for d in view["destinations"] if d["name"] == "jobs")
        return entry["leader"] in survivors

    eventually(moved, "a new leader of jobs")
    new = next(d for d in via.get("/v1/cluster").json()["destinations"] if d["name"] == "jobs")["leader"]
    samples = scrape(cluster.nodes[new].url)
    assert value(samples, "mom_queue_published_messages_total", queue="jobs") == 5  # replicated, not reset
    assert value(samples, "mom_raft_elections_total") > value(before[new], "mom_raft_elections_total")
    changes = sum(v for (name, _), v in samples.items() if name == "mom_raft_leader_changes_total")
    earlier = sum(v for (name, _), v in before[new].items() if name == "mom_raft_leader_changes_total")
    assert changes > earlier

    eventually(
        lambda: value(scrape(cluster.nodes[new].url), "mom_peer_up", peer=old) == 0, f"mom_peer_up of {old} at 0"
    )
    view = via.get("/v1/cluster", params={"node": old})
    assert view.status_code == 503
