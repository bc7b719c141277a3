"""The segmented log: an append-only sequence of opaque records, indexed from 1, split over segment files.

The record and file format is described in `mom.log.segment`. A log directory holds only segment files; the
log is their concatenation in index order, and it is only ever the longest valid prefix of what was written:

- Recovery (`SegmentedLog.open`) scans the segments in order and stops at the first invalid record (torn
  write, flipped bit, zero-filled or garbage tail, wrong index) or at a segment that does not start where
  the previous one ended (a missing file). It cuts the file there and deletes every later segment. Nothing
  is repaired and nothing stops the node from starting: what was cut was never acknowledged as durable, or
  it was lost by the disk, and either way the prefix is the most that can be trusted. What recovery keeps
  is fsynced before `open` returns: after a process crash, records the dead process never synced may sit
  only in the page cache, and replaying them must not expose state a power loss could still take back.
- Appends go to the last ("active") segment and roll to a new one when it would grow past `segment_bytes`.
- `truncate_prefix` frees whole segments covered by a snapshot; `truncate_suffix` and `reset` serve Raft.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mom.errors import StorageError
from mom.log.segment import MAX_PAYLOAD, Segment, fsync_directory, parse_segment_name, record_size

logger = logging.getLogger("mom.log")


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the log kept and what it cut off."""

    records_kept: int
    bytes_dropped: int
    segments_removed: int


class SegmentedLog:
    """A durable, append-only log of records (see the module docstring for the recovery guarantee).

    Thread-safety contract: one owner thread (the trio thread) calls every method except `sync`. `sync` may
    run in one other thread at the same time as any owner method, so that appends continue while an fsync
    is in progress (group commit). A `sync` makes durable everything appended before it was called. It takes
    a short lock to take the list of segments written since the last sync and `dup` their descriptors, then
    fsyncs the duplicates outside the lock: whatever the owner does meanwhile (roll, truncate, delete,
    close), the descriptors being synced stay valid and never turn into some other file. Calls of `sync`
    from several threads are serialized.

    After an OSError while writing or syncing, the state of the file on disk is unknown (a failed fsync may
    have dropped dirty pages), so the log raises StorageError from then on; reopening it recovers.

    An iterator returned by `read` must be consumed before the log is truncated, reset or closed.
    """

    def __init__(self, directory: Path, segments: list[Segment], segment_bytes: int, recovery: RecoveryReport) -> None:
        self.directory = directory
        self.recovery = recovery
        self._segments = segments
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._sync_mutex = threading.Lock()
        self._unsynced: list[Segment] = []
        self._dir_unsynced = False
        self._broken: StorageError | None = None

    @classmethod
    def open(cls, directory: Path, *, segment_bytes: int = 64 * 1024 * 1024) -> SegmentedLog:
        """Open (or create) the log in `directory`, cut to its longest valid prefix, and all of it durable."""
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        try:
            directory.mkdir(parents=True, exist_ok=True)
            names = sorted(
                (base, name) for name in os.listdir(directory) if (base := parse_segment_name(name)) is not None
            )
        except OSError as exc:
            raise StorageError(f"cannot open the log directory {directory}: {exc}") from exc
        segments, report, notes = _recover(directory, names)
        try:
            if not segments:
                segments.append(Segment.create(directory, 1))
            fsync_directory(directory)
        except (OSError, StorageError) as exc:
            for segment in segments:
                segment.close()
            raise StorageError(f"cannot finish recovering the log in {directory}: {exc}") from exc
        if notes:
            logger.warning(
                "log %s recovered to index %d: kept %d records, cut %d bytes, removed %d segments (%s)",
                directory,
                segments[-1].last_index,
                report.records_kept,
                report.bytes_dropped,
                report.segments_removed,
                "; ".join(notes),
            )
        return cls(directory, segments, segment_bytes, report)

    @property
    def first_index(self) -> int:
        """Index of the first record held; last_index + 1 when the log is empty."""
        return self._segments[0].base

    @property
    def last_index(self) -> int:
        """Index of the last record; first_index - 1 when the log is empty (0 for a brand-new log)."""
        return self._segments[-1].last_index

    def append(self, payloads: Sequence[bytes]) -> int:
        """Write records after the last one (no fsync); return the index of the last. Raises StorageError."""
        self._check_usable()
        if any(len(payload) > MAX_PAYLOAD for payload in payloads):
            raise ValueError(f"a log record holds at most {MAX_PAYLOAD} bytes")
        run: list[bytes] = []
        run_bytes = 0
        try:
            for payload in payloads:
                size = record_size(len(payload))
                filled = self._segments[-1].size + run_bytes
                if filled > 0 and filled + size > self._segment_bytes:
                    self._write(run)
                    run, run_bytes = [], 0
                    self._roll()
                run.append(payload)
                run_bytes += size
            self._write(run)
        except StorageError as exc:
            self._break(exc)
            raise
        return self.last_index

    def sync(self) -> None:
        """Make everything appended before this call durable. May run in a worker thread (see the class)."""
        with self._sync_mutex:
            fds: list[int] = []
            try:
                with self._lock:
                    self._check_usable()
                    segments, self._unsynced = self._unsynced, []
                    sync_directory, self._dir_unsynced = self._dir_unsynced, False
                    for segment in segments:
                        fds.append(os.dup(segment.fd))
                self._fsync(fds, sync_directory)
            except OSError as exc:
                raise self._break(StorageError(f"cannot sync the log in {self.directory}: {exc}")) from exc

    def read(self, start: int) -> Iterator[tuple[int, bytes]]:
        """The records from `start` (at least first_index) to the current last one, checksums verified."""
        self._check_usable()
        if start < self.first_index:
            raise ValueError(f"record {start} was truncated away; the log starts at {self.first_index}")
        return self._read(start, self.last_index)

    def truncate_prefix(self, upto: int) -> None:
        """Delete the segments whose records all have an index <= `upto`, except the active one.

        Whole segments only: records <= `upto` in a remaining segment are kept, so first_index may stay
        below upto + 1. Deletions become durable with the next `sync`; a deleted segment that reappears
        after a crash is still a valid prefix.
        """
        self._check_usable()
        try:
            while len(self._segments) > 1 and self._segments[0].last_index <= upto:
                self._delete(self._segments.pop(0))
        except OSError as exc:
            raise self._break(StorageError(f"cannot delete a log segment: {exc}")) from exc

    def truncate_suffix(self, after: int) -> None:
        """Drop the records with an index greater than `after`; the next append gets after + 1.

        Durable before it returns (it blocks for an fsync; Raft needs it only on a change of leader): were
        the dropped records to reappear after a crash behind newer ones, the log would mix two histories.
        """
        self._check_usable()
        if after >= self.last_index:
            return
        if after < self.first_index - 1:
            raise ValueError(f"cannot truncate after {after}: the log starts at {self.first_index}")
        try:
            while self._segments[-1].base > after + 1:
                self._delete(self._segments.pop())
            active = self._segments[-1]
            active.truncate_after(after)
            os.fsync(active.fd)
            fsync_directory(self.directory)
        except (OSError, StorageError) as exc:
            raise self._break(StorageError(f"cannot truncate the log after {after}: {exc}")) from exc

    def reset(self, next_index: int) -> None:
        """Drop every record; the next append gets `next_index`. Durable before it returns."""
        self._check_usable()
        if next_index < 1:
            raise ValueError("log indexes start at 1")
        try:
            while self._segments:
                self._delete(self._segments.pop())
            self._segments.append(Segment.create(self.directory, next_index))
            fsync_directory(self.directory)
        except (OSError, StorageError) as exc:
            raise self._break(StorageError(f"cannot reset the log to {next_index}: {exc}")) from exc

    def size_bytes(self) -> int:
        """Bytes on disk of all segments."""
        return sum(segment.size for segment in self._segments)

    def close(self) -> None:
        """Close the files; later calls raise StorageError. Does not sync."""
        with self._lock:
            if self._broken is None:
                self._broken = StorageError(f"the log in {self.directory} is closed")
            self._unsynced = []
            for segment in self._segments:
                segment.close()

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _break(self, error: StorageError) -> StorageError:
        with self._lock:
            if self._broken is None:
                self._broken = error
        return error

    def _write(self, payloads: list[bytes]) -> None:
        if not payloads:
            return
        active = self._segments[-1]
        active.write(payloads)
        with self._lock:
            if active not in self._unsynced:
                self._unsynced.append(active)

    def _roll(self) -> None:
        segment = Segment.create(self.directory, self.last_index + 1)
        self._segments.append(segment)
        with self._lock:
            self._dir_unsynced = True

    def _delete(self, segment: Segment) -> None:
        """Close and unlink one segment already taken out of `_segments`."""
        with self._lock:
            if segment in self._unsynced:
                self._unsynced.remove(segment)
            self._dir_unsynced = True
            segment.close()
        segment.path.unlink(missing_ok=True)

    def _fsync(self, fds: list[int], sync_directory: bool) -> None:
        try:
            if sync_directory:
                fsync_directory(self.directory)
            for fd in fds:
                os.fsync(fd)
        finally:
            for fd in fds:
                os.close(fd)

    def _read(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        for segment in list(self._segments):
            if segment.last_index >= start and segment.base <= stop:
                yield from segment.read(max(start, segment.base), stop)


def _recover(directory: Path, names: list[tuple[int, str]]) -> tuple[list[Segment], RecoveryReport, list[str]]:
    """Keep the longest valid prefix of the segments `names` (sorted by first index); delete the rest."""
    segments: list[Segment] = []
    notes: list[str] = []
    dropped = 0
    keep = len(names)
    try:
        for position, (base, name) in enumerate(names):
            if segments and base != segments[-1].last_index + 1:
                notes.append(f"{name} starts at {base} where {segments[-1].last_index + 1} was expected")
                keep = position
                break
            segment, cut = Segment.recover(directory / name, base)
            segments.append(segment)
            if cut is not None:
                dropped += cut.dropped_bytes
                notes.append(f"{name}: {cut.reason} at byte {cut.offset} (record {cut.index})")
                keep = position + 1
                break
        for _, later in names[keep:]:
            dropped += (directory / later).stat().st_size
            (directory / later).unlink()
            notes.append(f"removed {later}")
        for segment in segments:
            os.fsync(segment.fd)
    except (OSError, StorageError) as exc:
        for segment in segments:
            segment.close()
        raise StorageError(f"cannot recover the log in {directory}: {exc}") from exc
    kept = sum(segment.last_index - segment.base + 1 for segment in segments)
    return segments, RecoveryReport(kept, dropped, len(names) - keep), notes
