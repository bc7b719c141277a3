"""Where a node's storage work runs: in worker threads shared by the whole node, never on the event loop.

A disk can stall (an fsync behind a busy device, a log reset deleting many segments), and decoding or encoding a
large snapshot is seconds of CPU: done on the trio thread, either would freeze every group of the node, miss
heartbeats and cause elections everywhere. So every blocking storage call goes through `Disk.run`, which hands it
to a worker thread. A node's `Disk` keeps at most `threads` of them: thousands of groups share a few, and a group
that waits on a slow disk holds at most one (its driver awaits each call before the next).

The workers are long-lived: they wait on one job queue and hand each result back to trio with one
`run_sync_soon`. That is the cheapest hand-off Python allows, and it matters because every durable commit makes
one: `trio.to_thread.run_sync` per call cost about 60 µs of CPU (a limiter, a context copy, a lock hand-over to a
cached thread, often a new thread when the last one had not yet gone back to the cache), the queue about a
quarter of that. A worker that has had nothing to do for `IDLE_S` ends, so an idle node (or a test that makes
many `Disk`s) keeps no threads; the next call starts one again.

The deterministic simulation runs everything inline instead (`Disk.inline()`): the same code paths in the same
order, on the trio thread, so that a seed replays exactly.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar, TypeVarTuple, Unpack

import outcome
import trio

from mom.log.fs import OS_FILES, FileSystem

T = TypeVar("T")
Args = TypeVarTuple("Args")

DEFAULT_THREADS = 16
"""Worker threads per node for storage: enough to overlap the fsyncs of many groups (the device merges them) and
to keep one stalled group from holding up the others; few enough to stay cheap with thousands of groups."""
IDLE_S = 10.0
"""How long a worker waits for a job before it ends."""


class _Job:
    """One call: run by the first worker that claims it, unless the waiting task was cancelled first."""

    __slots__ = ("args", "claim", "fn", "task", "token")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.task = trio.lowlevel.current_task()
        self.token = trio.lowlevel.current_trio_token()
        self.claim = threading.Lock()
        """Taken by the worker that starts the call, or by the cancellation of a call not yet started."""


class _Workers:
    """Up to `limit` threads taking jobs from one queue; started on demand, ended when idle."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._pending = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            self._pending += 1
            self._jobs.put(job)
            if self._pending > self._idle and self._threads < self._limit:
                self._threads += 1
                threading.Thread(target=self._work, name="mom-disk", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=IDLE_S)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._pending == 0:
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                self._pending -= 1
            if not job.claim.acquire(blocking=False):
                continue  # its task was cancelled before the call started
            result = outcome.capture(job.fn, *job.args)
            with contextlib.suppress(trio.RunFinishedError):  # the run is gone: nobody is left to tell
                job.token.run_sync_soon(trio.lowlevel.reschedule, job.task, result)


class Disk:
    """Runs a node's blocking storage calls; one instance per node, shared by all its groups."""

    def __init__(self, fs: FileSystem = OS_FILES, *, threads: int | None = DEFAULT_THREADS) -> None:
        if threads is not None and threads < 1:
            raise ValueError("a disk needs at least one worker thread (or None: inline)")
        self.fs = fs
        """The files the storage of this node's groups lives in."""
        self._workers = _Workers(threads) if threads is not None else None

    @classmethod
    def inline(cls, fs: FileSystem = OS_FILES) -> Disk:
        """Every call on the calling (trio) thread: for the deterministic simulation only."""
        return cls(fs, threads=None)

    def lane(self, threads: int) -> Disk:
        """A disk on the same files with `threads` workers of its own: what runs there never waits behind this
        one's queue (the metadata group's writes behind thousands of groups' recoveries or votes)."""
        return Disk(self.fs, threads=None if self._workers is None else threads)

    async def run(self, fn: Callable[[Unpack[Args]], T], *args: *Args) -> T:
        """`fn(*args)` in a worker thread; the caller must not touch what `fn` uses until it returns.

        Cancellable only until a worker starts the call (while every worker is busy): a started call cannot be
        interrupted, so a cancellation then waits for it to finish, and storage is never closed under a running
        write.
        """
        if self._workers is None:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        await trio.lowlevel.checkpoint_if_cancelled()
        job = _Job(fn, args)
        self._workers.submit(job)

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            return trio.lowlevel.Abort.SUCCEEDED if job.claim.acquire(blocking=False) else trio.lowlevel.Abort.FAILED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result
