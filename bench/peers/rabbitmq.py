"""RabbitMQ, as one node and as a 3-node cluster: a quorum queue, persistent messages, publisher confirms,
manual-ack consumers with a prefetch (aio-pika), and end-to-end latency at the offered rates mom gets.

Each node runs from the harness's temp dir (its own node name, ports, config, data and logs) and binds 127.0.0.1
only; the nodes of a cluster share one Erlang cookie and one epmd port, and join through classic-config peer
discovery (node 1 first, then the others join it). The quorum queue has a member on every node, its leader on
node 1, where the clients connect (as mom's clients talk to the leader). The Erlang schedulers do not busy-wait
(`+sbwt none`), as RabbitMQ advises on shared machines, so their CPU time is work, not spinning.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
from contextlib import ExitStack, suppress
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

QUEUE = "bench-quorum"
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
"""The real script: Debian's wrapper on PATH would switch to the rabbitmq user, who cannot write our temp dir."""
CTL = "/usr/lib/rabbitmq/bin/rabbitmqctl"
PREFETCH = 256
"""The consumers' basic.qos: the same window as mom's stream consumers."""
ERL_ARGS = "-kernel inet_dist_use_interface {127,0,0,1} +sbwt none +sbwtdcpu none +sbwtdio none"


# ---------------------------------------------------------------------------------------------------------
# The nodes


@dataclass
class RabbitCluster:
    """`nodes` RabbitMQ nodes under `home`; `ports` are their AMQP ports, node 1 first."""

    home: Path
    nodes: int
    ports: list[int] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    _envs: list[dict[str, str]] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)

    @property
    def label(self) -> str:
        return "1 node" if self.nodes == 1 else f"{self.nodes} nodes"

    def __enter__(self) -> RabbitCluster:
        cookie, epmd = secrets.token_hex(16), free_port()
        names = [f"bench{i}@localhost" for i in range(1, self.nodes + 1)]
        try:
            for i, name in enumerate(names, start=1):
                port = free_port()
                env = _environment(self.home / f"node{i}", port, name, names, cookie, epmd)
                server = Managed(f"rabbitmq{i}", [SERVER], self.home / f"node{i}" / "server.log", env)
                self._stack.enter_context(server)
                assert server.proc is not None
                self.ports.append(port)
                self.sessions.append(server.proc.pid)
                self._envs.append(env)
                server.wait_until(lambda port=port: port_open(port), timeout_s=180)  # type: ignore[misc]
            if self.nodes > 1:
                ctl = [CTL, "-n", names[0], "await_online_nodes", str(self.nodes), "--timeout", "120"]
                done = subprocess.run(ctl, env=self._envs[0], capture_output=True, text=True, timeout=150)
                if done.returncode != 0:
                    raise RuntimeError(f"the RabbitMQ nodes did not form a cluster: {done.stdout}{done.stderr}")
            asyncio.run(_declare(self.ports[0], self.nodes))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            self._stack.close()
        finally:
            if self._envs:
                subprocess.run(["epmd", "-kill"], env=self._envs[0], capture_output=True, check=False, timeout=10)


def _environment(home: Path, port: int, name: str, names: list[str], cookie: str, epmd: int) -> dict[str, str]:
    for sub in ("mnesia", "log"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    cookie_file = home / ".erlang.cookie"
    cookie_file.write_text(cookie)
    cookie_file.chmod(0o400)
    config = [f"listeners.tcp.default = 127.0.0.1:{port}", "loopback_users = none"]
    if len(names) > 1:
        config.append("cluster_formation.peer_discovery_backend = classic_config")
        config += [f"cluster_formation.classic_config.nodes.{i} = {n}" for i, n in enumerate(names, start=1)]
    (home / "rabbitmq.conf").write_text("\n".join(config) + "\n")
    (home / "enabled_plugins").write_text("[].\n")
    return {
        **os.environ,
        "HOME": str(home),
        "RABBITMQ_NODENAME": name,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(epmd),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": ERL_ARGS,
    }


async def _declare(port: int, members: int, queue: str = QUEUE) -> None:
    import aio_pika

    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{port}/")
    async with connection:
        channel = await connection.channel()
        arguments: Any = {"x-queue-type": "quorum", "x-quorum-initial-group-size": members}
        await channel.declare_queue(queue, durable=True, arguments=arguments)


# ---------------------------------------------------------------------------------------------------------
# Load processes


@dataclass(frozen=True)
class RabbitSpec:
    port: int
    duration_s: float = 0.0
    queue: str = QUEUE
    count: int = 0
    schedule: Schedule | None = None


def _publisher(spec: RabbitSpec) -> Outcome:
    return asyncio.run(_publish(spec))


async def _publish(spec: RabbitSpec) -> Outcome:
    import aio_pika

    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{spec.port}/")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)

        async def send(body: bytes) -> None:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=spec.queue)

        if spec.schedule is not None:
            return await send_on_schedule(lambda intended: send(payload_bytes(intended)), spec.schedule)
        if spec.count:  # preload, untimed
            body = publish_body(1)
            for start in range(0, spec.count, 1000):
                await asyncio.gather(*(send(body) for _ in range(min(1000, spec.count - start))))
            return {"ok": spec.count, "errors": 0, "cpu_s": 0.0}
        body = publish_body(1)
        return await confirmed_publishes(lambda: send(body), spec.duration_s)


def _consumer(spec: RabbitSpec) -> Outcome:
    return asyncio.run(_consume(spec))


async def _consume(spec: RabbitSpec) -> Outcome:
    """Manual acks, one per message, with basic.qos PREFETCH: until `count` arrived or the deadline."""
    import aio_pika

    latencies = Latencies(spec.schedule) if spec.schedule is not None else None
    got = 0
    done = asyncio.Event()
    cpu0 = cpu_seconds()
    deadline = time.monotonic() + 60 + 3 * spec.duration_s
    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{spec.port}/")
    async with connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=PREFETCH)
        queue = await channel.get_queue(spec.queue, ensure=False)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal got
            if latencies is not None:
                latencies.record(intended_of(message.body))
            await message.ack()
            got += 1
            if got >= spec.count:
                done.set()

        start = time.monotonic()
        tag = await queue.consume(on_message)
        if latencies is not None:
            deadline = (await latencies.ready()).deadline
        with suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout=max(0.1, deadline - time.monotonic()))
        elapsed = time.monotonic() - start
        await queue.cancel(tag)
    if latencies is not None:
        return latencies.outcome()
    return {"ok": got, "errors": 0, "elapsed": elapsed, "cpu_s": cpu_seconds() - cpu0}


# ---------------------------------------------------------------------------------------------------------
# The step


def run(ctx: RunContext, topologies: tuple[int, ...] = (1, 3)) -> None:
    skip = None
    if ensure_binary("rabbitmq-server", "rabbitmq-server")[0] is None or not Path(SERVER).exists():
        skip = "RabbitMQ is not installed and could not be installed from Debian's packages (rabbitmq-server)"
    elif not (found := ensure_module("aio_pika", "aio-pika>=9.4"))[0]:
        skip = found[1]
    for nodes in topologies:
        label = "1 node" if nodes == 1 else f"{nodes} nodes"
        if skip:
            ctx.add(Result("rabbitmq", "publish-confirmed", label, skipped=skip))
            continue
        ctx.progress(f"RabbitMQ [{label}]: starting (quorum queue of {nodes}, publisher confirms)")
        try:
            with RabbitCluster(ctx.workdir / f"rabbitmq-{nodes}", nodes) as cluster:
                _measure(ctx, cluster)
        except Exception as exc:  # a peer that fails to start is reported, not fatal to the run
            ctx.add(Result("rabbitmq", "publish-confirmed", label, skipped=f"failed: {type(exc).__name__}: {exc}"))
        finally:
            ctx.servers = []


def _measure(ctx: RunContext, cluster: RabbitCluster) -> None:
    port, label = cluster.ports[0], cluster.label
    ctx.servers = cluster.sessions
    ctx.progress(f"RabbitMQ [{label}]: confirmed publishes for {ctx.duration_s:g}s")
    with ctx.server_cpu() as cpu:
        (outcome,) = run_workers([(_publisher, RabbitSpec(port, ctx.duration_s))])
    members = "1 member: a single node" if cluster.nodes == 1 else f"{cluster.nodes} members, one per node"
    ctx.add(
        publish_result(
            "rabbitmq",
            label,
            [outcome],
            "aio-pika, 1 message per publish",
            f"quorum queue ({members}), persistent messages, publisher confirms",
            cpu.seconds,
        )
    )
    count = int(2000 * ctx.duration_s)
    ctx.progress(f"RabbitMQ [{label}]: manual-ack consume of {count:,} preloaded messages")
    asyncio.run(_declare(port, cluster.nodes, "bench-drain"))
    run_workers([(_publisher, RabbitSpec(port, queue="bench-drain", count=count))])
    with ctx.server_cpu() as cpu:
        (outcome,) = run_workers([(_consumer, RabbitSpec(port, ctx.duration_s, "bench-drain", count))])
    ctx.add(
        consume_result(
            "rabbitmq",
            label,
            outcome,
            count,
            f"aio-pika, basic.qos prefetch {PREFETCH}, one basic.ack per message",
            cpu.seconds,
        )
    )

    def measure(rate: float) -> Result:
        queue = f"bench-lat-{rate:g}"
        asyncio.run(_declare(port, cluster.nodes, queue))
        schedule = Schedule.starting_soon(rate, ctx.curve_duration_s, ctx)
        spec = RabbitSpec(port, queue=queue, count=schedule.count, schedule=schedule)
        began = time.monotonic()
        with ctx.server_cpu() as cpu:
            sent, got = run_workers([(_publisher, spec), (_consumer, spec)])
        return point(
            system="rabbitmq",
            scenario="latency",
            topology=label,
            schedule=schedule,
            senders=[sent],
            consumer=got,
            wall_s=time.monotonic() - began,
            server_cpu_s=cpu.seconds,
            client="1 scheduled aio-pika publisher proc (confirms) + 1 consumer proc",
            how=f"with publisher confirms; consumer with prefetch {PREFETCH}, one ack per message",
        )

    ctx.progress(f"RabbitMQ [{label}]: latency versus offered load")
    climb(ctx, measure)
