"""Profile one hot path of mom under load with py-spy: which code the node spends its samples in.

    python -m bench.profile rest-publish --nodes 1
    python -m bench.profile stream-publish-1 --nodes 3 --via follower --duration 15 --out /tmp/prof

Starts mom as `mom bench` does (one node, or a 3-node gRPC cluster), drives one path at full speed from spawned
load processes, samples the node(s) with `py-spy record` (pip install py-spy; it needs ptrace, as root here) and
prints, per sampled node, where the samples fall: by package (hypercorn, h11, quart, trio, mom.api, ...), and the
functions with the most own and total samples. The raw collapsed stacks stay in `--out` for flame graphs. With
`--via follower` the clients talk to a node that does not lead the queue, and both that node and the leader are
sampled. This is the A/B tool for hot-path work: run it before and after a change, compare the shares.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import RunContext
from bench.install import which
from bench.latency import Schedule
from bench.loadgen import (
    ConsumeSpec,
    LatencySpec,
    Outcome,
    PostSpec,
    ScheduleSpec,
    consume,
    post_closed_loop,
    publish_on_schedule,
    receive_latencies,
    run_workers,
)
from bench.mom_nodes import MomDeployment, Topology
from bench.rate import publish_body
from bench.results import latency_ms
from bench.scenarios import create_queue, preload_queue
from bench.stream import (
    StreamConsumeSpec,
    StreamScheduleSpec,
    StreamSpec,
    consume_stream,
    publish_frames,
    publish_stream_on_schedule,
)

PATHS = ("rest-publish", "rest-receive-ack", "stream-publish-1", "stream-consume", "latency-rest", "latency-stream")
WARMUP_S = 2.0


def _load(
    ctx: RunContext, path: str, url: str, token: str, queue: str, seconds: float, offered: float
) -> Callable[[], list[Outcome]]:
    """The load of one path for `seconds`, as a callable that runs it (in spawned processes) and waits.

    The latency paths publish 1 message per request or frame at `offered` msg/s while a consumer acks them."""
    base = f"/v1/queues/{queue}"
    if path.startswith("latency"):
        schedule = Schedule.starting_soon(offered, seconds, ctx, parties=2)
        if path == "latency-rest":
            sender: Any = (publish_on_schedule, ScheduleSpec(url, token, base + "/messages", schedule, 0, 1, 64))
            receiver: Any = (receive_latencies, LatencySpec(url, token, base, schedule))
        else:
            sender = (publish_stream_on_schedule, StreamScheduleSpec(url, token, queue, schedule))
            receiver = (consume_stream, StreamConsumeSpec(url, token, queue, schedule.count, 256, 0.0, schedule))
        return lambda: run_workers([sender, receiver])
    if path == "rest-publish":
        spec: Any = PostSpec(url, token, base + "/messages", publish_body(1), 32, seconds)
        return lambda: run_workers([(post_closed_loop, spec)])
    if path == "rest-receive-ack":
        spec = ConsumeSpec(url, token, (base,), 16, seconds, stop_when_empty=True)
        return lambda: run_workers([(consume, spec)])
    if path == "stream-publish-1":
        spec = StreamSpec(url, token, queue, 1, 256, seconds)
        return lambda: run_workers([(publish_frames, spec)])
    spec = StreamConsumeSpec(url, token, queue, 10**9, 256, time.monotonic() + seconds + 5)
    return lambda: run_workers([(consume_stream, spec)])


def _frame_key(frame: str) -> str:
    """`function (path/file.py:123)` without the line: one key per function."""
    name, _, where = frame.partition(" (")
    file = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({_short(file)})"


def _short(file: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/wt/", "/mom/"):
        if marker in file:
            tail = file.split(marker, 1)[1]
            return ("mom/" + tail) if marker == "/mom/" else tail
    return file


def _package(frame: str) -> str:
    file = _short(frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0])
    parts = file.split("/")
    if parts[0] == "mom" and len(parts) > 1:
        return "mom." + parts[1].removesuffix(".py")
    if parts[0].endswith(".py"):
        return "stdlib:" + parts[0].removesuffix(".py")
    return parts[0]


IDLE = ("EpollIOManager.get_events", "WorkerThread._work", "Condition.wait", "Event.wait (threading")
"""Innermost frames of a thread that waits for work (py-spy's own idle detection does not work everywhere)."""
DISK = "SegmentedLog._fsync"


def summarize(raw: Path, top: int = 20) -> str:
    """Where the event loop's busy samples go (by package of the innermost frame, own and total time per
    function), beside the shares of idle waiting, of fsync and of other threads' work."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        innermost = frames[-1]
        loop = any(f.startswith("unrolled_run (") for f in frames)
        if innermost.startswith(IDLE):
            kinds["idle (waiting for events or work)"] += count
            continue
        if innermost.startswith(DISK):
            kinds["fsync (a worker thread waiting on the disk)"] += count
            continue
        if not loop:
            kinds["other threads busy (grpc, zmq, to_thread work)"] += count
            continue
        kinds["event loop busy"] += count
        own[_frame_key(innermost)] += count
        packages[_package(innermost)] += count
        for key in {_frame_key(f) for f in frames}:
            total[key] += count
    samples = sum(kinds.values())
    busy = kinds["event loop busy"]
    if not samples:
        return "(no samples)"
    lines = [f"{samples} samples (all threads):"]
    lines += [f"  {100 * n / samples:5.1f}%  {name}" for name, n in kinds.most_common()]
    if not busy:
        return "\n".join(lines)
    lines += ["", f"event loop busy, {busy} samples, by package (innermost frame):"]
    lines += [f"  {100 * n / busy:5.1f}%  {name}" for name, n in packages.most_common(top)]
    lines += ["", "event loop busy, own time (innermost frame):"]
    lines += [f"  {100 * n / busy:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines += ["", "event loop busy, total time (on the stack; the loop and server frames omitted):"]
    skip = ("unrolled_run", "run (trio", "run_node", "serve (", "Command.", "Group.", "Context.", "_run_", "<module>")
    shown = [(name, n) for name, n in total.most_common() if not name.startswith(skip) and "_Main.invoke" not in name]
    lines += [f"  {100 * n / busy:5.1f}%  {name}" for name, n in shown[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    parser.add_argument("path", choices=PATHS)
    parser.add_argument("--nodes", type=int, choices=(1, 3), default=1)
    parser.add_argument("--via", choices=("leader", "follower"), default="leader")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sampling")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--offered", type=float, default=250.0, help="msg/s of the latency paths")
    parser.add_argument("--out", type=Path, default=Path("bench/out/profile"))
    parser.add_argument("--summarize", type=Path, help="only summarize this raw py-spy file")
    args = parser.parse_args(argv)
    if args.summarize is not None:
        print(summarize(args.summarize))
        return
    spy = which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if spy is None:
        sys.exit("py-spy is not installed: pip install py-spy")
    if args.via == "follower" and args.nodes == 1:
        sys.exit("--via follower needs --nodes 3")
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mom-profile-"))
    ctx = RunContext(workdir=workdir, duration_s=args.duration, smoke=False, wrk=None)
    try:
        with MomDeployment(Topology(args.nodes, "grpc"), workdir / "mom") as mom:
            _profile(ctx, mom, spy, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _profile(ctx: RunContext, mom: MomDeployment, spy: str, args: argparse.Namespace) -> None:
    token = mom.token()
    queue = f"profile-{args.path}"
    at_leader = create_queue(mom, token, queue)
    leader = mom.urls.index(at_leader)
    target = leader if args.via == "leader" else next(i for i in range(len(mom.urls)) if i != leader)
    sampled = sorted({leader, target})
    if args.path in ("rest-receive-ack", "stream-consume"):
        preload_queue(at_leader, token, f"/v1/queues/{queue}/messages", 4000 * int(args.duration + WARMUP_S + 5))
    load = _load(ctx, args.path, mom.urls[target], token, queue, args.duration + WARMUP_S + 1, args.offered)
    outcome: list[Outcome] = []
    runner = threading.Thread(target=lambda: outcome.extend(load()), daemon=True)
    runner.start()
    time.sleep(WARMUP_S)
    spies = []
    for index in sampled:
        raw = args.out / f"{args.path}-{args.nodes}n-{args.via}-mom{index + 1}.txt"
        command = [spy, "record", "--pid", str(mom.sessions[index]), "--duration", str(int(args.duration))]
        command += ["--rate", str(args.rate), "--format", "raw", "--output", str(raw), "--nonblocking"]
        spies.append((index, raw, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
    for _, _, proc in spies:
        proc.wait(timeout=args.duration + 60)
    runner.join(timeout=args.duration + 120)
    moved = sum(o.get("ok", 0) for o in outcome)
    print(f"# {args.path}, {args.nodes} node(s), clients via the {args.via}: {moved:,} operations answered")
    for o in outcome:
        if o.get("latencies"):
            p50, p99, _ = latency_ms(o["latencies"])
            what = (
                f"end to end at {args.offered:g} msg/s offered" if args.path.startswith("latency") else "per operation"
            )
            print(f"# latency {what}: p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    for index, raw, proc in spies:
        role = "leader" if index == leader else "follower"
        print(f"\n## mom{index + 1} ({role}) -- {raw}")
        failed = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        print(summarize(raw) if raw.exists() else f"(py-spy failed: {failed})")


if __name__ == "__main__":
    main()
