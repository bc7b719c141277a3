"""Awaiting a pyzmq socket under trio, without a thread and without polling in a loop.

A ZeroMQ socket exposes one file descriptor (`zmq.FD`) that is *edge-triggered*: it becomes readable when
the socket's state may have changed, and reading `zmq.EVENTS` (or sending / receiving) resets it. So the
descriptor says nothing about messages already queued: a reader that takes one message and then waits on the
descriptor again sleeps forever while the rest of a burst sits in the socket. The rule kept here: always try
the operation first, then ask `zmq.EVENTS`, and wait on the descriptor only when EVENTS says nothing is ready.
One task at a time may await a given socket (trio refuses two waiters on one descriptor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import trio
import zmq

T = TypeVar("T")


class FrameSource(Protocol):
    """Where `send_many` takes frames from (a `SendQueue`): `first` returns at once while `len` > 0."""

    def __len__(self) -> int: ...

    async def first(self) -> bytes: ...

    def remove_first(self) -> None: ...


class TrioSocket:
    """One zmq socket for trio code: receive, or send waiting while the socket is at its high-water mark."""

    def __init__(self, socket: zmq.Socket[bytes]) -> None:
        self.socket = socket
        self._fd = int(socket.getsockopt(zmq.FD))
        self.wakeups = 0
        """How many times the descriptor woke us: a spinning integration shows here (tests count it)."""

    async def send_many(self, frames: FrameSource) -> None:
        """Send the frames of `frames` (one single-frame message each, removed once ZeroMQ has it) until it is
        empty, waiting (cancellably) while the socket cannot take more. One trip through trio's scheduler per
        burst, not per frame, as for receiving."""
        data = await frames.first()
        while True:
            try:
                self.socket.send(data, zmq.NOBLOCK)
            except zmq.Again:
                if int(self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLOUT:
                    continue
                await trio.lowlevel.wait_readable(self._fd)
                self.wakeups += 1
                continue
            frames.remove_first()
            if not len(frames):
                await trio.lowlevel.checkpoint()
                return
            data = await frames.first()

    async def recv_multipart(self) -> list[bytes]:
        """The next whole message; a checkpoint like every trio operation, cancellable while it waits."""
        return (await self.recv_batch(1))[0]

    async def recv_batch(self, limit: int) -> list[list[bytes]]:
        """Between 1 and `limit` whole messages: waits for the first, then takes those already queued.

        One trip through trio's scheduler per batch instead of per message is what makes small frames cheap.
        """
        return await self._recv_batch(limit, lambda: self.socket.recv_multipart(zmq.NOBLOCK))

    async def recv_frames(self, limit: int) -> list[list[zmq.Frame]]:
        """As `recv_batch`, as `zmq.Frame`s: they carry the connection's metadata, such as its ZAP `User-Id`."""
        return await self._recv_batch(limit, lambda: self.socket.recv_multipart(zmq.NOBLOCK, copy=False))

    async def _recv_batch(self, limit: int, receive: Callable[[], T]) -> list[T]:
        await trio.lowlevel.checkpoint_if_cancelled()
        batch: list[T] = []
        while True:
            try:
                while len(batch) < limit:
                    batch.append(receive())
            except zmq.Again:
                pass
            if batch:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return batch
            if int(self.socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
                continue
            await trio.lowlevel.wait_readable(self._fd)
            self.wakeups += 1
