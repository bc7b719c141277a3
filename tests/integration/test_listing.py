"""Lists on a cluster larger than the replication factor: every node shows every destination's real depth.

With 4 nodes and 3 replicas, each node holds no replica of about a quarter of the destinations. Its lists used
to show those from the catalog, with 0 messages (the dashboard's depth column read 0 on such a node). The lists
do not depend on the replication transport, so this runs once (core)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.harness import Cluster

QUEUES = 8
"""Enough that every node misses a replica of some (placement spreads 3 replicas over 4 nodes)."""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("listing") / "cluster", size=4).start()
    yield running
    running.kill_all()


def _by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


def test_every_node_lists_the_depth_of_destinations_it_holds_no_replica_of(cluster: Cluster) -> None:
    api = cluster.api("mom1")
    prefix = uuid.uuid4().hex[:6]
    depths = {f"l-{prefix}-q{i}": i + 1 for i in range(QUEUES)}
    offsets = {f"l-{prefix}-t{i}": i + 2 for i in range(QUEUES // 2)}
    for name, count in depths.items():
        assert api.retrying("PUT", f"/v1/queues/{name}").status_code in (200, 201)
        api.publish(name, *range(count))
    for name, count in offsets.items():
        assert api.retrying("PUT", f"/v1/topics/{name}").status_code in (200, 201)
        published = api.retrying(
            "POST", f"/v1/topics/{name}/messages", json={"messages": [{"body": i} for i in range(count)]}
        )
        assert published.status_code == 201, published.text
    outside = {
        node_id: [
            n
            for n, e in _by_name(api.get("/v1/queues").json()["queues"]).items()
            if n in depths and node_id not in e["replicas"]
        ]
        for node_id in cluster.nodes
    }
    assert sum(len(names) for names in outside.values()) > 0, f"no node lacks a replica: {outside}"

    deadline = time.monotonic() + 30  # followers apply a moment after the leader answered
    for node_id in cluster.nodes:
        node_api = cluster.api(node_id)
        while True:
            queues = _by_name(node_api.get("/v1/queues").json()["queues"])
            topics = _by_name(node_api.get("/v1/topics").json()["topics"])
            seen_depths = {name: queues[name]["messages"] for name in depths}
            seen_offsets = {name: topics[name]["next_offset"] for name in offsets}
            if (seen_depths, seen_offsets) == (depths, offsets) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert seen_depths == depths, f"{node_id} (no replica of {outside[node_id]})"
        assert seen_offsets == offsets, node_id
        assert {queues[name]["ready"] for name in outside[node_id]} == {depths[name] for name in outside[node_id]}
