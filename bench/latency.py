"""End-to-end latency at an offered rate, and the curve of it as the rate climbs, for mom and the peers alike.

A point of the curve: messages leave on a fixed schedule (message i at `t0 + i / rate`, each in a task of its
own, so a slow answer does not hold the next message back), carrying their intended send time; a consumer
process records, for each delivery, now minus that time (the monotonic clock is shared by the processes on one
machine). Measuring from the intended time corrects coordinated omission: a stalled sender cannot hide the
stall. A message that never arrives counts with the latency it had at the deadline, so losses push the
percentiles up instead of vanishing. The curve climbs `RunContext.curve_rates` until a system falls behind (less
than 99 % delivered, or p99 over a second); its knee is the highest rate with p99 under 50 ms, all delivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from bench.barrier import Barrier
from bench.context import RunContext
from bench.loadgen import Outcome, cpu_seconds
from bench.results import Result, latency_ms

PAD = "x" * 150
"""About 200 bytes of JSON per message with the timestamp, as in the throughput scenarios."""
MAX_IN_FLIGHT = 4096
"""Sends awaiting their answer at once per sender process; beyond it the schedule waits (and latency shows it)."""
KNEE_P99_MS = 50.0
BEHIND_P99_MS = 1000.0
LEAD_S = 3.0
"""Without a barrier: from spawning the workers to the first scheduled send."""
SLACK_S = 10.0
"""After the last scheduled send, how long the consumer waits for stragglers."""


@dataclass(frozen=True)
class Schedule:
    rate: float
    t0: float
    count: int
    deadline: float
    """Monotonic time after which nothing is sent and the consumer stops."""
    barrier: Barrier | None = None
    """When set, `t0` and `deadline` are placeholders: the processes agree on them once all are ready."""

    @classmethod
    def starting_soon(cls, rate: float, duration_s: float, ctx: RunContext | None = None, parties: int = 2) -> Schedule:
        """A schedule of `duration_s` at `rate`; with `ctx`, its `parties` processes start it together."""
        t0 = time.monotonic() + LEAD_S
        barrier = None
        if ctx is not None:
            barrier = Barrier(str(ctx.workdir / "barriers" / uuid.uuid4().hex), parties)
        return cls(rate, t0, max(1, int(rate * duration_s)), t0 + duration_s + SLACK_S, barrier)

    async def started(self) -> Schedule:
        """This schedule with the start agreed by all its processes (call once connected and ready)."""
        if self.barrier is None:
            return self
        t0 = await self.barrier.meet()
        return replace(self, t0=t0, deadline=t0 + self.duration_s + SLACK_S, barrier=None)

    @property
    def duration_s(self) -> float:
        return self.count / self.rate


def payload(intended: float) -> dict[str, object]:
    return {"t": intended, "pad": PAD}


def payload_bytes(intended: float) -> bytes:
    return json.dumps(payload(intended)).encode()


def intended_of(body: bytes | str | dict[str, object]) -> float:
    data = body if isinstance(body, dict) else json.loads(body)
    return float(data["t"])  # type: ignore[arg-type]


async def send_on_schedule(send: Callable[[float], Awaitable[None]], schedule: Schedule) -> Outcome:
    """Call `send(intended)` for every message of the schedule, open loop; counts answered and failed sends."""
    ok = errors = 0
    cpu0 = cpu_seconds()
    schedule = await schedule.started()
    late_s = max(0.0, time.monotonic() - schedule.t0)
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)
    running: set[asyncio.Task[None]] = set()

    async def one(intended: float) -> None:
        nonlocal ok, errors
        try:
            await send(intended)
            ok += 1
        except Exception:  # a failed send is counted; the message then counts as never delivered
            errors += 1
        finally:
            slots.release()

    for i in range(schedule.count):
        intended = schedule.t0 + i / schedule.rate
        now = time.monotonic()
        if now > schedule.deadline:
            break
        if intended > now:
            await asyncio.sleep(intended - now)
        await slots.acquire()
        task = asyncio.create_task(one(intended))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.wait(running, timeout=max(0.1, schedule.deadline - time.monotonic()))
    return {"ok": ok, "errors": errors, "cpu_s": cpu_seconds() - cpu0, "late_s": late_s}


class Latencies:
    """What a consumer records: one latency per delivery, until all arrived or the deadline passed.

    Create it before connecting, and call `ready()` once subscribed: it agrees on the start with the senders.
    """

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.samples: list[float] = []
        self.all_in = asyncio.Event()
        self.cpu0 = cpu_seconds()
        self.late_s = 0.0
        """How long after the first scheduled send this consumer was ready (0 when it was in time)."""

    async def ready(self) -> Schedule:
        self.schedule = await self.schedule.started()
        self.late_s = max(0.0, time.monotonic() - self.schedule.t0)
        return self.schedule

    def record(self, intended: float) -> None:
        self.samples.append(time.monotonic() - intended)
        if len(self.samples) >= self.schedule.count:
            self.all_in.set()

    async def wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.all_in.wait(), timeout=max(0.1, self.schedule.deadline - time.monotonic()))

    def outcome(self, errors: int = 0) -> Outcome:
        return {
            "ok": len(self.samples),
            "errors": errors,
            "latencies": self.samples,
            "cpu_s": cpu_seconds() - self.cpu0,
        }


def point(
    *,
    system: str,
    scenario: str,
    topology: str,
    schedule: Schedule,
    senders: list[Outcome],
    consumer: Outcome,
    wall_s: float,
    server_cpu_s: float | None,
    client: str,
    how: str,
) -> Result:
    """One point of a curve as a result row (`extra`: offered rate, received and expected counts)."""
    received: list[float] = consumer["latencies"]
    missing = max(0, schedule.count - len(received))
    floor = max(0.0, schedule.deadline - (schedule.t0 + schedule.duration_s))
    p50, p99, p999 = latency_ms(received + [floor] * missing)
    late = max(o.get("late_s", 0.0) for o in [*senders, consumer])
    warning = f"; WARNING: a client was ready {late:.1f} s after the schedule began (machine busy)" if late else ""
    return Result(
        system,
        scenario,
        topology,
        msgs_per_s=len(received) / schedule.duration_s,
        requests_per_s=schedule.rate,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        errors=sum(o["errors"] for o in senders) + consumer["errors"],
        duration_s=wall_s,
        client_procs=len(senders) + 1,
        client_cpu_s=sum(o["cpu_s"] for o in senders) + consumer["cpu_s"],
        client=client,
        messages=len(received),
        server_cpu_s=server_cpu_s,
        notes=f"offered {schedule.rate:,.0f} msg/s {how}; {len(received)} of {schedule.count} received; latency from "
        f"intended send time (coordinated-omission corrected); server CPU covers publish, delivery and ack{warning}",
        extra={"offered_rate": schedule.rate, "received": len(received), "expected": schedule.count, "late_s": late},
    )


def complete(result: Result) -> bool:
    return bool(result.extra.get("received") == result.extra.get("expected"))


def behind(result: Result) -> bool:
    """The system no longer keeps up: climbing further only measures its backlog."""
    received = result.extra.get("received", 0)
    expected = result.extra.get("expected", 1) or 1
    return bool(result.skipped or received < 0.99 * expected or (result.p99_ms or 0.0) > BEHIND_P99_MS)


def climb(ctx: RunContext, measure: Callable[[float], Result]) -> list[Result]:
    """Measure at each of the run's curve rates, upwards, until the system falls behind."""
    points = []
    for rate in ctx.curve_rates:
        result = ctx.add(measure(rate))
        points.append(result)
        if behind(result):
            break
    return points


def knee(points: list[Result]) -> float | None:
    """The highest offered rate at which p99 stayed under 50 ms with every message delivered."""
    good = [
        float(r.extra["offered_rate"])
        for r in points
        if not r.skipped and complete(r) and r.p99_ms is not None and r.p99_ms < KNEE_P99_MS
    ]
    return max(good) if good else None
