"""The streaming scenarios: one `StreamClient` (one WebSocket, one process) publishing with many frames in flight,
consuming with a prefetch window and batched acks, or producing and consuming on a schedule for latency.

This is the shape the streaming endpoint exists for: a single long-lived producer that would otherwise be held to
one request per round trip. The client runs in its own spawned process, like the other load generators, so its
CPU is measured apart from the harness's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from bench.context import RunContext
from bench.latency import Latencies, Schedule, intended_of, payload, send_on_schedule
from bench.loadgen import Outcome, cpu_seconds, run_workers
from bench.mom_nodes import MomDeployment
from bench.rate import one_message
from bench.results import Result, latency_ms

FRAMES_IN_FLIGHT = 256
"""As many as the server processes at once per connection; more would only wait in its socket buffer."""


@dataclass(frozen=True)
class StreamSpec:
    """Publish `per_frame` messages per frame to `queue` from `in_flight` tasks sharing one socket."""

    url: str
    token: str
    queue: str
    per_frame: int
    in_flight: int
    duration_s: float


def publish_frames(spec: StreamSpec) -> Outcome:
    return asyncio.run(_publish_frames(spec))


async def _publish_frames(spec: StreamSpec) -> Outcome:
    from mom.client.stream import StreamClient
    from mom.errors import MomError, Unavailable

    ok = errors = 0
    latencies: list[float] = []
    messages = [one_message(i) for i in range(spec.per_frame)]
    async with StreamClient(spec.url, token=spec.token) as stream:
        cpu0 = cpu_seconds()
        start = time.monotonic()
        deadline = start + spec.duration_s

        async def one_task() -> None:
            nonlocal ok, errors
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    await stream.publish(messages, queue=spec.queue)
                except MomError as exc:
                    errors += 1
                    if isinstance(exc, Unavailable):  # the socket is gone (or no leader after retries): stop
                        return
                    continue
                ok += 1
                latencies.append(time.monotonic() - sent)

        await asyncio.gather(*(one_task() for _ in range(spec.in_flight)))
        elapsed, cpu_s = time.monotonic() - start, cpu_seconds() - cpu0
    return {"ok": ok, "errors": errors, "elapsed": elapsed, "latencies": latencies, "cpu_s": cpu_s}


def measure_stream(
    ctx: RunContext, mom: MomDeployment, *, scenario: str, url: str, token: str, queue: str, per_frame: int
) -> Result:
    """Frames answered (durable on a majority) over the run's duration; msgs/s counts the messages they carried."""
    spec = StreamSpec(url, token, queue, per_frame, FRAMES_IN_FLIGHT, ctx.duration_s)
    with ctx.server_cpu() as cpu:
        (outcome,) = run_workers([(publish_frames, spec)])
    elapsed = outcome["elapsed"]
    p50, p99, p999 = latency_ms(outcome["latencies"])
    return Result(
        "mom",
        scenario,
        mom.topology.label,
        msgs_per_s=outcome["ok"] * per_frame / elapsed,
        requests_per_s=outcome["ok"] / elapsed,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        errors=outcome["errors"],
        duration_s=elapsed,
        client_procs=1,
        client_cpu_s=outcome["cpu_s"],
        client=f"1 proc x 1 StreamClient (asyncio), {FRAMES_IN_FLIGHT} frames in flight",
        messages=outcome["ok"] * per_frame,
        server_cpu_s=cpu.seconds,
        notes=f"WebSocket /v1/stream to the leader, {per_frame} message{'s' if per_frame > 1 else ''} per frame; "
        "requests/s = frames/s, latency per frame",
    )


# ---------------------------------------------------------------------------------------------------------
# Consuming over the stream, and stream producers on a schedule


@dataclass(frozen=True)
class StreamConsumeSpec:
    """Consume `count` messages from `queue` with a prefetch window, acking in batches (`ack_nowait`)."""

    url: str
    token: str
    queue: str
    count: int
    prefetch: int
    deadline: float
    """Monotonic time after which the consumer stops, whatever it got (a latency point's schedule overrides it)."""
    schedule: Schedule | None = None
    """Set for a latency point: the body carries its intended send time."""


def consume_stream(spec: StreamConsumeSpec) -> Outcome:
    return asyncio.run(_consume_stream(spec))


async def _consume_stream(spec: StreamConsumeSpec) -> Outcome:
    import anyio

    from mom.client.stream import StreamClient

    got = 0
    latencies = Latencies(spec.schedule) if spec.schedule is not None else None
    cpu0 = cpu_seconds()
    async with StreamClient(spec.url, token=spec.token) as stream:
        start = time.monotonic()
        async with stream.subscribe(queue=spec.queue, prefetch=spec.prefetch) as sub:
            deadline = (await latencies.ready()).deadline if latencies is not None else spec.deadline
            with anyio.move_on_after(max(0.1, deadline - time.monotonic())):
                async for message in sub:
                    if latencies is not None:
                        latencies.record(intended_of(message["body"]))
                    sub.ack_nowait(message["receipt"])
                    got += 1
                    if got >= spec.count:
                        break
        elapsed = time.monotonic() - start  # the queued acks were answered when the subscription closed
    if latencies is not None:
        return latencies.outcome()
    return {"ok": got, "errors": 0, "elapsed": elapsed, "cpu_s": cpu_seconds() - cpu0}


@dataclass(frozen=True)
class StreamScheduleSpec:
    url: str
    token: str
    queue: str
    schedule: Schedule


def publish_stream_on_schedule(spec: StreamScheduleSpec) -> Outcome:
    return asyncio.run(_publish_stream_on_schedule(spec))


async def _publish_stream_on_schedule(spec: StreamScheduleSpec) -> Outcome:
    from mom.client.stream import StreamClient

    async with StreamClient(spec.url, token=spec.token) as stream:

        async def send(intended: float) -> None:
            await stream.publish([{"body": payload(intended)}], queue=spec.queue)

        return await send_on_schedule(send, spec.schedule)
