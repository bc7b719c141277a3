"""The hard state's journal (`mom.replication._hard_state`): one fsync per change, and whatever a crash leaves of it
reads back as the last write that returned, or the one in flight."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from mom.errors import StorageError
from mom.log.fs import OS_FILES
from mom.replication._hard_state import COMPACT_AT_BYTES, MAGIC, HardStateFile
from mom.replication._raftlog import HardState
from tests.sim.memfs import MemoryFile, MemoryFileSystem

GROUP = Path("/data/groups/g1")
PATH = GROUP / "hard_state"


class PowerLoss(Exception):
    """The machine lost power during this flush: it never returned."""


class FailingFlushes:
    """`fs`, whose `flushes_left`-th flush (a file's sync or a directory's) never returns."""

    def __init__(self, fs: MemoryFileSystem, flushes_left: int) -> None:
        self.fs = fs
        self.flushes_left = flushes_left

    def flush(self) -> None:
        self.flushes_left -= 1
        if self.flushes_left <= 0:
            raise PowerLoss

    def open(self, path: Path, *, create: bool = False) -> _FailingFile:
        return _FailingFile(self.fs.open(path, create=create), self)

    def read_bytes(self, path: Path) -> bytes:
        return self.fs.read_bytes(path)

    def replace(self, source: Path, target: Path) -> None:
        self.fs.replace(source, target)

    def sync_directory(self, directory: Path) -> None:
        self.flush()
        self.fs.sync_directory(directory)


class _FailingFile:
    def __init__(self, file: MemoryFile, owner: FailingFlushes) -> None:
        self._file = file
        self._owner = owner

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def sync(self) -> None:
        self._owner.flush()
        self._file.sync()

    def close(self) -> None:
        self._file.close()


def state(term: int) -> HardState:
    return HardState(term=term, voted_for=f"n{term % 3 + 1}")


def test_a_change_appends_one_record_with_one_flush() -> None:
    fs = MemoryFileSystem()
    fs.makedirs(GROUP)
    hard_state = HardStateFile(PATH, fs, fsync=True)
    hard_state.write(state(1))  # the first write creates the file atomically: file and directory flushed
    syncs, size = fs.syncs, len(fs.read_bytes(PATH))
    hard_state.write(state(2))
    assert fs.syncs == syncs + 1, "one fsync of the file, no rename and no directory fsync"
    assert len(fs.read_bytes(PATH)) > size, "appended"
    assert HardStateFile(PATH, fs, fsync=True).load() == state(2)


def test_the_journal_starts_over_once_it_is_large() -> None:
    fs = MemoryFileSystem()
    fs.makedirs(GROUP)
    hard_state = HardStateFile(PATH, fs, fsync=True)
    for term in range(1, 400):
        hard_state.write(state(term))
        assert len(fs.read_bytes(PATH)) <= COMPACT_AT_BYTES
    assert HardStateFile(PATH, fs, fsync=True).load() == state(399)


@pytest.mark.parametrize("seed", range(300))
def test_a_crash_during_a_write_reads_back_the_last_write_that_returned_or_the_one_in_flight(seed: int) -> None:
    rng = random.Random(seed)
    fs = MemoryFileSystem()
    fs.makedirs(GROUP)
    hard_state = HardStateFile(PATH, FailingFlushes(fs, rng.randrange(1, 300)), fsync=True)  # type: ignore[arg-type]
    returned = 0
    with pytest.raises(PowerLoss):
        for term in range(1, 1000):
            hard_state.write(state(term))
            returned = term
    what = fs.crash(rng)
    after = HardStateFile(PATH, fs, fsync=True)
    loaded = after.load()
    assert loaded.term in (returned, returned + 1), what
    if loaded.term:
        assert loaded == state(loaded.term), what
    for term in range(loaded.term + 1, loaded.term + 5):  # writes after a torn record are found again
        after.write(state(term))
        assert HardStateFile(PATH, fs, fsync=True).load() == state(term), what


def test_a_file_of_the_older_format_is_read_and_replaced_at_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "hard_state"
    path.write_bytes(msgspec.msgpack.encode(state(7)))
    hard_state = HardStateFile(path, OS_FILES, fsync=True)
    assert hard_state.load() == state(7)
    hard_state.write(state(8))
    assert path.read_bytes().startswith(MAGIC)
    assert HardStateFile(path, OS_FILES, fsync=True).load() == state(8)


def test_a_journal_without_one_whole_record_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "hard_state"
    path.write_bytes(MAGIC + b"\x00\x00\x00\x05\x00")
    with pytest.raises(StorageError, match="corrupt"):
        HardStateFile(path, OS_FILES, fsync=True).load()
