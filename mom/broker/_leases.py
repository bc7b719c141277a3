"""Leases, receipts and redelivery order: the part that queues and subscriptions share.

A `LeaseBook` tracks records keyed by offset, each READY (a receive may take it), WAITING (invisible until
`until`: delayed or nacked) or LEASED (held by a consumer until `until`). The records are the canonical state
(they go into snapshots); the two heaps are caches rebuilt on restore. Heap entries are deleted lazily: an
entry is acted upon only if the record it names is still in the matching state, so stale entries cost nothing
but a pop, and popping them (even from a read-only query) never changes what the state machine does.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from mom.errors import InvalidInput

READY, WAITING, LEASED = 0, 1, 2

_RECEIPT_RE = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})\.([0-9]{1,9})", re.ASCII)


class Slot(Protocol):
    deliveries: int
    state: int
    until: int


R = TypeVar("R", bound=Slot)


def make_receipt(incarnation: int, offset: int, delivery: int) -> str:
    """Name one delivery; the incarnation keeps receipts of a deleted and re-declared source from matching."""
    return f"{incarnation}.{offset}.{delivery}"


def parse_receipts(receipts: Sequence[str]) -> list[tuple[int, int, int]]:
    """Parse all receipts before anything is settled, so one malformed receipt rejects the whole command."""
    parsed = []
    for receipt in receipts:
        match = _RECEIPT_RE.fullmatch(receipt) if isinstance(receipt, str) else None
        if match is None:
            raise InvalidInput(f"malformed receipt {receipt!r}")
        parsed.append((int(match[1]), int(match[2]), int(match[3])))
    return parsed


class LeaseBook(Generic[R]):
    """Records by offset with O(log n) access to the lowest ready offset and the earliest timer."""

    __slots__ = ("_ready", "_timed", "_timers", "_weigh", "bytes", "counts", "records")

    def __init__(self, records: dict[int, R], weigh: Callable[[R], int] | None = None) -> None:
        self.records = records
        self.counts = [0, 0, 0]
        self._weigh = weigh
        self.bytes = sum(weigh(record) for record in records.values()) if weigh is not None else 0
        """The records' total weight (a queue weighs bodies); a cache, rebuilt on restore."""
        self._ready: list[int] = []
        self._timed: set[int] = set()
        """Offsets of WAITING and LEASED records: what the timer heap holds once stale entries are gone."""
        for offset, record in records.items():
            self.counts[record.state] += 1
            if record.state == READY:
                self._ready.append(offset)
            else:
                self._timed.add(offset)
        heapq.heapify(self._ready)
        self._timers: list[tuple[int, int]] = []
        self._rebuild_timers()

    def _rebuild_timers(self) -> None:
        """Drop stale timer entries, so the heap stays O(records in a timed state), whatever the ack rate."""
        self._timers = [(self.records[offset].until, offset) for offset in self._timed]
        heapq.heapify(self._timers)

    def add(self, offset: int, record: R) -> None:
        self.records[offset] = record
        self.counts[record.state] += 1
        if self._weigh is not None:
            self.bytes += self._weigh(record)
        if record.state == READY:
            heapq.heappush(self._ready, offset)
        else:
            self._timed.add(offset)
            heapq.heappush(self._timers, (record.until, offset))

    def current(self, incarnation: int, receipt: tuple[int, int, int]) -> R | None:
        """The record whose current delivery `receipt` names; None if it was delivered again since, settled,
        expired, or belongs to another incarnation of the source."""
        receipt_incarnation, offset, delivery = receipt
        record = self.records.get(offset) if receipt_incarnation == incarnation else None
        if record is None or delivery < 1 or record.deliveries != delivery:
            return None
        return record

    def remove(self, offset: int) -> R:
        record = self.records.pop(offset)
        self.counts[record.state] -= 1
        if self._weigh is not None:
            self.bytes -= self._weigh(record)
        self._timed.discard(offset)
        return record

    def set_ready(self, offset: int, record: R) -> None:
        self._move(offset, record, READY, 0)

    def set_waiting(self, offset: int, record: R, until: int, now: int) -> None:
        if until <= now:
            self._move(offset, record, READY, 0)
        else:
            self._move(offset, record, WAITING, until)

    def lease(self, offset: int, record: R, until: int) -> None:
        self._move(offset, record, LEASED, until)

    def _move(self, offset: int, record: R, state: int, until: int) -> None:
        self.counts[record.state] -= 1
        self.counts[state] += 1
        record.state = state
        record.until = until
        if state == READY:
            self._timed.discard(offset)
            heapq.heappush(self._ready, offset)
            return
        self._timed.add(offset)
        if len(self._timers) > 2 * len(self._timed) + 64:
            self._rebuild_timers()
        else:
            heapq.heappush(self._timers, (until, offset))

    def oldest(self) -> R | None:
        """The record of the lowest offset (records are added in offset order, and dicts keep that order)."""
        return next(iter(self.records.values()), None)

    def first_ready(self) -> int | None:
        """The lowest ready offset, dropping stale heap entries on the way."""
        ready, records = self._ready, self.records
        while ready:
            record = records.get(ready[0])
            if record is not None and record.state == READY:
                return ready[0]
            heapq.heappop(ready)
        return None

    def compact_ready(self) -> None:
        """Drop stale ready entries when they outnumber live ones: for FIFO queues, whose receives take
        messages from inside the heap (by group) rather than from its top."""
        if len(self._ready) > 2 * self.counts[READY] + 64:
            self._ready = [offset for offset, record in self.records.items() if record.state == READY]
            heapq.heapify(self._ready)

    def pop_ready(self) -> int | None:
        offset = self.first_ready()
        if offset is not None:
            heapq.heappop(self._ready)
        return offset

    def _valid_timer(self, until: int, offset: int) -> R | None:
        record = self.records.get(offset)
        if record is not None and record.state != READY and record.until == until:
            return record
        return None

    def next_timer(self) -> int | None:
        """When the earliest WAITING or LEASED record changes state."""
        timers = self._timers
        while timers:
            until, offset = timers[0]
            if self._valid_timer(until, offset) is not None:
                return until
            heapq.heappop(timers)
        return None

    def pop_due(self, now: int) -> tuple[int, R] | None:
        """The next record whose timer is due at `now`, in (time, offset) order; the caller moves it on."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            until, offset = heapq.heappop(timers)
            record = self._valid_timer(until, offset)
            if record is not None:
                return offset, record
        return None

    def due(self, now: int) -> dict[int, R]:
        """The records whose timers are due at `now`, without popping: for read-only views of `now`.

        Walks only the part of the heap at or before `now` (a heap's children are never earlier than their
        parent).
        """
        found: dict[int, R] = {}
        timers = self._timers
        stack = [0] if timers else []
        while stack:
            index = stack.pop()
            until, offset = timers[index]
            if until > now:
                continue
            record = self._valid_timer(until, offset)
            if record is not None:
                found[offset] = record
            stack.extend(child for child in (2 * index + 1, 2 * index + 2) if child < len(timers))
        return found

    def due_counts(self, now: int) -> tuple[int, int]:
        """(waiting, leased) records due at `now`, i.e. ready as far as a view of `now` is concerned."""
        waiting = leased = 0
        for record in self.due(now).values():
            if record.state == LEASED:
                leased += 1
            else:
                waiting += 1
        return waiting, leased
