"""One segment file of the log: an append-only run of checksummed records with consecutive indexes.

On-disk format (version 1). A segment file is named by the index of its first record, zero-padded to 20
digits (`00000000000000000001.log`), so a sorted directory listing is the log order and an empty file still
says where the log stands. The file is a plain concatenation of records, with no file header:

    [u32 length][u32 crc32][u64 index][payload: length bytes]        (big-endian, 16-byte header)

`crc32` is zlib's CRC-32 of the length and index fields (as packed above, 12 bytes) followed by the payload,
so a flipped bit in the length, the index or the payload is caught. Indexes within a file are consecutive and
start at the number in the file name. A record is valid only if its header is complete, its index is the one
expected, its payload fits in the file and its checksum matches; the valid part of a file is the longest run
of valid records from its start. That rule also rejects a zero-filled tail (index 0 is never expected).
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mom.errors import StorageError

HEADER = struct.Struct(">IIQ")
_SUMMED = struct.Struct(">IQ")
MAX_PAYLOAD = 2**32 - 1
_NAME = re.compile(r"^(\d{20})\.log$")
_READ_CHUNK = 1 << 20
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def segment_name(base: int) -> str:
    return f"{base:020d}.log"


def parse_segment_name(name: str) -> int | None:
    """The first index of the segment file `name`, or None if the name is not a segment's."""
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def record_size(payload_len: int) -> int:
    return HEADER.size + payload_len


def _checksum(length: int, index: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(_SUMMED.pack(length, index)))


def fsync_directory(directory: Path) -> None:
    """Make the creation, renaming or removal of files in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Cut:
    """Where recovery found the valid part of a segment to end, and why."""

    offset: int
    index: int
    reason: str
    dropped_bytes: int


class Segment:
    """One open segment file. The file descriptor stays open for the segment's life (appends and reads).

    Not thread-safe by itself: `SegmentedLog` decides who may touch it. `fd` is exposed so that the log can
    `dup` it for an fsync in another thread; `close` sets it to -1 so a stale use fails instead of reaching
    whatever file the number is reused for.
    """

    def __init__(self, path: Path, fd: int, base: int, offsets: array[int], size: int) -> None:
        self.path = path
        self.fd = fd
        self.base = base
        self._offsets = offsets
        self.size = size

    @classmethod
    def create(cls, directory: Path, base: int) -> Segment:
        """Create an empty segment file (not yet durable: the caller fsyncs the directory)."""
        path = directory / segment_name(base)
        try:
            fd = os.open(path, _OPEN_FLAGS | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot create log segment {path}: {exc}") from exc
        return cls(path, fd, base, array("Q"), 0)

    @classmethod
    def recover(cls, path: Path, base: int) -> tuple[Segment, Cut | None]:
        """Open an existing segment and cut it after its last valid record (see the module docstring)."""
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise StorageError(f"cannot open log segment {path}: {exc}") from exc
        try:
            file_size = os.fstat(fd).st_size
            offsets, valid, reason = _scan(fd, file_size, base)
            cut = None
            if valid < file_size:
                os.ftruncate(fd, valid)
                cut = Cut(valid, base + len(offsets), reason, file_size - valid)
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot recover log segment {path}: {exc}") from exc
        return cls(path, fd, base, offsets, valid), cut

    @property
    def last_index(self) -> int:
        """Index of the last record; base - 1 when the segment is empty."""
        return self.base + len(self._offsets) - 1

    def write(self, payloads: Sequence[bytes]) -> None:
        """Append records numbered from last_index + 1, in one write; no fsync. Raises StorageError."""
        buf = bytearray()
        offsets = array("Q")
        index = self.last_index
        for payload in payloads:
            index += 1
            offsets.append(self.size + len(buf))
            buf += HEADER.pack(len(payload), _checksum(len(payload), index, payload), index)
            buf += payload
        view = memoryview(buf)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:
            raise StorageError(f"cannot write to log segment {self.path}: {exc}") from exc
        self._offsets.extend(offsets)
        self.size += len(buf)

    def read(self, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
        """Records start..stop (inclusive, clamped to what the segment holds), checksums verified.

        Reads in chunks of about a megabyte, so a long read neither holds a whole segment in memory nor
        makes one system call per record.
        """
        i = start - self.base
        while i <= min(stop, self.last_index) - self.base:
            last = min(stop, self.last_index) - self.base
            begin = self._offsets[i]
            j = i + 1
            while j <= last and self._end(j) - begin <= _READ_CHUNK:
                j += 1
            buf = self._pread(begin, self._end(j - 1) - begin)
            for k in range(i, j):
                yield self.base + k, self._decode(buf, self._offsets[k] - begin, self.base + k)
            i = j

    def truncate_after(self, after: int) -> None:
        """Drop the records with an index greater than `after` (not durable until fsynced)."""
        keep = max(after - self.base + 1, 0)
        if keep >= len(self._offsets):
            return
        new_size = self._offsets[keep]
        try:
            os.ftruncate(self.fd, new_size)
        except OSError as exc:
            raise StorageError(f"cannot truncate log segment {self.path}: {exc}") from exc
        del self._offsets[keep:]
        self.size = new_size

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def _end(self, k: int) -> int:
        return self._offsets[k + 1] if k + 1 < len(self._offsets) else self.size

    def _pread(self, offset: int, length: int) -> bytes:
        if self.fd < 0:
            raise StorageError(f"log segment {self.path} was removed while being read")
        try:
            data = os.pread(self.fd, length, offset)
        except OSError as exc:
            raise StorageError(f"cannot read log segment {self.path}: {exc}") from exc
        if len(data) != length:
            raise StorageError(f"log segment {self.path} is shorter than written (at byte {offset})")
        return data

    def _decode(self, buf: bytes, pos: int, index: int) -> bytes:
        length, crc, stored_index = HEADER.unpack_from(buf, pos)
        payload = buf[pos + HEADER.size : pos + HEADER.size + length]
        if stored_index != index or len(payload) != length or _checksum(length, index, payload) != crc:
            raise StorageError(f"record {index} in {self.path} is corrupt (changed on disk after recovery)")
        return payload


def _scan(fd: int, file_size: int, base: int) -> tuple[array[int], int, str]:
    """Offsets of the valid records, the size of the valid part, and why the scan stopped there."""
    offsets: array[int] = array("Q")
    if file_size == 0:
        return offsets, 0, ""
    with mmap.mmap(fd, file_size, access=mmap.ACCESS_READ) as mapped, memoryview(mapped) as view:
        pos, index = 0, base
        while pos < file_size:
            if file_size - pos < HEADER.size:
                return offsets, pos, "incomplete record header"
            length, crc, stored_index = HEADER.unpack_from(view, pos)
            if stored_index != index:
                return offsets, pos, f"index {stored_index} where {index} was expected"
            end = pos + HEADER.size + length
            if end > file_size:
                return offsets, pos, f"record of {length} bytes runs past the end of the file"
            if _checksum(length, index, view[pos + HEADER.size : end]) != crc:
                return offsets, pos, "checksum mismatch"
            offsets.append(pos)
            pos, index = end, index + 1
    return offsets, pos, ""
