"""CPU per request of the HTTP framework alone: one POST publish answered 401, through Quart and the lean path.

    python -m bench.framework_cost --requests 2000 --rounds 5

The app is built as a node builds it and called directly as Hypercorn calls an ASGI app, in this process, with a
request that stops at authentication: what is measured is routing, the request context, hooks, the error
handler and the answer, none of the broker. The same request goes through the lean path (`mom.api.lean`) and,
with a query string, through Quart; the rounds alternate. CPU time, not wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import trio

from mom.api.app import create_app
from mom.api.metrics import Metrics
from mom.config import Settings

BODY = b'{"body": {"n": 1}}'
PATH = "/v1/queues/q/messages"


class _Context:
    """What `create_app` reads of a node's context when no request gets past authentication."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.metrics = Metrics()


def _scope(query: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(BODY)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
    }


async def _one(app: Any, scope: dict[str, Any]) -> int:
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(dict(scope), receive, send)
    return status


async def _measure(requests: int, rounds: int) -> dict[str, list[float]]:
    app = create_app(_Context())  # type: ignore[arg-type]
    variants = {"lean": _scope(b""), "quart": _scope(b"via=quart")}
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, scope in variants.items():
            started = time.process_time()
            for _ in range(requests):
                assert await _one(app, scope) == 401
            results[name].append((time.process_time() - started) / requests * 1e6)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.framework_cost", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    results = trio.run(_measure, args.requests, args.rounds)
    for name, values in results.items():
        each = " ".join(f"{v:.0f}" for v in values)
        print(f"{name:6} CPU µs/request: {each} (median {statistics.median(values):.0f})")


if __name__ == "__main__":
    main()
