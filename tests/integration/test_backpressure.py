"""Backpressure on a real cluster: a leader whose followers are stopped (SIGSTOP) refuses a flood with 429 and
Retry-After once its uncommitted tail reaches the budget, instead of holding everything it is sent; its memory
stays within the budgets plus a fixed margin. After SIGCONT every publish it accepted (201) is there.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import ADMIN_PASSWORD, Cluster, token

pytestmark = pytest.mark.transport

MiB = 1024 * 1024
UNCOMMITTED = 4 * MiB
SEND_QUEUE = 8 * MiB
BUDGETS = f"""
[replication]
max_uncommitted_bytes = {UNCOMMITTED}
send_queue_bytes = {SEND_QUEUE}
max_inflight_bytes = {4 * MiB}
"""
MARGIN = 120 * MiB
"""What else a node may allocate while flooded: request bodies being parsed and encoded (three floods at once,
several copies each), grpc/zmq buffers, allocator slack. A leader without a budget holds every proposal."""
BODY_BYTES = 64 * 1024
BATCH = 16
FLOODERS = 8
"""Eight publishes of 1 MiB waiting at once: twice the budget."""
STOPPED_S = 4.0


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def destination(cluster: Cluster, node_id: str, name: str) -> dict[str, object]:
    return next(d for d in cluster.cluster_view(node_id)["destinations"] if d["name"] == name)


def wait_for(what: str, predicate: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (httpx.HTTPError, StopIteration, KeyError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def test_a_flood_to_a_leader_whose_followers_are_stopped_gets_429_and_its_memory_stays_bounded(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path / "cluster", settings=BUDGETS).start()
    stopped: list[int] = []
    try:
        assert cluster.api().retrying("PUT", "/v1/queues/flood").status_code == 201
        replicas = destination(cluster, "mom1", "flood")["replicas"]
        assert isinstance(replicas, list)
        leader, followers = replicas[0], replicas[1:]
        wait_for(f"{leader} leads flood", lambda: destination(cluster, followers[0], "flood")["leader"] == leader)
        url = cluster.nodes[leader].url
        bearer = token(url, "admin", ADMIN_PASSWORD)
        accepted: list[str] = []
        statuses: Counter[int] = Counter()
        retry_after: set[str | None] = set()
        lock = threading.Lock()
        stop = threading.Event()

        def flood(worker: int) -> None:
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as http:
                number = 0
                while not stop.is_set():
                    keys = [f"{worker}-{number + i}" for i in range(BATCH)]
                    number += BATCH
                    body = {"messages": [{"body": key.ljust(BODY_BYTES, "x"), "dedup_id": key} for key in keys]}
                    try:
                        answer = http.post("/v1/queues/flood/messages", json=body)
                    except httpx.TransportError:
                        continue
                    with lock:
                        statuses[answer.status_code] += 1
                        if answer.status_code == 201:
                            accepted.extend(keys)
                        elif answer.status_code == 429:
                            retry_after.add(answer.headers.get("retry-after"))
                    assert answer.status_code in (201, 429, 503), answer.text
                    if answer.status_code != 201:
                        time.sleep(0.01)

        flooders = [threading.Thread(target=flood, args=(i,)) for i in range(FLOODERS)]
        for thread in flooders:
            thread.start()
        wait_for("the flood is flowing", lambda: len(accepted) > 10 * BATCH)
        for follower in followers:
            pid = cluster.nodes[follower].proc.pid  # type: ignore[union-attr]
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        pid = cluster.nodes[leader].proc.pid  # type: ignore[union-attr]
        before, before_statuses = rss_bytes(pid), statuses.copy()
        peak = before
        end = time.monotonic() + STOPPED_S
        while time.monotonic() < end:
            peak = max(peak, rss_bytes(pid))
            time.sleep(0.02)
        stop.set()
        for thread in flooders:
            thread.join(30)
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        stopped.clear()

        refused = statuses[429] - before_statuses[429]
        assert refused > 0, f"no 429 while the followers were stopped: {statuses - before_statuses}"
        assert retry_after and all(value is not None and int(value) >= 1 for value in retry_after)
        growth = peak - before
        bound = UNCOMMITTED + len(followers) * SEND_QUEUE + MARGIN
        print(f"leader RSS {before / MiB:.0f} MiB -> peak {peak / MiB:.0f} MiB; answers while stopped: "
              f"{dict(statuses - before_statuses)}")  # fmt: skip
        assert growth < bound, f"the leader grew by {growth / MiB:.0f} MiB, more than {bound / MiB:.0f} MiB"

        api = cluster.api(leader)
        received: set[str] = set()
        while messages := api.receive("flood", max_messages=100, wait_s=2):
            received.update(str(m["body"]).rstrip("x") for m in messages)
            api.ack("flood", *[m["receipt"] for m in messages])
        assert set(accepted) <= received, f"{len(set(accepted) - received)} accepted publishes are missing"
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        cluster.kill_all()
