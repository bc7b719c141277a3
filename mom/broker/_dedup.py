"""The dedup window of one destination: which dedup ids were published recently, and as what.

Lookups compare times, so whether an old id has been forgotten yet never changes an answer; forgetting only
frees memory. It is done in sweeps, at most one per `SWEEP_SLACK_MS`, so a steady stream of dedup ids does
not make the engine append a Tick every millisecond. Whether a sweep runs depends only on the canonical
entries and `now`, so replicas with different cache histories sweep at the same commands.
"""

from __future__ import annotations

from collections import deque

from msgspec import Struct

SWEEP_SLACK_MS = 1_000


class DedupEntry(Struct, array_like=True, gc=False):
    dedup_id: str
    at_ms: int
    id: str
    offset: int


class DedupTable:
    __slots__ = ("_by_id", "_order", "_window")

    def __init__(self, window_ms: int, entries: list[DedupEntry]) -> None:
        self._window = window_ms
        self._by_id = {entry.dedup_id: entry for entry in entries}
        self._order = deque(entries)
        """Entries in time order; one replaced by a later publish of the same id stays here until swept."""

    def lookup(self, dedup_id: str, now: int) -> DedupEntry | None:
        entry = self._by_id.get(dedup_id)
        if entry is not None and now < entry.at_ms + self._window:
            return entry
        return None

    def remember(self, dedup_id: str, message_id: str, offset: int, now: int) -> None:
        entry = DedupEntry(dedup_id, now, message_id, offset)
        self._by_id.pop(dedup_id, None)
        self._by_id[dedup_id] = entry
        self._order.append(entry)

    def _oldest(self) -> DedupEntry | None:
        order, by_id = self._order, self._by_id
        while order and by_id.get(order[0].dedup_id) is not order[0]:
            order.popleft()
        return order[0] if order else None

    def next_deadline(self) -> int | None:
        oldest = self._oldest()
        return None if oldest is None else oldest.at_ms + self._window + SWEEP_SLACK_MS

    def sweep(self, now: int) -> None:
        deadline = self.next_deadline()
        if deadline is None or deadline > now:
            return
        order, by_id = self._order, self._by_id
        while order and order[0].at_ms + self._window <= now:
            entry = order.popleft()
            if by_id.get(entry.dedup_id) is entry:
                del by_id[entry.dedup_id]

    def entries(self) -> list[DedupEntry]:
        return list(self._by_id.values())
