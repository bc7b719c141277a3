"""Time from `kill -9` of a queue's leader to the first successful write through every surviving node.

Usage: .venv/bin/python scripts/measure_failover.py [--trials 10] [--transport grpc|zmq] [--nodes 3]

Starts a real cluster of `--nodes` nodes on 127.0.0.1 (three replicas per queue), then per trial: waits until the
queue's preferred leader leads, kills it with SIGKILL, and from every surviving node at once publishes (raw HTTP,
no client retries, a 10 ms pause between attempts) until one is answered 201, recording how long that took per
node; then restarts the killed node. Prints each trial (the slowest replica and the slowest other node) and the
medians. With more nodes than replicas, the other nodes are the ones that only route: they must recover as fast.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.harness import ADMIN_PASSWORD, Cluster, token


def _wait(predicate: object, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (httpx.HTTPError, KeyError, StopIteration):
            pass
        time.sleep(0.05)
    raise TimeoutError("condition not reached")


def trial(cluster: Cluster, queue: str) -> tuple[dict[str, float], list[str]]:
    """Per surviving node, seconds from the kill to its first successful publish; and the queue's replicas."""
    entry: dict[str, object] = {}

    def settled() -> bool:
        entry.clear()
        entry.update(cluster.api("mom1").get(f"/v1/queues/{queue}").json())
        return entry["leader"] == entry["replicas"][0]  # type: ignore[index]

    _wait(settled, 30)
    leader, replicas = str(entry["leader"]), [str(r) for r in entry["replicas"]]  # type: ignore[attr-defined]
    survivors = [n for n in cluster.nodes if n != leader]
    headers = {n: {"Authorization": f"Bearer {token(cluster.nodes[n].url, 'admin', ADMIN_PASSWORD)}"}
               for n in survivors}  # fmt: skip
    for node in survivors:
        url = cluster.nodes[node].url
        assert httpx.post(f"{url}/v1/queues/{queue}/messages", json={"body": 0}, headers=headers[node]).is_success
    recovered: dict[str, float] = {}

    def until_published(node: str, killed: float) -> None:
        url = cluster.nodes[node].url
        while time.monotonic() - killed < 60:
            try:
                answer = httpx.post(f"{url}/v1/queues/{queue}/messages", json={"body": 1}, headers=headers[node])
                if answer.status_code == 201:
                    recovered[node] = time.monotonic() - killed
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.01)

    cluster.nodes[leader].kill()
    killed = time.monotonic()
    threads = [threading.Thread(target=until_published, args=(node, killed)) for node in survivors]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cluster.nodes[leader].start()
    return recovered, replicas


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--transport", choices=["grpc", "zmq"], default="grpc")
    parser.add_argument("--nodes", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "cluster", size=args.nodes, transport=args.transport).start()
        try:
            cluster.api().put("/v1/queues/failover")
            slowest_replica: list[float] = []
            slowest_other: list[float] = []
            for i in range(args.trials):
                recovered, replicas = trial(cluster, "failover")
                replica_times = [t for n, t in recovered.items() if n in replicas]
                other_times = [t for n, t in recovered.items() if n not in replicas]
                slowest_replica.append(max(replica_times))
                line = f"trial {i + 1}: replicas {max(replica_times) * 1000:.0f} ms"
                if other_times:
                    slowest_other.append(max(other_times))
                    line += f", other nodes {max(other_times) * 1000:.0f} ms"
                print(line, flush=True)
            summary = f"median of the slowest replica {statistics.median(slowest_replica) * 1000:.0f} ms"
            if slowest_other:
                summary += f", of the slowest other node {statistics.median(slowest_other) * 1000:.0f} ms"
            print(f"{summary} ({args.transport}, {args.nodes} nodes, {args.trials} trials)")
        finally:
            cluster.kill_all()


if __name__ == "__main__":
    main()
