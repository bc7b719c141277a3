"""The disk damage of `mom chaos`: each kind hits the record it says it hit, as the log's recovery sees it."""

from __future__ import annotations

import os
import random
import struct
import zlib
from pathlib import Path

import pytest

from mom.chaos.disk import flip_bit, newest_segment, record_starts, tear_tail
from mom.log import SegmentedLog
from mom.log.segment import HEADER

COUNT = 50


def build_log(directory: Path) -> Path:
    log = SegmentedLog.open(directory)
    log.append([f"record {i} ".encode() * (i % 7 + 1) for i in range(1, COUNT + 1)])
    log.sync()
    log.close()
    [segment] = directory.glob("*.log")
    return segment


def first_bad_record(data: bytes) -> int | None:
    """The first record whose checksum, index or length is wrong, by the format in `mom.log.segment`."""
    pos = 0
    for i in range(COUNT):
        length, crc, index = HEADER.unpack_from(data, pos)
        payload = data[pos + HEADER.size : pos + HEADER.size + length]
        summed = zlib.crc32(payload, zlib.crc32(struct.pack(">IQ", length, index)))
        if index != i + 1 or len(payload) != length or summed != crc:
            return i
        pos += HEADER.size + length
    return None


def records_after_recovery(directory: Path) -> int:
    log = SegmentedLog.open(directory)
    try:
        return log.last_index
    finally:
        log.close()


def test_record_starts_follow_the_headers(tmp_path: Path) -> None:
    segment = build_log(tmp_path)
    starts = record_starts(segment)
    assert len(starts) == COUNT and starts[0] == 0 and starts == sorted(starts)


@pytest.mark.parametrize("seed", range(8))
def test_a_torn_tail_costs_at_most_the_last_record(tmp_path: Path, seed: int) -> None:
    segment = build_log(tmp_path)
    damage = tear_tail(segment, random.Random(seed))
    assert damage.what in ("cut", "garbage")
    assert segment.stat().st_size == damage.size_after
    expected = COUNT - 1 if damage.what == "cut" else COUNT
    assert records_after_recovery(tmp_path) == expected


@pytest.mark.parametrize("seed", range(8))
def test_a_flipped_bit_is_found_in_the_record_it_hit(tmp_path: Path, seed: int) -> None:
    segment = build_log(tmp_path)
    before = segment.read_bytes()
    damage = flip_bit(segment, random.Random(seed))
    after = segment.read_bytes()
    assert [i for i in range(len(before)) if before[i] != after[i]] == [damage.offset]
    assert before[damage.offset] ^ after[damage.offset] == 1 << damage.bit
    assert 0 <= damage.record < COUNT
    assert damage.in_last_record == (damage.record == COUNT - 1)
    assert first_bad_record(after) == damage.record


def test_the_newest_segment_is_the_one_written_last(tmp_path: Path) -> None:
    assert newest_segment(tmp_path) is None
    older = build_log(tmp_path / "groups" / "q.a@1" / "log")
    newer = build_log(tmp_path / "groups" / "t.b@2" / "log")
    os.utime(older, ns=(1, 1))
    assert newest_segment(tmp_path) == newer
