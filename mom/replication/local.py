"""A state-machine group of one node: an entry is committed as soon as it is durable on the local disk.

This is the degenerate case of the replicated group (a majority of one), and the piece the cluster's consensus
replaces: it owns the log, the snapshots and the broker state machine, applies committed entries strictly in log
order, and hands each submitter the result of its own command. Recovery is snapshot + replay of the log tail, so
state after a crash is exactly the state of the durable prefix of the log.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mom.broker import Broker
from mom.broker.commands import Command, Entry, Result, decode_entry, encode_entry
from mom.config import StorageSection
from mom.errors import MomError, StorageError
from mom.log import GroupCommitter, SegmentedLog, SnapshotStore

log = logging.getLogger("mom.replication")

Listener = Callable[[Command], None]
"""Told of every applied command (also the failed ones), on the trio thread: wakes long-polls."""


@dataclass(eq=False)
class _Pending:
    entry: Entry
    done: trio.Event = field(default_factory=trio.Event)
    result: Result | None = None
    error: BaseException | None = None


class LocalGroup:
    """The log, snapshots and state machine of one node; `submit` returns once the command is durable and applied."""

    def __init__(
        self,
        directory: Path,
        storage: StorageSection,
        *,
        dedup_window_ms: int,
        clock_ms: Callable[[], int],
    ) -> None:
        self._directory = directory
        self._storage = storage
        self._dedup_window_ms = dedup_window_ms
        self._clock_ms = clock_ms
        self.broker = Broker(dedup_window_ms=dedup_window_ms)
        self._pending: dict[int, _Pending] = {}
        self._applied_index = 0
        self._snapshot_index = 0
        self._bytes_since_snapshot = 0
        self._snapshotting = False
        self._listeners: list[Listener] = []
        self._log: SegmentedLog | None = None
        self._committer: GroupCommitter | None = None
        self._snapshots = SnapshotStore(directory / "snapshots")
        self._nursery: trio.Nursery | None = None

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover, then commit entries until cancelled."""
        self._recover()
        assert self._log is not None
        self._committer = GroupCommitter(self._log, fsync=self._storage.fsync == "always", on_durable=self._on_durable)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(self._committer.run)
                task_status.started()
        finally:
            self._fail_pending(StorageError("the node is shutting down; the write may or may not have been kept"))
            self._log.close()

    def _recover(self) -> None:
        loaded = self._snapshots.load_latest()
        if loaded is not None:
            self._snapshot_index, data = loaded
            self.broker = Broker.restore(data, dedup_window_ms=self._dedup_window_ms)
        self._applied_index = self._snapshot_index
        self._log = SegmentedLog.open(self._directory / "log", segment_bytes=self._storage.segment_bytes)
        if self._log.last_index < self._snapshot_index:
            self._log.reset(self._snapshot_index + 1)
        if self._log.first_index > self._snapshot_index + 1:
            raise StorageError(
                f"the log starts at entry {self._log.first_index} but the snapshot covers only up to "
                f"{self._snapshot_index}: entries are missing, refusing to start on partial state"
            )
        start = self._snapshot_index + 1
        replayed = 0
        for index, payload in self._log.read(start):
            self._apply(index, decode_entry(payload))
            self._bytes_since_snapshot += len(payload)
            replayed += 1
        log.info(
            "recovered: snapshot at %d, replayed %d entries, applied index %d",
            self._snapshot_index,
            replayed,
            self._applied_index,
        )

    async def submit(self, command: Command) -> Result:
        """Append `command`, wait until it is durable and applied, and return its result (or raise its error)."""
        if self._committer is None:
            raise StorageError("the log is not open yet")
        entry = Entry(now_ms=self._clock_ms(), command=command)
        payload = encode_entry(entry)
        index = self._committer.append(payload)
        self._bytes_since_snapshot += len(payload)
        pending = _Pending(entry)
        self._pending[index] = pending
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _on_durable(self, durable_index: int) -> None:
        for index in range(self._applied_index + 1, durable_index + 1):
            pending = self._pending.pop(index, None)
            if pending is None:  # pragma: no cover - every entry is appended through submit()
                raise StorageError(f"entry {index} became durable but nobody submitted it")
            try:
                pending.result = self._apply(index, pending.entry)
            except MomError as exc:
                pending.error = exc
            except Exception as exc:
                # A bug in the state machine: replay hits it identically, so keep applying; the submitter sees it.
                log.exception("applying entry %d failed", index)
                pending.error = exc
            pending.done.set()
        self._maybe_snapshot()

    def _apply(self, index: int, entry: Entry) -> Result | None:
        """Apply one committed entry; a MomError is the command's answer, never a reason to stop applying."""
        self._applied_index = index
        try:
            return self.broker.apply(entry)
        finally:
            for listener in self._listeners:
                listener(entry.command)

    def _fail_pending(self, error: MomError) -> None:
        for pending in self._pending.values():
            pending.error = error
            pending.done.set()
        self._pending.clear()

    def _maybe_snapshot(self) -> None:
        if self._snapshotting or self._nursery is None:
            return
        if self._bytes_since_snapshot < self._storage.snapshot_bytes:
            return
        self._snapshotting = True
        self._nursery.start_soon(self._snapshot)

    async def _snapshot(self) -> None:
        """Save the applied state, then drop the log segments it covers: this is what bounds disk use."""
        try:
            index = self._applied_index
            data = self.broker.snapshot()
            self._bytes_since_snapshot = 0
            await trio.to_thread.run_sync(self._snapshots.save, index, data)
            assert self._log is not None
            # Keep the entries after the previous snapshot too: the store falls back to that one if the newest
            # turns out corrupt, and it must then find every later entry still in the log.
            self._log.truncate_prefix(self._snapshot_index)
            self._snapshot_index = index
            log.info("snapshot at index %d (%d bytes)", index, len(data))
        finally:
            self._snapshotting = False

    def storage_stats(self) -> dict[str, float]:
        """Sizes for /metrics and the cluster view."""
        return {
            "log_bytes": float(self._log.size_bytes()) if self._log else math.nan,
            "applied_index": float(self._applied_index),
            "snapshot_index": float(self._snapshot_index),
        }
