"""`mom bench`: the benchmark harness (the `bench` package, imported only when this command runs)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from mom.cli._app import _fail, main

SCENARIO_NAMES = (
    "publish-1",
    "publish-100",
    "publish-stream",
    "publish-stream-1",
    "receive-ack",
    "consume-stream",
    "fanout-10",
    "latency-rest",
    "latency-stream",
)
"""The harness's scenarios (bench.scenarios.SCENARIOS), listed here so `mom --help` does not import the harness."""
SCALE = "scale"
"""Thousands of idle destinations on a 3-node cluster (run only when named in --scenarios)."""
PEER_NAMES = ("ceiling", "rabbitmq", "nats", "unary-grpc")


def _names(value: str | None, allowed: tuple[str, ...], what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = [n for n in names if n not in allowed]
    if unknown:
        raise click.BadParameter(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return names


@main.command()
@click.option(
    "--scenarios",
    help=f"Comma-separated, default all: {','.join(SCENARIO_NAMES)}. Also '{SCALE}' (only when named): a 3-node "
    "cluster holding --destinations idle queues and topics; reports idle CPU, RSS and fds per node, restart-to-ready "
    "time of a node killed with SIGKILL, and the publish rate spread over 1,000 of the queues.",
)
@click.option(
    "--destinations",
    default=10_000,
    show_default=True,
    type=click.IntRange(2, 100_000),
    help="How many destinations (half queues, half topics) the scale scenario creates.",
)
@click.option(
    "--idle-window",
    default=20.0,
    show_default=True,
    type=click.FloatRange(1, 600),
    help="Seconds over which the scale scenario measures idle CPU.",
)
@click.option(
    "--scale-profile",
    type=click.Path(file_okay=False, path_type=Path),
    help="Record every node of the scale scenario with py-spy for 10 s and 30 s from the restart (raw collapsed "
    "stacks), and keep the node logs, in this directory.",
)
@click.option("--peers", help=f"Comma-separated, default all: {','.join(PEER_NAMES)} ('' for none).")
@click.option("--duration", default=10.0, show_default=True, type=click.FloatRange(0.5, 600), help="Seconds per step.")
@click.option(
    "--nodes",
    default="1,3",
    show_default=True,
    help="Cluster sizes to run, comma-separated: 1 (single node) and/or 3 (mom over gRPC and ZeroMQ, and the peers).",
)
@click.option(
    "--transports",
    default="grpc,zmq",
    show_default=True,
    help="Transports of the 3-node clusters, comma-separated.",
)
@click.option("--smoke", is_flag=True, help="Tiny run (1 s steps, 1 node, no external peers) that checks the harness.")
@click.option("--out", default="bench/out", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--docs",
    default="docs/performance.md",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Report file whose generated section is replaced (not touched with --smoke).",
)
def bench(
    scenarios: str | None,
    destinations: int,
    idle_window: float,
    scale_profile: Path | None,
    peers: str | None,
    duration: float,
    nodes: str,
    transports: str,
    smoke: bool,
    out: Path,
    docs: Path,
) -> None:
    """Measure mom (1 node, 3 nodes over gRPC and ZeroMQ) beside RabbitMQ and NATS (1 node and 3-node clusters).

    Rates, broker CPU per message and latency versus offered load, beside a framework ceiling and a naive
    replication design.

    Starts every system itself on 127.0.0.1, installing missing peers from Debian's packages or PyPI when it can
    (and skipping them with the reason when it cannot). Writes OUT/results.json, OUT/report.md, OUT/plot.png.

    \b
    Examples:
      mom bench --smoke --out /tmp/bench
      mom bench --duration 10 --out bench/out
      mom bench --scenarios publish-1,publish-100 --peers ceiling
      mom bench --scenarios consume-stream --peers rabbitmq --nodes 3 --duration 2
      mom bench --scenarios scale --destinations 2000 --nodes 3 --peers '' --out /tmp/scale
    """
    try:
        from bench import BenchOptions, ScaleOptions, run_bench
    except ImportError as exc:
        _fail(f"the benchmark harness needs the repository checkout and `pip install 'mom[bench]'` ({exc})")
    options = BenchOptions(
        out=out,
        duration_s=1.0 if smoke else duration,
        smoke=smoke,
        docs=None if smoke else docs,
        command=shlex.join(["mom", *sys.argv[1:]]),
        scale=ScaleOptions(
            destinations=destinations, idle_window_s=idle_window, publish_s=duration, profile_dir=scale_profile
        ),
    )
    sizes = tuple(int(n) for n in _names(nodes, ("1", "3"), "cluster size") or ())
    if not sizes:
        raise click.BadParameter("give at least one cluster size", param_hint="--nodes")
    options.peer_nodes = sizes
    wires = _names(transports, ("grpc", "zmq"), "transport") or ()
    options.topologies = tuple(
        t for t in options.topologies if t.nodes in sizes and (t.nodes == 1 or t.transport in wires)
    )
    chosen_scenarios = _names(scenarios, (*SCENARIO_NAMES, SCALE), "scenario")
    chosen_peers = _names(peers, PEER_NAMES, "peer")
    if chosen_scenarios is not None:
        options.scenarios = chosen_scenarios
        if chosen_scenarios == (SCALE,):
            options.docs = None  # the report's section lists the rate scenarios; a scale run alone keeps it
    if chosen_peers is not None:
        options.peers = chosen_peers
    elif smoke:
        options.peers = ("ceiling",)
    run_bench(options)
