"""One subscription of a `StreamClient`: deliveries in arrival order, credit topped up as they are taken, and the
subscribe frame sent again on the client's next socket when one breaks."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mom.client import _protocol as p
from mom.errors import MomError, Unavailable

if TYPE_CHECKING:
    from mom.client.stream import StreamClient


class Waiter:
    """One request awaiting its answer frame."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.frame: dict[str, Any] = {}
        self.error: MomError | None = None

    def settle(self, frame: dict[str, Any] | None, error: MomError | None = None) -> None:
        if not self.done.is_set():
            self.frame, self.error = frame or {}, error
            self.done.set()

    async def result(self) -> dict[str, Any]:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        return self.frame


class Subscription:
    """Deliveries of one stream subscription, in arrival order, topping the server's credit up as they are taken."""

    def __init__(self, client: StreamClient, name: str, frame: dict[str, Any]) -> None:
        self.name = name
        self._client = client
        self._frame = {**frame, "sub": name}
        self._window = int(frame["credit"])
        self._taken = 0
        self._started: Waiter | None = None
        self._sent_on = 0
        """The socket (by the client's count of sockets) the subscribe frame last went out on."""
        self._inbox: MemoryObjectSendStream[dict[str, Any] | MomError]
        self._outbox: MemoryObjectReceiveStream[dict[str, Any] | MomError]
        self._inbox, self._outbox = anyio.create_memory_object_stream[dict[str, Any] | MomError](math.inf)

    async def start(self) -> Subscription:
        """Subscribe (once); raises the server's error (NotFound, Forbidden, ...) if it refuses."""
        if self._started is None:
            self._started = Waiter()
            self._client._subs[self.name] = self
            await self.subscribe_on_socket()
        await self._started.result()
        return self

    async def subscribe_on_socket(self, *, wait: bool = True) -> None:
        """Send the subscribe frame on the current socket, unless it went out there already (after the socket
        broke, the client sends it again on the new one, to whichever node that is, with a whole window of
        credit; deliveries not acked on the old one come back after their visibility timeout)."""
        if wait:
            await self._client._wait_up()
        if self._sent_on == self._client._sockets:
            return
        self._sent_on, self._taken = self._client._sockets, 0
        await self._client._send(self._frame, wait=wait)

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Unsubscribe; messages delivered and not acked come back after their visibility timeout."""
        if self._client._subs.pop(self.name, None) is not None and self._client._closed is None:
            with contextlib.suppress(Unavailable):  # the socket broke: the subscription ended with it
                await self._client._send({"op": "unsubscribe", "sub": self.name})

    def on_frame(self, op: Any, frame: dict[str, Any], error: MomError | None) -> None:
        if op == "deliver":
            for message in frame.get("messages", []):
                self._inbox.send_nowait(p.decode_message(message))
        elif op == "subscribed" and self._started is not None:
            self._started.settle(frame)
        elif error is not None:
            self._client._subs.pop(self.name, None)
            if self._started is not None:
                self._started.settle(None, error)
            self._inbox.send_nowait(error)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await self.start()
        item = await self._outbox.receive()
        if isinstance(item, MomError):
            self._inbox.send_nowait(item)  # every later call raises it too
            raise item
        self._taken += 1
        if (
            self._taken * 2 >= self._window
            and self.name in self._client._subs
            and self._sent_on == self._client._sockets
        ):
            await self._client._send({"op": "credit", "sub": self.name, "add": self._taken})
            self._taken = 0
        return item

    async def ack(self, receipts: Sequence[str]) -> dict[str, Any]:
        return await self._client.ack(receipts, sub=self.name)

    async def nack(self, receipts: Sequence[str], *, delay_s: float = 0.0) -> dict[str, Any]:
        return await self._client.nack(receipts, sub=self.name, delay_s=delay_s)
