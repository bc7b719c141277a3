"""Request-rate measurement of one POST endpoint: wrk when present, else the multi-process Python generator.

mom's publish scenarios and the framework ceiling both go through here, so their ratio compares servers, not
clients.
"""

from __future__ import annotations

import json

from bench.context import RunContext
from bench.loadgen import PostSpec, post_closed_loop, run_workers
from bench.results import Result, latency_ms
from bench.wrk import run_wrk

PAD = "x" * 150
"""Makes one message body about 200 bytes of JSON, the size the issue's known numbers were taken with."""


def one_message(i: int = 0) -> dict[str, object]:
    return {"body": {"order": i, "sku": "bench-sku", "pad": PAD}}


def publish_body(batch: int) -> bytes:
    """The request body of a publish of `batch` messages (the single form for 1, as most clients send it)."""
    if batch == 1:
        return json.dumps(one_message()).encode()
    return json.dumps({"messages": [one_message(i) for i in range(batch)]}).encode()


def measure_post(
    ctx: RunContext, *, system: str, scenario: str, topology: str, url: str, path: str, token: str, batch: int
) -> Result:
    """POST `batch` messages per request for the run's duration; msgs/s counts only 2xx answers."""
    body = publish_body(batch)
    if ctx.wrk is not None:
        connections = ctx.connections
        with ctx.server_cpu() as cpu:
            out = run_wrk(
                ctx.wrk,
                url + path,
                token,
                body,
                threads=1,
                connections=connections,
                duration_s=ctx.duration_s,
                workdir=ctx.workdir / "wrk",
            )
        ok = out.requests - out.non_2xx
        return Result(
            system,
            scenario,
            topology,
            msgs_per_s=ok * batch / out.elapsed_s,
            requests_per_s=ok / out.elapsed_s,
            p50_ms=out.p50_ms,
            p99_ms=out.p99_ms,
            errors=out.non_2xx + out.socket_errors,
            duration_s=out.elapsed_s,
            client_procs=1,
            client_cpu_s=out.cpu_s,
            client=f"wrk -t1 -c{connections}",
            messages=ok * batch,
            server_cpu_s=cpu.seconds,
        )
    spec = PostSpec(url, token, path, body, ctx.connections // ctx.processes, ctx.duration_s)
    with ctx.server_cpu() as cpu:
        outcomes = run_workers([(post_closed_loop, spec)] * ctx.processes)
    elapsed = max(o["elapsed"] for o in outcomes)
    ok = sum(o["ok"] for o in outcomes)
    p50, p99, p999 = latency_ms([x for o in outcomes for x in o["latencies"]])
    return Result(
        system,
        scenario,
        topology,
        msgs_per_s=ok * batch / elapsed,
        requests_per_s=ok / elapsed,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        errors=sum(o["errors"] for o in outcomes),
        duration_s=elapsed,
        client_procs=ctx.processes,
        client_cpu_s=sum(o["cpu_s"] for o in outcomes),
        client=f"{ctx.processes} procs x {spec.connections} conns httpx",
        messages=ok * batch,
        server_cpu_s=cpu.seconds,
    )
