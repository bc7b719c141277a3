"""NATS JetStream: a file-backed stream, every publish waits for its JetStream ack (nats-py).

nats-server runs from the harness's temp dir with its own store directory, on 127.0.0.1 and a free port.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bench.context import RunContext
from bench.install import ensure_binary, ensure_module
from bench.loadgen import Outcome, run_workers
from bench.peers._publish import confirmed_publishes, publish_result
from bench.procs import Managed, free_port, port_open
from bench.rate import publish_body
from bench.results import Result


@dataclass(frozen=True)
class NatsSpec:
    port: int
    duration_s: float


def _publisher(spec: NatsSpec) -> Outcome:
    return asyncio.run(_publish(spec))


async def _publish(spec: NatsSpec) -> Outcome:
    import nats

    client = await nats.connect(f"nats://127.0.0.1:{spec.port}")
    try:
        stream = client.jetstream()
        body = publish_body(1)

        async def publish() -> None:
            await stream.publish("bench.orders", body)

        return await confirmed_publishes(publish, spec.duration_s)
    finally:
        await client.close()


async def _declare(port: int) -> None:
    import nats
    from nats.js.api import StorageType, StreamConfig

    client = await nats.connect(f"nats://127.0.0.1:{port}")
    try:
        config = StreamConfig(name="BENCH", subjects=["bench.>"], storage=StorageType.FILE)
        await client.jetstream().add_stream(config)
    finally:
        await client.close()


def run(ctx: RunContext) -> None:
    binary, why = ensure_binary("nats-server", "nats-server")
    if binary is None or not (found := ensure_module("nats", "nats-py>=2.6"))[0]:
        reason = why if binary is None else found[1]
        ctx.add(Result("nats", "publish-confirmed", "1 node", skipped=reason))
        return
    ctx.progress("NATS: starting nats-server with JetStream")
    port = free_port()
    home = ctx.workdir / "nats"
    home.mkdir(parents=True, exist_ok=True)
    command = [binary, "-js", "-sd", str(home / "store"), "-a", "127.0.0.1", "-p", str(port), "-n", "bench"]
    with Managed("nats", command, home / "server.log") as server:
        server.wait_until(lambda: port_open(port))
        asyncio.run(_declare(port))
        ctx.progress(f"NATS: JetStream publishes with acks for {ctx.duration_s:.0f}s")
        outcomes = run_workers([(_publisher, NatsSpec(port, ctx.duration_s))] * ctx.processes)
        ctx.add(
            publish_result(
                ctx,
                "nats",
                outcomes,
                "nats-py, 1 message per publish",
                "JetStream file stream, 1 replica; acked once stored (fsync on its own interval)",
            )
        )
