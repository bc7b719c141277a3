"""The PNG: throughput and latency per scenario, mom's topologies beside the peers (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

from bench.install import ensure_module
from bench.results import Result

COLORS = {"mom": "#1f77b4", "ceiling": "#7f7f7f", "rabbitmq": "#ff7f0e", "nats": "#2ca02c", "unary-grpc": "#d62728"}


def write_plot(results: list[Result], path: Path) -> None:
    available, why = ensure_module("matplotlib", "matplotlib>=3.8")
    if not available:
        raise RuntimeError(f"cannot draw the plot: {why}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [r for r in results if not r.skipped]
    timed = [r for r in measured if r.p99_ms is not None]
    height = max(4.0, 0.32 * max(len(measured), len(timed)) + 1.5)
    figure, (left, right) = plt.subplots(1, 2, figsize=(15, height))
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
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
