"""A node restarted with hundreds of destinations recovers their groups lazily and serves every one of them.

At start-up a node only places the groups its catalog gives it; each reads its storage on its first request,
on a peer's message, or in the background pass that follows readiness (`mom.replication.manager`). Here: 300
queues with a message each, kill -9 of a node, restart, then through that node a publish to every queue and a
read of both messages back: nothing acknowledged is lost, and no request finds a group not recovered yet
answered wrongly (a dormant group forwards, or its request waits for its recovery).
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

# Not marked `transport`: lazy recovery is the node's start-up, the same over either transport, and the kill and
# restart of a node under writes runs per transport in test_many_creates.py. Once, over gRPC, keeps the suite short.

QUEUES = 300
THREADS = 16


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster", settings=f"[quotas]\ndestinations = {QUEUES + 50}\n").start()
    yield running
    running.kill_all()


def _retrying(http: httpx.Client, method: str, url: str, body: object) -> httpx.Response:
    """As a client does: 503 (no leader yet, or the node still catching up) is retried, for up to a minute."""
    deadline = time.monotonic() + 60
    while True:
        answer = http.request(method, url, json=body)
        if answer.status_code != 503 or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def test_a_restarted_node_serves_every_one_of_hundreds_of_queues_with_nothing_lost(cluster: Cluster) -> None:
    nodes = list(cluster.nodes)
    headers = dict(cluster.api("mom1").http.headers)
    urls = {node: cluster.nodes[node].url for node in nodes}
    names = [f"lazy-{i:03d}" for i in range(QUEUES)]
    local = threading.local()

    def client() -> httpx.Client:
        http: httpx.Client | None = getattr(local, "http", None)
        if http is None:
            http = local.http = httpx.Client(headers=headers, timeout=60)
        return http

    def create_and_publish(i: int) -> None:
        name = names[i]
        created = _retrying(client(), "PUT", f"{urls[nodes[i % 3]]}/v1/queues/{name}", {})
        assert created.status_code == 201, created.text
        body = {"messages": [{"body": f"before {name}"}]}
        published = _retrying(client(), "POST", f"{urls[nodes[i % 3]]}/v1/queues/{name}/messages", body)
        assert published.status_code == 201, published.text

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(create_and_publish, range(QUEUES)))

    cluster.nodes["mom3"].kill()
    restarted = time.monotonic()
    cluster.nodes["mom3"].start()
    print(f"mom3 ready {time.monotonic() - restarted:.1f} s after its restart, with {QUEUES} queues")
    url = urls["mom3"]

    def publish_after(name: str) -> None:
        body = {"messages": [{"body": f"after {name}"}]}
        published = _retrying(client(), "POST", f"{url}/v1/queues/{name}/messages", body)
        assert published.status_code == 201, f"{name}: {published.text}"

    def read_back(name: str) -> set[str]:
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while seen != {f"before {name}", f"after {name}"} and time.monotonic() < deadline:
            body = {"max_messages": 10, "wait_s": 1, "visibility_timeout_s": 60}
            answer = _retrying(client(), "POST", f"{url}/v1/queues/{name}/receive", body)
            assert answer.status_code == 200, f"{name}: {answer.text}"
            seen |= {m["body"] for m in answer.json()["messages"]}
        return seen

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(publish_after, names))
        print(f"every queue took a publish through mom3 {time.monotonic() - restarted:.1f} s after its restart")
        read = dict(zip(names, pool.map(read_back, names), strict=True))
    lost = {name: seen for name, seen in read.items() if seen != {f"before {name}", f"after {name}"}}
    assert lost == {}
