"""Forwarding: a node that does not lead a destination passes the HTTP request on and relays the answer.

The whole request travels (method, path, query, body, the caller's bearer token), so the node that leads the
destination applies exactly the same validation, authorization and semantics as if the client had called it; a
client never needs to know who leads what. A request is forwarded at most `MAX_HOPS` times: a node that learns
of a new leader only after forwarding may forward once more, and a loop (leadership moving during the request)
ends in 503 with Retry-After, never in a wrong answer. Streams (SSE) are relayed chunk by chunk.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx
from quart import Response, request

from mom.errors import Unavailable

HOPS_HEADER = "X-Mom-Hops"
MAX_HOPS = 2
FORWARD_TIMEOUT_S = 60.0
"""Covers the longest long-poll (20 s) with room to spare."""

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
    return int(raw) if raw.isdigit() else MAX_HOPS


class Forwarder:
    """Relays the current request to another node's REST API over one pooled HTTP client."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    @property
    def http(self) -> httpx.AsyncClient:
        """The node's pooled client for calls to other nodes (it carries the cluster's TLS settings)."""
        return self._http

    async def forward(self, base_url: str, leader: str, *, headers: Mapping[str, str] | None = None) -> Response:
        """Relay the current request; `headers` replace or add request headers (the SQS endpoint swaps a
        SigV4 signature, valid only for this host, for a bearer token of the same caller)."""
        if hops() >= MAX_HOPS:
            raise Unavailable(f"leadership is moving (last seen at {leader}); retry shortly")
        outgoing_headers = {name: request.headers[name] for name in _REQUEST_HEADERS if name in request.headers}
        outgoing_headers.update(headers or {})
        outgoing_headers[HOPS_HEADER] = str(hops() + 1)
        outgoing = self._http.build_request(
            request.method,
            base_url.rstrip("/") + request.full_path.rstrip("?"),
            content=await request.get_data(cache=True, as_text=False, parse_form_data=False),
            headers=outgoing_headers,
            timeout=FORWARD_TIMEOUT_S,
        )
        try:
            answer = await self._http.send(outgoing, stream=True)
        except httpx.TransportError as exc:
            raise Unavailable(f"the leader {leader} cannot be reached ({type(exc).__name__}); retry shortly") from exc
        relayed = {name: answer.headers[name] for name in _RESPONSE_HEADERS if name in answer.headers}
        if answer.headers.get("content-type", "").startswith("text/event-stream"):
            response = Response(_relay(answer), status=answer.status_code, headers=relayed)
            response.timeout = None
            return response
        try:
            body = await answer.aread()
        except httpx.TransportError as exc:
            raise Unavailable(f"the leader {leader} went away mid-answer; retry shortly") from exc
        finally:
            await answer.aclose()
        return Response(body, status=answer.status_code, headers=relayed)


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.TransportError:
        return
    finally:
        await answer.aclose()
