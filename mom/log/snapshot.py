"""Snapshots of the state machine: what lets the log forget its old segments.

On-disk format (version 1): one file per snapshot, `snapshot-<index, 20 digits>.snap`, holding

    [8 bytes b"MOMSNAP1"][u64 index][u64 length][u32 crc32 of the 16 bytes index+length, then the data][data]

(big-endian). A snapshot is written to `<name>.tmp`, fsynced, renamed into place and the directory fsynced,
so a snapshot file either is complete or does not exist; a `.tmp` left by a crash is never read and is
removed by the next save. The two newest snapshots are kept: if the newest turns out corrupt, the older
one still loads.

Replication moves snapshot files between nodes whole, header and checksum included, in chunks: the leader
reads its file through a `SnapshotReader` (an open file: a newer snapshot deleting it does not disturb a
transfer), the follower appends the chunks to `<name>.part` through an `IncomingSnapshot`, which checks them
against the header as they arrive and puts the file in place, like `save`, only once it is whole and its
checksum holds. A `.part` left by a crash is removed at the next start (`remove_partial`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import struct
import zlib
from pathlib import Path

from mom.errors import StorageError
from mom.log.fs import OS_FILES, File, FileSystem

logger = logging.getLogger("mom.log")

_MAGIC = b"MOMSNAP1"
_HEADER = struct.Struct(">8sQQI")
_SUMMED = struct.Struct(">QQ")
_NAME = re.compile(r"^snapshot-(\d{20})\.snap$")
_KEEP = 2


def _checksum(index: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_SUMMED.pack(index, len(data))))


def _name(index: int) -> str:
    return f"snapshot-{index:020d}.snap"


class SnapshotStore:
    """The snapshots in one directory. Methods block on disk I/O: call them from a worker thread."""

    def __init__(self, directory: Path, *, fs: FileSystem = OS_FILES) -> None:
        self.directory = directory
        self._fs = fs
        self._transfers = itertools.count(1)
        """Numbers each received file: two transfers of one snapshot (sent again while the first copy waits to be
        installed) must not share a `.part`, or dropping one deletes the other."""

    def save(self, index: int, data: bytes) -> None:
        """Store `data` as the snapshot at `index`, atomically and durably; keep only the newest two."""
        if index < 0:
            raise ValueError("a snapshot index is never negative")
        final = self.directory / _name(index)
        tmp = final.with_name(final.name + ".tmp")
        fs = self._fs
        try:
            fs.makedirs(self.directory)
            for stale in fs.listdir(self.directory):
                if stale.endswith(".tmp"):
                    fs.unlink(self.directory / stale)
            file = fs.open(tmp, create=True)
            try:
                file.write(_HEADER.pack(_MAGIC, index, len(data), _checksum(index, data)))
                file.write(data)
                file.sync()
            finally:
                file.close()
            fs.replace(tmp, final)
            fs.sync_directory(self.directory)
            self._prune()
        except OSError as exc:
            raise StorageError(f"cannot save snapshot {index} in {self.directory}: {exc}") from exc

    def _prune(self) -> None:
        for old in self._indexes()[:-_KEEP]:
            self._fs.unlink(self.directory / _name(old))

    def open(self, index: int) -> SnapshotReader:
        """The stored file of snapshot `index`, open for reading in chunks (to stream it to a follower)."""
        path = self.directory / _name(index)
        try:
            return SnapshotReader(self._fs.open(path), index)
        except OSError as exc:
            raise StorageError(f"cannot open snapshot {index} in {self.directory}: {exc}") from exc

    def receive(self, index: int) -> IncomingSnapshot:
        """A new, empty `.part` file for snapshot `index` arriving in chunks (replacing any earlier one)."""
        path = self.directory / f"{_name(index)}.{next(self._transfers)}.part"
        try:
            self._fs.makedirs(self.directory)
            return IncomingSnapshot(self, self._fs.open(path, create=True), path, index)
        except OSError as exc:
            raise StorageError(f"cannot receive snapshot {index} in {self.directory}: {exc}") from exc

    def remove_partial(self) -> None:
        """Remove the `.part` files of transfers that a crash interrupted (they are never read)."""
        try:
            for stale in self._fs.listdir(self.directory):
                if stale.endswith(".part"):
                    self._fs.unlink(self.directory / stale)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StorageError(f"cannot clean up {self.directory}: {exc}") from exc

    def load(self, index: int) -> bytes:
        """The data of snapshot `index`, verified; StorageError if it is missing or corrupt."""
        path = self.directory / _name(index)
        try:
            return self._read_verified(path, index)
        except (OSError, ValueError) as exc:
            raise StorageError(f"snapshot {path} is unusable: {exc}") from exc

    def _put_in_place(self, incoming: IncomingSnapshot) -> None:
        """Rename a complete, verified, fsynced `.part` to its snapshot name, durably; keep the newest two."""
        self._fs.replace(incoming.path, self.directory / _name(incoming.index))
        self._fs.sync_directory(self.directory)
        self._prune()

    def _discard(self, path: Path) -> None:
        with contextlib.suppress(OSError):  # gone already, or removed at the next start (`remove_partial`)
            self._fs.unlink(path)

    def load_latest(self) -> tuple[int, bytes] | None:
        """The newest snapshot whose checksum holds, as (index, data); None if there is none."""
        try:
            indexes = self._indexes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot list the snapshots in {self.directory}: {exc}") from exc
        for index in reversed(indexes):
            path = self.directory / _name(index)
            try:
                data = self._read_verified(path, index)
            except (OSError, ValueError) as exc:
                logger.warning("snapshot %s is unusable (%s); trying an older one", path, exc)
                continue
            return index, data
        return None

    def _indexes(self) -> list[int]:
        return sorted(int(m.group(1)) for name in self._fs.listdir(self.directory) if (m := _NAME.match(name)))

    def _read_verified(self, path: Path, index: int) -> bytes:
        raw = self._fs.read_bytes(path)
        if len(raw) < _HEADER.size:
            raise ValueError("shorter than its header")
        magic, stored_index, length, crc = _HEADER.unpack_from(raw)
        data = raw[_HEADER.size :]
        if magic != _MAGIC:
            raise ValueError("not a snapshot file")
        if stored_index != index or length != len(data) or _checksum(index, data) != crc:
            raise ValueError("checksum mismatch")
        return data


class SnapshotReader:
    """One stored snapshot file, open: its bytes (header included) are read by offset, in any order.

    The open file keeps its bytes readable when a newer snapshot replaces it and `save` deletes it, so a
    transfer in progress is never cut off by the compaction that made it stale. Close it when done.
    """

    def __init__(self, file: File, index: int) -> None:
        self._file = file
        self.index = index
        self.size = file.size()

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset` (fewer only at the end). Blocks on the disk: call it from a worker
        thread where that matters."""
        try:
            return self._file.pread(size, offset)
        except OSError as exc:
            raise StorageError(f"cannot read snapshot {self.index}: {exc}") from exc

    def close(self) -> None:
        self._file.close()


class IncomingSnapshot:
    """A snapshot file arriving in chunks, in order; checked against its header as it grows.

    `write` appends (no fsync: a crash loses the `.part`, and the transfer starts again); `finish` says whether
    the file is whole and its checksum holds; `commit` fsyncs it and renames it into place, after which it is
    a snapshot like any other. `abort` removes the `.part`.
    """

    def __init__(self, store: SnapshotStore, file: File, path: Path, index: int) -> None:
        self._store = store
        self._file = file
        self.path = path
        self.index = index
        self.received = 0
        self._head = b""
        self._header_ok = False
        self._length = 0
        self._expected_crc = 0
        self._crc = 0

    def write(self, data: bytes) -> None:
        """Append the next chunk. Blocks on the disk: call it from a worker thread where that matters."""
        try:
            self._file.write(data)
        except OSError as exc:
            raise StorageError(f"cannot write the snapshot {self.index} being received: {exc}") from exc
        self.received += len(data)
        if len(self._head) < _HEADER.size:
            take = _HEADER.size - len(self._head)
            self._head, data = self._head + data[:take], data[take:]
            if len(self._head) < _HEADER.size:
                return
            magic, index, self._length, self._expected_crc = _HEADER.unpack(self._head)
            self._header_ok = magic == _MAGIC and index == self.index
            self._crc = zlib.crc32(_SUMMED.pack(index, self._length))
        if data:
            self._crc = zlib.crc32(data, self._crc)

    def finish(self) -> str | None:
        """Why the file is not a whole, intact snapshot `index`, or None when it is."""
        if len(self._head) == _HEADER.size and not self._header_ok:
            return f"the file is not snapshot {self.index}"
        expected = _HEADER.size + self._length
        if len(self._head) < _HEADER.size or self.received != expected:
            return f"{self.received} bytes received, {expected if self._header_ok else 'more'} expected"
        if self._crc != self._expected_crc:
            return "checksum mismatch"
        return None

    def commit(self) -> None:
        """Make the verified file durable and put it in place as snapshot `index` (blocks on fsync)."""
        problem = self.finish()
        if problem is not None:
            raise StorageError(f"snapshot {self.index} is not complete: {problem}")
        try:
            self._file.sync()
            self._file.close()
            self._store._put_in_place(self)
        except OSError as exc:
            raise StorageError(f"cannot store the received snapshot {self.index}: {exc}") from exc

    def abort(self) -> None:
        self._file.close()
        self._store._discard(self.path)
