"""Restart-to-ready and restart-to-served of one node of a 3-node cluster kept by `scripts/storm.py`.

Usage (serialise heavy runs with other engineers' on a shared machine; never on a cluster directory someone else
copies from):

    flock /tmp/mom-scale.lock .venv/bin/python scripts/restart_time.py --dir /tmp/storm [--py-spy 30] [--sample 50]

Starts the three nodes of the cluster in `--dir` (made by `scripts/storm.py`), waits until they are ready and
quiet, kills node 3 with SIGKILL and starts it again at once (recorded by `py-spy record` attached right after
its exec with `--py-spy`, raw collapsed stacks in `--dir`), then times, from that start: /readyz answering 200
(ready), the first publish through node 3 to a queue it led taking a message (served), and every queue of a sample of
`--sample` (spread over all the queues) taking one publish through node 3 (all served), and node 3 having no
dormant group left (`mom_raft_groups_dormant` 0: every group recovered). Each step is bounded
(120 s); the load average is printed with each number. Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.mom_nodes import ADMIN_PASSWORD
from bench.procs import Managed
from bench.rate import one_message
from bench.scale import _dormant, _until

STEP_S = 120.0


def _recovered_all(url: str, since: float, out: dict[str, float]) -> None:
    """When node 3 has no dormant group left (`mom_raft_groups_dormant` 0), polled every second for `STEP_S`."""
    while time.monotonic() - since < STEP_S:
        try:
            if _dormant(url) == 0:
                out["all_recovered_s"] = time.monotonic() - since
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)


def _node(directory: Path, config: Path, i: int, port: int) -> Managed:
    command = [sys.executable, "-m", "mom", "serve", "--data-dir", str(directory / f"mom{i}")]
    command += ["--rest", f"127.0.0.1:{port}", "--config", str(config), "--node-id", f"mom{i}"]
    return Managed(f"mom{i}", command, directory / f"mom{i}.log", {"MOM_ADMIN_PASSWORD": ADMIN_PASSWORD})


def _ready(url: str) -> bool:
    return httpx.get(url + "/readyz", timeout=1).status_code == 200


def _load() -> str:
    return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--py-spy", type=float, default=0.0, help="seconds of the restarted node to record")
    parser.add_argument("--sample", type=int, default=50, help="queues published to through node 3 after")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to wait before the kill")
    args = parser.parse_args()
    saved = json.loads((args.dir / "storm.json").read_text())
    config, ports = args.dir / "cluster.toml", saved["rest"]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes = [_node(args.dir, config, i, port) for i, port in enumerate(ports, start=1)]
    started = time.monotonic()
    spying: subprocess.Popen[bytes] | None = None

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s {time.strftime('%H:%M:%S')}] {text}", flush=True)

    try:
        for node in nodes:
            node.start()
        for node, url in zip(nodes, urls, strict=True):
            node.wait_until(lambda url=url: _ready(url), 300)
        say(f"3 nodes ready; {_load()}")
        form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
        token = str(httpx.post(urls[0] + "/v1/auth/token", data=form, timeout=30).json()["access_token"])
        headers = {"Authorization": f"Bearer {token}"}
        time.sleep(args.settle)
        view = httpx.get(f"{urls[0]}/v1/cluster", headers=headers, timeout=60).json()
        queues = sorted(d["name"] for d in view["destinations"] if d.get("kind") == "queue")
        led = [d["name"] for d in view["destinations"] if d.get("kind") == "queue" and d.get("leader") == "mom3"]
        say(f"{len(view['destinations'])} destinations, node 3 leads {len(led)} queues; {_load()}")
        victim = nodes[2].proc
        assert victim is not None
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        spy = args.dir / f"py-spy-restart-{int(time.time())}.txt" if args.py_spy else None
        nodes[2].start()
        restarted = time.monotonic()
        if spy is not None:  # attached right after the exec: py-spy running the node would kill it when done
            assert nodes[2].proc is not None
            spy_bin = str(Path(sys.executable).parent / "py-spy")
            record = ["record", "-p", str(nodes[2].proc.pid), "-d", str(int(args.py_spy)), "-r", "50", "-f", "raw"]
            spying = subprocess.Popen(
                [spy_bin, *record, "-o", str(spy), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        say(f"node 3 killed and started again{f' under py-spy into {spy}' if spy else ''}")
        answering = _until(lambda: httpx.get(urls[2] + "/healthz", timeout=1).status_code == 200, STEP_S)
        say(f"answering HTTP after {answering}s")
        ready = _until(lambda: _ready(urls[2]), STEP_S)
        ready = None if ready is None or answering is None else answering + ready
        say(f"ready after {ready}s; {_load()}")
        recovered: dict[str, float] = {}
        watcher = threading.Thread(target=_recovered_all, args=(urls[2], restarted, recovered), daemon=True)
        watcher.start()
        body = json.dumps(one_message()).encode()
        post_headers = {**headers, "Content-Type": "application/json"}

        def published(queue: str) -> bool:
            answer = httpx.post(f"{urls[2]}/v1/queues/{queue}/messages", content=body, headers=post_headers, timeout=5)
            return answer.status_code == 201

        first = led[0] if led else queues[0]
        served = None if _until(lambda: published(first), STEP_S) is None else time.monotonic() - restarted
        say(f"served ({first}) after {served}s; {_load()}")
        step = max(1, len(queues) // max(1, args.sample))
        sample = queues[::step][: args.sample]
        with ThreadPoolExecutor(16) as pool:
            took = list(pool.map(lambda q: _until(lambda: published(q), STEP_S), sample))
        stuck = sum(1 for t in took if t is None)
        whole = time.monotonic() - restarted
        say(f"{len(sample) - stuck} of {len(sample)} sampled queues served; all by {whole:.1f}s; {_load()}")
        watcher.join(STEP_S)
        all_recovered = recovered.get("all_recovered_s")
        say(f"every group of node 3 recovered (none dormant) after {all_recovered}s")
        times = {"ready_s": ready, "served_s": served, "sample_s": whole, "stuck": stuck}
        print(json.dumps(times | {"all_recovered_s": all_recovered}))
    finally:
        if spying is not None and spying.poll() is None:
            spying.wait(args.py_spy + 30)
        for node in nodes:
            node.stop()


if __name__ == "__main__":
    main()
