"""Consuming over the streaming WebSocket from blocking code: `Client.consume(...)`.

    with client.consume(queue="orders", prefetch=100) as sub:
        for message in sub:
            handle(message)
            sub.ack_nowait(message["receipt"])      # batched: one ack frame for many messages

The `StreamClient` and its subscription run on an event loop in a thread of their own (an anyio blocking
portal), so the caller's thread only waits for the next message; deliveries keep arriving, up to the prefetch
window, while it works. Every method is the blocking twin of `mom.client.subscription.Subscription`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from functools import partial
from types import TracebackType
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from mom.client.stream import StreamClient
from mom.client.subscription import Subscription
from mom.errors import InvalidInput


class BlockingSubscription:
    """A stream subscription driven from blocking code; use it in `with` (leaving it closes the socket)."""

    def __init__(self, connect: Callable[[], StreamClient], **subscribe: Any) -> None:
        """`connect` builds the (not yet opened) StreamClient; `subscribe` are `StreamClient.subscribe`'s options."""
        self._connect = connect
        self._options = subscribe
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None
        self._sub: Subscription | None = None

    def __enter__(self) -> BlockingSubscription:
        try:
            portal = self._portal = self._stack.enter_context(start_blocking_portal())
            stream = self._stack.enter_context(portal.wrap_async_context_manager(portal.call(self._open)))
            subscription = portal.call(partial(stream.subscribe, **self._options))
            self._sub = self._stack.enter_context(portal.wrap_async_context_manager(subscription))
        except BaseException:
            self._stack.close()
            raise
        return self

    async def _open(self) -> StreamClient:
        return self._connect()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Send the queued acks, give back what was delivered and not taken, unsubscribe, close the socket."""
        self._portal = self._sub = None
        self._stack.__exit__(exc_type, exc, tb)

    def _open_sub(self) -> tuple[BlockingPortal, Subscription]:
        if self._portal is None or self._sub is None:
            raise InvalidInput("use the subscription in 'with' (it is not open)")
        return self._portal, self._sub

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        """The next message, waiting as long as it takes; raises the subscription's error if it ended."""
        portal, sub = self._open_sub()
        return portal.call(sub.__anext__)

    def ack(self, receipts: Sequence[str]) -> dict[str, Any]:
        portal, sub = self._open_sub()
        return portal.call(sub.ack, receipts)

    def nack(self, receipts: Sequence[str], *, delay_s: float = 0.0) -> dict[str, Any]:
        portal, sub = self._open_sub()
        return portal.call(partial(sub.nack, receipts, delay_s=delay_s))

    def ack_nowait(self, *receipts: str) -> None:
        portal, sub = self._open_sub()
        portal.call(sub.ack_nowait, *receipts)
