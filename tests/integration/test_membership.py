"""Membership changes on a real cluster: the catalog's member list, its checks, and every node following it.

A node added with `POST /v1/cluster/nodes` becomes a member on every node (each connects to it: it shows in
every node's cluster view), and one drained and removed is dropped by every node; what would lose replicas or
go below the replication factor is refused with 409 and changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import Cluster, free_port

pytestmark = pytest.mark.transport


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster", size=3).start()
    yield running
    running.kill_all()


def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            return result
        time.sleep(0.1)


def test_members_are_added_checked_drained_and_removed_on_every_node(three: Cluster) -> None:
    admin = three.api("mom2")
    assert admin.retrying("PUT", "/v1/queues/held").status_code == 201
    listed = admin.get("/v1/cluster/nodes").json()
    assert [n["id"] for n in listed["nodes"]] == ["mom1", "mom2", "mom3"]
    assert all(n["state"] == "active" and n["replicas"] == 1 for n in listed["nodes"])

    rest, replication = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    mom1 = next(n for n in listed["nodes"] if n["id"] == "mom1")
    refusals = [
        admin.post("/v1/cluster/nodes", json={"id": "mom2", "rest": rest, "replication": replication}),
        admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": mom1["rest_url"], "replication": replication}),
        admin.post("/v1/cluster/nodes/mom1/drain"),
        admin.delete("/v1/cluster/nodes/mom1"),
    ]
    assert [r.status_code for r in refusals] == [409, 409, 409, 409], [r.text for r in refusals]
    assert "replication factor" in refusals[2].json()["detail"]
    assert admin.post("/v1/cluster/nodes/mom9/drain").status_code == 404

    added = admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": f"http://{rest}", "replication": replication})
    assert added.status_code == 201, added.text
    assert added.json() == {
        "id": "mom4",
        "rest_url": f"http://{rest}",
        "replication": replication,
        "state": "active",
        "replicas": 0,
    }
    again = admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": rest, "replication": replication})
    assert again.status_code == 200

    def everyone_knows_mom4() -> None:
        for node_id in three.nodes:
            view = three.cluster_view(node_id)
            assert "mom4" in [n["id"] for n in view["nodes"]], (node_id, view["nodes"])

    eventually(everyone_knows_mom4)
    refused = admin.delete("/v1/cluster/nodes/mom1")
    assert refused.status_code == 409 and "drain it first" in refused.json()["detail"]

    drained = admin.post("/v1/cluster/nodes/mom4/drain")
    assert drained.status_code == 200 and drained.json()["state"] == "draining"
    assert admin.delete("/v1/cluster/nodes/mom4").status_code == 204

    def everyone_forgot_mom4() -> None:
        for node_id in three.nodes:
            view = three.cluster_view(node_id)
            assert [n["id"] for n in view["nodes"]] == ["mom1", "mom2", "mom3"], (node_id, view["nodes"])

    eventually(everyone_forgot_mom4)
    api = three.api("mom3")
    assert api.retrying("POST", "/v1/queues/held/messages", json={"messages": [{"body": "still here"}]}).is_success
