"""What every step of a run shares: where to write, how long to measure, the load shape, and the progress line."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.results import Result


@dataclass
class RunContext:
    workdir: Path
    """Temporary home of every process the run starts (data dirs, logs, configs)."""
    duration_s: float
    smoke: bool
    wrk: str | None
    """Path of wrk, or None to drive the request-rate scenarios with the Python load generator instead."""
    processes: int = 2
    connections: int = 32
    e2e_rate: float = 1000.0
    started: float = field(default_factory=time.monotonic)
    results: list[Result] = field(default_factory=list)

    def progress(self, what: str) -> None:
        """One line per step, with the time since the run began, so a long run shows where it is."""
        print(f"[{time.monotonic() - self.started:7.1f}s] {what}", file=sys.stderr, flush=True)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        if result.skipped:
            self.progress(f"  skipped {result.system} {result.scenario}: {result.skipped}")
        else:
            latency = f", p99 {result.p99_ms:.1f} ms" if result.p99_ms is not None else ""
            self.progress(
                f"  {result.system} {result.scenario} [{result.topology}]: {result.msgs_per_s:,.0f} msg/s"
                f"{latency}, client CPU {result.client_cpu_pct:.0f}%"
            )
        return result
