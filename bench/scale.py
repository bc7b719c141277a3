"""The `scale` scenario: what thousands of idle destinations cost a 3-node cluster, and how fast it restarts.

A cluster of many queues and topics that nobody uses must cost (nearly) nothing: the scenario creates N
destinations (half queues, half topics; the admin token, with the per-principal quota raised in the cluster file
as an operator would), then measures, per node, from /proc: the CPU it burns over an idle window (in % of one
core), its resident memory and what each idle destination adds to it, and its open file descriptors. Then it kills
one node (SIGKILL) and starts it again: restart-to-ready is the time until its /readyz answers 200, and
restart-to-served the time until a publish through it to the last queue created is answered. The publish rate
spread over (up to) 1,000 of the queues at once, one message per request through every node, is measured twice:
on the settled cluster before the kill (the result's rate), and right after the restart (in its notes), while the
cluster still catches the returning node up and hands its leaderships back.

Creating the destinations is bounded by `create_budget_s`: what could not be created in that time is reported,
and the rest is measured with what exists.
"""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.context import RunContext
from bench.mom_nodes import MomDeployment, Topology
from bench.rate import one_message
from bench.results import Result

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
CREATE_THREADS = 32
PUBLISH_THREADS = 32
ACTIVE_QUEUES = 1000


@dataclass(frozen=True)
class ScaleOptions:
    destinations: int = 10_000
    idle_window_s: float = 20.0
    create_budget_s: float = 900.0
    publish_s: float = 10.0
    profile_dir: Path | None = None
    """Record every node with py-spy from the restart (`PROFILE_WINDOWS_S`) and copy the node logs here."""


PROFILE_WINDOWS_S = (10, 30)
"""py-spy windows after the restart, one raw file each: the restarted node's way to ready, then the return."""


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def idle_cpu_pct(pids: list[int], window_s: float) -> list[float]:
    """% of one core each process used over `window_s` of doing nothing asked of it."""
    before = [process_cpu_s(pid) for pid in pids]
    started = time.monotonic()
    time.sleep(window_s)
    elapsed = time.monotonic() - started
    return [100.0 * (process_cpu_s(pid) - b) / elapsed for pid, b in zip(pids, before, strict=True)]


def _create_all(
    ctx: RunContext, mom: MomDeployment, token: str, count: int, budget_s: float
) -> tuple[list[str], int, float]:
    """Create `count` destinations (even: queue, odd: topic) from a few threads through every node; returns the
    queues' names, how many destinations exist, and the seconds it took."""
    deadline = time.monotonic() + budget_s
    done = 0
    lock = threading.Lock()
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {token}"}

    clients = threading.local()
    opened: list[httpx.Client] = []

    def client() -> httpx.Client:
        """One client (and its connections) per thread: building an httpx.Client per request costs the client
        process more CPU (an SSL context each) than the request costs the cluster, and capped creation at about
        20 per second on a 2-core machine."""
        http: httpx.Client | None = getattr(clients, "http", None)
        if http is None:
            http = clients.http = httpx.Client(timeout=60, headers=headers)
            with lock:
                opened.append(http)
        return http

    def create(i: int) -> str | None:
        nonlocal done
        if time.monotonic() > deadline:
            return None
        kind = "queues" if i % 2 == 0 else "topics"
        name = f"scale-{i:05d}"
        url = mom.urls[i % len(mom.urls)]
        http = client()
        while time.monotonic() < deadline + 60:
            try:
                answer = http.put(f"{url}/v1/{kind}/{name}", json={})
            except httpx.TransportError:  # a dropped keep-alive connection: ask again
                time.sleep(0.2)
                continue
            if answer.status_code in (200, 201):
                break
            if answer.status_code not in (429, 503):
                answer.raise_for_status()
            time.sleep(0.2)
        else:
            return None
        with lock:
            done += 1
            if done % 500 == 0:
                ctx.progress(f"  scale: {done} of {count} destinations created ({time.monotonic() - started:.0f}s)")
        return name if kind == "queues" else ""

    try:
        with ThreadPoolExecutor(CREATE_THREADS) as pool:
            names = list(pool.map(create, range(count)))
    finally:
        for http in opened:
            http.close()
    queues = [n for n in names if n]
    return queues, sum(n is not None for n in names), time.monotonic() - started


def _until(check: Callable[[], bool], timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if check():
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return None


FAILOVER_SAMPLE = 200
"""How many of the killed node's queues the failover step publishes to (all of them up to this many)."""
RECOVERY_WAIT_S = 180.0
"""How long the scenario waits, after the publish that follows the restart, for every group to be recovered."""
_DORMANT = re.compile(r"^mom_raft_groups_dormant ([\d.]+)", re.M)


def _led_queues(mom: MomDeployment, token: str, node_id: str) -> list[str]:
    view = httpx.get(f"{mom.urls[0]}/v1/cluster", headers={"Authorization": f"Bearer {token}"}, timeout=30).json()
    return [d["name"] for d in view["destinations"] if d.get("kind") == "queue" and d.get("leader") == node_id]


def _failover(ctx: RunContext, mom: MomDeployment, token: str, queues: list[str]) -> tuple[float | None, int]:
    """Publish through node 1 to each of `queues` (led by a node just killed), one thread per queue retrying until
    its queue took a message: (seconds until the last one did, or None after 120 s; how many never did)."""
    body = json.dumps(one_message()).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    started = time.monotonic()
    took: dict[str, float] = {}
    last: dict[str, str] = {}

    def until_published(queue: str) -> None:
        with httpx.Client(timeout=2, headers=headers) as http:
            while time.monotonic() - started < 120:
                try:
                    answer = http.post(f"{mom.urls[0]}/v1/queues/{queue}/messages", content=body)
                except httpx.HTTPError as exc:
                    last[queue] = type(exc).__name__
                    continue
                if answer.status_code == 201:
                    took[queue] = time.monotonic() - started
                    return
                last[queue] = f"{answer.status_code} {answer.text[:160]}"
                time.sleep(0.1)

    threads = [threading.Thread(target=until_published, args=(queue,)) for queue in queues]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stuck = [q for q in queues if q not in took]
    times = sorted(took.values())
    slowest = None if stuck or not times else times[-1]
    median = times[len(times) // 2] if times else None
    all_by = f"all by {slowest:.1f} s" if slowest is not None else f"{len(took)} of {len(queues)} took a write"
    if median is None:
        half_by = "none took a write"
    else:
        half_by = f"half by {median:.1f} s" if not stuck else f"the median of those after {median:.1f} s"
    ctx.progress(
        f"  scale: failover of {len(queues)} queues after a kill: {all_by}, {half_by} ({len(stuck)} never did)"
    )
    for answer, count in Counter(last[q] for q in stuck if q in last).most_common(4):
        ctx.progress(f"  scale: {count} queues still answered {answer}")
    return slowest, len(stuck)


def _record_nodes(pids: list[int], into: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (raw collapsed stacks, 50 Hz) of every node, one window after the other (`PROFILE_WINDOWS_S`)."""
    into.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    recorders = []
    for i, pid in enumerate(pids, start=1):
        windows = [
            shlex.join([spy, "record", "-p", str(pid), "-r", "50", "-f", "raw", "--nonblocking", "-d", str(seconds)])
            + f" -o {shlex.quote(str(into / f'spy-mom{i}-{n}.txt'))}"
            for n, seconds in enumerate(PROFILE_WINDOWS_S, start=1)
        ]
        recorders.append(subprocess.Popen(["sh", "-c", "; ".join(windows)], stdout=subprocess.DEVNULL))
    return recorders


def _restart(
    ctx: RunContext,
    mom: MomDeployment,
    token: str,
    index: int,
    queue: str,
    profile_dir: Path | None,
    recorders: list[subprocess.Popen[bytes]],
) -> tuple[float, float | None, float | None, float | None, int]:
    """SIGKILL node `index`, measure the failover of the queues it led (through node 1), and start it again:
    (when it started again, on the monotonic clock; seconds to /readyz 200, seconds to a publish through it,
    failover seconds, queues that never failed over)."""
    node = mom.nodes[index]
    assert node.proc is not None
    led = _led_queues(mom, token, f"mom{index + 1}")[:FAILOVER_SAMPLE]
    os.killpg(node.proc.pid, signal.SIGKILL)
    node.proc.wait(10)
    failover_s, stuck = _failover(ctx, mom, token, led)
    node.start()
    assert node.proc is not None
    mom.sessions[index] = node.proc.pid
    if profile_dir is not None:
        recorders.extend(_record_nodes(mom.sessions, profile_dir))
    url = mom.urls[index]
    started = time.monotonic()
    answering = _until(lambda: httpx.get(url + "/healthz", timeout=1).status_code == 200, 120)
    ready = _until(lambda: httpx.get(url + "/readyz", timeout=1).status_code == 200, 120)
    ready = None if ready is None or answering is None else time.monotonic() - started
    body = json.dumps(one_message()).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def published() -> bool:
        answer = httpx.post(f"{url}/v1/queues/{queue}/messages", content=body, headers=headers, timeout=5)
        return answer.status_code == 201

    served = None if _until(published, 120) is None else time.monotonic() - started
    ctx.progress(
        f"  scale: restart of mom{index + 1}: answering HTTP after {answering}s, ready after {ready}s, "
        f"served after {served}s"
    )
    return started, ready, served, failover_s, stuck


@dataclass
class Spread:
    """What a `_publish_spread` got: messages taken, the failures by kind (a status code or an httpx error), the
    median time a taken one waited for its answer, and how long it all took."""

    ok: int
    failures: Counter[str]
    median_s: float
    elapsed_s: float
    by_node: dict[int, tuple[int, int, float, float]]
    """Node (1-based) -> (taken, failed, median and longest wait of the taken) of the publishes sent through it."""

    @property
    def errors(self) -> int:
        return sum(self.failures.values())

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed_s

    def describe(self) -> str:
        kinds = "".join(f", {count} {kind}" for kind, count in self.failures.most_common(3))
        nodes = "; ".join(
            f"via mom{node} {ok} ok, {failed} failed, median {median * 1000:.0f} ms, max {longest:.1f} s"
            for node, (ok, failed, median, longest) in sorted(self.by_node.items())
        )
        return f"{self.rate:,.0f} msg/s, median {self.median_s * 1000:.0f} ms ({self.errors} errors{kinds}; {nodes})"


def _dormant(url: str) -> float | None:
    """The node's `mom_raft_groups_dormant` (groups placed there whose storage it has not read since its start)."""
    found = _DORMANT.search(httpx.get(url + "/metrics", timeout=5).text)
    return None if found is None else float(found.group(1))


def _publish_spread(mom: MomDeployment, token: str, queues: list[str], seconds: float) -> Spread:
    """One message per request to random queues of `queues`, through every node, from many threads."""
    body = json.dumps(one_message()).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    deadline = time.monotonic() + seconds
    waits: list[tuple[int, float]] = []
    failures: Counter[str] = Counter()
    failed_via: Counter[int] = Counter()
    lock = threading.Lock()

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[tuple[int, float]] = []
        failed: Counter[str] = Counter()
        via: Counter[int] = Counter()
        with httpx.Client(timeout=30, headers=headers) as http:
            while time.monotonic() < deadline:
                node = rng.randrange(len(mom.urls))
                sent = time.monotonic()
                try:
                    answer = http.post(f"{mom.urls[node]}/v1/queues/{rng.choice(queues)}/messages", content=body)
                except httpx.HTTPError as exc:
                    failed[type(exc).__name__] += 1
                    via[node + 1] += 1
                    continue
                if answer.status_code == 201:
                    mine.append((node + 1, time.monotonic() - sent))
                else:
                    failed[str(answer.status_code)] += 1
                    via[node + 1] += 1
        with lock:
            waits.extend(mine)
            failures.update(failed)
            failed_via.update(via)

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(PUBLISH_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    by_node = {}
    for node in range(1, len(mom.urls) + 1):
        taken = sorted(wait for via, wait in waits if via == node)
        by_node[node] = (
            len(taken),
            failed_via[node],
            taken[len(taken) // 2] if taken else 0.0,
            taken[-1] if taken else 0.0,
        )
    every = sorted(wait for _, wait in waits)
    return Spread(len(every), failures, every[len(every) // 2] if every else 0.0, elapsed, by_node)


def run_scale(ctx: RunContext, topology: Topology, options: ScaleOptions) -> Result:
    count = 20 if ctx.smoke else options.destinations
    window = 2.0 if ctx.smoke else options.idle_window_s
    extra_config = f"[quotas]\ndestinations = {count + 100}\n"
    ctx.progress(f"mom [{topology.label}]: scale with {count} destinations")
    with MomDeployment(topology, ctx.workdir / f"mom-scale-{topology.transport}", extra_config=extra_config) as mom:
        token = mom.token()
        pids = list(mom.sessions)
        empty_rss = [rss_bytes(pid) for pid in pids]
        empty_cpu = idle_cpu_pct(pids, window)
        queues, created, create_s = _create_all(ctx, mom, token, count, options.create_budget_s)
        ctx.progress(f"  scale: {created} destinations in {create_s:.0f}s; idle for {window:g}s")
        time.sleep(min(5.0, window))  # let the last groups settle (hand-overs to preferred leaders)
        cpu = idle_cpu_pct(pids, window)
        rss = [rss_bytes(pid) for pid in pids]
        fds = [open_fds(pid) for pid in pids]
        per_destination = [(after - before) / max(1, created) for after, before in zip(rss, empty_rss, strict=True)]
        ctx.progress(
            "  scale: idle CPU "
            + ", ".join(f"{c:.1f}%" for c in cpu)
            + f" (empty {', '.join(f'{c:.1f}%' for c in empty_cpu)}); RSS "
            + ", ".join(f"{r / 2**20:.0f} MiB" for r in rss)
            + f"; {', '.join(f'{p / 1024:.1f}' for p in per_destination)} KiB per destination; fds {fds}"
        )
        active = queues[:ACTIVE_QUEUES]
        publish_s = 1.0 if ctx.smoke else options.publish_s
        settled = _publish_spread(mom, token, active, publish_s)
        ctx.progress(f"  scale: over {len(active)} queues, settled cluster: {settled.describe()}")
        time.sleep(min(5.0, window))  # the woken groups quiesce again before the kill
        last = queues[-1] if queues else "scale-00000"
        recorders: list[subprocess.Popen[bytes]] = []
        restarted_at, ready_s, served_s, failover_s, stuck = _restart(
            ctx, mom, token, len(pids) - 1, last, options.profile_dir, recorders
        )
        after = _publish_spread(mom, token, active, publish_s)
        ctx.progress(f"  scale: over {len(active)} queues right after the restart: {after.describe()}")
        recovered_s = _until(lambda: _dormant(mom.urls[-1]) == 0, RECOVERY_WAIT_S)
        recovered_s = None if recovered_s is None else time.monotonic() - restarted_at
        ctx.progress(f"  scale: every group of mom{len(pids)} recovered {recovered_s} s after its restart")
        for recorder in recorders:
            recorder.wait(sum(PROFILE_WINDOWS_S) + 30)
        if options.profile_dir is not None:
            for node in mom.nodes:
                shutil.copy(node.log, options.profile_dir)
            ctx.progress(f"  scale: py-spy profiles and node logs in {options.profile_dir}")
    return Result(
        "mom",
        "scale",
        topology.label,
        msgs_per_s=settled.rate,
        requests_per_s=(settled.ok + settled.errors) / settled.elapsed_s,
        errors=settled.errors,
        duration_s=settled.elapsed_s,
        client_procs=1,
        client=f"1 proc x {PUBLISH_THREADS} threads httpx, 1 message per request to random queues of {len(active)}",
        messages=settled.ok,
        notes=(
            f"{created} destinations; idle CPU {', '.join(f'{c:.1f}' for c in cpu)} % of a core per node; "
            f"restart-to-ready {ready_s if ready_s is None else round(ready_s, 2)} s; "
            f"failover {failover_s if failover_s is None else round(failover_s, 2)} s ({stuck} queues stuck); "
            f"{after.rate:.0f} msg/s right after the restart"
        ),
        extra={
            "destinations": created,
            "create_s": round(create_s, 1),
            "idle_cpu_pct": [round(c, 2) for c in cpu],
            "empty_idle_cpu_pct": [round(c, 2) for c in empty_cpu],
            "rss_mib": [round(r / 2**20, 1) for r in rss],
            "rss_kib_per_destination": [round(p / 1024, 2) for p in per_destination],
            "open_fds": fds,
            "restart_to_ready_s": ready_s,
            "restart_to_served_s": served_s,
            "restart_to_all_recovered_s": recovered_s,
            "failover_s": failover_s,
            "failover_stuck_queues": stuck,
            "active_queues": len(active),
            "publish_median_ms": round(settled.median_s * 1000, 1),
            "publish_failures": dict(settled.failures),
            "after_restart_msgs_per_s": round(after.rate, 1),
            "after_restart_median_ms": round(after.median_s * 1000, 1),
            "after_restart_failures": dict(after.failures),
        },
    )
