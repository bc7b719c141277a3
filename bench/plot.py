"""The PNG: throughput and latency per scenario, mom's topologies beside the peers (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.install import ensure_module
from bench.latency import KNEE_P99_MS
from bench.report import curves, is_curve_point
from bench.results import Result
from bench.targets import curve

COLORS = {"mom": "#1f77b4", "ceiling": "#7f7f7f", "rabbitmq": "#ff7f0e", "nats": "#2ca02c", "unary-grpc": "#d62728"}


def write_plot(results: list[Result], path: Path) -> None:
    available, why = ensure_module("matplotlib", "matplotlib>=3.8")
    if not available:
        raise RuntimeError(f"cannot draw the plot: {why}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in results if not r.skipped and not is_curve_point(r)]
    timed = [r for r in measured if r.p99_ms is not None]
    height = max(5.0, 0.32 * max(len(measured), len(timed)) + 1.5)
    figure, (left, right, load) = plt.subplots(1, 3, figsize=(22, height))
    labels = [f"{r.system} {r.scenario} [{r.topology}]" for r in measured]
    left.barh(labels, [r.msgs_per_s for r in measured], color=[COLORS.get(r.system, "#9467bd") for r in measured])
    left.set_xscale("log")
    left.set_xlabel("messages/s (log scale; more is better)")
    left.set_title("Throughput")
    left.invert_yaxis()
    labels = [f"{r.system} {r.scenario} [{r.topology}]" for r in timed]
    positions = range(len(timed))
    right.barh([p - 0.2 for p in positions], [r.p50_ms or 0.0 for r in timed], height=0.4, label="p50")
    right.barh([p + 0.2 for p in positions], [r.p99_ms or 0.0 for r in timed], height=0.4, label="p99")
    right.set_yticks(list(positions), labels)
    right.set_xscale("log")
    right.set_xlabel("milliseconds (log scale; less is better)")
    right.set_title("Latency (e2e: from intended send)")
    right.invert_yaxis()
    right.legend()
    _curves(load, results)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def _curves(axes: Any, results: list[Result]) -> None:
    """p99 against offered rate, one line per system, path and topology (dashed: 3 nodes)."""
    for system, scenario, topology in curves(results):
        points = curve(results, system, scenario, topology)
        rates = [float(p.extra["offered_rate"]) for p in points]
        style = "--" if topology.startswith("3") else "-"
        label = f"{system} {scenario.removeprefix('latency').strip('-') or ''} [{topology}]".replace("  ", " ")
        color = COLORS.get(system, "#9467bd") if system != "mom" or "rest" in scenario else "#17becf"
        axes.plot(rates, [p.p99_ms or 0.0 for p in points], style, marker="o", color=color, label=label)
    axes.axhline(KNEE_P99_MS, color="#999999", linewidth=0.8)
    axes.set_xscale("log")
    offered = sorted({float(r.extra["offered_rate"]) for r in results if is_curve_point(r) and r.extra})
    axes.set_xticks(offered, [f"{rate:,.0f}" for rate in offered])
    axes.minorticks_off()
    axes.set_yscale("log")
    axes.set_xlabel("offered messages/s (log scale)")
    axes.set_ylabel("p99 end-to-end latency, ms (log scale)")
    axes.set_title(f"Latency versus offered load (line: {KNEE_P99_MS:g} ms knee)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(fontsize="small")
