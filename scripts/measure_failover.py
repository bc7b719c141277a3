"""Time from `kill -9` of a queue's leader to the first successful write on its new leader.

Usage: .venv/bin/python scripts/measure_failover.py [--trials 10] [--transport grpc|zmq]

Starts a real 3-node cluster on 127.0.0.1, then per trial: waits until the queue's preferred leader leads, writes
continuously through a surviving node, kills the leader with SIGKILL, records how long until a publish is answered
201 again, restarts the killed node. Prints each trial and the median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
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


def trial(cluster: Cluster, queue: str) -> float:
    def settled() -> bool:
        view = cluster.cluster_view("mom1")
        entry = next(d for d in view["destinations"] if d["name"] == queue)
        return bool(entry["leader"] == entry["replicas"][0])

    _wait(settled, 30)
    leader = cluster.leader_of(queue)
    assert leader is not None
    survivor = next(n for n in cluster.nodes if n != leader)
    url = cluster.nodes[survivor].url
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token(url, 'admin', ADMIN_PASSWORD)}"}) as http:
        assert http.post(f"/v1/queues/{queue}/messages", json={"body": "before"}).status_code == 201
        cluster.nodes[leader].kill()
        killed = time.monotonic()
        while True:
            try:
                if http.post(f"/v1/queues/{queue}/messages", json={"body": "after"}, timeout=5).status_code == 201:
                    elapsed = time.monotonic() - killed
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.01)
    cluster.nodes[leader].start()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--transport", choices=["grpc", "zmq"], default="grpc")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp) / "cluster", transport=args.transport).start()
        try:
            cluster.api().put("/v1/queues/failover")
            times = []
            for i in range(args.trials):
                times.append(trial(cluster, "failover"))
                print(f"trial {i + 1}: {times[-1] * 1000:.0f} ms", flush=True)
            print(f"median {statistics.median(times) * 1000:.0f} ms, min {min(times) * 1000:.0f}, "
                  f"max {max(times) * 1000:.0f} ({args.transport}, {args.trials} trials)")  # fmt: skip
        finally:
            cluster.kill_all()


if __name__ == "__main__":
    main()
