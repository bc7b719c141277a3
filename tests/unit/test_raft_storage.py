"""RaftStorage: what a restarted node reads back is exactly what its Raft core was told is durable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mom.config import StorageSection
from mom.errors import StorageError
from mom.log.segment import HEADER
from mom.replication._storage import RaftStorage
from mom.replication.messages import LogEntry
from mom.replication.raft import HardState, Snapshot

SETTINGS = StorageSection(fsync="always", segment_bytes=4096, snapshot_bytes=4096)


def entries(first: int, last: int, term: int) -> list[LogEntry]:
    return [LogEntry(term, f"cmd{i}".encode()) for i in range(first, last + 1)]


def test_a_new_directory_is_an_empty_state(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    state = storage.load()
    assert state.hard_state == HardState() and state.snapshot == Snapshot() and state.entries == []
    storage.close()


@pytest.mark.parametrize("fsync", ["always", "never"])
def test_hard_state_and_entries_with_their_terms_survive_a_restart(tmp_path: Path, fsync: str) -> None:
    settings = StorageSection(fsync=fsync, segment_bytes=4096)  # type: ignore[arg-type]
    storage = RaftStorage(tmp_path, settings)
    storage.load()
    storage.append(1, entries(1, 3, term=1))
    storage.append(4, [LogEntry(2, b"")])
    storage.sync(HardState(term=2, voted_for="n2", commit=3))
    storage.close()

    storage = RaftStorage(tmp_path, settings)
    state = storage.load()
    assert state.hard_state == HardState(term=2, voted_for="n2", commit=3)
    assert state.entries == [*entries(1, 3, term=1), LogEntry(2, b"")]
    storage.close()


def test_a_commit_alone_is_not_written_but_a_new_vote_is(tmp_path: Path) -> None:
    """An older commit index is safe to recover; a forgotten vote is not."""
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    storage.sync(HardState(term=3, voted_for="n1", commit=0))
    storage.sync(HardState(term=3, voted_for="n1", commit=7))
    storage.close()
    storage = RaftStorage(tmp_path, SETTINGS)
    assert storage.load().hard_state == HardState(term=3, voted_for="n1", commit=0)
    storage.sync(HardState(term=4, voted_for=None, commit=7))
    storage.close()
    storage = RaftStorage(tmp_path, SETTINGS)
    assert storage.load().hard_state == HardState(term=4, voted_for=None, commit=7)
    storage.close()


def test_truncate_after_replaces_a_conflicting_suffix(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    storage.append(1, entries(1, 5, term=1))
    storage.truncate_after(2)
    storage.append(3, entries(3, 4, term=2))
    storage.sync(None)
    storage.close()
    storage = RaftStorage(tmp_path, SETTINGS)
    assert storage.load().entries == [*entries(1, 2, term=1), *entries(3, 4, term=2)]
    storage.close()


def test_entries_that_would_leave_a_hole_are_refused(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    storage.append(1, entries(1, 2, term=1))
    with pytest.raises(StorageError, match="would not follow"):
        storage.append(4, entries(4, 4, term=1))
    storage.close()


def test_an_installed_snapshot_replaces_the_log(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    storage.append(1, entries(1, 3, term=1))
    snapshot = Snapshot(index=10, term=3, data=b"state at 10")
    storage.save_snapshot(snapshot)
    storage.installed(snapshot)
    storage.append(11, entries(11, 12, term=3))
    storage.sync(HardState(term=3, voted_for=None, commit=10))
    storage.close()

    storage = RaftStorage(tmp_path, SETTINGS)
    state = storage.load()
    assert state.snapshot == snapshot
    assert state.entries == entries(11, 12, term=3)
    assert state.hard_state.term == 3
    storage.close()


def test_compaction_frees_segments_but_keeps_what_the_previous_snapshot_needs(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    big = [LogEntry(1, bytes(600)) for _ in range(40)]  # ~6 entries per 4 KiB segment
    storage.append(1, big)
    storage.sync(HardState(term=1, voted_for="n1", commit=40))
    before = storage.size_bytes()
    for index in (20, 35):
        snapshot = Snapshot(index, 1, f"state at {index}".encode())
        storage.save_snapshot(snapshot)
        storage.compacted(snapshot)
    assert storage.size_bytes() < before
    assert storage.log.first_index <= 21, "entries after the previous snapshot (20) must stay"
    storage.close()

    storage = RaftStorage(tmp_path, SETTINGS)
    state = storage.load()
    assert state.snapshot == Snapshot(35, 1, b"state at 35")
    assert state.entries == big[35:]
    storage.close()

    newest = tmp_path / "snapshots" / f"snapshot-{35:020d}.snap"
    newest.write_bytes(newest.read_bytes()[:-1] + b"X")
    storage = RaftStorage(tmp_path, SETTINGS)
    state = storage.load()
    assert state.snapshot == Snapshot(20, 1, b"state at 20"), "falls back to the previous snapshot"
    assert state.entries == big[20:]
    storage.close()


def test_a_corrupt_hard_state_stops_the_node(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    storage.sync(HardState(term=1, voted_for="n1"))
    storage.close()
    (tmp_path / "hard_state").write_bytes(b"\xc1garbage")
    with pytest.raises(StorageError, match="corrupt"):
        RaftStorage(tmp_path, SETTINGS).load()


def damage_mid_log(directory: Path) -> None:
    """Flip a bit in the first record of the log: valid records follow it, so it is damage, not a torn tail."""
    [segment] = sorted((directory / "log").glob("*.log"))
    data = bytearray(segment.read_bytes())
    data[HEADER.size] ^= 0x04
    segment.write_bytes(bytes(data))


def stored_log(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    storage.append(1, entries(1, 6, term=2))
    storage.sync(HardState(term=2, voted_for="n2", commit=6))
    storage.close()


def test_a_log_damaged_in_its_middle_makes_the_replica_a_learner_durably(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stored_log(tmp_path)
    damage_mid_log(tmp_path)
    storage = RaftStorage(tmp_path, SETTINGS)
    with caplog.at_level(logging.WARNING, logger="mom.replication"):
        state = storage.load()
    assert state.hard_state == HardState(term=2, voted_for="n2", commit=6, learner=True)
    assert state.entries == [], "cut before the damaged first record"
    assert any("learner" in r.getMessage() for r in caplog.records)
    storage.close()
    again = RaftStorage(tmp_path, SETTINGS)
    assert again.load().hard_state.learner, "a crash while catching up keeps the flag"
    again.sync(HardState(term=2, voted_for="n2", commit=6, learner=False))
    again.close()
    assert not RaftStorage(tmp_path, SETTINGS).load().hard_state.learner


def test_the_only_replica_of_a_group_refuses_to_start_on_a_damaged_log(tmp_path: Path) -> None:
    stored_log(tmp_path)
    damage_mid_log(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(StorageError, match="no other replica"):
        RaftStorage(tmp_path, SETTINGS).load(alone=True)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before


def test_a_torn_tail_is_cut_and_the_replica_keeps_its_vote(tmp_path: Path) -> None:
    stored_log(tmp_path)
    [segment] = sorted((tmp_path / "log").glob("*.log"))
    segment.write_bytes(segment.read_bytes()[:-3])
    state = RaftStorage(tmp_path, SETTINGS).load(alone=True)
    assert not state.hard_state.learner
    assert state.entries == entries(1, 5, term=2)


def test_entries_missing_after_the_snapshot_make_the_replica_a_learner(tmp_path: Path) -> None:
    storage = RaftStorage(tmp_path, SETTINGS)
    storage.load()
    big = [LogEntry(1, bytes(600)) for _ in range(40)]
    storage.append(1, big)
    storage.sync(HardState(term=1, voted_for="n1", commit=40))
    for index in (20, 35):
        snapshot = Snapshot(index, 1, f"state at {index}".encode())
        storage.save_snapshot(snapshot)
        storage.compacted(snapshot)
    storage.close()
    newest = tmp_path / "snapshots" / f"snapshot-{35:020d}.snap"
    newest.write_bytes(newest.read_bytes()[:-1] + b"X")  # falls back to 20, whose next entries are...
    for segment in sorted((tmp_path / "log").glob("*.log"))[:1]:
        segment.unlink()  # ...gone too
    state = RaftStorage(tmp_path, SETTINGS).load()
    assert state.snapshot.index == 20
    assert state.hard_state.learner
    assert state.entries == []
