"""What one measurement is: a `Result` row, and the percentile arithmetic shared by every load generator."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Result:
    """One system, one scenario, one topology. `skipped` holds the reason when it could not run."""

    system: str
    scenario: str
    topology: str
    msgs_per_s: float = 0.0
    requests_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    errors: int = 0
    duration_s: float = 0.0
    client_procs: int = 0
    client_cpu_s: float = 0.0
    """User + system CPU seconds of the load generator processes: on a shared machine it is CPU the server lacked."""
    client: str = ""
    messages: int = 0
    """Messages the step moved (published, or consumed and acked, or delivered end to end)."""
    server_cpu_s: float | None = None
    """User + system CPU seconds of all the broker's processes (all nodes) during the step, from /proc."""
    notes: str = ""
    skipped: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def client_cpu_pct(self) -> float:
        """Cores' worth of CPU the client used, in percent of one core."""
        return 100.0 * self.client_cpu_s / self.duration_s if self.duration_s else 0.0

    @property
    def server_us_per_msg(self) -> float | None:
        """Microseconds of broker CPU (all nodes summed) per message moved."""
        if self.server_cpu_s is None or self.messages <= 0:
            return None
        return 1e6 * self.server_cpu_s / self.messages

    def as_json(self) -> dict[str, Any]:
        per_msg = self.server_us_per_msg
        return {
            **asdict(self),
            "client_cpu_pct": round(self.client_cpu_pct, 1),
            "server_us_per_msg": None if per_msg is None else round(per_msg, 1),
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0..100): exact, no histogram buckets."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100.0 * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_ms(samples_s: Sequence[float]) -> tuple[float, float, float]:
    """(p50, p99, p99.9) in milliseconds of latencies given in seconds."""
    ordered = sorted(samples_s)
    return tuple(round(percentile(ordered, q) * 1000.0, 3) for q in (50.0, 99.0, 99.9))  # type: ignore[return-value]
