"""What the RabbitMQ and NATS peers share: many confirmed publishes in flight per process, timed per publish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.context import RunContext
from bench.loadgen import Outcome, cpu_seconds
from bench.results import Result, latency_ms

PUBLISHES_IN_FLIGHT = 64
"""Per load process: a window of unconfirmed publishes, as a throughput-minded client keeps."""


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


def publish_result(ctx: RunContext, system: str, outcomes: list[Outcome], client: str, notes: str) -> Result:
    elapsed = max(o["elapsed"] for o in outcomes)
    ok = sum(o["ok"] for o in outcomes)
    p50, p99, p999 = latency_ms([x for o in outcomes for x in o["latencies"]])
    return Result(
        system,
        "publish-confirmed",
        "1 node",
        msgs_per_s=ok / elapsed,
        requests_per_s=ok / elapsed,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        errors=sum(o["errors"] for o in outcomes),
        duration_s=elapsed,
        client_procs=len(outcomes),
        client_cpu_s=sum(o["cpu_s"] for o in outcomes),
        client=f"{len(outcomes)} procs x {PUBLISHES_IN_FLIGHT} publishes in flight, {client}",
        notes=notes,
    )
