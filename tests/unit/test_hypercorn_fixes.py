"""Corked writes (mom.api.hypercorn_fixes): what a task sends inside `corked()` leaves in one write, in order."""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import TCPServer

from mom.api import hypercorn_fixes


class _Stream:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    async def send_all(self, data: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.writes.append(bytes(data))

    async def send_eof(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True


class _Protocol:
    async def handle(self, event: Any) -> None:
        pass


def _server() -> Any:
    """A TCPServer as `run` leaves it for its connection, with a stream that records its writes."""
    hypercorn_fixes.apply()
    server: Any = object.__new__(TCPServer)
    server.send_lock = trio.Lock()
    server.stream = _Stream()
    server.protocol = _Protocol()
    return server


async def _serving(server: Any, body: Any) -> None:
    """Run `body` as a task of the connection: `_serving` marks the connection for its tasks as `run` does."""

    async def run(self: Any) -> None:
        await body()

    await hypercorn_fixes._serving(run)(server)


async def test_writes_inside_a_cork_leave_together_in_order() -> None:
    server = _server()

    async def body() -> None:
        await server.protocol_send(RawData(data=b"before "))
        async with hypercorn_fixes.corked():
            for part in (b"a", b"b", b"c"):
                await server.protocol_send(RawData(data=part))
            assert server.stream.writes == [b"before "]  # nothing of the corked ones yet
        await server.protocol_send(RawData(data=b" after"))

    await _serving(server, body)
    assert server.stream.writes == [b"before ", b"abc", b" after"]


async def test_closing_inside_a_cork_writes_what_was_held_first() -> None:
    server = _server()

    async def body() -> None:
        async with hypercorn_fixes.corked():
            await server.protocol_send(RawData(data=b"last frame"))
            await server.protocol_send(Closed())

    await _serving(server, body)
    assert server.stream.writes == [b"last frame"]
    assert server.stream.closed


async def test_outside_a_connection_a_cork_does_nothing() -> None:
    async with hypercorn_fixes.corked():
        pass
