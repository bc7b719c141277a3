"""Quiesced groups on real nodes: an idle cluster goes quiet (no group ticks), and a kill -9 of the node that
leads every quiet group still fails them all over, through the node liveness, in about an election timeout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Cluster

pytestmark = pytest.mark.transport

QUEUES = 12


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


def groups(url: str, state: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=10).text.splitlines():
        if line.startswith(f"mom_raft_groups_{state} "):
            return float(line.split()[-1])
    raise AssertionError(f"no mom_raft_groups_{state} in /metrics")


def wait_for(what: str, predicate: object, timeout_s: float = 60.0) -> float:
    """Poll until `predicate()` holds (a generous bound that only catches hangs); returns the seconds taken."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if predicate():  # type: ignore[operator]
                return time.monotonic() - started
        except (httpx.HTTPError, KeyError, StopIteration):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_quiet_groups_of_a_killed_node_fail_over(cluster: Cluster) -> None:
    api = cluster.api("mom2")
    names = [f"quiet-{i}" for i in range(QUEUES)]
    for name in names:
        assert api.retrying("PUT", f"/v1/queues/{name}").status_code == 201
        api.publish(name, f"before {name}")
    wait_for(
        "every group quiet on every node",
        lambda: all(groups(node.url, "awake") == 0 for node in cluster.nodes.values()),
    )
    assert groups(cluster.nodes["mom1"].url, "quiesced") == QUEUES + 1  # and the metadata group

    view = {d["name"]: d for d in cluster.cluster_view("mom2")["destinations"]}
    led_by_mom1 = [name for name in names if view[name]["leader"] == "mom1"]
    assert led_by_mom1, "rendezvous placement gives mom1 some of 12 queues to lead"
    cluster.nodes["mom1"].kill()

    def all_published() -> bool:
        for name in list(led_by_mom1):
            answer = api.post(f"/v1/queues/{name}/messages", json={"body": f"after {name}"}, timeout=5)
            if answer.status_code != 201:
                return False
            led_by_mom1.remove(name)
        return True

    failover_s = wait_for("a publish to every queue mom1 led", all_published)
    print(f"every quiet group of the killed leader's node took writes again after {failover_s:.2f} s")
    for name in names:
        assert api.drain(name, [f"before {name}"], timeout_s=30).missing([f"before {name}"]) == []
