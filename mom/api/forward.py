"""Forwarding: a node that does not lead a destination passes the HTTP request on and relays the answer.

The whole request travels (method, path, query, body, the caller's bearer token), so the node that leads the
destination applies exactly the same validation, authorization and semantics as if the client had called it; a
client never needs to know who leads what. A request is forwarded at most `MAX_HOPS` times: a node that learns
of a new leader only after forwarding may forward once more, and a loop (leadership moving during the request)
ends in 503 with Retry-After, never in a wrong answer. Streams (SSE) are relayed chunk by chunk.

Every wait on the leader is bounded, because a leader can stop answering without closing anything (a SIGSTOP,
a frozen VM, a partition): connecting by `CONNECT_TIMEOUT_S`, the whole answer by `FORWARD_WAIT_S` plus what the
request itself may legitimately wait (a long-poll's `wait_s`), a relayed stream by `STREAM_IDLE_S` between
chunks. When the leader fails to answer, the 503 says what is known: `Unavailable` if the request provably
never reached it (the connection was refused or never made) or could not change anything (a read), and
`OutcomeUnknown` for a write that was sent, since the leader may have applied it before going away. Meanwhile
the destination's other replicas elect a new leader, which the client's retry reaches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import httpx
import trio
from quart import Response, request

from mom.errors import OutcomeUnknown, Unavailable

HOPS_HEADER = "X-Mom-Hops"
MAX_HOPS = 2
CONNECT_TIMEOUT_S = 1.0
"""A live peer on the same network accepts a connection in milliseconds."""
FORWARD_WAIT_S = 5.0
"""A bound on a leader's answer beyond the election timeout (0.5 to 1 s): by then a leader that stopped
answering has been replaced, so the client's retry can succeed. Longer than any ordinary commit."""
STREAM_IDLE_S = 20.0
"""Longest silence on a relayed event stream (the leader sends a keep-alive every 15 s) before it is ended."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Requests that change nothing, so a lost answer leaves nothing unknown."""
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before any byte of the request left: the leader cannot have acted on it."""

_REQUEST_HEADERS = ("authorization", "content-type", "accept")
_RESPONSE_HEADERS = (
    "content-type",
    "retry-after",
    "www-authenticate",
    "cache-control",
    "pragma",
    "x-amzn-query-error",
    "x-amzn-requestid",
)


def hops() -> int:
    raw = request.headers.get(HOPS_HEADER, "0")
    return int(raw) if raw.isascii() and raw.isdigit() else MAX_HOPS


def timeouts(wait_s: float = 0.0) -> httpx.Timeout:
    """httpx's per-phase timeouts of a call to a leader; `answer_within` bounds the whole of it."""
    return httpx.Timeout(FORWARD_WAIT_S + wait_s, connect=CONNECT_TIMEOUT_S)


@contextmanager
def answer_within(leader: str, method: str, wait_s: float = 0.0) -> Iterator[None]:
    """Bound a call to `leader` to `FORWARD_WAIT_S + wait_s` and turn its failures into the honest 503."""
    try:
        with trio.fail_after(FORWARD_WAIT_S + wait_s):
            yield
    except NOT_SENT as exc:
        raise Unavailable(f"the leader {leader} cannot be reached ({type(exc).__name__}); retry shortly") from exc
    except (httpx.TransportError, trio.TooSlowError) as exc:
        what = "did not answer in time" if isinstance(exc, trio.TooSlowError | httpx.TimeoutException) else "went away"
        if method.upper() in SAFE_METHODS:
            raise Unavailable(f"the leader {leader} {what}; retry shortly") from exc
        raise OutcomeUnknown(
            f"the leader {leader} {what} after the request reached it: it may or may not have been applied; "
            "retrying is safe with a dedup_id on every message"
        ) from exc


async def call_leader(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    leader: str,
    *,
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
    wait_s: float = 0.0,
) -> httpx.Response:
    """One bounded request to `leader` (the whole answer read): a 503 of the right kind if it fails."""
    with answer_within(leader, method, wait_s):
        return await http.request(method, url, content=content, headers=headers, timeout=timeouts(wait_s))


class Forwarder:
    """Relays the current request to another node's REST API over one pooled HTTP client."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @property
    def http(self) -> httpx.AsyncClient:
        """The node's pooled client for calls to other nodes (it carries the cluster's TLS settings)."""
        return self._http

    async def forward(
        self, base_url: str, leader: str, *, wait_s: float = 0.0, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Relay the current request to `leader`; `wait_s` is how long its handler may legitimately wait, and
        `headers` replace or add request headers (the SQS endpoint swaps a SigV4 signature, valid only for this
        host, for a bearer token of the same caller)."""
        if hops() >= MAX_HOPS:
            raise Unavailable(f"leadership is moving (last seen at {leader}); retry shortly")
        outgoing_headers = {name: request.headers[name] for name in _REQUEST_HEADERS if name in request.headers}
        outgoing_headers.update(headers or {})
        outgoing_headers[HOPS_HEADER] = str(hops() + 1)
        timeout = timeouts(wait_s)
        outgoing = self._http.build_request(
            request.method,
            base_url.rstrip("/") + request.full_path.rstrip("?"),
            content=await request.get_data(cache=True, as_text=False, parse_form_data=False),
            headers=outgoing_headers,
            timeout=httpx.Timeout(timeout.write, connect=timeout.connect, read=max(timeout.read or 0.0, STREAM_IDLE_S)),
        )
        with answer_within(leader, request.method, wait_s):
            answer = await self._http.send(outgoing, stream=True)
            relayed = {name: answer.headers[name] for name in _RESPONSE_HEADERS if name in answer.headers}
            if answer.headers.get("content-type", "").startswith("text/event-stream"):
                response = Response(_relay(answer), status=answer.status_code, headers=relayed)
                response.timeout = None
                return response
            try:
                return Response(await answer.aread(), status=answer.status_code, headers=relayed)
            finally:
                await answer.aclose()


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The leader's event stream, until either side ends it or the leader is silent for `STREAM_IDLE_S`."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.TransportError:  # a read timeout included: the client reconnects and reaches a live leader
        return
    finally:
        await answer.aclose()
