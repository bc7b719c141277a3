"""RabbitMQ: a quorum queue, persistent messages, publisher confirms (aio-pika), on its own node and port.

The node runs from the harness's temp dir (its own config, data, logs, Erlang cookie and epmd port), binds
127.0.0.1 only, and is stopped, epmd included, at the end of the step.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.context import RunContext
from bench.install import ensure_binary, ensure_module
from bench.loadgen import Outcome, run_workers
from bench.peers._publish import confirmed_publishes, publish_result
from bench.procs import Managed, free_port, port_open
from bench.rate import publish_body
from bench.results import Result

QUEUE = "bench-quorum"
SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
"""The real script: Debian's wrapper on PATH would switch to the rabbitmq user, who cannot write our temp dir."""


@dataclass(frozen=True)
class RabbitSpec:
    port: int
    duration_s: float


def _publisher(spec: RabbitSpec) -> Outcome:
    return asyncio.run(_publish(spec))


async def _publish(spec: RabbitSpec) -> Outcome:
    import aio_pika

    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{spec.port}/")
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        body = publish_body(1)

        async def publish() -> None:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=QUEUE)

        return await confirmed_publishes(publish, spec.duration_s)


async def _declare(port: int) -> None:
    import aio_pika

    connection = await aio_pika.connect(f"amqp://guest:guest@127.0.0.1:{port}/")
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(QUEUE, durable=True, arguments={"x-queue-type": "quorum"})


def _environment(home: Path, port: int) -> dict[str, str]:
    for sub in ("mnesia", "log"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "rabbitmq.conf").write_text(f"listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n")
    (home / "enabled_plugins").write_text("[].\n")
    return {
        "HOME": str(home),
        "RABBITMQ_NODENAME": "bench@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(home / "mnesia"),
        "RABBITMQ_LOG_BASE": str(home / "log"),
        "RABBITMQ_CONFIG_FILE": str(home / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(home / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(home / "rabbitmq.pid"),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_EPMD_PORT": str(free_port()),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }


def run(ctx: RunContext) -> None:
    skip = None
    if ensure_binary("rabbitmq-server", "rabbitmq-server")[0] is None or not Path(SERVER).exists():
        skip = "RabbitMQ is not installed and could not be installed from Debian's packages (rabbitmq-server)"
    elif not (found := ensure_module("aio_pika", "aio-pika>=9.4"))[0]:
        skip = found[1]
    if skip:
        ctx.add(Result("rabbitmq", "publish-confirmed", "1 node", skipped=skip))
        return
    ctx.progress("RabbitMQ: starting a node (quorum queue, publisher confirms)")
    port = free_port()
    home = ctx.workdir / "rabbitmq"
    env = _environment(home, port)
    server = Managed("rabbitmq", [SERVER], home / "server.log", env)
    try:
        with server:
            server.wait_until(lambda: port_open(port), timeout_s=120)
            asyncio.run(_declare(port))
            ctx.progress(f"RabbitMQ: confirmed publishes for {ctx.duration_s:.0f}s")
            outcomes = run_workers([(_publisher, RabbitSpec(port, ctx.duration_s))] * ctx.processes)
            ctx.add(
                publish_result(
                    ctx,
                    "rabbitmq",
                    outcomes,
                    "aio-pika, 1 message per publish",
                    "quorum queue (1 member: a single node), persistent messages, publisher confirms",
                )
            )
    finally:
        epmd = {**os.environ, **env}
        subprocess.run(["epmd", "-kill"], env=epmd, capture_output=True, check=False, timeout=10)
