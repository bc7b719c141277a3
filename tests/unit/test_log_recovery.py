"""Recovery: a torn tail is cut off; damage in the middle of the log is reported, never silently cut.

A crash leaves at most a torn end: the log reopens to its valid prefix and goes on. A bad record with valid
records after it (or a missing segment) means the disk lost data that was durable and may have been
acknowledged: `open` refuses (LogDamaged) and changes nothing, unless told to accept the damage, and then it
cuts before the damage and says so in its report.

The damage is done at byte positions computed from the documented format (16-byte header, then the
payload), so each test knows which record it hit and therefore which prefix must survive.
"""

from __future__ import annotations

import logging
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mom.log import SegmentedLog
from mom.log.log import LogDamaged
from mom.log.segment import HEADER

SEGMENT_BYTES = 400
COUNT = 60


def payload(index: int) -> bytes:
    return f"<{index}>".encode() * (index % 5 + 1)


def build_log(directory: Path, count: int = COUNT) -> None:
    log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES)
    log.append([payload(i) for i in range(1, count + 1)])
    log.sync()
    log.close()


def files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.log"))


def record_span(directory: Path, index: int) -> tuple[Path, int, int]:
    """The file holding record `index` and the byte range [start, end) of the record in it."""
    path = max((p for p in files(directory) if int(p.stem) <= index), key=lambda p: int(p.stem))
    start = sum(HEADER.size + len(payload(i)) for i in range(int(path.stem), index))
    return path, start, start + HEADER.size + len(payload(index))


def contents(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def refused_as_damaged(directory: Path) -> LogDamaged:
    """Opening raises LogDamaged and leaves every file as it was."""
    before = contents(directory)
    with pytest.raises(LogDamaged) as raised:
        SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES)
    assert contents(directory) == before
    return raised.value


def reopen_expecting(directory: Path, kept: int, *, damaged: bool = False) -> SegmentedLog:
    """Reopen, check the log is records 1..kept, and that appending after recovery survives a reopen.

    `damaged`: the damage is in the middle of the log, so the first open must refuse, and only an open that
    accepts the damage cuts the log."""
    if damaged:
        refused_as_damaged(directory)
    log = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES, accept_damage=damaged)
    assert (log.recovery.damage is not None) == damaged
    assert (log.first_index, log.last_index) == (1, kept)
    assert list(log.read(1)) == [(i, payload(i)) for i in range(1, kept + 1)]
    assert log.recovery.records_kept == kept
    assert log.append([b"after recovery", b"and more"]) == kept + 2
    log.sync()
    log.close()
    again = SegmentedLog.open(directory, segment_bytes=SEGMENT_BYTES)
    assert list(again.read(kept + 1)) == [(kept + 1, b"after recovery"), (kept + 2, b"and more")]
    assert again.recovery.bytes_dropped == 0
    again.close()
    return log


@pytest.fixture
def built(tmp_path: Path) -> Path:
    build_log(tmp_path / "log")
    return tmp_path / "log"


def test_a_clean_log_reopens_without_warnings(built: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mom.log"):
        log = reopen_expecting(built, COUNT)
    assert log.recovery.bytes_dropped == log.recovery.segments_removed == 0
    assert caplog.records == []


def test_cutting_the_last_file_at_every_byte_of_its_last_record(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    build_log(pristine)
    path, start, end = record_span(pristine, COUNT)
    for cut_at in range(start, end):
        directory = tmp_path / f"cut-{cut_at}"
        shutil.copytree(pristine, directory)
        os.truncate(directory / path.name, cut_at)
        log = reopen_expecting(directory, COUNT - 1)
        assert log.recovery.bytes_dropped == cut_at - start
        assert log.recovery.segments_removed == 0


@pytest.mark.parametrize("record", [1, 5, 17, 30, 45])
@pytest.mark.parametrize("into", [0, 7, 15, 16, 17])
def test_a_file_cut_inside_an_earlier_segment_is_damage(built: Path, record: int, into: int) -> None:
    """Later segments hold valid records, so what was cut had been written (and perhaps acknowledged)."""
    path, start, _ = record_span(built, record)
    later = [p for p in files(built) if p > path]
    assert later
    os.truncate(path, start + into)
    log = reopen_expecting(built, record - 1, damaged=True)
    assert log.recovery.segments_removed == len(later)


@pytest.mark.parametrize("into", [0, 7, 15, 16, 17])
def test_the_last_file_cut_inside_any_of_its_records_is_a_torn_tail(built: Path, into: int) -> None:
    last = files(built)[-1]
    first_in_last = int(last.stem)
    for record in range(first_in_last, COUNT + 1):
        directory = built.parent / f"copy-{record}"
        shutil.copytree(built, directory)
        _, start, _ = record_span(directory, record)
        os.truncate(directory / last.name, start + into)
        log = reopen_expecting(directory, record - 1)
        assert log.recovery.segments_removed == 0


@pytest.mark.parametrize(
    ("field", "byte"),
    [("length", 0), ("length", 3), ("crc", 5), ("index", 8), ("index", 15), ("payload", 16), ("payload", -1)],
)
@pytest.mark.parametrize("record", [1, 20, 40, COUNT - 1, COUNT])
def test_a_flipped_bit_is_damage_unless_it_is_in_the_last_record(
    built: Path, caplog: pytest.LogCaptureFixture, field: str, byte: int, record: int
) -> None:
    """A flipped bit in the last record looks exactly like a torn write (cut); anywhere else, valid records
    follow it (damage)."""
    path, start, end = record_span(built, record)
    position = start + byte if byte >= 0 else end + byte
    data = bytearray(path.read_bytes())
    data[position] ^= 0x10
    path.write_bytes(data)
    with caplog.at_level(logging.WARNING, logger="mom.log"):
        reopen_expecting(built, record - 1, damaged=record < COUNT)
    assert any("cut" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)


@settings(max_examples=60, deadline=None)
@given(record=st.integers(1, COUNT), offset=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_single_bit_flip_keeps_exactly_the_records_before_it(record: int, offset: int, bit: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        build_log(directory)
        path, start, end = record_span(directory, record)
        data = bytearray(path.read_bytes())
        data[start + offset % (end - start)] ^= 1 << bit
        path.write_bytes(data)
        reopen_expecting(directory, record - 1, damaged=record < COUNT)


def test_damage_found_by_the_records_after_it_when_the_length_field_is_destroyed(built: Path) -> None:
    """A zeroed run over a header and into the next record: the scan cannot follow the lengths any more, and
    finds the next valid record by its index and checksum."""
    path, start, _ = record_span(built, 17)
    _, _, end = record_span(built, 18)
    data = bytearray(path.read_bytes())
    data[start : end - 3] = bytes(end - 3 - start)
    path.write_bytes(data)
    damage = refused_as_damaged(built)
    assert "record 17" in damage.damage and "19" in damage.damage


def test_a_zero_filled_tail_is_cut(built: Path) -> None:
    last = files(built)[-1]
    with open(last, "ab") as file:
        file.write(bytes(4096))
    log = reopen_expecting(built, COUNT)
    assert log.recovery.bytes_dropped == 4096


def test_a_zeroed_last_record_is_cut(built: Path) -> None:
    path, start, end = record_span(built, COUNT)
    data = bytearray(path.read_bytes())
    data[start:end] = bytes(end - start)
    path.write_bytes(data)
    reopen_expecting(built, COUNT - 1)


def test_garbage_after_the_last_record_is_cut(built: Path) -> None:
    garbage = random.Random(7).randbytes(333)
    with open(files(built)[-1], "ab") as file:
        file.write(garbage)
    log = reopen_expecting(built, COUNT)
    assert log.recovery.bytes_dropped == 333


def test_a_missing_middle_segment_is_damage(built: Path) -> None:
    segments = files(built)
    assert len(segments) >= 4
    missing = segments[2]
    later = len(segments) - 3
    dropped = sum(p.stat().st_size for p in segments[3:])
    missing.unlink()
    assert "missing" in refused_as_damaged(built).damage
    log = reopen_expecting(built, int(missing.stem) - 1, damaged=True)
    assert (log.recovery.segments_removed, log.recovery.bytes_dropped) == (later, dropped)
    assert all(int(p.stem) <= int(missing.stem) for p in files(built))


def test_a_torn_last_record_before_an_empty_rolled_segment_is_a_torn_tail(built: Path) -> None:
    """A crash between writing the end of one segment and the first record of the next it rolled to."""
    path, start, _ = record_span(built, COUNT)
    os.truncate(path, start + 5)
    (built / f"{COUNT + 1:020d}.log").touch()
    log = reopen_expecting(built, COUNT - 1)
    assert log.recovery.segments_removed == 1


def test_a_segment_garbled_from_its_start_after_a_torn_one_is_a_torn_tail(built: Path) -> None:
    path, start, _ = record_span(built, COUNT)
    os.truncate(path, start + 5)
    (built / f"{COUNT + 1:020d}.log").write_bytes(random.Random(3).randbytes(200))
    reopen_expecting(built, COUNT - 1)


def test_an_empty_last_segment_left_by_a_crash_during_a_roll_is_kept(built: Path) -> None:
    (built / f"{COUNT + 1:020d}.log").touch()
    log = reopen_expecting(built, COUNT)
    assert log.recovery.segments_removed == 0


def test_a_torn_only_record_leaves_an_empty_log_at_the_same_position(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=SEGMENT_BYTES)
    log.reset(500)
    log.append([b"a"])
    log.close()
    path = tmp_path / f"{500:020d}.log"
    data = bytearray(path.read_bytes())
    data[HEADER.size] ^= 1
    path.write_bytes(data)
    reopened = SegmentedLog.open(tmp_path)
    assert (reopened.first_index, reopened.last_index) == (500, 499)
    assert reopened.append([b"again"]) == 500


def test_files_that_are_not_segments_are_left_alone(built: Path) -> None:
    (built / "notes.txt").write_text("hello")
    reopen_expecting(built, COUNT)
    assert (built / "notes.txt").read_text() == "hello"


_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from mom.log import SegmentedLog

    log = SegmentedLog.open(Path(sys.argv[1]), segment_bytes=2048)
    index = log.last_index
    while True:
        count = index % 3 + 1
        index = log.append([b"%d:" % i * (i % 9 + 1) for i in range(index + 1, index + count + 1)])
        log.sync()
        print(index, flush=True)
    """
)


def test_every_record_reported_durable_survives_sigkill(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    child = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path / "log")], stdout=subprocess.PIPE, env=env)
    assert child.stdout is not None
    try:
        assert select.select([child.stdout], [], [], 20)[0], "the writer never reported a durable index"
        time.sleep(0.7)
    finally:
        child.send_signal(signal.SIGKILL)
        output = child.stdout.read()
        child.wait()
    reported = [int(line) for line in output.split(b"\n")[:-1]]
    assert len(reported) > 10
    log = SegmentedLog.open(tmp_path / "log")
    assert log.first_index == 1
    assert log.last_index >= reported[-1]
    for index, data in log.read(1):
        assert data == b"%d:" % index * (index % 9 + 1)
