"""The segmented log in normal operation: appends, reads, rolls, truncation, and failing disks."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from mom.errors import StorageError
from mom.log import SegmentedLog
from mom.log.segment import HEADER


def payload(index: int) -> bytes:
    return f"record {index} ".encode() * (index % 7) + bytes([index % 256])


def segment_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_new_log_is_empty_and_starts_at_one(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path / "log")
    assert (log.first_index, log.last_index) == (1, 0)
    assert list(log.read(1)) == []
    assert segment_files(tmp_path / "log") == ["00000000000000000001.log"]
    assert log.recovery.records_kept == 0


def test_append_returns_the_last_index_and_read_returns_the_records(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    assert log.append([b"a", b"", b"c" * 1000]) == 3
    assert log.append([b"d"]) == 4
    assert log.append([]) == 4
    assert list(log.read(1)) == [(1, b"a"), (2, b""), (3, b"c" * 1000), (4, b"d")]
    assert list(log.read(3)) == [(3, b"c" * 1000), (4, b"d")]
    assert list(log.read(5)) == []


def test_records_roll_over_many_segments_and_survive_reopening(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=300)
    for start in range(1, 501, 25):
        log.append([payload(i) for i in range(start, start + 25)])
    log.append([b"x" * 1000])  # bigger than a segment: gets a segment of its own
    log.sync()
    expected = [(i, payload(i)) for i in range(1, 501)] + [(501, b"x" * 1000)]
    assert list(log.read(1)) == expected
    files = segment_files(tmp_path)
    assert len(files) > 50
    assert files[-1] == "00000000000000000501.log"
    assert all((tmp_path / name).stat().st_size <= 300 for name in files[:-1])
    assert log.size_bytes() == sum((tmp_path / name).stat().st_size for name in files)
    log.close()

    reopened = SegmentedLog.open(tmp_path, segment_bytes=300)
    assert (reopened.first_index, reopened.last_index) == (1, 501)
    assert list(reopened.read(1)) == expected
    assert list(reopened.read(250)) == expected[249:]
    assert (reopened.recovery.records_kept, reopened.recovery.bytes_dropped) == (501, 0)
    assert reopened.append([b"next"]) == 502
    assert list(reopened.read(502)) == [(502, b"next")]


def test_truncate_prefix_deletes_covered_segments_but_never_the_active_one(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=200)
    log.append([payload(i) for i in range(1, 201)])
    before_bytes, before_files = log.size_bytes(), segment_files(tmp_path)

    log.truncate_prefix(100)
    assert log.size_bytes() < before_bytes
    assert len(segment_files(tmp_path)) < len(before_files)
    assert 1 < log.first_index <= 101
    assert log.last_index == 200
    assert list(log.read(101)) == [(i, payload(i)) for i in range(101, 201)]
    with pytest.raises(ValueError):
        list(log.read(1))

    log.truncate_prefix(10_000)
    assert segment_files(tmp_path) == [before_files[-1]]
    assert log.last_index == 200
    log.close()
    reopened = SegmentedLog.open(tmp_path, segment_bytes=200)
    assert reopened.first_index == int(before_files[-1].removesuffix(".log"))
    assert reopened.last_index == 200


def test_truncate_prefix_of_a_rolled_empty_active_segment_keeps_the_position(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=HEADER.size + 1)
    log.append([b"a", b"b", b"c"])
    log.truncate_prefix(3)
    assert (log.first_index, log.last_index) == (3, 3)
    assert log.append([b"d"]) == 4
    log.truncate_prefix(4)
    log.close()
    reopened = SegmentedLog.open(tmp_path, segment_bytes=HEADER.size + 1)
    assert (reopened.first_index, reopened.last_index) == (4, 4)
    assert list(reopened.read(4)) == [(4, b"d")]


@pytest.mark.parametrize("after", [0, 1, 37, 38, 99, 150, 199, 200, 300])
def test_truncate_suffix_then_append_continues_after_the_kept_records(tmp_path: Path, after: int) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=250)
    log.append([payload(i) for i in range(1, 201)])
    log.truncate_suffix(after)
    kept = min(after, 200)
    assert log.last_index == kept
    assert log.append([b"new-1", b"new-2"]) == kept + 2
    expected = [(i, payload(i)) for i in range(1, kept + 1)] + [(kept + 1, b"new-1"), (kept + 2, b"new-2")]
    assert list(log.read(1)) == expected
    log.sync()
    log.close()
    reopened = SegmentedLog.open(tmp_path, segment_bytes=250)
    assert list(reopened.read(1)) == expected
    assert reopened.recovery.bytes_dropped == 0


def test_truncate_suffix_below_the_first_record_is_refused(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=100)
    log.append([payload(i) for i in range(1, 50)])
    log.truncate_prefix(30)
    with pytest.raises(ValueError):
        log.truncate_suffix(log.first_index - 2)
    log.truncate_suffix(log.first_index - 1)
    assert log.last_index == log.first_index - 1
    assert list(log.read(log.first_index)) == []


def test_reset_drops_everything_and_the_next_append_gets_the_given_index(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=200)
    log.append([payload(i) for i in range(1, 100)])
    log.reset(1000)
    assert (log.first_index, log.last_index) == (1000, 999)
    assert segment_files(tmp_path) == ["00000000000000001000.log"]
    assert log.size_bytes() == 0
    assert log.append([b"after snapshot"]) == 1000
    log.sync()
    log.close()
    reopened = SegmentedLog.open(tmp_path)
    assert list(reopened.read(1000)) == [(1000, b"after snapshot")]


def test_reading_a_record_changed_on_disk_after_opening_raises(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    log.append([b"hello", b"world"])
    path = tmp_path / "00000000000000000001.log"
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(data)
    with pytest.raises(StorageError, match="corrupt"):
        list(log.read(1))


def test_a_failed_write_breaks_the_log_until_it_is_reopened(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = SegmentedLog.open(tmp_path)
    log.append([b"kept"])
    log.sync()

    def disk_full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StorageError) as info:
        log.append([b"lost"])
    assert isinstance(info.value.__cause__, OSError)
    monkeypatch.undo()
    with pytest.raises(StorageError):
        log.append([b"also refused"])
    with pytest.raises(StorageError):
        log.sync()
    log.close()
    assert list(SegmentedLog.open(tmp_path).read(1)) == [(1, b"kept")]


def test_a_failed_fsync_raises_storage_error_and_breaks_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SegmentedLog.open(tmp_path)
    log.append([b"x"])

    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", io_error)
    with pytest.raises(StorageError):
        log.sync()
    monkeypatch.undo()
    with pytest.raises(StorageError):
        log.append([b"y"])


def test_a_closed_log_refuses_to_work(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    log.close()
    log.close()
    with pytest.raises(StorageError, match="closed"):
        log.append([b"x"])
    with pytest.raises(StorageError, match="closed"):
        log.read(1)
