"""The timeline of a run: when each fault was on, and when each node failed its clients' requests.

An unavailability window of a node opens with a failed request to it (`history.is_failure`) and closes with the
next request to it that succeeded; the plot draws the faults as bars (by the nodes they hit) above those
windows, per node, so a reader sees what each fault cost and how long recovery took (a thin green line where a
round settled, a dotted black one where it was stuck). matplotlib comes with the
`bench` extra; without it the JSON is still written and the plot is skipped with a note.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from mom.chaos.history import FaultRecord, RequestOutcome, is_failure

PANEL_S = 150.0
"""Seconds of the run per panel of the plot: a long run wraps onto several panels, one above the other."""
FAULT_COLORS = {
    "kill-leader": "#d62728",
    "kill-follower": "#ff7f0e",
    "kill-two": "#8c564b",
    "pause": "#9467bd",
    "partition": "#1f77b4",
    "one-way": "#17becf",
    "slow-disk": "#bcbd22",
    "torn-tail": "#e377c2",
    "bit-flip": "#7f7f7f",
    "wipe": "#2ca02c",
}


def unavailability(requests: list[RequestOutcome]) -> dict[str, list[dict[str, Any]]]:
    """Per node, its windows of failing requests: start, end, failed requests and their outcomes."""
    by_node: dict[str, list[RequestOutcome]] = defaultdict(list)
    for request in requests:
        by_node[request.node].append(request)
    windows: dict[str, list[dict[str, Any]]] = {}
    for node, seen in sorted(by_node.items()):
        seen.sort(key=lambda r: r.at)
        mine: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        for request in seen:
            end = request.at + request.seconds
            if is_failure(request.outcome):
                if current is None:
                    current = {"start": request.at, "end": end, "failed": 0, "outcomes": defaultdict(int)}
                    mine.append(current)
                current["end"] = max(current["end"], end)
                current["failed"] += 1
                current["outcomes"][request.outcome] += 1
            elif current is not None:
                current["end"] = max(current["end"], request.at)
                current = None
        for window in mine:
            window["outcomes"] = dict(window["outcomes"])
            window["start"], window["end"] = round(window["start"], 3), round(window["end"], 3)
        windows[node] = mine
    return windows


def write_plot(
    path: Path, nodes: list[str], faults: list[FaultRecord], windows: dict[str, list[dict[str, Any]]], title: str
) -> str | None:
    """Draw the timeline into `path` (PNG), one panel per `PANEL_S` seconds; the reason it could not, or None."""
    try:
        import matplotlib
    except ImportError:
        return "matplotlib is not installed (pip install 'mom[bench]'): no timeline plot"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    end = max([f.recovered or f.healed or f.started for f in faults] + [1.0])
    for node_windows in windows.values():
        end = max([end] + [w["end"] for w in node_windows])
    panels = max(1, math.ceil(end / PANEL_S))
    figure, axes = plt.subplots(panels, 1, figsize=(16, 0.4 + panels * (0.5 + 0.45 * len(nodes))), squeeze=False)
    for number, axis in enumerate(axes[:, 0]):
        _panel(axis, nodes, faults, windows, number * PANEL_S, (number + 1) * PANEL_S, end)
    axes[0, 0].set_title(title, fontsize=9, loc="right")
    axes[-1, 0].set_xlabel("seconds since the start of the run")
    kinds = sorted({f.kind for f in faults})
    handles = [Patch(color=FAULT_COLORS.get(k, "#333333"), label=k) for k in kinds]
    handles.append(Patch(color="#555555", alpha=0.55, label="requests failing (lower band)"))
    axes[0, 0].legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.05), ncol=6, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return None


def _panel(
    axis: Any,
    nodes: list[str],
    faults: list[FaultRecord],
    windows: dict[str, list[dict[str, Any]]],
    start: float,
    stop: float,
    end: float,
) -> None:
    rows = {node: i for i, node in enumerate(reversed(nodes))}
    for fault in faults:
        healed = fault.healed if fault.healed is not None else end
        if healed < start or fault.started > stop:
            continue
        color = FAULT_COLORS.get(fault.kind, "#333333")
        for node in fault.targets or nodes:
            if node in rows:
                axis.broken_barh([(fault.started, healed - fault.started)], (rows[node] + 0.55, 0.3), color=color)
        if "operator" in fault.details or fault.recovered is None:
            axis.axvline(fault.recovered or healed, color="black", linewidth=1.5, linestyle=":")
        elif fault.recovered is not None:
            axis.axvline(fault.recovered, color="#2ca02c", linewidth=0.6, alpha=0.5)
        if start <= fault.started <= stop:
            axis.text(fault.started, len(nodes) - 0.08, str(fault.round), fontsize=6)
    for node, node_windows in windows.items():
        if node in rows:
            spans = [(w["start"], max(0.05, w["end"] - w["start"])) for w in node_windows if w["end"] >= start]
            axis.broken_barh(spans, (rows[node] + 0.1, 0.35), color="#555555", alpha=0.55)
    axis.set_yticks([i + 0.5 for i in rows.values()], list(rows))
    axis.set_ylim(0, len(nodes))
    axis.set_xlim(start, stop)
