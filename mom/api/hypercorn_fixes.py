"""Two corrections to Hypercorn 0.18's HTTP/1.1 serving under trio, applied once when a node starts its server.

1. A connection that must close (the client sent `Connection: close`, or a request body was cut off by the body
   timeout) was left open: Hypercorn closes the socket from the task that sent the response, and Quart-trio
   cancels that task as soon as the response is out (on the `http.disconnect` Hypercorn itself delivers), so the
   close was cancelled half-way and the socket stayed open until the client gave up. The close is shielded here.
2. Errors Hypercorn answers itself, before any application code runs (431 headers too large, 400 unparseable
   request), went out without a body; they get an RFC 9457 problem+json body like every other error of mom.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus
from itertools import chain
from typing import Any

import h11
import msgspec
import trio
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.trio import tcp_server

from mom.api.errors import PROBLEM_TYPE_BASE

_APPLIED = "_mom_fixes_applied"


def _shielded(close: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    async def shielded_close(self: Any) -> None:
        with trio.CancelScope(shield=True):
            await close(self)

    return shielded_close


async def _problem_error_response(self: Any, status_code: int) -> None:
    phrase = HTTPStatus(status_code).phrase if status_code in HTTPStatus._value2member_map_ else "Bad request"
    body = msgspec.json.encode(
        {
            "type": PROBLEM_TYPE_BASE + phrase.lower().replace(" ", "-"),
            "title": phrase,
            "status": status_code,
            "detail": f"the request could not be read as HTTP/1.1 ({phrase.lower()})",
        }
    )
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    await self._send_h11_event(
        h11.Response(status_code=status_code, headers=list(chain(headers, self.config.response_headers("h11"))))
    )
    await self._send_h11_event(h11.Data(data=body))
    await self._send_h11_event(h11.EndOfMessage())


def apply() -> None:
    """Install both fixes (idempotent)."""
    if getattr(tcp_server.TCPServer, _APPLIED, False):
        return
    tcp_server.TCPServer._close = _shielded(tcp_server.TCPServer._close)  # type: ignore[method-assign,assignment]
    hypercorn_h11.H11Protocol._send_error_response = _problem_error_response  # type: ignore[method-assign]
    setattr(tcp_server.TCPServer, _APPLIED, True)
