"""Where a node's storage work runs: in worker threads shared by the whole node, never on the event loop.

A disk can stall (an fsync behind a busy device, a log reset deleting many segments), and decoding or encoding a
large snapshot is seconds of CPU: done on the trio thread, either would freeze every group of the node, miss
heartbeats and cause elections everywhere. So every blocking storage call goes through `Disk.run`, which hands it
to a worker thread. One `trio.CapacityLimiter` per node bounds those threads: thousands of groups share a few, and
a group that waits on a slow disk holds at most one (its driver awaits each call before the next).

The deterministic simulation runs everything inline instead (`Disk.inline()`): the same code paths in the same
order, on the trio thread, so that a seed replays exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, TypeVarTuple, Unpack

import trio

from mom.log.fs import OS_FILES, FileSystem

T = TypeVar("T")
Args = TypeVarTuple("Args")

DEFAULT_THREADS = 16
"""Worker threads per node for storage: enough to overlap the fsyncs of many groups (the device merges them) and
to keep one stalled group from holding up the others; few enough to stay cheap with thousands of groups."""


class Disk:
    """Runs a node's blocking storage calls; one instance per node, shared by all its groups."""

    def __init__(self, fs: FileSystem = OS_FILES, *, threads: int | None = DEFAULT_THREADS) -> None:
        if threads is not None and threads < 1:
            raise ValueError("a disk needs at least one worker thread (or None: inline)")
        self.fs = fs
        """The files the storage of this node's groups lives in."""
        self._limiter = trio.CapacityLimiter(threads) if threads is not None else None

    @classmethod
    def inline(cls, fs: FileSystem = OS_FILES) -> Disk:
        """Every call on the calling (trio) thread: for the deterministic simulation only."""
        return cls(fs, threads=None)

    async def run(self, fn: Callable[[Unpack[Args]], T], *args: *Args) -> T:
        """`fn(*args)` in a worker thread; the caller must not touch what `fn` uses until it returns.

        Not cancellable once started (a thread cannot be interrupted): a cancellation waits for the call to finish,
        so storage is never closed under a running write.
        """
        if self._limiter is None:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await trio.to_thread.run_sync(fn, *args, limiter=self._limiter)
