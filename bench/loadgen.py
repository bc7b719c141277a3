"""HTTP load generators that run in their own processes, so the client is not one GIL-bound core.

Each worker is a plain function of a picklable spec, run in a spawned process (`run_workers`), with many
concurrent connections on one asyncio loop (httpx). It measures its own CPU with `resource.getrusage`, so the
report can show what the client cost beside what the server did.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from bench.latency import Schedule

Outcome = dict[str, Any]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_workers(jobs: Sequence[tuple[Callable[[Any], Outcome], Any]]) -> list[Outcome]:
    """Run every `(worker, spec)` at once, each in its own fresh process, and return their outcomes in order."""
    with ProcessPoolExecutor(max_workers=len(jobs), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(worker, spec) for worker, spec in jobs]
        return [future.result() for future in futures]


def _client(url: str, token: str, connections: int) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    return httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30)


@dataclass(frozen=True)
class PostSpec:
    """POST `body` to `path` as fast as answers come back, from `connections` connections, for `duration_s`."""

    url: str
    token: str
    path: str
    body: bytes
    connections: int
    duration_s: float


def post_closed_loop(spec: PostSpec) -> Outcome:
    return asyncio.run(_post_closed_loop(spec))


async def _post_closed_loop(spec: PostSpec) -> Outcome:
    ok = errors = 0
    latencies: list[float] = []
    cpu0 = cpu_seconds()
    async with _client(spec.url, spec.token, spec.connections) as client:
        start = time.monotonic()
        deadline = start + spec.duration_s

        async def one_connection() -> None:
            nonlocal ok, errors
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    response = await client.post(spec.path, content=spec.body)
                except httpx.HTTPError:
                    errors += 1
                    continue
                if response.is_success:
                    ok += 1
                    latencies.append(time.monotonic() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(one_connection() for _ in range(spec.connections)))
        elapsed = time.monotonic() - start
    return {"ok": ok, "errors": errors, "elapsed": elapsed, "latencies": latencies, "cpu_s": cpu_seconds() - cpu0}


@dataclass(frozen=True)
class ConsumeSpec:
    """Receive and ack from queues or subscriptions (`bases`: their paths, shared round-robin by the connections).

    With `stop_when_empty`, a worker stops at the first empty receive: the queue was preloaded and is drained.
    """

    url: str
    token: str
    bases: tuple[str, ...]
    connections: int
    duration_s: float
    max_messages: int = 10
    wait_s: float = 0.0
    stop_when_empty: bool = False


def consume(spec: ConsumeSpec) -> Outcome:
    return asyncio.run(_consume(spec))


async def _consume(spec: ConsumeSpec) -> Outcome:
    acked = requests = errors = 0
    cpu0 = cpu_seconds()
    ask = json.dumps({"max_messages": spec.max_messages, "wait_s": spec.wait_s}).encode()
    async with _client(spec.url, spec.token, spec.connections) as client:
        start = last = time.monotonic()
        deadline = start + spec.duration_s

        async def one_connection(base: str) -> None:
            nonlocal acked, requests, errors, last
            while time.monotonic() < deadline:
                try:
                    got = await client.post(base + "/receive", content=ask)
                    requests += 1
                    messages = got.json()["messages"] if got.is_success else None
                    if messages is None:
                        errors += 1
                        continue
                    if not messages:
                        if spec.stop_when_empty:
                            return
                        continue
                    receipts = {"receipts": [m["receipt"] for m in messages]}
                    done = await client.post(base + "/ack", content=json.dumps(receipts).encode())
                    requests += 1
                except httpx.HTTPError:
                    errors += 1
                    continue
                if done.is_success:
                    acked += len(messages)
                    last = time.monotonic()
                else:
                    errors += 1

        bases = [spec.bases[i % len(spec.bases)] for i in range(spec.connections)]
        await asyncio.gather(*(one_connection(base) for base in bases))
    elapsed = (last if spec.stop_when_empty else time.monotonic()) - start
    return {
        "ok": acked,
        "requests": requests,
        "errors": errors,
        "elapsed": max(elapsed, 1e-9),
        "cpu_s": cpu_seconds() - cpu0,
    }


@dataclass(frozen=True)
class ScheduleSpec:
    """Publish message i of a fixed schedule at `t0 + i / rate` (monotonic clock, shared by all processes).

    This worker sends the indexes `first, first + stride, ...` below `count`. The intended send time rides in the
    body, so the consumer measures latency from when the message *should* have left: a stalled sender cannot
    hide the stall by sending later (coordinated omission). Nothing is sent after the schedule's deadline, so a
    server that cannot keep up does not stretch the step: what was not sent counts as not received.
    """

    url: str
    token: str
    path: str
    schedule: Schedule
    first: int
    stride: int
    connections: int
    padding: str = field(default="x" * 150)


def publish_on_schedule(spec: ScheduleSpec) -> Outcome:
    return asyncio.run(_publish_on_schedule(spec))


async def _publish_on_schedule(spec: ScheduleSpec) -> Outcome:
    sent = errors = 0
    cpu0 = cpu_seconds()
    async with _client(spec.url, spec.token, spec.connections) as client:
        schedule = await spec.schedule.started()
        late_s = max(0.0, time.monotonic() - schedule.t0)
        indexes = iter(range(spec.first, schedule.count, spec.stride))

        async def one_connection() -> None:
            nonlocal sent, errors
            for i in indexes:
                if time.monotonic() > schedule.deadline:
                    return
                intended = schedule.t0 + i / schedule.rate
                await asyncio.sleep(max(0.0, intended - time.monotonic()))
                body = json.dumps({"body": {"t": intended, "pad": spec.padding}}).encode()
                try:
                    response = await client.post(spec.path, content=body)
                except httpx.HTTPError:
                    errors += 1
                    continue
                if response.is_success:
                    sent += 1
                else:
                    errors += 1

        await asyncio.gather(*(one_connection() for _ in range(spec.connections)))
    return {"ok": sent, "errors": errors, "cpu_s": cpu_seconds() - cpu0, "late_s": late_s}


@dataclass(frozen=True)
class LatencySpec:
    """Long-poll receive and ack until the schedule's messages arrived or its deadline passed."""

    url: str
    token: str
    base: str
    schedule: Schedule
    connections: int = 4


def receive_latencies(spec: LatencySpec) -> Outcome:
    return asyncio.run(_receive_latencies(spec))


async def _receive_latencies(spec: LatencySpec) -> Outcome:
    latencies: list[float] = []
    errors = 0
    cpu0 = cpu_seconds()
    ask = json.dumps({"max_messages": 100, "wait_s": 1}).encode()
    async with _client(spec.url, spec.token, spec.connections) as client:
        schedule = await spec.schedule.started()
        late_s = max(0.0, time.monotonic() - schedule.t0)

        async def one_connection() -> None:
            nonlocal errors
            while len(latencies) < schedule.count and time.monotonic() < schedule.deadline:
                try:
                    got = await client.post(spec.base + "/receive", content=ask)
                    if not got.is_success:
                        errors += 1
                        continue
                    now = time.monotonic()
                    messages = got.json()["messages"]
                    latencies.extend(now - m["body"]["t"] for m in messages)
                    if messages:
                        receipts = {"receipts": [m["receipt"] for m in messages]}
                        await client.post(spec.base + "/ack", content=json.dumps(receipts).encode())
                except httpx.HTTPError:
                    errors += 1

        await asyncio.gather(*(one_connection() for _ in range(spec.connections)))
    return {
        "ok": len(latencies),
        "errors": errors,
        "latencies": latencies,
        "cpu_s": cpu_seconds() - cpu0,
        "late_s": late_s,
    }
