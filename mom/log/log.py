"""The segmented log: an append-only sequence of opaque records, indexed from 1, split over segment files.

The record and file format is described in `mom.log.segment`. A log directory holds only segment files; the
log is their concatenation in index order.

Recovery (`SegmentedLog.open`) scans the segments in order for the first invalid record (torn write, flipped
bit, zero-filled or garbage tail, wrong index) or a segment that does not start where the previous one ended (a
missing file), and tells two cases apart:

- A torn tail: the damage is at the end of the log, nothing valid after it. That is what a crash leaves of
  writes it interrupted, which were never synced and so never acknowledged: the log is cut there (the file
  truncated, later empty segments deleted) and the node goes on.
- Damage in the middle: a bad record with valid records after it (in its own file or a later one), or a missing
  segment. Records that were durable, and may have been acknowledged to a leader, are gone. `open` then changes
  nothing and raises `LogDamaged`, unless the caller says it can cope (`accept_damage`: Raft makes the node a
  non-voting learner until it has caught up again from the leader); only then is the log cut before the damage.

Nothing is ever repaired into invented data. What recovery keeps is fsynced before `open` returns: after a
process crash, records the dead process never synced may sit only in the page cache, and replaying them must not
expose state a power loss could still take back.

Appends go to the last ("active") segment and roll to a new one when it would grow past `segment_bytes`.
`truncate_prefix` frees whole segments covered by a snapshot; `truncate_suffix` and `reset` serve Raft.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mom.errors import StorageError
from mom.log.fs import OS_FILES, FileSystem
from mom.log.segment import MAX_PAYLOAD, Cut, Segment, parse_segment_name, record_size, survey

logger = logging.getLogger("mom.log")


@dataclass(frozen=True)
class RecoveryReport:
    """What opening the log kept and what it cut off."""

    records_kept: int
    bytes_dropped: int
    segments_removed: int
    damage: str | None = None
    """Set when the log was cut before damage in its middle (only with `accept_damage`): what was wrong."""


class LogDamaged(StorageError):
    """Records in the middle of the log are corrupt or missing: not a torn tail, so acknowledged data is lost."""

    def __init__(self, directory: Path, damage: str) -> None:
        super().__init__(f"the log in {directory} is damaged in its middle, not just torn at its end: {damage}")
        self.damage = damage


@dataclass
class _Scan:
    """The segments read so far, where the valid log ends, and whether what follows is a torn tail."""

    segments: list[Segment]
    cut: Cut | None
    removed: list[tuple[str, int]]
    """Segment files after the end of the valid log, with their sizes."""
    damage: str | None
    notes: list[str]


class SegmentedLog:
    """A durable, append-only log of records (see the module docstring for the recovery guarantee).

    Thread-safety contract: not thread-safe. Its owner calls one method at a time, from any thread (a group's
    driver awaits each storage call it hands to a worker thread before the next). `size_bytes`, `first_index` and
    `last_index` may be read from another thread meanwhile: they read one attribute each.

    After an OSError while writing or syncing, the state of the file on disk is unknown (a failed fsync may
    have dropped dirty pages), so the log raises StorageError from then on; reopening it recovers.

    An iterator returned by `read` must be consumed before the log is truncated, reset or closed.
    """

    def __init__(
        self, fs: FileSystem, directory: Path, segments: list[Segment], segment_bytes: int, recovery: RecoveryReport
    ) -> None:
        self.directory = directory
        self.recovery = recovery
        self._fs = fs
        self._segments = segments
        self._segment_bytes = segment_bytes
        self._unsynced: list[Segment] = []
        self._dir_unsynced = False
        self._broken: StorageError | None = None
        self._bytes = sum(segment.size for segment in segments)

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        segment_bytes: int = 64 * 1024 * 1024,
        fs: FileSystem = OS_FILES,
        accept_damage: bool = False,
        durable: bool = False,
    ) -> SegmentedLog:
        """Open (or create) the log in `directory`, cut to its valid part, and all of it durable.

        Raises LogDamaged (changing nothing) when the log is damaged in its middle, unless `accept_damage`.
        `durable`: the caller made every file here durable already since the last writer stopped (one sync of
        the whole file system at start-up, see `fs.sync_file_system`), so a log that recovery does not change
        is not synced again (thousands of groups would cost two fsyncs each).
        """
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be positive")
        try:
            fs.makedirs(directory)
            names = sorted(
                (base, name) for name in fs.listdir(directory) if (base := parse_segment_name(name)) is not None
            )
        except OSError as exc:
            raise StorageError(f"cannot open the log directory {directory}: {exc}") from exc
        scan = _scan(fs, directory, names)
        segments = scan.segments
        try:
            if scan.damage is not None and not accept_damage:
                raise LogDamaged(directory, scan.damage)
            report = _cut(fs, directory, scan)
            changed = scan.cut is not None or bool(scan.removed) or not segments
            if not segments:
                segments.append(Segment.create(fs, directory, 1))
            if changed or not durable:
                for segment in segments:
                    segment.sync()
                fs.sync_directory(directory)
        except (OSError, StorageError) as exc:
            for segment in segments:
                segment.close()
            if isinstance(exc, LogDamaged):
                raise
            raise StorageError(f"cannot finish recovering the log in {directory}: {exc}") from exc
        if scan.notes:
            logger.warning(
                "log %s recovered to index %d: kept %d records, cut %d bytes, removed %d segments (%s)",
                directory,
                segments[-1].last_index,
                report.records_kept,
                report.bytes_dropped,
                report.segments_removed,
                "; ".join(scan.notes),
            )
        return cls(fs, directory, segments, segment_bytes, report)

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
        """Make everything appended (and every segment created or deleted) so far durable."""
        self._check_usable()
        try:
            if self._dir_unsynced:
                self._fs.sync_directory(self.directory)
                self._dir_unsynced = False
            while self._unsynced:
                self._unsynced[0].sync()
                self._unsynced.pop(0)
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
                self._delete(self._segments[0])
        except OSError as exc:
            raise self._break(StorageError(f"cannot delete a log segment: {exc}")) from exc

    def truncate_suffix(self, after: int) -> None:
        """Drop the records with an index greater than `after`; the next append gets after + 1.

        Durable before it returns (Raft needs it only on a change of leader): were the dropped records to
        reappear after a crash behind newer ones, the log would mix two histories.
        """
        self._check_usable()
        if after >= self.last_index:
            return
        if after < self.first_index - 1:
            raise ValueError(f"cannot truncate after {after}: the log starts at {self.first_index}")
        try:
            while self._segments[-1].base > after + 1:
                self._delete(self._segments[-1])
            active = self._segments[-1]
            before = active.size
            active.truncate_after(after)
            self._bytes -= before - active.size
            active.sync()
            self._fs.sync_directory(self.directory)
            self._dir_unsynced = False
        except (OSError, StorageError) as exc:
            raise self._break(StorageError(f"cannot truncate the log after {after}: {exc}")) from exc

    def reset(self, next_index: int) -> None:
        """Drop every record; the next append gets `next_index`. Durable before it returns."""
        self._check_usable()
        if next_index < 1:
            raise ValueError("log indexes start at 1")
        try:
            while self._segments:
                self._delete(self._segments[-1])
            self._segments.append(Segment.create(self._fs, self.directory, next_index))
            self._fs.sync_directory(self.directory)
            self._dir_unsynced = False
        except (OSError, StorageError) as exc:
            raise self._break(StorageError(f"cannot reset the log to {next_index}: {exc}")) from exc

    def size_bytes(self) -> int:
        """Bytes on disk of all segments."""
        return self._bytes

    def close(self) -> None:
        """Close the files; later calls raise StorageError. Does not sync."""
        if self._broken is None:
            self._broken = StorageError(f"the log in {self.directory} is closed")
        self._unsynced = []
        for segment in self._segments:
            segment.close()

    def _check_usable(self) -> None:
        if self._broken is not None:
            raise self._broken

    def _break(self, error: StorageError) -> StorageError:
        if self._broken is None:
            self._broken = error
        return error

    def _write(self, payloads: list[bytes]) -> None:
        if not payloads:
            return
        active = self._segments[-1]
        before = active.size
        try:
            active.write(payloads)
        finally:
            self._bytes += active.size - before
        if active not in self._unsynced:
            self._unsynced.append(active)

    def _roll(self) -> None:
        segment = Segment.create(self._fs, self.directory, self.last_index + 1)
        self._segments.append(segment)
        self._dir_unsynced = True

    def _delete(self, segment: Segment) -> None:
        """Close, unlink and forget one segment (the first or the last)."""
        if segment in self._unsynced:
            self._unsynced.remove(segment)
        self._dir_unsynced = True
        segment.close()
        with contextlib.suppress(FileNotFoundError):
            self._fs.unlink(segment.path)
        self._segments.remove(segment)
        self._bytes -= segment.size

    def _read(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        for segment in list(self._segments):
            if segment.last_index >= start and segment.base <= stop:
                yield from segment.read(max(start, segment.base), stop)


def _scan(fs: FileSystem, directory: Path, names: list[tuple[int, str]]) -> _Scan:
    """Read the segments `names` (sorted by first index) up to the first problem, and judge what follows it."""
    scan = _Scan([], None, [], None, [])
    try:
        problem = len(names)
        for position, (base, name) in enumerate(names):
            expected = scan.segments[-1].last_index + 1 if scan.segments else base
            if base != expected:
                scan.notes.append(f"{name} starts at {base} where {expected} was expected")
                scan.damage = f"the records from {expected} to {base - 1} are missing (no segment holds them)"
                problem = position
                break
            segment, cut = Segment.scan(fs, directory / name, base)
            scan.segments.append(segment)
            if cut is not None:
                scan.cut = cut
                scan.notes.append(f"{name}: {cut.reason} at byte {cut.offset} (record {cut.index})")
                if cut.valid_after is not None:
                    scan.damage = (
                        f"record {cut.index} in {name} is invalid ({cut.reason}) but record {cut.valid_after} "
                        "after it is valid"
                    )
                problem = position + 1
                break
        for base, name in names[problem:]:
            size, valid = survey(fs, directory / name, base)
            scan.removed.append((name, size))
            if valid and scan.damage is None:
                scan.damage = (
                    f"{name}, after the invalid record {scan.cut.index if scan.cut else base}, holds valid records"
                )
    except (OSError, StorageError) as exc:
        for segment in scan.segments:
            segment.close()
        raise StorageError(f"cannot recover the log in {directory}: {exc}") from exc
    return scan


def _cut(fs: FileSystem, directory: Path, scan: _Scan) -> RecoveryReport:
    """Keep the valid part found by `_scan`: truncate the segment where it ends, delete the files after it."""
    dropped = 0
    if scan.cut is not None:
        scan.segments[-1].cut_at(scan.cut)
        dropped += scan.cut.dropped_bytes
    for name, size in scan.removed:
        fs.unlink(directory / name)
        dropped += size
        scan.notes.append(f"removed {name}")
    kept = sum(segment.last_index - segment.base + 1 for segment in scan.segments)
    return RecoveryReport(kept, dropped, len(scan.removed), scan.damage)
