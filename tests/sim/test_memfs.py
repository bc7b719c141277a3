"""The simulated disk forgets exactly what was not made durable, like a file system after a power loss."""

from __future__ import annotations

import random
from pathlib import Path

from mom.config import StorageSection
from mom.replication._storage import RaftStorage
from mom.replication.raft import Snapshot
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


class _KeepAll(random.Random):
    def randint(self, a: int, b: int) -> int:
        return b

    def random(self) -> float:
        return 0.99


def test_a_snapshot_received_in_chunks_survives_a_crash_only_once_committed() -> None:
    """The follower's `.part` goes through the simulated disk like the rest: lost with its unsynced chunks at a
    crash, and even when every chunk happens to survive it is never taken for a snapshot (it is removed at the
    next start); once committed (fsync, rename, directory fsync) it is the replica's snapshot."""
    fs = fresh()
    settings = StorageSection(fsync="always")
    snapshot = Snapshot(40, 2, random.Random(1).randbytes(10_000))
    leader = RaftStorage(ROOT / "leader", settings, fs=fs)
    leader.load()
    leader.save_snapshot(snapshot)

    def receive(committed: bool) -> None:
        follower = RaftStorage(ROOT / "follower", settings, fs=fs)
        follower.load()
        reader, incoming = leader.open_snapshot(40), follower.receive_snapshot(40)
        for offset in range(0, reader.size, 1024):
            incoming.write(reader.read(offset, 1024))
        assert incoming.finish() is None
        if committed:
            incoming.commit()

    for crash in (crash_losing_everything_unsynced, lambda fs: fs.crash(_KeepAll())):
        receive(committed=False)
        crash(fs)
        leader = RaftStorage(ROOT / "leader", settings, fs=fs)
        leader.load()
        follower = RaftStorage(ROOT / "follower", settings, fs=fs)
        assert follower.load().snapshot == Snapshot()
        assert not [name for name in fs.files(ROOT / "follower") if name.endswith(".part")]
    receive(committed=True)
    crash_losing_everything_unsynced(fs)
    assert RaftStorage(ROOT / "follower", settings, fs=fs).load().snapshot == snapshot
