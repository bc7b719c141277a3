"""The file that keeps one group's Raft hard state (term, vote, learner and member flags): an append-only journal.

A new term or vote must be durable before the group answers, so every change of them costs the disk a flush.
Replacing the file atomically (write a temporary file, fsync it, rename it, fsync the directory) costs two
fsyncs and a rename: 7 ms on average on the CI machine's disk against 2.3 ms for an append and one fsync
(measured with a loop of both, mixed at random, over 50 files). It matters when thousands of groups change term at
once: a node that returns after a failover learns a new term in every group it replicates, and each election
writes a vote on the candidate and on each voter; those writes were most of a returning node's time at 10,000
destinations (py-spy: `_write_hard_state` 24 % of samples, the storage threads 40 %).

So the file is a journal: a header, then records (length, CRC-32, the msgpack `HardState`), the last complete
record being the hard state. A change appends one record and fsyncs the file. A crash during an append leaves a
torn last record, which loading ignores: that write had not returned, so nothing depended on it. Once the file
passes `COMPACT_AT_BYTES`, the next write starts a new file atomically, the old way, as does the first write of a
group and the first one after a torn record was found (appending after it would hide the new records behind it).
A file written by an older version (one bare `HardState`, no header) is read as such and replaced at the next
write.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import msgspec

from mom.errors import StorageError
from mom.log.fs import FileSystem
from mom.replication._raftlog import HardState

MAGIC = b"MOMHS\x01\n"
"""First bytes of a journal (an older version's file, one bare msgpack `HardState`, never starts with them)."""
COMPACT_AT_BYTES = 4096
"""Past this size the next write starts the journal over (about 60 records: one rewrite per 60 changes)."""
_RECORD = struct.Struct(">II")
"""Record header: payload length, CRC-32 of the payload."""
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(HardState)


class HardStateFile:
    """One group's hard state on disk. Its methods block on the disk (the driver calls them from a worker)."""

    def __init__(self, path: Path, fs: FileSystem, *, fsync: bool) -> None:
        self.path = path
        self._fs = fs
        self._fsync = fsync
        self._appendable: int | None = None
        """Size of the journal when records may be appended to it; None: the next write starts a new file."""

    def load(self) -> HardState:
        """The hard state last written whole (a new group's when there is no file)."""
        try:
            raw = self._fs.read_bytes(self.path)
        except FileNotFoundError:
            return HardState()
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        if not raw.startswith(MAGIC):
            self._appendable = None
            return self._decode(raw)
        last, end = None, len(MAGIC)
        while end + _RECORD.size <= len(raw):
            length, crc = _RECORD.unpack_from(raw, end)
            payload = raw[end + _RECORD.size : end + _RECORD.size + length]
            if not length or len(payload) != length or zlib.crc32(payload) != crc:
                break  # a torn append (cut short, or zero-filled by the file system): the write never returned
            last, end = payload, end + _RECORD.size + length
        if last is None:
            raise StorageError(f"{self.path} is corrupt: no complete record after its header")
        self._appendable = end if end == len(raw) else None
        return self._decode(last)

    def write(self, hard_state: HardState) -> None:
        """Make `hard_state` the one `load` returns (durable once this returns, under the fsync policy)."""
        payload = _encoder.encode(hard_state)
        record = _RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        size, self._appendable = self._appendable, None  # a failed write leaves a file to start over
        try:
            if size is None or size + len(record) > COMPACT_AT_BYTES:
                self._start_over(MAGIC + record)
                size = len(MAGIC)
            else:
                self._write(self.path, record, create=False)
        except OSError as exc:
            raise StorageError(f"cannot write {self.path}: {exc}") from exc
        self._appendable = size + len(record)

    def _start_over(self, content: bytes) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        self._write(tmp, content, create=True)
        self._fs.replace(tmp, self.path)
        if self._fsync:
            self._fs.sync_directory(self.path.parent)

    def _write(self, path: Path, data: bytes, *, create: bool) -> None:
        """Append `data` to `path` (a new, empty file with `create`) and flush it under the fsync policy."""
        file = self._fs.open(path, create=create)
        try:
            file.write(data)
            if self._fsync:
                file.sync()
        finally:
            file.close()

    def _decode(self, raw: bytes) -> HardState:
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError as exc:
            raise StorageError(f"{self.path} is corrupt: {exc}") from exc
