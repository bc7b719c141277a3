"""Snapshots: atomic saves, checksums, falling back to the older one, and keeping only two."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mom.errors import StorageError
from mom.log import SnapshotStore


def snapshot_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_there_is_no_snapshot_before_the_first_save(tmp_path: Path) -> None:
    assert SnapshotStore(tmp_path / "missing").load_latest() is None
    assert SnapshotStore(tmp_path).load_latest() is None


def test_save_then_load_returns_the_newest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps")
    store.save(10, b"state at ten")
    assert store.load_latest() == (10, b"state at ten")
    store.save(25, b"")
    assert SnapshotStore(tmp_path / "snaps").load_latest() == (25, b"")


def test_only_the_two_newest_are_kept(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    for index in (3, 7, 12, 40):
        store.save(index, b"x" * index)
    assert snapshot_files(tmp_path) == [
        "snapshot-00000000000000000012.snap",
        "snapshot-00000000000000000040.snap",
    ]
    assert store.load_latest() == (40, b"x" * 40)


def test_saving_the_same_index_again_replaces_it(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(5, b"first")
    store.save(5, b"second")
    assert store.load_latest() == (5, b"second")
    assert len(snapshot_files(tmp_path)) == 1


def test_a_leftover_tmp_file_is_ignored_and_cleaned_by_the_next_save(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(5, b"complete")
    (tmp_path / "snapshot-00000000000000000009.snap.tmp").write_bytes(b"half a snap")
    assert store.load_latest() == (5, b"complete")
    store.save(6, b"next")
    assert not list(tmp_path.glob("*.tmp"))
    assert store.load_latest() == (6, b"next")


@pytest.mark.parametrize("damage", ["flip-data", "flip-header", "truncate", "empty", "rename"])
def test_a_corrupt_newest_snapshot_falls_back_to_the_older_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    store = SnapshotStore(tmp_path)
    store.save(100, b"older state")
    store.save(200, b"newer state")
    newest = tmp_path / "snapshot-00000000000000000200.snap"
    data = bytearray(newest.read_bytes())
    if damage == "flip-data":
        data[-3] ^= 0x01
    elif damage == "flip-header":
        data[10] ^= 0x80
    elif damage == "truncate":
        del data[-1]
    elif damage == "empty":
        data.clear()
    newest.write_bytes(data)
    if damage == "rename":
        newest.rename(tmp_path / "snapshot-00000000000000000300.snap")
    with caplog.at_level(logging.WARNING, logger="mom.log"):
        assert store.load_latest() == (100, b"older state")
    assert "unusable" in caplog.text


def test_none_when_every_snapshot_is_corrupt(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    store.save(1, b"a")
    for path in tmp_path.iterdir():
        path.write_bytes(b"garbage")
    assert store.load_latest() is None


def test_a_save_that_cannot_write_raises_storage_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-directory").write_text("")
    with pytest.raises(StorageError):
        SnapshotStore(tmp_path / "not-a-directory").save(1, b"a")


def test_two_transfers_of_one_snapshot_never_share_a_file(tmp_path: Path) -> None:
    """A leader may stream the same snapshot again while the first copy waits to be installed (a lost ack, a new
    term). Dropping the first copy must not delete the second (they used to share one `.part` path, and the node
    stopped with "cannot store the received snapshot": seen over ZeroMQ in test_catalog_snapshot)."""
    source = SnapshotStore(tmp_path / "leader")
    source.save(22, b"the catalog")
    whole = (tmp_path / "leader" / "snapshot-00000000000000000022.snap").read_bytes()
    store = SnapshotStore(tmp_path / "follower")
    first = store.receive(22)
    first.write(whole)
    second = store.receive(22)
    second.write(whole)
    first.abort()
    second.commit()
    assert store.load_latest() == (22, b"the catalog")
