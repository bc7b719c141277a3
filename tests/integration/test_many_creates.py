"""Many destinations created at once on real nodes: each create answers once its destination serves, so a publish
right after it (through any node) is never refused with 503; then a kill -9 and a restart lose nothing acknowledged.

What a client creating thousands of queues does, shrunk to 200 (from 16 threads, through every node in turn), so
the test stays quick: creation of many new groups at once (their join probes, first elections and declares all in
flight together) must keep the guarantee docs/api.md gives one create alone.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Cluster

pytestmark = pytest.mark.transport

DESTINATIONS = 200
THREADS = 16


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster", settings=f"[quotas]\ndestinations = {DESTINATIONS + 50}\n").start()
    yield running
    running.kill_all()


def test_many_concurrent_creates_serve_at_once_and_survive_a_kill(cluster: Cluster) -> None:
    nodes = list(cluster.nodes)
    apis = {node: cluster.api(node) for node in nodes}
    headers = dict(apis["mom1"].http.headers)
    urls = {node: cluster.nodes[node].url for node in nodes}
    local = threading.local()
    refused: list[str] = []

    def create_and_publish(i: int) -> str:
        http: httpx.Client | None = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(headers=headers, timeout=60)
        kind = "queues" if i % 2 == 0 else "topics"
        name = f"many-{i:03d}"
        created = http.put(f"{urls[nodes[i % 3]]}/v1/{kind}/{name}", json={})
        assert created.status_code == 201, created.text
        if kind == "topics":
            return ""
        # right after the create's answer, through another node: served, never "no leader" (503)
        published = http.post(
            f"{urls[nodes[(i + 1) % 3]]}/v1/queues/{name}/messages", json={"messages": [{"body": f"first {name}"}]}
        )
        if published.status_code != 201:
            refused.append(f"{name}: {published.status_code} {published.text[:200]}")
        return name

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        queues = [name for name in pool.map(create_and_publish, range(DESTINATIONS)) if name]
    print(f"{DESTINATIONS} destinations created (each with a publish) in {time.monotonic() - started:.1f} s")
    assert refused == []

    cluster.nodes["mom3"].kill()
    api = apis["mom1"]
    for name in queues[:20]:  # writes go on with a node down (the groups mom3 led elect another leader)
        api.publish(name, f"second {name}")
    cluster.nodes["mom3"].start()
    reader = cluster.api("mom3")
    for name in queues:  # everything acknowledged is there, read through the restarted node
        expected = {f"first {name}"} | ({f"second {name}"} if name in queues[:20] else set())
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while not expected <= seen and time.monotonic() < deadline:
            answer = reader.retrying("POST", f"/v1/queues/{name}/receive", json={"max_messages": 10, "wait_s": 1})
            assert answer.status_code == 200, answer.text
            seen |= {m["body"] for m in answer.json()["messages"]}
        assert expected <= seen, f"{name}: {sorted(expected - seen)} lost"
