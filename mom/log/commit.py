"""Group commit: many appended records made durable by one fsync, without blocking the trio event loop.

An fsync costs about the same for one record as for a thousand, so the throughput of durable writes is set
by how many records each fsync covers. Appends are synchronous and only write to the file (page cache);
one background loop repeatedly syncs everything appended so far in a worker thread, and whatever is
appended while that fsync runs waits for the next one. Under load batches grow by themselves; when idle a
single record is synced at once, so latency is one fsync, never a timer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from mom.errors import StorageError
from mom.log.log import SegmentedLog


class GroupCommitter:
    """Appends records to a log and reports, in order, the highest index that is durable.

    `append`/`append_many` and `on_durable` run on the trio thread; only `SegmentedLog.sync` runs in a
    worker thread, which the log allows (see its thread-safety contract). A failed write or sync is never
    acknowledged: `run` raises StorageError and stops, and the node must not answer as if it had been kept.

    The loop notices "something was appended since the last sync", not index arithmetic, so it stays
    correct after `truncate_suffix` or `reset` of the log. A report made by a sync that was in flight while
    the log was truncated refers to the records as they were when that sync began; a caller that truncates
    must not read it as covering records appended after the truncation (the next report covers those).
    """

    def __init__(self, log: SegmentedLog, *, fsync: bool, on_durable: Callable[[int], None]) -> None:
        self._log = log
        self._fsync = fsync
        self._on_durable = on_durable
        self._appended = trio.Event()
        self._failure: StorageError | None = None
        self.durable_index = log.last_index
        """Highest index reported to `on_durable` (what `SegmentedLog.open` recovered is already durable)."""

    def append(self, payload: bytes) -> int:
        """Write one record (not yet durable) and return its index."""
        return self.append_many((payload,))

    def append_many(self, payloads: Sequence[bytes]) -> int:
        """Write records (not yet durable) and return the index of the last one."""
        try:
            index = self._log.append(payloads)
        except StorageError as exc:
            self._failure = exc
            self._appended.set()
            raise
        if payloads:
            self._appended.set()
        return index

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Make appended records durable and report them until cancelled; raises StorageError on a failure.

        A cancellation that arrives during an fsync waits for that fsync to finish (the worker thread cannot
        be interrupted), so the log is never closed under a running sync by the owner of this loop.
        """
        task_status.started()
        while True:
            await self._appended.wait()
            self._appended = trio.Event()
            if self._failure is not None:
                raise StorageError("a log write failed; nothing more is acknowledged") from self._failure
            target = self._log.last_index
            if self._fsync:
                await trio.to_thread.run_sync(self._log.sync)
            self.durable_index = target
            self._on_durable(target)
