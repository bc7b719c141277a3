"""Snapshots of the state machine: what lets the log forget its old segments.

On-disk format (version 1): one file per snapshot, `snapshot-<index, 20 digits>.snap`, holding

    [8 bytes b"MOMSNAP1"][u64 index][u64 length][u32 crc32 of the 16 bytes index+length, then the data][data]

(big-endian). A snapshot is written to `<name>.tmp`, fsynced, renamed into place and the directory fsynced,
so a snapshot file either is complete or does not exist; a `.tmp` left by a crash is never read and is
removed by the next save. The two newest snapshots are kept: if the newest turns out corrupt, the older
one still loads.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from pathlib import Path

from mom.errors import StorageError
from mom.log.fs import OS_FILES, FileSystem

logger = logging.getLogger("mom.log")

_MAGIC = b"MOMSNAP1"
_HEADER = struct.Struct(">8sQQI")
_SUMMED = struct.Struct(">QQ")
_NAME = re.compile(r"^snapshot-(\d{20})\.snap$")
_KEEP = 2


def _checksum(index: int, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(_SUMMED.pack(index, len(data))))


class SnapshotStore:
    """The snapshots in one directory. Methods block on disk I/O: call them from a worker thread."""

    def __init__(self, directory: Path, *, fs: FileSystem = OS_FILES) -> None:
        self.directory = directory
        self._fs = fs

    def save(self, index: int, data: bytes) -> None:
        """Store `data` as the snapshot at `index`, atomically and durably; keep only the newest two."""
        if index < 0:
            raise ValueError("a snapshot index is never negative")
        final = self.directory / f"snapshot-{index:020d}.snap"
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
            for old in self._indexes()[:-_KEEP]:
                fs.unlink(self.directory / f"snapshot-{old:020d}.snap")
        except OSError as exc:
            raise StorageError(f"cannot save snapshot {index} in {self.directory}: {exc}") from exc

    def load_latest(self) -> tuple[int, bytes] | None:
        """The newest snapshot whose checksum holds, as (index, data); None if there is none."""
        try:
            indexes = self._indexes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot list the snapshots in {self.directory}: {exc}") from exc
        for index in reversed(indexes):
            path = self.directory / f"snapshot-{index:020d}.snap"
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
