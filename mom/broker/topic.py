"""One topic: a retained, append-only log of messages that every subscription reads at its own pace.

The log is a list indexed by offset minus a base; retention advances `first_offset` and the list is compacted
once the dropped prefix is at least half of it, so dropping is amortised O(1) and lookups by offset stay O(1).
Retention by time drops in publish order (publish times never decrease), by size drops the oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from msgspec import Struct

from mom.broker._dead import DeadLetter
from mom.broker._dedup import DedupEntry, DedupTable
from mom.broker._subscription import Subscription, SubscriptionState
from mom.broker.commands import (
    NewMessage,
    PublishedMessage,
    StartOffset,
    StoredMessage,
    SubscriptionAttrs,
    TopicAttrs,
    TopicInfo,
    Totals,
)

_COMPACT_AFTER = 1024


class TopicState(Struct, array_like=True):
    """A topic as a snapshot holds it: only the retained messages."""

    name: str
    attrs: TopicAttrs
    owner: str
    created_at_ms: int
    first_offset: int
    log: list[StoredMessage]
    dedup: list[DedupEntry]
    subscriptions: list[SubscriptionState]
    totals: Totals = msgspec.field(default_factory=Totals)


class Topic:
    __slots__ = (
        "_base",
        "_bytes",
        "_dedup",
        "_log",
        "_retention_ms",
        "attrs",
        "created_at_ms",
        "first_offset",
        "name",
        "owner",
        "subscriptions",
        "totals",
    )

    def __init__(self, state: TopicState, dedup_window_ms: int) -> None:
        self.name = state.name
        self.attrs = state.attrs
        self.owner = state.owner
        self.created_at_ms = state.created_at_ms
        self.first_offset = state.first_offset
        self._log = state.log
        self._base = state.first_offset
        """The offset of `_log[0]`; messages before `first_offset` are dropped but not yet compacted away."""
        self._bytes = sum(len(message.body) for message in state.log)
        self._dedup = DedupTable(dedup_window_ms, state.dedup)
        retention = state.attrs.retention_s
        self._retention_ms = None if retention is None else max(1, round(retention * 1000))
        self.subscriptions = {sub.name: Subscription(state.name, sub) for sub in state.subscriptions}
        self.totals = state.totals

    @classmethod
    def new(cls, name: str, attrs: TopicAttrs, owner: str, now: int, dedup_window_ms: int) -> Topic:
        return cls(TopicState(name, attrs, owner, now, 0, [], [], []), dedup_window_ms)

    def state(self) -> TopicState:
        return TopicState(
            self.name,
            self.attrs,
            self.owner,
            self.created_at_ms,
            self.first_offset,
            self._log[self.first_offset - self._base :],
            self._dedup.entries(),
            [sub.state() for sub in self.subscriptions.values()],
            self.totals,
        )

    @property
    def next_offset(self) -> int:
        return self._base + len(self._log)

    def message(self, offset: int) -> StoredMessage:
        return self._log[offset - self._base]

    def info(self, now: int) -> TopicInfo:
        subscriptions = [self.subscriptions[name].info(self, now) for name in sorted(self.subscriptions)]
        totals = Totals(self.totals.published)
        for sub in subscriptions:
            totals.delivered += sub.totals.delivered
            totals.acked += sub.totals.acked
            totals.nacked += sub.totals.nacked
            totals.dead_lettered += sub.totals.dead_lettered
        return TopicInfo(
            name=self.name,
            attrs=self.attrs,
            owner=self.owner,
            created_at_ms=self.created_at_ms,
            first_offset=self.first_offset,
            next_offset=self.next_offset,
            messages=self.next_offset - self.first_offset,
            bytes=self._bytes,
            subscriptions=subscriptions,
            totals=totals,
        )

    def read(self, from_offset: int, limit: int) -> list[StoredMessage]:
        start = max(from_offset, self.first_offset) - self._base
        return self._log[start : start + limit]

    def subscribe(self, name: str, attrs: SubscriptionAttrs, owner: str, now: int, incarnation: int) -> None:
        start = attrs.start
        if start == "latest":
            cursor = self.next_offset
        elif isinstance(start, StartOffset):
            cursor = min(max(start.offset, self.first_offset), self.next_offset)
        else:
            cursor = self.first_offset
        state = SubscriptionState(name, attrs, owner, now, incarnation, cursor, {})
        self.subscriptions[name] = Subscription(self.name, state)

    def publish(self, messages: Sequence[NewMessage], now: int) -> list[PublishedMessage]:
        """Append the messages that are not duplicates, then apply retention."""
        out: list[PublishedMessage] = []
        dedup, log = self._dedup, self._log
        for message in messages:
            dedup_id = message.dedup_id
            if dedup_id is not None:
                entry = dedup.lookup(dedup_id, now)
                if entry is not None:
                    out.append(PublishedMessage(entry.id, entry.offset, duplicate=True))
                    continue
            offset = self.next_offset
            log.append(StoredMessage(message.id, offset, message.body, message.binary, message.headers, now))
            self._bytes += len(message.body)
            if dedup_id is not None:
                dedup.remember(dedup_id, message.id, offset, now)
            out.append(PublishedMessage(message.id, offset))
            self.totals.published += 1
        self._retain(now)
        return out

    def housekeep(self, now: int, dead: list[DeadLetter]) -> None:
        """Retention, dedup window and the subscriptions' leases, as due at `now`."""
        self._retain(now)
        self._dedup.sweep(now)
        for sub in self.subscriptions.values():
            sub.housekeep(self, now, dead)

    def _retain(self, now: int) -> None:
        first, end = self.first_offset, self.next_offset
        if self._retention_ms is not None:
            oldest_kept = now - self._retention_ms
            while first < end and self._log[first - self._base].published_at_ms <= oldest_kept:
                self._bytes -= len(self._log[first - self._base].body)
                first += 1
        limit = self.attrs.retention_bytes
        if limit is not None:
            while self._bytes > limit:
                self._bytes -= len(self._log[first - self._base].body)
                first += 1
        if first == self.first_offset:
            return
        self.first_offset = first
        dropped = first - self._base
        if dropped >= _COMPACT_AFTER and dropped * 2 >= len(self._log):
            del self._log[:dropped]
            self._base = first
        for sub in self.subscriptions.values():
            sub.drop_below(first)

    def next_deadline(self) -> int | None:
        deadlines = [
            self._dedup.next_deadline(),
            *(sub.next_deadline() for sub in self.subscriptions.values()),
        ]
        if self._retention_ms is not None and self.first_offset < self.next_offset:
            deadlines.append(self.message(self.first_offset).published_at_ms + self._retention_ms)
        return min((d for d in deadlines if d is not None), default=None)
