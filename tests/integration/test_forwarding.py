"""Forwarding on a real 3-node cluster when the leader stops answering or dies: bounded, honest, never duplicated.

A node that forwards a request to a leader that is SIGSTOPped (alive to TCP, deaf to everything) answers 503
within the forwarding bound instead of hanging, with the problem type that says whether the request may have
been applied; the client's retry then reaches the new leader. A publish whose leader is killed mid-request and
that the client retries with its defaults (a dedup id on every message) is stored exactly once.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mom.client import Client
from mom.errors import OutcomeUnknown
from tests.integration.harness import ADMIN_PASSWORD, Cluster, NodeProcess, token

pytestmark = pytest.mark.transport

PRODUCERS_PER_NODE = 3
HANG_GUARD_S = 20.0
"""Longer than any forwarding bound and shorter than the old 60 s forwarding timeout: only catches a hang."""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    for node in running.nodes.values():
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGCONT)  # a stopped process ignores SIGKILL until continued
    running.kill_all()


def settled_leader(cluster: Cluster, name: str, via: str) -> str:
    """The leader of `name` once it is its preferred replica (leadership returns there after start-up)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        entry = next((d for d in cluster.cluster_view(via)["destinations"] if d["name"] == name), None)
        if entry is not None and entry["leader"] == entry["replicas"][0]:
            return str(entry["leader"])
        time.sleep(0.1)
    raise AssertionError(f"{name} has no settled leader")


def client_for(node: NodeProcess) -> Client:
    return Client(node.url, username="admin", password=ADMIN_PASSWORD, timeout=HANG_GUARD_S)


def drain(client: Client, queue: str) -> list[object]:
    bodies: list[object] = []
    while batch := client.receive(queue=queue, max_messages=100, wait_s=1):
        bodies += [m["body"] for m in batch]
        client.ack([m["receipt"] for m in batch], queue=queue)
    return bodies


def test_a_stopped_leader_gets_a_bounded_503_and_the_retry_reaches_the_new_leader(cluster: Cluster) -> None:
    admin = cluster.api("mom1")
    assert admin.retrying("PUT", "/v1/queues/stalled").status_code == 201
    leader = settled_leader(cluster, "stalled", "mom1")
    via = next(n for n in cluster.nodes if n != leader)
    url = cluster.nodes[via].url
    bearer = token(url, "admin", ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {bearer}"}
    message = {"body": "once", "dedup_id": "stalled-once"}
    leader_proc = cluster.nodes[leader].proc
    assert leader_proc is not None
    leader_proc.send_signal(signal.SIGSTOP)
    try:
        # Sent at once, before the others notice: forwarded to the stopped leader, which may have read it.
        write = httpx.post(f"{url}/v1/queues/stalled/messages", json=message, headers=headers, timeout=HANG_GUARD_S)
        assert write.status_code == 503, write.text
        assert write.json()["type"].endswith("/outcome-unknown"), write.text
        assert int(write.headers["Retry-After"]) >= 1
        read = httpx.get(f"{url}/v1/queues/stalled", headers=headers, timeout=HANG_GUARD_S)
        assert read.status_code in (200, 503), read.text
        if read.status_code == 503:
            assert read.json()["type"].endswith("/unavailable"), "a read changes nothing: its outcome is known"
        with client_for(cluster.nodes[via]) as client:
            assert client.publish("once", queue="stalled", dedup_id="stalled-once")["id"]
        assert cluster.leader_of("stalled", via=via) not in (None, leader), "a new leader took over"
    finally:
        leader_proc.send_signal(signal.SIGCONT)
    with client_for(cluster.nodes[via]) as client:
        assert drain(client, "stalled") == ["once"], "the retry and the stalled attempt stored it once"


def test_publishes_retried_by_the_client_across_a_kill_9_are_stored_exactly_once(cluster: Cluster) -> None:
    with client_for(cluster.nodes["mom1"]) as admin:
        admin.create_queue("ledger")
    leader = settled_leader(cluster, "ledger", "mom1")
    survivors = [n for n in cluster.nodes if n != leader]
    acknowledged: list[str] = []
    unknown: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(via: str, worker: int) -> None:
        with client_for(cluster.nodes[via]) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                bodies = [f"{worker}-{n}-{i}" for i in range(5)]
                try:
                    client.publish_batch([{"body": b} for b in bodies], queue="ledger")
                except OutcomeUnknown:  # retries exhausted: may or may not be stored, never twice
                    with lock:
                        unknown.extend(bodies)
                    continue
                with lock:
                    acknowledged.extend(bodies)

    workers = [threading.Thread(target=produce, args=(via, i)) for i, via in enumerate(survivors * PRODUCERS_PER_NODE)]
    for worker in workers:
        worker.start()
    time.sleep(1.5)
    cluster.nodes[leader].kill()
    time.sleep(3.0)
    stop.set()
    for worker in workers:
        worker.join(60)
    assert not any(worker.is_alive() for worker in workers)
    cluster.nodes[leader].start()
    with client_for(cluster.nodes[survivors[0]]) as client:
        received = drain(client, "ledger")
    counts = Counter(received)
    assert [body for body, n in counts.items() if n > 1] == [], "a retried publish was stored twice"
    assert set(acknowledged) <= set(counts), "an acknowledged publish was lost"
    assert set(counts) <= set(acknowledged) | set(unknown), "a message nobody published appeared"
    assert len(acknowledged) > 100, "the load did not get going"
