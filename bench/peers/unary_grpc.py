"""The naive replication design: one unary gRPC call per message per replica, leader waits for both replicas.

Three processes: two replicas (`python -m bench.peers.unary_grpc PORT FILE`, each appending what it gets to a
file, without fsync, which flatters this design) and one leader with many calls in flight. mom's replication
stream batches many log entries per frame on one long-lived stream per peer; its rate on the same machine is
mom's 3-node publish-100 rate (HTTP, Raft and fsync included), so the ratio understates the stream's advantage.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]

from bench.context import RunContext
from bench.loadgen import Outcome, run_workers
from bench.peers._publish import confirmed_publishes, publish_result
from bench.procs import Managed, free_port, port_open
from bench.rate import publish_body

METHOD = "/bench.Replica/Append"


async def _replica(port: int, path: Path) -> None:
    with path.open("ab") as log:

        async def append(request: bytes, context: Any) -> bytes:
            log.write(request)
            return b""

        handler = grpc.unary_unary_rpc_method_handler(append)
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Replica", {"Append": handler}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()


@dataclass(frozen=True)
class LeaderSpec:
    ports: tuple[int, ...]
    duration_s: float


def _leader(spec: LeaderSpec) -> Outcome:
    return asyncio.run(_lead(spec))


async def _lead(spec: LeaderSpec) -> Outcome:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for port in spec.ports]
    calls = [channel.unary_unary(METHOD) for channel in channels]
    body = publish_body(1)

    async def replicate() -> None:
        await asyncio.gather(*(call(body, timeout=10) for call in calls))

    try:
        return await confirmed_publishes(replicate, spec.duration_s)
    finally:
        for channel in channels:
            await channel.close()


def run(ctx: RunContext) -> None:
    ctx.progress("naive replication: 1 leader + 2 replicas, one unary gRPC call per message per replica")
    ports = (free_port(), free_port())
    home = ctx.workdir / "unary-grpc"
    home.mkdir(parents=True, exist_ok=True)
    replicas = [
        Managed(
            f"replica{i}",
            [sys.executable, "-m", "bench.peers.unary_grpc", str(port), str(home / f"r{i}.log")],
            home / f"replica{i}.out",
        )
        for i, port in enumerate(ports)
    ]
    try:
        for replica, port in zip(replicas, ports, strict=True):
            replica.start().wait_until(partial(port_open, port))
        ctx.servers = [replica.proc.pid for replica in replicas if replica.proc is not None]
        with ctx.server_cpu() as cpu:
            outcomes = run_workers([(_leader, LeaderSpec(ports, ctx.duration_s))])
        result = publish_result(
            "unary-grpc",
            "3 processes",
            outcomes,
            "grpc.aio, 2 replicas per message",
            "naive design: the leader makes one unary call per message per replica and "
            "waits for both; replicas append to a file without fsync (server CPU: the two replicas only)",
            cpu.seconds,
        )
        result.scenario = "replicate"
        ctx.add(result)
    finally:
        ctx.servers = []
        for replica in replicas:
            replica.stop()


if __name__ == "__main__":
    asyncio.run(_replica(int(sys.argv[1]), Path(sys.argv[2])))
