"""Corrections to Hypercorn 0.18's HTTP/1.1 serving under trio, applied once when a node starts its server.

1. A connection that must close (the client sent `Connection: close`, or a request body was cut off by the body
   timeout) was left open: Hypercorn closes the socket from the task that sent the response, and Quart-trio
   cancels that task as soon as the response is out (on the `http.disconnect` Hypercorn itself delivers), so the
   close was cancelled half-way and the socket stayed open until the client gave up. The close is shielded here.
2. Errors Hypercorn answers itself, before any application code runs (431 headers too large, 400 unparseable
   request), went out without a body; they get an RFC 9457 problem+json body like every other error of mom.
3. Every answer went out in two or three socket writes (the status line and headers, the body, the end), each
   a system call and a trip through trio's scheduler: the headers are now held back and written with the body.
4. Every WebSocket frame was one socket write. `corked()` lets the code that sends frames hold a connection's
   writes for a moment and write what it sent in one go (`mom.api.routes.stream` sends the answers that are
   ready together); writes stay in order, and the block waits until they are written, so back-pressure holds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from http import HTTPStatus
from itertools import chain
from typing import Any

import h11
import msgspec
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol import h11 as hypercorn_h11
from hypercorn.protocol.events import Response
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


# -- 3. an answer's headers written with its body

_HELD = "_mom_held_headers"


async def _send_h11_event_holding_headers(self: Any, event: Any) -> None:
    """Hypercorn's `_send_h11_event`, except that a response's head is kept until the next event is written."""
    try:
        data = self.connection.send(event) or b""
    except h11.LocalProtocolError:
        if self.connection.their_state != h11.ERROR:
            raise
        return
    held = self.__dict__.pop(_HELD, b"")
    if isinstance(event, h11.Response):
        setattr(self, _HELD, held + data)
        return
    await self.send(RawData(data=held + data))


def _flushing_held(original: Callable[[Any, Any], Awaitable[None]]) -> Callable[[Any, Any], Awaitable[None]]:
    async def stream_send(self: Any, event: Any) -> None:
        await original(self, event)
        if not isinstance(event, Response) and (held := self.__dict__.pop(_HELD, b"")):
            await self.send(RawData(data=held))  # a head with no body event after it (the answer was cut short)

    return stream_send


# -- 4. corked WebSocket writes

_SERVER: ContextVar[Any] = ContextVar("mom_hypercorn_server")
"""The connection (Hypercorn's TCPServer) the current task serves: its ASGI app task inherits it."""
_CORK, _CORKED = "_mom_cork", "_mom_corked"


def _serving(run: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
    async def serving(self: Any) -> None:
        _SERVER.set(self)
        setattr(self, _CORK, 0)
        setattr(self, _CORKED, [])
        await run(self)

    return serving


def _corkable(protocol_send: Callable[[Any, Event], Awaitable[None]]) -> Callable[[Any, Event], Awaitable[None]]:
    async def send(self: Any, event: Event) -> None:
        if isinstance(event, RawData) and self.__dict__.get(_CORK):
            getattr(self, _CORKED).append(event.data)
            return
        if isinstance(event, Closed):
            await _flush(self)
        await protocol_send(self, event)

    return send


async def _flush(server: Any) -> None:
    corked: list[bytes] = getattr(server, _CORKED, [])
    if corked:
        data = b"".join(corked)
        corked.clear()
        with trio.CancelScope(shield=True):
            await _protocol_send(server, RawData(data=data))


_protocol_send: Callable[[Any, Event], Awaitable[None]] = tcp_server.TCPServer.protocol_send


@asynccontextmanager
async def corked() -> AsyncIterator[None]:
    """Hold the socket writes of the connection the current task serves until the block ends, then write them in
    one system call (nothing happens outside a Hypercorn connection, or before `apply`)."""
    server = _SERVER.get(None)
    if server is None:
        yield
        return
    setattr(server, _CORK, getattr(server, _CORK) + 1)
    try:
        yield
    finally:
        setattr(server, _CORK, getattr(server, _CORK) - 1)
        if not getattr(server, _CORK):
            await _flush(server)


def apply() -> None:
    """Install the fixes (idempotent)."""
    if getattr(tcp_server.TCPServer, _APPLIED, False):
        return
    server = tcp_server.TCPServer
    server._close = _shielded(server._close)  # type: ignore[method-assign,assignment]
    server.run = _serving(server.run)  # type: ignore[method-assign,assignment]
    server.protocol_send = _corkable(server.protocol_send)  # type: ignore[method-assign,assignment]
    protocol = hypercorn_h11.H11Protocol
    protocol._send_error_response = _problem_error_response  # type: ignore[method-assign]
    protocol._send_h11_event = _send_h11_event_holding_headers  # type: ignore[method-assign]
    protocol.stream_send = _flushing_held(protocol.stream_send)  # type: ignore[method-assign,assignment]
    setattr(server, _APPLIED, True)
