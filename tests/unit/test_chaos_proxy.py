"""The chaos proxy on real loopback sockets: it forwards, holds blocked directions intact, and heals."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from mom.chaos.proxy import FaultProxy, Link
from mom.config import Address

HANG_S = 10.0
"""Only catches a hang; nothing here should take more than a few milliseconds."""
QUIET_S = 0.3
"""How long a blocked direction is watched to stay silent."""


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        try:
            async for data in stream:
                await stream.send_all(data)
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def proxied() -> AsyncIterator[tuple[FaultProxy, trio.SocketStream, trio.Nursery]]:
    """An echo server (node "b"), a proxy link a→b in front of it, and a client connection from "a"."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(trio.serve_tcp, _echo, 0)
        port = listeners[0].socket.getsockname()[1]
        proxy = FaultProxy()
        link = Link("a", "b", "replication", Address("127.0.0.1", port))
        bound = await nursery.start(proxy.run, [link])
        client = await trio.open_tcp_stream(bound[link].host, bound[link].port)
        async with client:
            yield proxy, client, nursery
        nursery.cancel_scope.cancel()


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    with trio.fail_after(HANG_S):
        while len(data) < size:
            chunk = await stream.receive_some(size - len(data))
            assert chunk, "the connection closed early"
            data += chunk
    return data


async def nothing_arrives(stream: trio.SocketStream) -> bool:
    with trio.move_on_after(QUIET_S):
        await stream.receive_some(1)
        return False
    return True


async def test_forwards_both_ways() -> None:
    async with proxied() as (proxy, client, _):
        await client.send_all(b"hello")
        assert await receive_exactly(client, 5) == b"hello"
        await trio.testing.wait_all_tasks_blocked()
        assert proxy.bytes_forwarded[("a", "b")] == 5 and proxy.bytes_forwarded[("b", "a")] == 5


async def test_a_blocked_direction_holds_bytes_and_delivers_them_in_order_after_the_heal() -> None:
    async with proxied() as (proxy, client, _):
        proxy.block("a", "b")
        await client.send_all(b"one-")
        await client.send_all(b"two")
        assert await nothing_arrives(client)
        assert proxy.bytes_forwarded[("a", "b")] == 0
        proxy.heal()
        assert await receive_exactly(client, 7) == b"one-two"


async def test_one_way_loss_from_the_server_leaves_the_other_direction_open() -> None:
    async with proxied() as (proxy, client, _):
        proxy.one_way("b", ["a"])
        await client.send_all(b"ping")
        assert await nothing_arrives(client)
        assert proxy.bytes_forwarded[("a", "b")] == 4, "a's bytes still reach b"
        proxy.heal()
        assert await receive_exactly(client, 4) == b"ping"


async def test_a_partition_cuts_new_connections_too_until_healed() -> None:
    async with proxied() as (proxy, client, _):
        proxy.partition(["a"], ["b"])
        assert proxy.blocked_directions == [("a", "b"), ("b", "a")]
        await client.send_all(b"x")
        assert await nothing_arrives(client)
        proxy.heal()
        assert await receive_exactly(client, 1) == b"x"


async def test_a_dead_server_closes_the_client_side() -> None:
    async with trio.open_nursery() as nursery:
        with trio.socket.socket() as unused:
            await unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        proxy = FaultProxy()
        link = Link("a", "b", "rest", Address("127.0.0.1", port))
        bound = await nursery.start(proxy.run, [link])
        async with await trio.open_tcp_stream(bound[link].host, bound[link].port) as client:
            with trio.fail_after(HANG_S):
                assert await client.receive_some(1) == b""
        nursery.cancel_scope.cancel()
