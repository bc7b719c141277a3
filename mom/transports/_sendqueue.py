"""A peer's outgoing frames: a FIFO bounded in frames and in bytes, that drops rather than waits.

Every transport queues what it sends to a peer in one of these, so that a peer that is slow, stopped or gone
costs at most `max_bytes` (and `max_frames`) of memory, whatever the traffic. `offer` never blocks: a frame that
does not fit is refused and counted, and Raft sends again whatever it needed (a follower's missing entries, a
snapshot chunk). A frame larger than the whole budget still goes when the queue is empty, alone, so no message
can be stuck forever.

Two flavours share the accounting: `SendQueue` for a trio consumer (memory, zmq), `ThreadSendQueue` for a
consumer in a thread (grpcio's request iterator), both fed from the trio thread.
"""

from __future__ import annotations

import threading
from collections import deque

import trio


class _Bounded:
    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._frames: deque[bytes] = deque()
        self.queued_bytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._frames)

    def _admit(self, frame: bytes) -> bool:
        if self._frames and (len(self._frames) >= self._max_frames or self.queued_bytes + len(frame) > self._max_bytes):
            self.dropped += 1
            return False
        self._frames.append(frame)
        self.queued_bytes += len(frame)
        return True

    def _take(self) -> bytes:
        frame = self._frames.popleft()
        self.queued_bytes -= len(frame)
        return frame


class SendQueue(_Bounded):
    """Offered on the trio thread, taken by a trio task."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        super().__init__(max_frames, max_bytes)
        self._nonempty = trio.Event()

    def offer(self, frame: bytes) -> bool:
        """Queue `frame` (True) or drop it and count it (False); never blocks."""
        if not self._admit(frame):
            return False
        self._nonempty.set()
        return True

    async def get(self) -> bytes:
        await self.first()
        return self._take()

    async def first(self) -> bytes:
        """The oldest frame, left in the queue (and in its byte count) until `remove_first`: a frame being
        handed on still costs memory until it is gone."""
        while not self._frames:
            await self._nonempty.wait()
            self._nonempty = trio.Event()
        return self._frames[0]

    def remove_first(self) -> None:
        self._take()


class ThreadSendQueue(_Bounded):
    """Offered on the trio thread, taken by a (grpc) thread that waits at most a timeout."""

    def __init__(self, max_frames: int, max_bytes: int) -> None:
        super().__init__(max_frames, max_bytes)
        self._lock = threading.Condition()

    def offer(self, frame: bytes) -> bool:
        """Queue `frame` (True) or drop it and count it (False); never blocks beyond taking a lock."""
        with self._lock:
            if not self._admit(frame):
                return False
            self._lock.notify()
        return True

    def get(self, timeout: float) -> bytes | None:
        """The next frame, or None after `timeout` seconds without one."""
        with self._lock:
            if not self._frames and not self._lock.wait_for(lambda: bool(self._frames), timeout):
                return None
            return self._take()
