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
from bench.latency import Schedule, climb, point
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
from bench.results import Result
from bench.stream import (
    StreamConsumeSpec,
    StreamScheduleSpec,
    consume_stream,
    measure_stream,
    publish_stream_on_schedule,
)

SCENARIOS = (
    "publish-1",
    "publish-100",
    "publish-stream",
    "publish-stream-1",
    "receive-ack",
    "consume-stream",
    "fanout-10",
    "latency-rest",
    "latency-stream",
)
STREAM_PREFETCH = 256
"""The stream consumers' window: as many unacked as the publishers keep frames in flight."""
FANOUT_SUBSCRIPTIONS = 10
SYSTEM = "mom"


def leader_url(mom: MomDeployment, token: str, kind: str, name: str) -> str:
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


def create_queue(mom: MomDeployment, token: str, name: str) -> str:
    mom.request("PUT", f"/v1/queues/{name}", token, json={})
    return leader_url(mom, token, "queues", name)


def publish(batch: int) -> Callable[[RunContext, MomDeployment, str], Result]:
    def scenario(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
        name = f"bench-p{batch}"
        url = create_queue(mom, token, name)
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
        url = create_queue(mom, token, name)
        return measure_stream(ctx, mom, scenario=scenario, url=url, token=token, queue=name, per_frame=per_frame)

    return run


def preload_queue(url: str, token: str, path: str, messages: int) -> None:
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
    url = create_queue(mom, token, name)
    preload = 300 if ctx.smoke else int(2000 * ctx.duration_s)
    preload_queue(url, token, f"/v1/queues/{name}/messages", preload)
    spec = ConsumeSpec(
        url, token, (f"/v1/queues/{name}",), ctx.connections // ctx.processes, ctx.duration_s, stop_when_empty=True
    )
    with ctx.server_cpu() as cpu:
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
        messages=acked,
        server_cpu_s=cpu.seconds,
        notes=f"{acked} of {preload} preloaded messages acked, 10 per receive",
    )


def fanout(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
    """One publisher (10 messages per request) and 10 durable subscriptions consumed at the same time."""
    topic = "bench-fan"
    mom.request("PUT", f"/v1/topics/{topic}", token, json={})
    subs = tuple(f"/v1/topics/{topic}/subscriptions/s{i}" for i in range(FANOUT_SUBSCRIPTIONS))
    for path in subs:
        mom.request("PUT", path, token, json={"start": "latest"})
    url = leader_url(mom, token, "topics", topic)
    publisher = PostSpec(url, token, f"/v1/topics/{topic}/messages", publish_body(10), 8, ctx.duration_s)
    consumer = ConsumeSpec(url, token, subs, 2 * FANOUT_SUBSCRIPTIONS, ctx.duration_s, max_messages=100, wait_s=1)
    with ctx.server_cpu() as cpu:
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
        messages=delivered,
        server_cpu_s=cpu.seconds,
        notes=f"deliveries/s over {FANOUT_SUBSCRIPTIONS} subscriptions; published {published_rate:,.0f} msg/s",
        extra={"published_msgs_per_s": published_rate},
    )


def consume_stream_scenario(ctx: RunContext, mom: MomDeployment, token: str) -> Result:
    """Drain a preloaded queue over the stream: one StreamClient, a prefetch window, acks batched in frames."""
    name = "bench-cs"
    url = create_queue(mom, token, name)
    preload = 300 if ctx.smoke else int(2000 * ctx.duration_s)
    preload_queue(url, token, f"/v1/queues/{name}/messages", preload)
    spec = StreamConsumeSpec(url, token, name, preload, STREAM_PREFETCH, time.monotonic() + 60 + 3 * ctx.duration_s)
    with ctx.server_cpu() as cpu:
        (outcome,) = run_workers([(consume_stream, spec)])
    return Result(
        SYSTEM,
        "consume-stream",
        mom.topology.label,
        msgs_per_s=outcome["ok"] / outcome["elapsed"],
        requests_per_s=0.0,
        duration_s=outcome["elapsed"],
        client_procs=1,
        client_cpu_s=outcome["cpu_s"],
        client=f"1 proc x 1 StreamClient (asyncio), prefetch {STREAM_PREFETCH}, acks batched (ack_nowait)",
        messages=outcome["ok"],
        server_cpu_s=cpu.seconds,
        notes=f"{outcome['ok']} of {preload} preloaded messages pushed over /v1/stream and acked",
    )


def latency_rest(ctx: RunContext, mom: MomDeployment, token: str) -> None:
    """The curve over REST: 1 message per request from scheduled senders, a long-polling consumer acking."""
    senders = 1 if ctx.smoke else ctx.processes

    def measure(rate: float) -> Result:
        name = f"bench-lr-{rate:g}"
        url = create_queue(mom, token, name)
        schedule = Schedule.starting_soon(rate, ctx.curve_duration_s, ctx, parties=senders + 1)
        path = f"/v1/queues/{name}/messages"
        connections = 64 // senders
        jobs: list[tuple[Callable[[Any], Outcome], Any]] = [
            (
                publish_on_schedule,
                ScheduleSpec(url, token, path, schedule, p, senders, connections),
            )
            for p in range(senders)
        ]
        jobs.append((receive_latencies, LatencySpec(url, token, f"/v1/queues/{name}", schedule)))
        began = time.monotonic()
        with ctx.server_cpu() as cpu:
            outcomes = run_workers(jobs)
        return point(
            system=SYSTEM,
            scenario="latency-rest",
            topology=mom.topology.label,
            schedule=schedule,
            senders=outcomes[:-1],
            consumer=outcomes[-1],
            wall_s=time.monotonic() - began,
            server_cpu_s=cpu.seconds,
            client=f"{senders} scheduled sender procs x {connections} conns + 1 consumer proc x 4 conns httpx",
            how="over REST, 1 per request; consumer long-polls receive (up to 100) and acks",
        )

    climb(ctx, measure)


def latency_stream(ctx: RunContext, mom: MomDeployment, token: str) -> None:
    """The curve over the stream: a scheduled StreamClient producer (1 per frame), a prefetch consumer acking."""

    def measure(rate: float) -> Result:
        name = f"bench-ls-{rate:g}"
        url = create_queue(mom, token, name)
        schedule = Schedule.starting_soon(rate, ctx.curve_duration_s, ctx)
        consumer = StreamConsumeSpec(url, token, name, schedule.count, STREAM_PREFETCH, schedule.deadline, schedule)
        began = time.monotonic()
        with ctx.server_cpu() as cpu:
            sent, got = run_workers(
                [
                    (publish_stream_on_schedule, StreamScheduleSpec(url, token, name, schedule)),
                    (consume_stream, consumer),
                ]
            )
        return point(
            system=SYSTEM,
            scenario="latency-stream",
            topology=mom.topology.label,
            schedule=schedule,
            senders=[sent],
            consumer=got,
            wall_s=time.monotonic() - began,
            server_cpu_s=cpu.seconds,
            client="1 scheduled StreamClient proc + 1 StreamClient consumer proc",
            how=f"over /v1/stream, 1 per frame; consumer with prefetch {STREAM_PREFETCH}, acks batched",
        )

    climb(ctx, measure)


RUNNERS: dict[str, Callable[[RunContext, MomDeployment, str], Result | None]] = {
    "publish-1": publish(1),
    "publish-100": publish(100),
    "publish-stream": publish_stream(10, "publish-stream"),
    "publish-stream-1": publish_stream(1, "publish-stream-1"),
    "receive-ack": receive_ack,
    "consume-stream": consume_stream_scenario,
    "fanout-10": fanout,
    "latency-rest": latency_rest,
    "latency-stream": latency_stream,
}
