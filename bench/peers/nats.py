"""NATS JetStream, as one server and as a 3-node cluster: a file-backed stream (R1, or R3 on the cluster), every
publish waiting for its JetStream ack, pull consumers with explicit acks, and end-to-end latency at the offered
rates mom gets (nats-py).

Each server runs from the harness's temp dir with its own store directory, on 127.0.0.1 and free ports; the
cluster's servers know each other by their cluster routes on loopback. Clients connect to server 1; JetStream
routes publishes and pulls to the stream's leader inside the cluster. NATS syncs its store on an interval, not
per ack, which flatters it against brokers that fsync before they confirm.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.context import RunContext
from bench.install import ensure_binary, ensure_module
from bench.latency import Latencies, Schedule, climb, intended_of, payload_bytes, point, send_on_schedule
from bench.loadgen import Outcome, cpu_seconds, run_workers
from bench.peers._publish import confirmed_publishes, consume_result, publish_result
from bench.procs import Managed, free_port, port_open
from bench.rate import publish_body
from bench.results import Result

FETCH = 256
"""Messages per pull request, and the consumer's most unacked: the same window as mom's stream consumers."""


@dataclass
class NatsCluster:
    """`nodes` nats-server processes with JetStream under `home`; `ports` are their client ports."""

    binary: str
    home: Path
    nodes: int
    ports: list[int] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def label(self) -> str:
        return "1 node" if self.nodes == 1 else f"{self.nodes} nodes"

    def __enter__(self) -> NatsCluster:
        routes = [free_port() for _ in range(self.nodes)]
        servers = []
        try:
            for i in range(self.nodes):
                port = free_port()
                store = self.home / f"node{i + 1}"
                store.mkdir(parents=True, exist_ok=True)
                command = [self.binary, "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)]
                command += ["-n", f"bench{i + 1}"]
                if self.nodes > 1:
                    others = ",".join(f"nats://127.0.0.1:{r}" for j, r in enumerate(routes) if j != i)
                    command += ["--cluster_name", "bench", "--cluster", f"nats://127.0.0.1:{routes[i]}"]
                    command += ["--routes", others]
                server = self._stack.enter_context(Managed(f"nats{i + 1}", command, store / "server.log"))
                assert server.proc is not None
                servers.append(server)
                self.ports.append(port)
                self.sessions.append(server.proc.pid)
            for server, port in zip(servers, self.ports, strict=True):
                server.wait_until(lambda port=port: port_open(port))  # type: ignore[misc]
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()


async def _declare(port: int, replicas: int, stream: str, subject: str) -> None:
    """Add the stream, retrying while a new cluster's JetStream meta leader is still being elected."""
    import nats
    from nats.js.api import StorageType, StreamConfig

    client = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        config = StreamConfig(name=stream, subjects=[subject], storage=StorageType.FILE, num_replicas=replicas)
        deadline = time.monotonic() + 60
        while True:
            try:
                await client.jetstream().add_stream(config)
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await client.close()


@dataclass(frozen=True)
class NatsSpec:
    port: int
    subject: str
    stream: str
    duration_s: float = 0.0
    count: int = 0
    schedule: Schedule | None = None


def _publisher(spec: NatsSpec) -> Outcome:
    return asyncio.run(_publish(spec))


async def _publish(spec: NatsSpec) -> Outcome:
    import nats

    client = await nats.connect(f"nats://127.0.0.1:{spec.port}")
    try:
        js = client.jetstream()

        async def send(body: bytes) -> None:
            await js.publish(spec.subject, body)

        if spec.schedule is not None:
            return await send_on_schedule(lambda intended: send(payload_bytes(intended)), spec.schedule)
        body = publish_body(1)
        if spec.count:  # preload, untimed
            for start in range(0, spec.count, 1000):
                await asyncio.gather(*(send(body) for _ in range(min(1000, spec.count - start))))
            return {"ok": spec.count, "errors": 0, "cpu_s": 0.0}
        return await confirmed_publishes(lambda: send(body), spec.duration_s)
    finally:
        await client.close()


def _consumer(spec: NatsSpec) -> Outcome:
    return asyncio.run(_consume(spec))


async def _consume(spec: NatsSpec) -> Outcome:
    """A durable pull consumer, explicit acks (one per message), until `count` arrived or the deadline; for a
    latency point a durable push consumer with the same acks and window instead, since a pull request for a batch
    holds its first messages until the batch fills or the request expires (latency the server did not cause)."""
    import nats
    from nats.errors import TimeoutError as FetchTimeout
    from nats.js.api import AckPolicy, ConsumerConfig

    deadline = time.monotonic() + 60 + 3 * spec.duration_s
    got = 0
    cpu0 = cpu_seconds()
    client = await nats.connect(f"nats://127.0.0.1:{spec.port}")
    try:
        js = client.jetstream()
        config = ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=FETCH)
        if spec.schedule is not None:
            latencies = Latencies(spec.schedule)

            async def on_message(message: Any) -> None:
                latencies.record(intended_of(message.data))
                await message.ack()

            push = await js.subscribe(
                spec.subject, stream=spec.stream, durable="bench", cb=on_message, manual_ack=True, config=config
            )
            await latencies.ready()
            await latencies.wait()
            await push.unsubscribe()
            await client.flush()
            return latencies.outcome()
        pull = await js.pull_subscribe(spec.subject, durable="bench", stream=spec.stream, config=config)
        start = time.monotonic()
        while got < spec.count and time.monotonic() < deadline:
            try:
                messages = await pull.fetch(FETCH, timeout=min(1.0, max(0.05, deadline - time.monotonic())))
            except FetchTimeout:
                continue
            for message in messages:
                await message.ack()
            got += len(messages)
        elapsed = time.monotonic() - start
        await client.flush()  # the last acks leave before the clock stops being relevant
    finally:
        await client.close()
    return {"ok": got, "errors": 0, "elapsed": elapsed, "cpu_s": cpu_seconds() - cpu0}


def run(ctx: RunContext, topologies: tuple[int, ...] = (1, 3)) -> None:
    binary, why = ensure_binary("nats-server", "nats-server")
    if binary is not None and not (found := ensure_module("nats", "nats-py>=2.6"))[0]:
        binary, why = None, found[1]
    for nodes in topologies:
        label = "1 node" if nodes == 1 else f"{nodes} nodes"
        if binary is None:
            ctx.add(Result("nats", "publish-confirmed", label, skipped=why))
            continue
        ctx.progress(f"NATS [{label}]: starting nats-server with JetStream (R{nodes} streams)")
        try:
            with NatsCluster(binary, ctx.workdir / f"nats-{nodes}", nodes) as cluster:
                _measure(ctx, cluster)
        except Exception as exc:  # a peer that fails to start is reported, not fatal to the run
            ctx.add(Result("nats", "publish-confirmed", label, skipped=f"failed: {type(exc).__name__}: {exc}"))
        finally:
            ctx.servers = []


def _measure(ctx: RunContext, cluster: NatsCluster) -> None:
    port, label, replicas = cluster.ports[0], cluster.label, cluster.nodes
    ctx.servers = cluster.sessions
    asyncio.run(_declare(port, replicas, "BENCH", "bench.orders"))
    ctx.progress(f"NATS [{label}]: JetStream publishes with acks for {ctx.duration_s:g}s")
    with ctx.server_cpu() as cpu:
        (outcome,) = run_workers([(_publisher, NatsSpec(port, "bench.orders", "BENCH", ctx.duration_s))])
    ctx.add(
        publish_result(
            "nats",
            label,
            [outcome],
            "nats-py, 1 message per publish",
            f"JetStream file stream, {replicas} replica{'s' if replicas > 1 else ''}; acked once stored "
            "(fsync on its own interval)",
            cpu.seconds,
        )
    )
    count = int(2000 * ctx.duration_s)
    ctx.progress(f"NATS [{label}]: pull consume with acks of {count:,} preloaded messages")
    asyncio.run(_declare(port, replicas, "DRAIN", "drain.orders"))
    run_workers([(_publisher, NatsSpec(port, "drain.orders", "DRAIN", count=count))])
    with ctx.server_cpu() as cpu:
        (outcome,) = run_workers([(_consumer, NatsSpec(port, "drain.orders", "DRAIN", ctx.duration_s, count))])
    client = f"nats-py durable pull consumer, fetch {FETCH}, max {FETCH} unacked, one ack per message"
    ctx.add(consume_result("nats", label, outcome, count, client, cpu.seconds))

    def measure(rate: float) -> Result:
        stream, subject = f"LAT{int(rate)}", f"lat{int(rate)}.orders"
        asyncio.run(_declare(port, replicas, stream, subject))
        schedule = Schedule.starting_soon(rate, ctx.curve_duration_s, ctx)
        spec = NatsSpec(port, subject, stream, count=schedule.count, schedule=schedule)
        began = time.monotonic()
        with ctx.server_cpu() as cpu:
            sent, got = run_workers([(_publisher, spec), (_consumer, spec)])
        return point(
            system="nats",
            scenario="latency",
            topology=label,
            schedule=schedule,
            senders=[sent],
            consumer=got,
            wall_s=time.monotonic() - began,
            server_cpu_s=cpu.seconds,
            client="1 scheduled nats-py publisher proc (JetStream acks) + 1 push consumer proc",
            how=f"with JetStream acks; durable push consumer, max {FETCH} unacked, one ack per message",
        )

    ctx.progress(f"NATS [{label}]: latency versus offered load")
    climb(ctx, measure)
