"""The simulated disk forgets exactly what was not made durable, like a file system after a power loss."""

from __future__ import annotations

import random
from pathlib import Path

from tests.sim.memfs import MemoryFileSystem

ROOT = Path("/node")


def fresh() -> MemoryFileSystem:
    fs = MemoryFileSystem()
    fs.makedirs(ROOT)
    return fs


def crash_losing_everything_unsynced(fs: MemoryFileSystem) -> None:
    class Nothing(random.Random):
        def randint(self, a: int, b: int) -> int:
            return a

        def random(self) -> float:
            return 0.99  # and no torn write either

    fs.crash(Nothing())


def test_synced_data_in_a_synced_directory_survives_and_nothing_else() -> None:
    fs = fresh()
    file = fs.open(ROOT / "a", create=True)
    file.write(b"durable")
    file.sync()
    fs.sync_directory(ROOT)
    file.write(b" but not this")
    crash_losing_everything_unsynced(fs)
    assert fs.read_bytes(ROOT / "a") == b"durable"


def test_a_synced_file_whose_directory_was_not_synced_is_gone() -> None:
    fs = fresh()
    file = fs.open(ROOT / "a", create=True)
    file.write(b"data")
    file.sync()
    crash_losing_everything_unsynced(fs)
    assert fs.listdir(ROOT) == []


def test_unsynced_truncation_and_deletion_come_back() -> None:
    fs = fresh()
    file = fs.open(ROOT / "log", create=True)
    file.write(b"0123456789")
    file.sync()
    fs.open(ROOT / "old", create=True).sync()
    fs.sync_directory(ROOT)
    file.truncate(3)
    fs.unlink(ROOT / "old")
    crash_losing_everything_unsynced(fs)
    assert fs.read_bytes(ROOT / "log") == b"0123456789"
    assert sorted(fs.listdir(ROOT)) == ["log", "old"]


def test_a_rename_is_atomic_and_durable_with_its_directory() -> None:
    fs = fresh()
    for content in (b"one", b"two"):
        tmp = fs.open(ROOT / "state.tmp", create=True)
        tmp.write(content)
        tmp.sync()
        fs.replace(ROOT / "state.tmp", ROOT / "state")
        fs.sync_directory(ROOT)
    tmp = fs.open(ROOT / "state.tmp", create=True)
    tmp.write(b"three")
    tmp.sync()
    fs.replace(ROOT / "state.tmp", ROOT / "state")
    crash_losing_everything_unsynced(fs)
    assert fs.read_bytes(ROOT / "state") == b"two"


def test_a_crash_keeps_a_prefix_of_the_unsynced_changes_in_order() -> None:
    """Whatever survives, a later write never survives without the earlier ones (journal order)."""
    for seed in range(200):
        fs = fresh()
        file = fs.open(ROOT / "log", create=True)
        fs.sync_directory(ROOT)
        for chunk in (b"aaaa", b"bbbb", b"cccc"):
            file.write(chunk)
        fs.crash(random.Random(seed))
        data = fs.read_bytes(ROOT / "log")
        assert b"aaaabbbbcccc".startswith(data.rstrip(b"\x00")), data


def test_files_opened_before_a_crash_are_dead() -> None:
    fs = fresh()
    file = fs.open(ROOT / "a", create=True)
    fs.crash(random.Random(0))
    try:
        file.write(b"from beyond")
    except OSError:
        return
    raise AssertionError("a write through a file opened before the crash was accepted")
