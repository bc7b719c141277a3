"""What the peers share: confirmed publishes with many in flight from one process, timed per publish, and the
result rows of their publish and consume steps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.loadgen import Outcome, cpu_seconds
from bench.results import Result, latency_ms

PUBLISHES_IN_FLIGHT = 256
"""Per load process: a window of unconfirmed publishes, as a throughput-minded client keeps; the same as the
frames mom's one streaming client keeps in flight, so "one client" means the same shape on both sides."""


async def confirmed_publishes(publish: Callable[[], Awaitable[None]], duration_s: float) -> Outcome:
    """Call `publish` (which returns once the broker confirmed) from many tasks until the time is up."""
    ok = errors = 0
    latencies: list[float] = []
    cpu0 = cpu_seconds()
    start = time.monotonic()
    deadline = start + duration_s

    async def one_task() -> None:
        nonlocal ok, errors
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                await publish()
            except Exception:  # a failed publish is counted, not fatal to the measurement
                errors += 1
                continue
            ok += 1
            latencies.append(time.monotonic() - sent)

    await asyncio.gather(*(one_task() for _ in range(PUBLISHES_IN_FLIGHT)))
    return {
        "ok": ok,
        "errors": errors,
        "elapsed": time.monotonic() - start,
        "latencies": latencies,
        "cpu_s": cpu_seconds() - cpu0,
    }


def publish_result(
    system: str, topology: str, outcomes: list[Outcome], client: str, notes: str, server_cpu_s: float | None
) -> Result:
    elapsed = max(o["elapsed"] for o in outcomes)
    ok = sum(o["ok"] for o in outcomes)
    p50, p99, p999 = latency_ms([x for o in outcomes for x in o["latencies"]])
    return Result(
        system,
        "publish-confirmed",
        topology,
        msgs_per_s=ok / elapsed,
        requests_per_s=ok / elapsed,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        errors=sum(o["errors"] for o in outcomes),
        duration_s=elapsed,
        client_procs=len(outcomes),
        client_cpu_s=sum(o["cpu_s"] for o in outcomes),
        client=f"{len(outcomes)} proc{'s' if len(outcomes) > 1 else ''} x {PUBLISHES_IN_FLIGHT} publishes in flight, "
        f"{client}",
        messages=ok,
        server_cpu_s=server_cpu_s,
        notes=notes,
    )


def consume_result(
    system: str, topology: str, outcome: Outcome, preloaded: int, client: str, server_cpu_s: float | None
) -> Result:
    """Draining a preloaded queue (or stream) with acks: acked messages over the time to drain."""
    return Result(
        system,
        "consume-ack",
        topology,
        msgs_per_s=outcome["ok"] / max(outcome["elapsed"], 1e-9),
        duration_s=outcome["elapsed"],
        errors=outcome["errors"],
        client_procs=1,
        client_cpu_s=outcome["cpu_s"],
        client=f"1 proc, {client}",
        messages=outcome["ok"],
        server_cpu_s=server_cpu_s,
        notes=f"{outcome['ok']} of {preloaded} preloaded messages consumed and acked",
    )
