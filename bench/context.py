"""What every step of a run shares: where to write, how long to measure, the load shape, and the progress line."""

from __future__ import annotations

import sys
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import CpuSample, measured
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
    curve_rates: tuple[float, ...] = (250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0)
    """Offered rates of the latency-versus-load curve, climbed until a system falls behind."""
    servers: list[int] = field(default_factory=list)
    """Session ids of the broker under test (its nodes' pids): whose CPU a step's rows report."""
    started: float = field(default_factory=time.monotonic)
    results: list[Result] = field(default_factory=list)

    @property
    def curve_duration_s(self) -> float:
        """The schedule of one point of the latency curve: half a step, at least 2 s (1 s in smoke runs)."""
        return self.duration_s if self.smoke else max(2.0, self.duration_s / 2)

    def server_cpu(self) -> AbstractContextManager[CpuSample]:
        """Measures the CPU of the broker under test inside a `with` block."""
        return measured(self.servers)

    def progress(self, what: str) -> None:
        """One line per step, with the time since the run began, so a long run shows where it is."""
        print(f"[{time.monotonic() - self.started:7.1f}s] {what}", file=sys.stderr, flush=True)

    def add(self, result: Result) -> Result:
        self.results.append(result)
        if result.skipped:
            self.progress(f"  skipped {result.system} {result.scenario}: {result.skipped}")
        else:
            latency = f", p99 {result.p99_ms:.1f} ms" if result.p99_ms is not None else ""
            per_msg = result.server_us_per_msg
            server = f", server {per_msg:,.0f} us/msg" if per_msg is not None else ""
            offered = result.extra.get("offered_rate")
            at = f" @ {offered:,.0f}/s offered" if offered and result.scenario.startswith("latency") else ""
            self.progress(
                f"  {result.system} {result.scenario}{at} [{result.topology}]: {result.msgs_per_s:,.0f} msg/s"
                f"{latency}{server}, client CPU {result.client_cpu_pct:.0f}%"
            )
        return result
