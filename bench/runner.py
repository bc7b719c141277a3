"""One benchmark run: start each system in turn, measure it, stop it, then write the results and the report."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench import report
from bench.context import RunContext
from bench.install import ensure_binary, which
from bench.mom_nodes import MomDeployment, Topology
from bench.plot import write_plot
from bench.results import Result
from bench.scale import ScaleOptions, run_scale
from bench.scenarios import RUNNERS, SCENARIOS
from bench.targets import judge

PEERS = ("ceiling", "rabbitmq", "nats", "unary-grpc")
SMOKE_PEERS = ("ceiling",)
SCALE = "scale"
"""Thousands of idle destinations on a 3-node cluster of its own (bench/scale.py): not in the default run."""
"""The smoke run's only peer: our own process, nothing to install."""


@dataclass
class BenchOptions:
    out: Path
    scenarios: tuple[str, ...] = SCENARIOS
    peers: tuple[str, ...] = PEERS
    duration_s: float = 10.0
    smoke: bool = False
    docs: Path | None = None
    """docs/performance.md to update, or None to leave the docs alone (the smoke test does)."""
    command: str = "mom bench"
    topologies: tuple[Topology, ...] = field(
        default_factory=lambda: (Topology(1), Topology(3, "grpc"), Topology(3, "zmq"))
    )
    peer_nodes: tuple[int, ...] = (1, 3)
    """Sizes RabbitMQ and NATS run at: one node, and a 3-node cluster with 3 replicas of the queue/stream."""
    scale: ScaleOptions = field(default_factory=ScaleOptions)
    """The `scale` scenario's size (it runs only when asked for, on a 3-node cluster of its own)."""


def _peer_runner(name: str, nodes: tuple[int, ...]) -> Callable[[RunContext], None]:
    """Imported on use, so a run without a peer never loads that peer's client library."""
    if name == "ceiling":
        from bench.peers import ceiling

        return ceiling.run
    if name == "rabbitmq":
        from bench.peers import rabbitmq

        return partial(rabbitmq.run, topologies=nodes)
    if name == "nats":
        from bench.peers import nats

        return partial(nats.run, topologies=nodes)
    if name == "unary-grpc":
        from bench.peers import unary_grpc

        return unary_grpc.run
    raise ValueError(f"unknown peer {name!r}: choose from {', '.join(PEERS)}")


def _run_mom(ctx: RunContext, topology: Topology, scenarios: tuple[str, ...]) -> None:
    ctx.progress(f"mom [{topology.label}]: starting")
    with MomDeployment(topology, ctx.workdir / f"mom-{topology.nodes}-{topology.transport}") as mom:
        token = mom.token()
        ctx.servers = mom.sessions
        try:
            for scenario in scenarios:
                ctx.progress(f"mom [{topology.label}]: {scenario} for {ctx.duration_s:g}s")
                try:
                    result = RUNNERS[scenario](ctx, mom, token)
                except Exception as exc:  # one failed scenario must not lose the rest of the run
                    result = Result("mom", scenario, topology.label, skipped=f"failed: {type(exc).__name__}: {exc}")
                if result is not None:  # the curves add their points as they go
                    ctx.add(result)
        finally:
            ctx.servers = []


def run_bench(options: BenchOptions) -> list[Result]:
    """Run everything `options` asks for and write `results.json`, `report.md` and `plot.png` into `options.out`."""
    workdir = Path(tempfile.mkdtemp(prefix="mom-bench-"))
    wrk = which("wrk") if options.smoke else ensure_binary("wrk", "wrk")[0]
    ctx = RunContext(workdir=workdir, duration_s=options.duration_s, smoke=options.smoke, wrk=wrk)
    if options.smoke:
        ctx.processes, ctx.connections, ctx.curve_rates = 1, 4, (50.0,)
    ctx.progress(f"run directory {workdir}; load generator for request rates: {wrk or 'Python (wrk not found)'}")
    try:
        for peer in options.peers:
            if peer == "ceiling":
                _peer_runner(peer, options.peer_nodes)(ctx)
        topologies = options.topologies[:1] if options.smoke else options.topologies
        shared = tuple(s for s in options.scenarios if s != SCALE)
        for topology in topologies:
            if shared:
                _run_mom(ctx, topology, shared)
        if SCALE in options.scenarios:
            for topology in [t for t in options.topologies if t.nodes == 3]:
                try:
                    ctx.add(run_scale(ctx, topology, options.scale))
                except Exception as exc:  # report it beside the other results, as for every scenario
                    ctx.add(Result("mom", SCALE, topology.label, skipped=f"failed: {type(exc).__name__}: {exc}"))
        for peer in options.peers:
            if peer != "ceiling":
                _peer_runner(peer, options.peer_nodes)(ctx)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    _write(ctx, options)
    return ctx.results


def _write(ctx: RunContext, options: BenchOptions) -> None:
    options.out.mkdir(parents=True, exist_ok=True)
    targets = judge(ctx.results)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": options.command,
        "duration_s": options.duration_s,
        "smoke": options.smoke,
        "machine": report.machine(),
        "load_generator": ctx.wrk or "python",
    }
    plot = options.out / "plot.png"
    write_plot(ctx.results, plot)
    report.write_json(options.out / "results.json", ctx.results, targets, meta)
    section = report.markdown(ctx.results, targets, meta, plot.name)
    (options.out / "report.md").write_text(f"# mom benchmark\n\n{section}")
    if options.docs is not None:
        report.update_docs(options.docs, section, plot)
    ctx.progress(f"wrote {options.out / 'results.json'}, report.md and plot.png")
