"""What a chaos run saw: every publish call, every delivery, every HTTP request's outcome, every fault.

The checker reads only this (and the replicas' logs at the end), so a run can be re-checked from its files.
Times are seconds since the run started (trio's clock). Payloads identify themselves: each body carries its
payload id (`pid`) and a checksum of it, so a delivery can be traced to the call that published it and a
body that comes back different is caught.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import httpx
import msgspec
import trio

Mode = Literal["dedup", "default"]
"""`dedup`: every message carries a dedup id and the workload retries until acknowledged; `default`: the client's
own defaults, one call per message set, no retry of ours."""
Via = Literal["rest", "sse", "stream"]


class PublishCall(msgspec.Struct):
    """One call of `publish`/`publish_batch` (one attempt of ours; the client may retry inside it)."""

    call: int
    dest: str
    """`queue:NAME` or `topic:NAME`."""
    mode: Mode
    pids: list[str]
    node: str
    started: float
    round: int
    attempt: int = 1
    ended: float | None = None
    ok: bool = False
    error: str | None = None
    ids: list[str] | None = None
    offsets: list[int] | None = None


class Delivery(msgspec.Struct):
    """One message handed to a consumer."""

    at: float
    group: str
    """Who consumes: `queue:NAME` or `sub:TOPIC/SUBSCRIPTION`."""
    via: Via
    node: str
    id: str
    pid: str | None
    offset: int | None
    deliveries: int
    body_ok: bool
    round: int


class RequestOutcome(msgspec.Struct, array_like=True):
    """One HTTP request to a node: when, how long, and what came of it (a status code or an exception name)."""

    at: float
    seconds: float
    node: str
    method: str
    path: str
    outcome: str
    detail: str | None = None
    """The problem's `detail` of an error answer (first 160 characters)."""


class FaultRecord(msgspec.Struct):
    round: int
    kind: str
    targets: list[str]
    started: float
    healed: float | None = None
    recovered: float | None = None
    """When every node was ready again and every destination had a leader; None if that did not happen in time."""
    details: dict[str, Any] = msgspec.field(default_factory=dict)


def body_for(pid: str) -> dict[str, Any]:
    """The body published under `pid`: the id and a checksum, so the body alone proves where it came from."""
    return {"pid": pid, "sum": zlib.crc32(pid.encode())}


def read_body(body: Any) -> tuple[str | None, bool]:
    """(pid, whether the body is exactly what `body_for(pid)` makes) of a delivered body."""
    if not isinstance(body, dict) or not isinstance(body.get("pid"), str):
        return None, False
    pid: str = body["pid"]
    return pid, body == body_for(pid)


def is_failure(outcome: str) -> bool:
    """An answer that means "not served": 5xx, 429, 404 (every destination here exists) or no answer at all."""
    return not outcome.isdigit() or outcome in ("404", "429") or outcome.startswith("5")


class History:
    """The records of one run, appended from the workload's tasks (all on one trio thread)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.round = 0
        self.calls: list[PublishCall] = []
        self.deliveries: list[Delivery] = []
        self.requests: list[RequestOutcome] = []
        self.faults: list[FaultRecord] = []
        self.notes: list[str] = []

    def now(self) -> float:
        return round(self.clock(), 4)

    def request(
        self, started: float, node: str, method: str, path: str, outcome: str, detail: str | None = None
    ) -> None:
        seconds = round(self.now() - started, 4)
        self.requests.append(RequestOutcome(started, seconds, node, method, path, outcome, detail))

    def write(self, directory: Path) -> None:
        """calls.jsonl, deliveries.jsonl, requests.jsonl and faults.json in `directory`."""
        encoder = msgspec.json.Encoder()
        for name, records in (("calls", self.calls), ("deliveries", self.deliveries), ("requests", self.requests)):
            with (directory / f"{name}.jsonl").open("wb") as file:
                for record in records:
                    file.write(encoder.encode(record) + b"\n")
        (directory / "faults.json").write_bytes(msgspec.json.format(encoder.encode(self.faults)))


class RecordingTransport(httpx.AsyncBaseTransport):
    """An httpx transport that notes the outcome of every request to one node, for the unavailability timeline."""

    def __init__(self, node: str, history: History) -> None:
        self._node = node
        self._history = history
        self._inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = self._history.now()
        path = request.url.path
        try:
            response = await self._inner.handle_async_request(request)
        except trio.Cancelled:
            raise  # we gave up waiting (the run moved on): says nothing about the node
        except BaseException as exc:
            if isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[0] is not None:
                raise
            leaf: BaseException = exc
            while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
                leaf = leaf.exceptions[0]
            self._history.request(started, self._node, request.method, path, type(leaf).__name__, str(leaf)[:160])
            raise
        detail = None
        if response.status_code >= 400:
            await response.aread()
            detail = _detail(response)
        self._history.request(started, self._node, request.method, path, str(response.status_code), detail)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _detail(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:160] or None
    if isinstance(payload, dict):
        return str(payload.get("detail") or payload.get("error_description") or payload.get("title"))[:160]
    return None
