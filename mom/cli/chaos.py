"""`mom chaos`: the nemesis suite's long run, against a cluster it starts itself on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mom.cli._app import main

FAULT_KINDS = (
    "kill-leader",
    "kill-follower",
    "kill-two",
    "pause",
    "partition",
    "one-way",
    "slow-disk",
    "torn-tail",
    "bit-flip",
    "wipe",
)
"""mom.chaos.KINDS, listed here so that `mom --help` does not import the engine."""


def _kinds(value: str | None) -> tuple[str, ...]:
    if value is None:
        return FAULT_KINDS
    kinds = tuple(dict.fromkeys(k.strip() for k in value.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise click.BadParameter(
            f"unknown fault kinds {', '.join(unknown) or '(none)'}; choose from {','.join(FAULT_KINDS)}"
        )
    return kinds


@main.command()
@click.option("--rounds", default=20, show_default=True, type=click.IntRange(1, 10_000), help="Fault rounds to run.")
@click.option(
    "--transport",
    type=click.Choice(["grpc", "zmq"]),
    default="grpc",
    show_default=True,
    help="Node-to-node transport of the cluster under test.",
)
@click.option("--nodes", default=3, show_default=True, type=click.Choice(["3", "5"]), help="Cluster size.")
@click.option("--seed", type=int, help="Seed of the fault plan and the workload (default: random, printed).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder: results.json, timeline.png, the history, node logs and data (default var/chaos/TIME).",
)
@click.option(
    "--faults",
    help=f"Comma-separated fault kinds to draw from (default all): {','.join(FAULT_KINDS)}.",
)
@click.option(
    "--hold",
    default="2,5",
    show_default=True,
    help="MIN,MAX seconds a fault lasts (a seeded value in between; a slow disk lasts twice that).",
)
@click.option(
    "--recovery-timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(1, 600),
    help="Seconds the cluster gets to settle after each heal before the round counts as not recovered.",
)
@click.option(
    "--stuck-timeout",
    default=180.0,
    show_default=True,
    type=click.FloatRange(1, 3600),
    help="Seconds after a heal by which the cluster must have settled, else the round is stuck and leaders restarted.",
)
@click.option(
    "--producers", default=3, show_default=True, type=click.IntRange(1, 64), help="Concurrent producer tasks."
)
@click.option("--no-plot", is_flag=True, help="Skip the timeline plot (it needs matplotlib, from mom[bench]).")
def chaos(
    rounds: int,
    transport: str,
    nodes: str,
    seed: int | None,
    out: Path | None,
    faults: str | None,
    hold: str,
    recovery_timeout: float,
    stuck_timeout: float,
    producers: int,
    no_plot: bool,
) -> None:
    """Run real nodes through rounds of faults under load and check that nothing acknowledged is lost.

    Starts NODES `mom serve` processes on 127.0.0.1 with a fault-injecting proxy between them, publishes and
    consumes (REST, SSE, streaming) throughout, and each round injects one seeded fault: kill -9 (leader,
    follower, two nodes), SIGSTOP, partitions and one-way loss, slow disk, a torn tail or flipped bit in a
    stopped node's newest segment, a wiped data directory. Ctrl-C (or SIGTERM) ends the rounds early and still
    heals, drains and checks. Prints a line per round and the summary; exits 1 if anything acknowledged was
    lost, a phantom or corrupt message was delivered, a publish was stored twice (with the producer's dedup
    ids or the client's own), replicas of the topic diverge or lag, or a round was stuck (it settled only after
    the leaders that did not move were restarted, as an operator would, or not at all). docs/reliability.md
    explains the checks.

    \b
    Examples:
      mom chaos --rounds 50 --transport zmq
      mom chaos --rounds 10 --nodes 5 --seed 7 --faults kill-leader,partition
    """
    from mom.chaos import ChaosOptions, WorkloadSettings, run_chaos

    try:
        low, high = (float(x) for x in hold.split(","))
    except ValueError:
        raise click.BadParameter("give --hold as MIN,MAX seconds, e.g. 2,5", param_hint="--hold") from None
    if not 0 < low <= high <= 600:
        raise click.BadParameter("--hold needs 0 < MIN <= MAX <= 600", param_hint="--hold")
    options = ChaosOptions(
        out=out or Path("var/chaos") / time.strftime("%Y%m%d-%H%M%S"),
        rounds=rounds,
        transport=transport,
        nodes=int(nodes),
        seed=seed,
        faults=_kinds(faults),
        hold_s=(low, high),
        recovery_timeout_s=recovery_timeout,
        stuck_timeout_s=max(stuck_timeout, recovery_timeout),
        final_timeout_s=max(60.0, stuck_timeout),
        workload=WorkloadSettings(producers=producers),
        plot=not no_plot,
        handle_signals=True,
    )
    import trio

    result = trio.run(run_chaos, options)
    click.echo(f"results: {result.results_path}")
    if not result.passed:
        raise click.exceptions.Exit(1)
