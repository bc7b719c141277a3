"""One consumer over the streaming WebSocket: deliveries pushed with flow control, acks batched in frames.

Two kinds of flow control, chosen when subscribing:

- `prefetch=N` (as AMQP's basic.qos): at most N messages are delivered to the subscription and not yet acked or
  nacked. Credit goes back to the server only once a settle frame for earlier messages is answered, so the
  queue's `in_flight` count for this consumer never exceeds N. A message taken and never settled keeps its slot
  until the subscription closes (its lease expires on the server and it is delivered again, maybe elsewhere).
- `credit=N`: at most N messages are delivered and not yet taken from the iterator; credit is topped up as the
  caller takes messages, whether or not it acks them.

Acks and nacks are batched: `ack_nowait(receipt)` queues a receipt and returns at once; the queued receipts leave
as one ack frame when `ack_batch` of them wait or `ack_linger_ms` after the first, and closing the subscription
sends what is left and waits for the answers. A failed batch (after the client's retries) ends the iteration
with its error. `await ack(...)` settles at once and returns the server's answer.

When the client's socket breaks, the client opens one (maybe to another node) and each subscription subscribes
again there with a whole window: what the old socket delivered and was not settled comes back after its
visibility timeout, so it no longer counts against the prefetch window (acking it still works while its lease
lasts).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from mom.client import _protocol as p
from mom.errors import InvalidInput, MomError, Unavailable

if TYPE_CHECKING:
    from mom.client.stream import StreamClient

MAX_WINDOW = 10_000
"""The server's limit on the credit one subscription may be owed (`MAX_CREDIT` of the stream frames)."""
ACKS_IN_FLIGHT = 8
"""Batched settle frames awaiting their answers at once per subscription."""


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
    """Deliveries of one stream subscription, in arrival order; see the module's docstring for flow control."""

    def __init__(
        self,
        client: StreamClient,
        name: str,
        frame: dict[str, Any],
        *,
        prefetch: bool,
        ack_batch: int = 100,
        ack_linger_ms: float = 5.0,
    ) -> None:
        window = int(frame["credit"])
        if not 1 <= window <= MAX_WINDOW:
            raise InvalidInput(f"the credit or prefetch window must be from 1 to {MAX_WINDOW}")
        if not 1 <= ack_batch <= 1000:
            raise InvalidInput("ack_batch must be from 1 to 1000 (the server's receipts limit per frame)")
        self.name = name
        self.prefetch = window if prefetch else None
        self._client = client
        self._frame = {**frame, "sub": name}
        self._window = window
        self._taken = 0
        self._leased: set[str] = set()
        """Receipts delivered on the current socket and not yet answered as settled: what the prefetch window
        counts."""
        self._started: Waiter | None = None
        self._sent_on = 0
        """The socket (by the client's count of sockets) the subscribe frame last went out on."""
        self._inbox: MemoryObjectSendStream[dict[str, Any] | MomError]
        self._outbox: MemoryObjectReceiveStream[dict[str, Any] | MomError]
        self._inbox, self._outbox = anyio.create_memory_object_stream[dict[str, Any] | MomError](math.inf)
        self._ack_batch = ack_batch
        self._ack_linger_s = ack_linger_ms / 1000
        self._acks: list[str] = []
        self._acks_waiting = anyio.Event()
        self._acks_slots = anyio.Semaphore(ACKS_IN_FLIGHT)
        self._acks_pending = 0
        self._acks_done = anyio.Event()
        self._flusher = anyio.CancelScope()
        self._closing = False

    # -- life cycle

    async def start(self) -> Subscription:
        """Subscribe (once); raises the server's error (NotFound, Forbidden, ...) if it refuses."""
        if self._started is None:
            tasks = self._client._tasks
            assert tasks is not None, "use StreamClient in 'async with'"
            self._started = Waiter()
            self._client._subs[self.name] = self
            tasks.start_soon(self._flush_loop)
            await self.subscribe_on_socket()
        await self._started.result()
        return self

    async def subscribe_on_socket(self, *, wait: bool = True) -> None:
        """Send the subscribe frame on the current socket, unless it went out there already (after the socket
        broke, the client sends it again on the new one, to whichever node that is, with a whole window of
        credit; deliveries not settled on the old one come back after their visibility timeout)."""
        if wait:
            await self._client._wait_up()
        if self._sent_on == self._client._sockets:
            return
        self._sent_on, self._taken = self._client._sockets, 0
        self._leased.clear()
        await self._client._send(self._frame, wait=wait)

    @property
    def _on_current_socket(self) -> bool:
        return self._sent_on == self._client._sockets

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Send the acks still queued and wait for their answers, give back what was delivered but never taken
        from the iterator (a nack: it is delivered again at once), then unsubscribe.

        Messages taken and not acked come back after their visibility timeout.
        """
        if self._closing:
            return
        self._closing = True
        try:
            with anyio.move_on_after(self._client.timeout):
                await self._drain_acks()
                await self._release_untaken()
        finally:
            self._flusher.cancel()
            self._inbox.send_nowait(Unavailable("the subscription is closed"))
            if self._client._subs.pop(self.name, None) is not None and self._client._closed is None:
                with contextlib.suppress(Unavailable):  # the socket broke: the subscription ended with it
                    await self._client._send({"op": "unsubscribe", "sub": self.name})

    # -- frames from the server

    def on_frame(self, op: Any, frame: dict[str, Any], error: MomError | None) -> None:
        if op == "deliver":
            for message in frame.get("messages", []):
                decoded = p.decode_message(message)
                self._leased.add(str(decoded["receipt"]))
                self._inbox.send_nowait(decoded)
        elif op == "subscribed" and self._started is not None:
            self._started.settle(frame)
        elif error is not None:
            self._client._subs.pop(self.name, None)
            if self._started is not None:
                self._started.settle(None, error)
            self._inbox.send_nowait(error)

    # -- taking messages

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self

    async def __anext__(self) -> dict[str, Any]:
        await self.start()
        item = await self._outbox.receive()
        if isinstance(item, MomError):
            self._inbox.send_nowait(item)  # every later call raises it too
            raise item
        if self.prefetch is None:
            self._taken += 1
            if self._taken * 2 >= self._window:
                await self._grant(self._taken)
                self._taken = 0
        return item

    async def _grant(self, amount: int) -> None:
        if amount > 0 and self.name in self._client._subs and self._client._closed is None and self._on_current_socket:
            await self._client._send({"op": "credit", "sub": self.name, "add": amount})

    # -- settling

    async def ack(self, receipts: Sequence[str]) -> dict[str, Any]:
        """Ack now and return the server's answer (`acked`, `unknown`)."""
        return await self._settled(await self._client.ack(receipts, sub=self.name))

    async def nack(self, receipts: Sequence[str], *, delay_s: float = 0.0) -> dict[str, Any]:
        """Give the messages back for redelivery after `delay_s`; returns the answer (`nacked`, `unknown`)."""
        return await self._settled(await self._client.nack(receipts, sub=self.name, delay_s=delay_s))

    def ack_nowait(self, *receipts: str) -> None:
        """Queue receipts to be acked in a batch (see the module's docstring); returns at once."""
        if self._closing:
            raise InvalidInput("the subscription is closed")
        self._acks.extend(receipts)
        self._acks_waiting.set()

    async def _settled(self, answer: dict[str, Any]) -> dict[str, Any]:
        """With a prefetch window, every receipt answered (settled, or unknown: no longer leased) frees a slot."""
        if self.prefetch is not None and not self._closing:
            answered = {r for k, v in answer.items() if k in ("acked", "nacked", "unknown") for r in v}
            freed = answered & self._leased  # a receipt settled twice, or delivered on an old socket, frees none
            self._leased -= freed
            await self._grant(len(freed))
        return answer

    async def _flush_loop(self) -> None:
        """Send queued receipts as one frame once `ack_batch` wait or `ack_linger_ms` after the first."""
        with self._flusher:
            async with anyio.create_task_group() as tasks:
                while True:
                    await self._acks_waiting.wait()
                    if len(self._acks) < self._ack_batch:
                        with anyio.move_on_after(self._ack_linger_s):
                            while len(self._acks) < self._ack_batch:
                                self._acks_waiting = anyio.Event()
                                await self._acks_waiting.wait()
                    await self._ship(tasks)

    async def _ship(self, tasks: anyio.abc.TaskGroup) -> None:
        batch, self._acks = self._acks[: self._ack_batch], self._acks[self._ack_batch :]
        if not self._acks:
            self._acks_waiting = anyio.Event()
        if not batch:
            return
        await self._acks_slots.acquire()
        self._acks_pending += 1
        tasks.start_soon(self._send_acks, batch)

    async def _send_acks(self, batch: list[str]) -> None:
        try:
            await self.ack(batch)
        except MomError as exc:
            self._inbox.send_nowait(exc)
        finally:
            self._acks_slots.release()
            self._acks_pending -= 1
            if self._acks_pending == 0:
                self._acks_done.set()

    async def _release_untaken(self) -> None:
        untaken: list[str] = []
        while True:
            try:
                item = self._outbox.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
            if isinstance(item, MomError):
                self._inbox.send_nowait(item)
                return  # the subscription ended: nothing more can be settled through it
            untaken.append(str(item["receipt"]))
        for start in range(0, len(untaken), 1000):
            try:
                await self._client.nack(untaken[start : start + 1000], sub=self.name)
            except MomError:
                return

    async def _drain_acks(self) -> None:
        while self._acks:
            batch, self._acks = self._acks[: self._ack_batch], self._acks[self._ack_batch :]
            try:
                await self.ack(batch)
            except MomError:
                break  # the connection is gone: the leases expire and the messages come back
        while self._acks_pending:
            self._acks_done = anyio.Event()
            await self._acks_done.wait()
