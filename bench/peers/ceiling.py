"""The framework ceiling: a hello-world POST on the same Hypercorn (trio worker) + Quart-trio stack as mom.

One message per request can never be faster than this, so mom's publish-1 rate is judged against it. The handler
parses the JSON body (as mom must) and answers 201 with a small JSON document; it checks no token and stores
nothing. Run as its own process: `python -m bench.peers.ceiling PORT`.
"""

from __future__ import annotations

import sys
from typing import Any

import httpx

from bench.context import RunContext
from bench.procs import Managed, free_port
from bench.rate import measure_post


def _serve(port: int) -> None:
    import trio
    from hypercorn.config import Config
    from hypercorn.trio import serve
    from quart import request
    from quart_trio import QuartTrio

    app = QuartTrio("ceiling")

    @app.post("/v1/queues/<name>/messages")
    async def publish(name: str) -> tuple[dict[str, Any], int]:
        await request.get_json()
        return {"messages": [{"id": "0", "offset": 0}]}, 201

    @app.get("/healthz")
    async def healthz() -> str:
        return "ok"

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    trio.run(serve, app, config)


def run(ctx: RunContext) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bench.peers.ceiling", str(port)]
    ctx.progress("framework ceiling: Hypercorn + Quart-trio hello-world POST")
    with Managed("ceiling", command, ctx.workdir / "ceiling.log") as server:
        server.wait_until(lambda: httpx.get(url + "/healthz", timeout=1).status_code == 200)
        assert server.proc is not None
        ctx.servers = [server.proc.pid]
        result = measure_post(
            ctx,
            system="ceiling",
            scenario="publish-1",
            topology="1 node",
            url=url,
            path="/v1/queues/q/messages",
            token="none",
            batch=1,
        )
        result.notes = "hello-world POST on Hypercorn (trio) + Quart-trio: parses the body, no auth, no storage"
        ctx.servers = []
        ctx.add(result)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
