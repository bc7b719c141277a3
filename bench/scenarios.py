"""mom's scenarios, each run against a live deployment (one node, or three over gRPC or ZeroMQ).

Clients talk to the destination's leader (as read from the API once, before the load): forwarding from another
node is a separate cost, and this way the 1-node and 3-node numbers differ only by replication.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.context import RunContext
from bench.loadgen import (
    ConsumeSpec,
    LatencySpec,
    Outcome,
    PostSpec,
    ScheduleSpec,
    consume,
    post_closed_loop,
    publish_on_schedule,
    receive_latencies,
    run_workers,
)
from bench.mom_nodes import MomDeployment
from bench.rate import measure_post, publish_body
from bench.results import Result, latency_ms
from bench.stream import measure_stream

SCENARIOS = (
    "publish-1",
    "publish-100",
    "publish-stream",
    "publish-stream-1",
    "receive-ack",
    "fanout-10",
    "e2e-latency",
)
FANOUT_SUBSCRIPTIONS = 10
SYSTEM = "mom"


def _leader_url(mom: MomDeployment, token: str, kind: str, name: str) -> str:
    """The settled leader's URL: a new group may first elect any node, then hands leadership to its preferred
    replica (listed first) an election timeout later, and a client left on the first one would be forwarded."""
    deadline = time.monotonic() + 20
    while True:
        view = mom.request("GET", f"/v1/{kind}/{name}", token).json()
        leader, replicas = view.get("leader"), view.get("replicas") or []
        if (leader and (not replicas or leader == replicas[0])) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    leader = leader or "mom1"
    index = int(leader.removeprefix("mom")) - 1
    return mom.urls[index] if 0 <= index < len(mom.urls) else mom.urls[0]


def _queue(mom: MomDeployment, token: str, name: str) -> str:
    mom.request("PUT", f"/v1/queues/{name}", token, json={})
    return _leader_url(mom, token, "queues", name)


def publish(batch: int) -> Callable[[RunContext, MomDeployment, str], Result]:
    def scenario(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
        name = f"bench-p{batch}"
        url = _queue(mom, token, name)
        return measure_post(
            ctx,
            system=SYSTEM,
            scenario=f"publish-{batch}",
            topology=mom.topology.label,
            url=url,
            path=f"/v1/queues/{name}/messages",
            token=token,
            batch=batch,
        )

    return scenario


def publish_stream(per_frame: int, scenario: str) -> Callable[[RunContext, MomDeployment, str], Result]:
    def run(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
        name = f"bench-s{per_frame}"
        url = _queue(mom, token, name)
        return measure_stream(ctx, mom, scenario=scenario, url=url, token=token, queue=name, per_frame=per_frame)

    return run


def _preload(url: str, token: str, path: str, messages: int) -> None:
    """Fill a queue with publish-100 requests from a few threads (untimed set-up)."""
    body = publish_body(100)

    def post(_: int) -> None:
        httpx.post(
            url + path,
            content=body,
            timeout=60,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ).raise_for_status()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(post, range(max(1, messages // 100))))


def receive_ack(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
    """Drain a preloaded queue with receive (10 at a time) + ack; the rate is acked messages over drain time."""
    name = "bench-ra"
    url = _queue(mom, token, name)
    preload = 300 if ctx.smoke else int(2000 * ctx.duration_s)
    _preload(url, token, f"/v1/queues/{name}/messages", preload)
    spec = ConsumeSpec(
        url, token, (f"/v1/queues/{name}",), ctx.connections // ctx.processes, ctx.duration_s, stop_when_empty=True
    )
    outcomes = run_workers([(consume, spec)] * ctx.processes)
    elapsed = max(o["elapsed"] for o in outcomes)
    acked = sum(o["ok"] for o in outcomes)
    return Result(
        SYSTEM,
        "receive-ack",
        mom.topology.label,
        msgs_per_s=acked / elapsed,
        requests_per_s=sum(o["requests"] for o in outcomes) / elapsed,
        errors=sum(o["errors"] for o in outcomes),
        duration_s=elapsed,
        client_procs=ctx.processes,
        client_cpu_s=sum(o["cpu_s"] for o in outcomes),
        client=f"{ctx.processes} procs x {spec.connections} conns httpx",
        notes=f"{acked} of {preload} preloaded messages acked, 10 per receive",
    )


def fanout(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
    """One publisher (10 messages per request) and 10 durable subscriptions consumed at the same time."""
    topic = "bench-fan"
    mom.request("PUT", f"/v1/topics/{topic}", token, json={})
    subs = tuple(f"/v1/topics/{topic}/subscriptions/s{i}" for i in range(FANOUT_SUBSCRIPTIONS))
    for path in subs:
        mom.request("PUT", path, token, json={"start": "latest"})
    url = _leader_url(mom, token, "topics", topic)
    publisher = PostSpec(url, token, f"/v1/topics/{topic}/messages", publish_body(10), 8, ctx.duration_s)
    consumer = ConsumeSpec(url, token, subs, 2 * FANOUT_SUBSCRIPTIONS, ctx.duration_s, max_messages=100, wait_s=1)
    pub, sub = run_workers([(post_closed_loop, publisher), (consume, consumer)])
    published = pub["ok"] * 10
    published_rate = published / pub["elapsed"]
    delivered = sub["ok"]
    return Result(
        SYSTEM,
        "fanout-10",
        mom.topology.label,
        msgs_per_s=delivered / sub["elapsed"],
        requests_per_s=(pub["ok"] + sub["requests"]) / sub["elapsed"],
        errors=pub["errors"] + sub["errors"],
        duration_s=sub["elapsed"],
        client_procs=2,
        client_cpu_s=pub["cpu_s"] + sub["cpu_s"],
        client="1 publisher proc x 8 conns + 1 consumer proc x 20 conns httpx",
        notes=f"deliveries/s over {FANOUT_SUBSCRIPTIONS} subscriptions; published {published_rate:,.0f} msg/s",
        extra={"published_msgs_per_s": published_rate},
    )


def e2e_latency(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
    """Publish 1 per request on a fixed schedule at `ctx.e2e_rate`; latency runs from intended send to receipt.

    A message that never arrives counts with the latency it had reached at the deadline (a lower bound), so
    losses and stalls push the percentiles up instead of vanishing from them.
    """
    name = "bench-e2e"
    url = _queue(mom, token, name)
    rate, duration = ctx.e2e_rate, ctx.duration_s
    count = int(rate * duration)
    senders = 1 if ctx.smoke else ctx.processes
    t0 = time.monotonic() + 3.0
    deadline = t0 + duration + 10.0
    path = f"/v1/queues/{name}/messages"
    jobs: list[tuple[Callable[[Any], Outcome], Any]] = [
        (publish_on_schedule, ScheduleSpec(url, token, path, rate, t0, count, p, senders, 64 // senders, deadline))
        for p in range(senders)
    ]
    jobs.append((receive_latencies, LatencySpec(url, token, f"/v1/queues/{name}", count, deadline)))
    began = time.monotonic()
    outcomes = run_workers(jobs)
    wall = time.monotonic() - began
    received: list[float] = outcomes[-1]["latencies"]
    missing = max(0, count - len(received))
    floor = max(0.0, deadline - (t0 + duration))
    p50, p99, p999 = latency_ms(received + [floor] * missing)
    return Result(
        SYSTEM,
        "e2e-latency",
        mom.topology.label,
        msgs_per_s=len(received) / duration,
        requests_per_s=rate,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        errors=sum(o["errors"] for o in outcomes),
        duration_s=wall,
        client_procs=len(jobs),
        client_cpu_s=sum(o["cpu_s"] for o in outcomes),
        client=f"{senders} scheduled sender procs x {64 // senders} conns + 1 consumer proc httpx",
        notes=f"offered {rate:,.0f} msg/s, 1 per request; {len(received)} of {count} received; latency from "
        f"intended send time (coordinated-omission corrected); {duration:g} s schedule in a {wall:.0f} s step",
        extra={"offered_rate": rate, "received": len(received), "expected": count},
    )


RUNNERS: dict[str, Callable[[RunContext, MomDeployment, str], Result]] = {
    "publish-1": publish(1),
    "publish-100": publish(100),
    "publish-stream": publish_stream(10, "publish-stream"),
    "publish-stream-1": publish_stream(1, "publish-stream-1"),
    "receive-ack": receive_ack,
    "fanout-10": fanout,
    "e2e-latency": e2e_latency,
}
