"""Failover of a node that leads thousands of destinations, on a 3-node cluster kept between runs.

Usage (serialise heavy runs with other engineers' on a shared machine):

    flock /tmp/mom-scale.lock .venv/bin/python scripts/storm.py --dir /tmp/storm --destinations 3000 \
        [--transport grpc] [--py-spy 40] [--sample 200]

The first run creates the cluster (its config and fixed ports in `--dir`) and the destinations `scale-00000`...
(even: queue, odd: topic, as `mom bench --scenarios scale` names them); later runs start the same nodes on the
same data and create only what is missing, so a run at 3,000 costs a restart instead of four minutes of creation.
Then, like the scale scenario's failover step (`bench/scale.py`), it kills node 3 with SIGKILL and publishes
through node 1 to (up to) `--sample` of the queues node 3 led, one client thread per queue (2 s timeout, retrying
every 0.1 s) until each took a message, at most 120 s; meanwhile it records node 1 with py-spy (`--py-spy`
seconds, as raw collapsed stacks in `--dir`) and node 1's Raft roles every 10 s. Last, it starts node 3 again and
times restart-to-ready and restart-to-served: it
publishes through node 3 to the same sampled queues (as the failover step) and reports every 10 s how many took a
write, with node 3's roles; `--py-spy` records node 3 and node 1 after the restart too. Then it publishes over
1,000 queues through every node for `--publish` seconds. Every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.context import RunContext
from bench.mom_nodes import ADMIN_PASSWORD
from bench.procs import Managed, free_port
from bench.rate import one_message
from bench.scale import ACTIVE_QUEUES, FAILOVER_SAMPLE, _led_queues, _publish_spread, _until, idle_cpu_pct


def _config(directory: Path, transport: str, destinations: int) -> tuple[Path, list[int]]:
    """The cluster file (written on the first run) and the nodes' REST ports."""
    state = directory / "storm.json"
    if state.exists():
        saved = json.loads(state.read_text())
        return directory / "cluster.toml", saved["rest"]
    directory.mkdir(parents=True, exist_ok=True)
    rest = [free_port() for _ in range(3)]
    lines = [f"[quotas]\ndestinations = {max(destinations, 10_000) + 100}\n", "[cluster]"]
    lines += [f'transport = "{transport}"', "replication_factor = 3", ""]
    for i, port in enumerate(rest, start=1):
        lines += ["[[cluster.nodes]]", f'id = "mom{i}"', f'rest = "127.0.0.1:{port}"']
        lines += [f'replication = "127.0.0.1:{free_port()}"', ""]
    (directory / "cluster.toml").write_text("\n".join(lines))
    state.write_text(json.dumps({"rest": rest, "transport": transport}))
    return directory / "cluster.toml", rest


def _node(directory: Path, config: Path, i: int, port: int) -> Managed:
    command = [sys.executable, "-m", "mom", "serve", "--data-dir", str(directory / f"mom{i}")]
    command += ["--rest", f"127.0.0.1:{port}", "--config", str(config), "--node-id", f"mom{i}"]
    return Managed(f"mom{i}", command, directory / f"mom{i}.log", {"MOM_ADMIN_PASSWORD": ADMIN_PASSWORD})


def _spy(directory: Path, label: str, pid: int, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy recording `pid` for `seconds` (raw collapsed stacks, 50 Hz) into `directory`."""
    out = directory / f"py-spy-{label}-{int(time.time())}.txt"
    record = ["record", "-p", str(pid), "-d", str(int(seconds)), "-r", "50", "-f", "raw", "-o", str(out)]
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "py-spy"), *record, "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _ready(url: str) -> bool:
    return httpx.get(url + "/readyz", timeout=1).status_code == 200


def _create_missing(ctx: RunContext, urls: list[str], token: str, count: int) -> int:
    view = httpx.get(f"{urls[0]}/v1/cluster", headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    have = {d["name"] for d in view["destinations"]}
    missing = [i for i in range(count) if f"scale-{i:05d}" not in have]
    ctx.progress(f"{len(have)} destinations exist; creating {len(missing)}")
    headers = {"Authorization": f"Bearer {token}"}

    def create(i: int) -> None:
        kind = "queues" if i % 2 == 0 else "topics"
        with httpx.Client(timeout=60, headers=headers) as http:
            for _ in range(300):
                answer = http.put(f"{urls[i % 3]}/v1/{kind}/scale-{i:05d}", json={})
                if answer.status_code in (200, 201):
                    return
                time.sleep(0.2)

    started = time.monotonic()
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(create, missing))
    ctx.progress(f"created {len(missing)} in {time.monotonic() - started:.0f}s")
    return len(missing)


_ROLE = re.compile(r'^mom_raft_groups\{role="(\w+)"\} ([\d.]+)', re.M)
_CAMPAIGNS = re.compile(r"^mom_raft_(campaigns\w*|campaign_limit|groups_awake) ([\d.]+)", re.M)


def _watch_roles(ctx: RunContext, url: str, token: str, stop: threading.Event, label: str = "node 1") -> None:
    """A node's Raft roles every 10 s (a /metrics scrape; one that does not answer within 5 s says so)."""
    started = time.monotonic()
    while not stop.wait(10):
        try:
            text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=5).text
            roles = {role: int(float(n)) for role, n in _ROLE.findall(text)}
            roles |= {name: int(float(n)) for name, n in _CAMPAIGNS.findall(text)}
        except httpx.HTTPError as exc:
            roles = {"error": type(exc).__name__}  # type: ignore[dict-item]
        load = os.getloadavg()[0]
        ctx.progress(f"  +{time.monotonic() - started:.0f}s {label} roles {roles}, load {load:.1f}")


def _failover(
    ctx: RunContext, url: str, token: str, queues: list[str], label: str = "node 1", step_s: float = 0.0
) -> tuple[float | None, int]:
    """As `bench.scale`'s failover step (one thread per queue, 2 s timeout, 0.1 s between answers, at most
    120 s), counting every answer the node at `url` gave meanwhile and how long each took; with `step_s`, also
    how many of the queues had taken a write every `step_s` seconds."""
    body = json.dumps(one_message()).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    took: dict[str, float] = {}
    answers: Counter[str] = Counter()
    waited: dict[str, list[float]] = {}
    lock = threading.Lock()

    def until_published(queue: str) -> None:
        with httpx.Client(timeout=2, headers=headers) as http:
            while time.monotonic() - started < 120:
                sent = time.monotonic()
                try:
                    status = str(http.post(f"{url}/v1/queues/{queue}/messages", content=body).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                with lock:
                    answers[status] += 1
                    waited.setdefault(status, []).append(time.monotonic() - sent)
                if status == "201":
                    took[queue] = time.monotonic() - started
                    return
                if status[0].isdigit() or status == "ConnectError":
                    time.sleep(0.1)

    threads = [threading.Thread(target=until_published, args=(queue,)) for queue in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(step_s or None)
            if step_s and thread.is_alive():
                with lock:
                    served = len(took)
                ctx.progress(f"  +{time.monotonic() - started:.0f}s {served} of {len(queues)} served through {label}")
    times = sorted(took.values())
    stuck = len(queues) - len(times)
    slowest = times[-1] if times and not stuck else None
    median = times[len(times) // 2] if times else None
    ctx.progress(f"failover of {len(queues)} queues: all by {slowest}s, half by {median}s ({stuck} never took a write)")
    for status, count in answers.most_common():
        spent = sorted(waited[status])
        ctx.progress(
            f"  {label} answered {status} {count} times (median {spent[len(spent) // 2]:.2f}s, max {spent[-1]:.2f}s)"
        )
    return slowest, stuck


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--destinations", type=int, default=3000)
    parser.add_argument("--transport", default="grpc", choices=("grpc", "zmq"))
    parser.add_argument("--py-spy", type=float, default=0.0, help="seconds of node 1 to record after the kill")
    parser.add_argument("--sample", type=int, default=FAILOVER_SAMPLE)
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to wait for node 3 to lead its share")
    parser.add_argument("--publish", type=float, default=10.0, help="seconds of publishing over 1,000 queues")
    parser.add_argument("--idle", type=float, default=5.0, help="idle window (CPU) before the kill")
    args = parser.parse_args()
    ctx = RunContext(workdir=args.dir, duration_s=0, smoke=False, wrk=None)
    config, ports = _config(args.dir, args.transport, args.destinations)
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes = [_node(args.dir, config, i, port) for i, port in enumerate(ports, start=1)]
    spy: subprocess.Popen[bytes] | None = None
    try:
        started = time.monotonic()
        for node in nodes:
            node.start()
        for node, url in zip(nodes, urls, strict=True):
            node.wait_until(lambda url=url: _ready(url), 300)
        ctx.progress(f"3 nodes ready in {time.monotonic() - started:.1f}s")
        form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
        token = str(httpx.post(urls[0] + "/v1/auth/token", data=form, timeout=30).json()["access_token"])
        _create_missing(ctx, urls, token, args.destinations)
        pids = [n.proc.pid for n in nodes if n.proc is not None]

        def settled() -> bool:  # node 3 leads its share (leadership returned to the preferred leaders)
            return len(_led_queues(MomView(urls), token, "mom3")) >= args.destinations // 6 * 0.9

        ctx.progress(f"node 3 leads its share after {_until(settled, args.settle)}s")
        cpu = idle_cpu_pct(pids, args.idle)
        ctx.progress(f"idle CPU {', '.join(f'{c:.1f}%' for c in cpu)}; load {os.getloadavg()}")
        led = _led_queues(MomView(urls), token, "mom3")
        ctx.progress(f"node 3 leads {len(led)} queues; killing it")
        victim = nodes[2].proc
        assert victim is not None
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        if args.py_spy:
            out = args.dir / f"py-spy-{int(time.time())}.txt"
            spy_bin = str(Path(sys.executable).parent / "py-spy")
            record = ["record", "-p", str(pids[0]), "-d", str(int(args.py_spy)), "-r", "50", "-f", "raw"]
            spy = subprocess.Popen(
                [spy_bin, *record, "-o", str(out), "--nonblocking"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            ctx.progress(f"py-spy records node 1 into {out}")
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_roles, args=(ctx, urls[0], token, stop), daemon=True)
        watcher.start()
        failover_s, stuck = _failover(ctx, urls[0], token, led[: args.sample])
        stop.set()
        ctx.progress(f"failover {failover_s}s, {stuck} stuck; load {os.getloadavg()}")
        nodes[2].start()
        restarted = time.monotonic()
        assert nodes[2].proc is not None
        spies: list[subprocess.Popen[bytes]] = []
        if args.py_spy:  # node 3 at once; node 1 once its failover recording is done (one py-spy per process)
            spies = [_spy(args.dir, "return-node3", nodes[2].proc.pid, args.py_spy)]
            failover_spy = spy

            def then_node1() -> None:
                if failover_spy is not None:
                    failover_spy.wait(args.py_spy + 30)
                spies.append(_spy(args.dir, "return-node1", pids[0], args.py_spy))

            later = threading.Thread(target=then_node1, daemon=True)
            later.start()
        stop = threading.Event()
        watcher = threading.Thread(target=_watch_roles, args=(ctx, urls[2], token, stop, "node 3"), daemon=True)
        watcher.start()
        ready_box: list[float | None] = []
        waiting = threading.Thread(target=lambda: ready_box.append(_until(lambda: _ready(urls[2]), 120)))
        waiting.start()
        served, never = _failover(ctx, urls[2], token, led[: args.sample], "node 3", 10.0)
        waiting.join()
        stop.set()
        ctx.progress(
            f"restart of mom3: ready after {ready_box[0]}s, all {len(led[: args.sample])} sampled queues served "
            f"through it after {served}s ({never} never); {time.monotonic() - restarted:.0f}s since the restart; "
            f"load {os.getloadavg()}"
        )
        settled_s = _until(settled, 60)
        ctx.progress(f"node 3 leads its share again after {settled_s}s more; load {os.getloadavg()}")
        active = [f"scale-{i:05d}" for i in range(0, args.destinations, 2)][:ACTIVE_QUEUES]
        spread = _publish_spread(MomView(urls), token, active, args.publish)  # type: ignore[arg-type]
        ctx.progress(f"publish over {len(active)} queues after the return: {spread.describe()}; load {os.getloadavg()}")
        for each in list(spies):
            each.wait(max(1.0, args.py_spy) + 30)
    finally:
        if spy is not None and spy.poll() is None:
            spy.wait(60)
        for node in nodes:
            node.stop()


class MomView:
    """What `bench.scale`'s helpers read of a deployment: the REST URLs, node 1 first."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls


if __name__ == "__main__":
    main()
