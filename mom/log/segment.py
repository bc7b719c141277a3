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

What follows the valid part tells a torn tail from damage (see `SegmentedLog.open`): a crash leaves at most an
incomplete or garbage end, with no valid record after it; a valid record further on (found by its index field
and checked by its checksum) proves that the bytes before it were once written in full.
"""

from __future__ import annotations

import re
import struct
import zlib
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mom.errors import StorageError
from mom.log.fs import File, FileSystem

HEADER = struct.Struct(">IIQ")
_SUMMED = struct.Struct(">IQ")
MAX_PAYLOAD = 2**32 - 1
_NAME = re.compile(r"^(\d{20})\.log$")
_READ_CHUNK = 1 << 20


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


@dataclass(frozen=True)
class Cut:
    """Where recovery found the valid part of a segment to end, and why."""

    offset: int
    index: int
    """The index the first invalid record should have had."""
    reason: str
    dropped_bytes: int
    valid_after: int | None = None
    """The index of a valid record found further on in the file, if any: then the damage is not a torn tail."""


class Segment:
    """One open segment file. The file stays open for the segment's life (appends and reads).

    Not thread-safe: `SegmentedLog` decides who may touch it.
    """

    def __init__(self, path: Path, file: File, base: int, offsets: array[int], size: int) -> None:
        self.path = path
        self.file = file
        self.base = base
        self._offsets = offsets
        self.size = size
        self._closed = False

    @classmethod
    def create(cls, fs: FileSystem, directory: Path, base: int) -> Segment:
        """Create an empty segment file (not yet durable: the caller syncs the directory)."""
        path = directory / segment_name(base)
        try:
            file = fs.open(path, create=True)
        except OSError as exc:
            raise StorageError(f"cannot create log segment {path}: {exc}") from exc
        return cls(path, file, base, array("Q"), 0)

    @classmethod
    def scan(cls, fs: FileSystem, path: Path, base: int) -> tuple[Segment, Cut | None]:
        """Open an existing segment and find where its valid records end (see the module docstring); cutting
        there is the caller's decision (`cut_at`)."""
        try:
            file = fs.open(path)
        except OSError as exc:
            raise StorageError(f"cannot open log segment {path}: {exc}") from exc
        try:
            file_size = file.size()
            with file.mapped() as view:
                offsets, valid, reason = _scan(view, base)
                cut = None
                if valid < file_size:
                    later = _valid_record_after(view, valid + 1, base + len(offsets))
                    cut = Cut(valid, base + len(offsets), reason, file_size - valid, later)
        except OSError as exc:
            file.close()
            raise StorageError(f"cannot recover log segment {path}: {exc}") from exc
        return cls(path, file, base, offsets, file_size), cut

    def cut_at(self, cut: Cut) -> None:
        """Drop everything from `cut.offset` on (not durable until synced)."""
        try:
            self.file.truncate(cut.offset)
        except OSError as exc:
            raise StorageError(f"cannot cut log segment {self.path}: {exc}") from exc
        self.size = cut.offset

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
        try:
            self.file.write(bytes(buf))
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
            self.file.truncate(new_size)
        except OSError as exc:
            raise StorageError(f"cannot truncate log segment {self.path}: {exc}") from exc
        del self._offsets[keep:]
        self.size = new_size

    def sync(self) -> None:
        """Make the records written so far durable (raises OSError)."""
        self.file.sync()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.file.close()

    def _end(self, k: int) -> int:
        return self._offsets[k + 1] if k + 1 < len(self._offsets) else self.size

    def _pread(self, offset: int, length: int) -> bytes:
        if self._closed:
            raise StorageError(f"log segment {self.path} was removed while being read")
        try:
            data = self.file.pread(length, offset)
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


def _scan(view: memoryview, base: int) -> tuple[array[int], int, str]:
    """Offsets of the valid records, the size of the valid part, and why the scan stopped there."""
    offsets: array[int] = array("Q")
    file_size = len(view)
    pos, index = 0, base
    while pos < file_size:
        problem = _invalid_record(view, pos, index)
        if problem:
            return offsets, pos, problem
        offsets.append(pos)
        pos, index = pos + HEADER.size + HEADER.unpack_from(view, pos)[0], index + 1
    return offsets, pos, ""


def _invalid_record(view: memoryview, pos: int, index: int) -> str:
    """Why the bytes at `pos` are not the valid record `index` ("" when they are)."""
    if len(view) - pos < HEADER.size:
        return "incomplete record header"
    length, crc, stored_index = HEADER.unpack_from(view, pos)
    if stored_index != index:
        return f"index {stored_index} where {index} was expected"
    end = pos + HEADER.size + length
    if end > len(view):
        return f"record of {length} bytes runs past the end of the file"
    if _checksum(length, index, view[pos + HEADER.size : end]) != crc:
        return "checksum mismatch"
    return ""


_NON_ZERO = re.compile(rb"[^\x00]")


def _valid_record_after(view: memoryview, begin: int, index: int) -> int | None:
    """The index of a valid record numbered `index` or above that starts at `begin` or later, if there is one.

    Every position whose 8 bytes could be the index field of such a record is a candidate (its high half equals
    that of `index`), confirmed by parsing the record there and checking its checksum, so garbage passes only
    with the odds of a CRC-32 collision. Runs of zero bytes, which hold no index but match the high half of every
    index below 2**32, are jumped over. Only ever used on damaged or torn files, at start-up.
    """
    data = bytes(view)
    highest = index + max(len(data) - begin, 0) // HEADER.size
    high = struct.pack(">I", index >> 32)
    position = begin + 8
    while (found := data.find(high, position)) >= 0 and found + 8 <= len(data):
        field = data[found : found + 8]
        if field == bytes(8):
            run_end = _NON_ZERO.search(data, found)
            if run_end is None:
                return None
            position = max(found + 1, run_end.start() - 7)
            continue
        value = int.from_bytes(field, "big")
        if index <= value <= highest and not _invalid_record(view, found - 8, value):
            return value
        position = found + 1
    return None


def survey(fs: FileSystem, path: Path, base: int) -> tuple[int, bool]:
    """The size of the segment file at `path`, and whether it holds any valid record (anywhere in it)."""
    try:
        file = fs.open(path)
    except OSError as exc:
        raise StorageError(f"cannot open log segment {path}: {exc}") from exc
    try:
        with file.mapped() as view:
            valid = not _invalid_record(view, 0, base) or _valid_record_after(view, 1, base) is not None
            return len(view), valid
    except OSError as exc:
        raise StorageError(f"cannot read log segment {path}: {exc}") from exc
    finally:
        file.close()
