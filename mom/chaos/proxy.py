"""A fault-injecting TCP proxy between the nodes of a chaos cluster: partitions and one-way loss on demand.

Every directed link (node A dials node B, for replication or for forwarded REST requests) gets its own listening
port on 127.0.0.1; A's config file names that port as B's address, and the proxy forwards each connection to
B's real port. A fault blocks the bytes that flow *from* one node *to* another, whatever connection carries them:
on a link A→B that is the client-to-server direction, on a link B→A the server-to-client one.

Blocked bytes are held, not discarded: the proxy stops reading in that direction, so they wait in its buffer and
the kernel's, the sender's window fills, and nothing more arrives until the heal. That is what packet loss does
to a TCP connection (the sender retransmits until the path is back or a keepalive gives up), so the streams stay
intact and the nodes' own timeouts decide when to drop and redial. A connection made while blocked is accepted
and connected upstream, but carries nothing in the blocked direction, as a redial across a lossy path would.

A node that dies closes its side; the proxy then closes the other side too, so the peer notices as it would
on a direct connection.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial

import trio

from mom.config import Address

log = logging.getLogger("mom.chaos.proxy")

CHUNK_BYTES = 64 * 1024
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Link:
    """Connections that node `client` opens to node `server`, for one kind of traffic."""

    client: str
    server: str
    kind: str
    """"replication" or "rest": only a label, both are plain TCP here."""
    target: Address
    """The server's real address."""


class FaultProxy:
    """Forwards every `Link` through a port of its own; `block` / `partition` / `one_way` / `heal` inject faults.

    Start it with `ports = await nursery.start(proxy.run, links)`: `ports` maps each link to its listening
    address. The fault controls may be called at any time from the same trio run; they act on open connections
    and on new ones alike.
    """

    def __init__(self) -> None:
        self._blocked: set[tuple[str, str]] = set()
        self._changed = trio.Event()
        self.bytes_forwarded: Counter[tuple[str, str]] = Counter()
        """Bytes delivered from node to node (direction of flow, not of the connection)."""
        self.connections: Counter[Link] = Counter()

    # -- faults

    def blocked(self, sender: str, receiver: str) -> bool:
        return (sender, receiver) in self._blocked

    @property
    def blocked_directions(self) -> list[tuple[str, str]]:
        return sorted(self._blocked)

    def block(self, sender: str, receiver: str) -> None:
        """Hold every byte from `sender` to `receiver` until the direction is healed."""
        self._set(self._blocked | {(sender, receiver)})

    def partition(self, side_a: Iterable[str], side_b: Iterable[str]) -> None:
        """Cut both directions between every node of `side_a` and every node of `side_b`."""
        a, b = list(side_a), list(side_b)
        pairs = {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}
        self._set(self._blocked | pairs)

    def one_way(self, sender: str, receivers: Iterable[str]) -> None:
        """Lose what `sender` sends to `receivers`; what they send to it still arrives."""
        self._set(self._blocked | {(sender, r) for r in receivers})

    def heal(self) -> None:
        """Let every held byte through and forward normally again."""
        self._set(set())

    def _set(self, blocked: set[tuple[str, str]]) -> None:
        if blocked != self._blocked:
            self._blocked = blocked
            self._changed.set()
            self._changed = trio.Event()

    async def _wait_open(self, sender: str, receiver: str) -> None:
        while (sender, receiver) in self._blocked:
            await self._changed.wait()

    # -- forwarding

    async def run(
        self,
        links: Iterable[Link],
        *,
        task_status: trio.TaskStatus[dict[Link, Address]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen for every link (port chosen by the OS) and forward until cancelled."""
        async with trio.open_nursery() as nursery:
            bound: dict[Link, Address] = {}
            for link in links:
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                sockname = listeners[0].socket.getsockname()
                bound[link] = Address(str(sockname[0]), int(sockname[1]))
                nursery.start_soon(partial(trio.serve_listeners, partial(self._serve, link), listeners))
            task_status.started(bound)

    async def _serve(self, link: Link, client: trio.SocketStream) -> None:
        self.connections[link] += 1
        async with client:
            try:
                with trio.fail_after(CONNECT_TIMEOUT_S):
                    server = await trio.open_tcp_stream(link.target.host, link.target.port)
            except (OSError, trio.TooSlowError):
                return  # the node is down: the client sees its connection closed, as if refused
            async with server, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, server, link.client, link.server, nursery.cancel_scope)
                nursery.start_soon(self._pump, server, client, link.server, link.client, nursery.cancel_scope)

    async def _pump(
        self,
        source: trio.SocketStream,
        sink: trio.SocketStream,
        sender: str,
        receiver: str,
        both: trio.CancelScope,
    ) -> None:
        """Copy `sender`'s bytes to `receiver` while the direction is open; either end closing closes both."""
        try:
            while True:
                await self._wait_open(sender, receiver)
                data = await source.receive_some(CHUNK_BYTES)
                if not data:
                    break
                await self._wait_open(sender, receiver)
                await sink.send_all(data)
                self.bytes_forwarded[(sender, receiver)] += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            both.cancel()
