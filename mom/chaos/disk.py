"""Damage done to a stopped node's disk: a torn tail or a flipped bit in its newest log segment.

"Newest" is the segment file written last (latest modification time) among all the node's groups: the one a crash
is most likely to have interrupted. Both functions say exactly what they did, so a run can be replayed and a
finding traced to the byte. Record boundaries come from the segment format in `mom.log.segment`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mom.log.segment import HEADER


@dataclass(frozen=True)
class Damage:
    """What was done to which file."""

    path: str
    what: str
    """"cut", "garbage" or "flip"."""
    size_before: int
    size_after: int
    offset: int
    """Where the damage starts (the new end of a cut file, the first garbage byte, the flipped byte)."""
    record: int
    """Position (from 0) of the record the damage hit within the file; -1 past the last record."""
    records: int
    """How many whole records the file held before."""
    bit: int = -1

    @property
    def in_last_record(self) -> bool:
        return self.record >= self.records - 1

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "in_last_record": self.in_last_record}


Harm = Callable[[Path, random.Random], "Damage"]
"""What `tear_tail` and `flip_bit` are: damage a file, say what was done."""


def newest_segment(data_dir: Path) -> Path | None:
    """The non-empty segment file written last under `data_dir`, or None if the node has written none."""
    candidates = [p for p in data_dir.glob("groups/*/log/*.log") if p.stat().st_size > 0]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.stat().st_size))


def record_starts(path: Path) -> list[int]:
    """The byte offset of each whole record, read from the headers (payloads are skipped, not checked)."""
    starts: list[int] = []
    size = path.stat().st_size
    with path.open("rb") as file:
        pos = 0
        while pos + HEADER.size <= size:
            file.seek(pos)
            length, _, _ = HEADER.unpack(file.read(HEADER.size))
            end = pos + HEADER.size + length
            if end > size:
                break
            starts.append(pos)
            pos = end
    return starts


def _record_at(starts: list[int], offset: int, size: int) -> int:
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else size
        if start <= offset < end:
            return i
    return -1


def tear_tail(path: Path, rng: random.Random) -> Damage:
    """What a crash in the middle of a write leaves: the last record cut short (`cut`), or a partial record of
    junk after the last whole one (`garbage`), chosen by `rng`."""
    size = path.stat().st_size
    starts = record_starts(path)
    if starts and rng.random() < 0.5:
        last = starts[-1]
        new_size = rng.randrange(last + 1, size) if size - last > 1 else last
        os.truncate(path, new_size)
        damage = Damage(str(path), "cut", size, new_size, new_size, len(starts) - 1, len(starts))
    else:
        junk = rng.randbytes(rng.randint(1, HEADER.size + 32))
        with path.open("ab") as file:
            file.write(junk)
        damage = Damage(str(path), "garbage", size, size + len(junk), size, -1, len(starts))
    _sync(path)
    return damage


def flip_bit(path: Path, rng: random.Random) -> Damage:
    """Flip one bit at a random byte of the file: mid-log corruption, or tail corruption if it lands in the last
    record (`Damage.in_last_record` says which)."""
    size = path.stat().st_size
    starts = record_starts(path)
    offset, bit = rng.randrange(size), rng.randrange(8)
    with path.open("r+b") as file:
        file.seek(offset)
        byte = file.read(1)[0]
        file.seek(offset)
        file.write(bytes([byte ^ (1 << bit)]))
    _sync(path)
    return Damage(str(path), "flip", size, size, offset, _record_at(starts, offset, size), len(starts), bit)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
