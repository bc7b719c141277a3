"""What a chaos run says: a line per round while it runs, and the summary (results.json and the text)."""

from __future__ import annotations

import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from mom.chaos.checker import Verdict
from mom.chaos.history import FaultRecord
from mom.chaos.workload import Workload


def round_line(number: int, total: int, record: FaultRecord, problem: object | None, workload: Workload) -> str:
    details = record.details
    what = f"{record.kind} {','.join(record.targets) or '-'}"
    if details.get("leader") and details["leader"] in record.targets:
        what += f" (leader of {details['destination']})"
    if "skipped" in details:
        what += " [skipped]"
    if details.get("direction"):
        what += f" [{' '.join(details['lost_from'])} -> {' '.join(details['lost_to'])} lost]"
    outcome = (
        f"recovered in {record.recovered - record.healed:.1f} s"
        if record.recovered is not None and record.healed is not None
        else f"NOT RECOVERED: {problem}"
    )
    if "operator" in details:
        outcome = f"STUCK, {outcome} after restarting {', '.join(details['operator']['restarted']) or 'nothing'}"
    due = sum(len(pids) for pids in workload.acked.values())
    errors = ", ".join(f"{e} x{n}" for e, n in workload.recent_errors.most_common(3)) or "none"
    workload.recent_errors.clear()
    return (
        f"round {number}/{total}: {what}, held {details.get('hold_s')} s, {outcome}; {due} deliveries due, "
        f"{workload.pending()} pending; failed publish calls: {errors}"
    )


def commit() -> str | None:
    """The checkout's commit when the run starts (None outside a git checkout, e.g. from a wheel)."""
    try:
        answer = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).parent,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return answer.stdout.strip() or None


def summary(command: dict[str, Any], *, kinds: list[str], verdict: Verdict, extra: dict[str, Any]) -> dict[str, Any]:
    """results.json: the command, the machine, the faults that ran, the verdict and whatever else the run adds."""
    return {
        "command": command,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "rounds_run": len(kinds),
        "faults_by_kind": dict(Counter(kinds)),
        "verdict": verdict.as_json(),
        **extra,
    }


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The human summary: the main counts, then one line per fault kind."""
    v = summary["verdict"]
    lines = [
        "",
        f"{'PASSED' if v['passed'] else 'FAILED'}: {v['acked']} acknowledged, {v['deliveries']} deliveries, "
        f"lost {v['lost']}, phantom {v['phantom']}, corrupt {v['corrupt']}, stored duplicates {v['duplicates_dedup']} "
        f"(dedup ids) / {v['duplicates_default']} (client defaults, {v['duplicate_messages_default']} extra copies), "
        f"redeliveries {v['redeliveries']}, divergent replicas {v['divergent_replicas']}, "
        f"lagging replicas {v['lagging_replicas']}, "
        f"stuck {'yes: ' + str(v['final_problem'] or 'rounds ' + str(v['rounds_stuck'])) if v['stuck'] else 'no'}",
        f"unknown outcome: {v['unknown']} payloads ({v['unknown_stored']} stored anyway); rounds not recovered in "
        f"time: {v['rounds_not_recovered'] or 'none'}",
        f"{'kind':<14}{'rounds':>7}{'acked':>8}{'lost':>6}{'phantom':>8}{'dup-dd':>7}{'dup-df':>7}"
        f"{'redeliv':>8}{'recov-max':>10}  failed requests",
    ]
    for kind, s in v["by_kind"].items():
        failed = ", ".join(f"{k}:{n}" for k, n in list(s["failed_requests"].items())[:5])
        recovery = "-" if s["recovery_s_max"] is None else f"{s['recovery_s_max']:.1f}"
        lines.append(
            f"{kind:<14}{s['rounds']:>7}{s['acked']:>8}{s['lost']:>6}{s['phantom']:>8}{s['duplicates_dedup']:>7}"
            f"{s['duplicates_default']:>7}{s['redeliveries']:>8}{recovery:>10}  {failed}"
        )
    return lines
