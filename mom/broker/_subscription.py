"""One durable subscription: queue semantics over a topic's retained log, without copying the log.

A subscription is a cursor (the next offset never delivered) plus a `Pending` record for each offset delivered
but not yet acked, so its memory is O(outstanding deliveries), not O(topic length). Offsets behind the cursor
that are not pending were acked. Everything that can be redelivered is below the cursor, so the lowest ready
offset is always the lease book's before the cursor's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Protocol

import msgspec
from msgspec import Struct

from mom.broker._dead import DeadLetter, dead_letter
from mom.broker._leases import LEASED, READY, LeaseBook, make_receipt
from mom.broker.commands import Delivery, Settled, StoredMessage, SubscriptionAttrs, SubscriptionInfo, Totals


class Log(Protocol):
    """The part of a topic that a subscription reads."""

    @property
    def next_offset(self) -> int: ...

    def message(self, offset: int) -> StoredMessage: ...


class Pending(Struct, array_like=True, gc=False):
    deliveries: int
    state: int
    until: int


class SubscriptionState(Struct, array_like=True):
    """A subscription as a snapshot holds it."""

    name: str
    attrs: SubscriptionAttrs
    owner: str
    created_at_ms: int
    incarnation: int
    cursor: int
    pending: dict[int, Pending]
    totals: Totals = msgspec.field(default_factory=Totals)


class Subscription:
    __slots__ = (
        "_book",
        "_lease_ms",
        "_order",
        "attrs",
        "created_at_ms",
        "cursor",
        "incarnation",
        "label",
        "name",
        "owner",
        "topic",
        "totals",
    )

    def __init__(self, topic: str, state: SubscriptionState) -> None:
        self.topic = topic
        self.name = state.name
        self.label = f"{topic}/{state.name}"
        self.attrs = state.attrs
        self.owner = state.owner
        self.created_at_ms = state.created_at_ms
        self.incarnation = state.incarnation
        self.cursor = state.cursor
        self._book = LeaseBook(state.pending)
        self.totals = state.totals
        self._lease_ms = max(1, round(state.attrs.visibility_timeout_s * 1000))
        self._order: deque[int] = deque(state.pending)
        """Pending offsets in ascending order (gone ones skipped lazily), so retention can drop a prefix."""

    def state(self) -> SubscriptionState:
        return SubscriptionState(
            self.name,
            self.attrs,
            self.owner,
            self.created_at_ms,
            self.incarnation,
            self.cursor,
            self._book.records,
            self.totals,
        )

    def info(self, log: Log, now: int) -> SubscriptionInfo:
        waiting_due, leased_due = self._book.due_counts(now)
        counts = self._book.counts
        behind = log.next_offset - self.cursor
        oldest = next(iter(self._book.records), None)
        if oldest is None and behind:
            oldest = self.cursor
        return SubscriptionInfo(
            topic=self.topic,
            name=self.name,
            attrs=self.attrs,
            owner=self.owner,
            created_at_ms=self.created_at_ms,
            next_offset=self.cursor,
            ready=log.next_offset - self.cursor + counts[READY] + waiting_due + leased_due,
            in_flight=counts[LEASED] - leased_due,
            lag=behind + len(self._book.records),
            lag_ms=0 if oldest is None else max(0, now - log.message(oldest).published_at_ms),
            totals=self.totals.copy(),
        )

    def ready_at(self, log: Log, now: int) -> int | None:
        if self.cursor < log.next_offset or self._book.first_ready() is not None:
            return now
        return self._book.next_timer()

    def next_deadline(self) -> int | None:
        return self._book.next_timer()

    def drop_below(self, first_offset: int) -> None:
        """Retention dropped every offset below `first_offset`: skip them and forget their deliveries."""
        self.cursor = max(self.cursor, first_offset)
        order, records = self._order, self._book.records
        while order and order[0] < first_offset:
            offset = order.popleft()
            if offset in records:
                self._book.remove(offset)

    def housekeep(self, log: Log, now: int, dead: list[DeadLetter]) -> None:
        book = self._book
        while (due := book.pop_due(now)) is not None:
            offset, record = due
            if record.state == LEASED:
                self._end_delivery(log, offset, record, now, now, dead)
            else:
                book.set_ready(offset, record)
        self._trim_order()

    def _trim_order(self) -> None:
        """Keep the pending-offset deque O(pending) even when no retention ever pops its front."""
        if len(self._order) > 2 * len(self._book.records) + 64:
            self._order = deque(self._book.records)

    def _end_delivery(
        self, log: Log, offset: int, record: Pending, now: int, visible_at: int, dead: list[DeadLetter]
    ) -> None:
        limit = self.attrs.max_deliveries
        if limit is None or record.deliveries < limit:
            self._book.set_waiting(offset, record, visible_at, now)
            return
        self._book.remove(offset)
        self.totals.dead_lettered += 1
        target = self.attrs.dead_letter_queue
        if target is not None:
            message = log.message(offset)
            dead.append(
                dead_letter(
                    target,
                    self.label,
                    "max_deliveries",
                    message.id,
                    message.body,
                    message.binary,
                    message.headers,
                )
            )

    def receive(self, log: Log, max_messages: int, lease_ms: int | None, now: int) -> list[Delivery]:
        book = self._book
        records = book.records
        until = now + (self._lease_ms if lease_ms is None else lease_ms)
        out: list[Delivery] = []
        while len(out) < max_messages:
            offset = book.pop_ready()
            if offset is not None:
                record = records[offset]
                record.deliveries += 1
                book.lease(offset, record, until)
            elif self.cursor < log.next_offset:
                offset = self.cursor
                self.cursor += 1
                record = Pending(1, LEASED, until)
                book.add(offset, record)
                self._order.append(offset)
            else:
                break
            message = log.message(offset)
            receipt = make_receipt(self.incarnation, offset, record.deliveries)
            out.append(
                Delivery(
                    message.id,
                    offset,
                    message.body,
                    message.binary,
                    message.headers,
                    receipt,
                    record.deliveries,
                    message.published_at_ms,
                )
            )
        self.totals.delivered += len(out)
        return out

    def settle(
        self,
        log: Log,
        receipts: Sequence[str],
        parsed: Sequence[tuple[int, int, int]],
        nack_delay_ms: int | None,
        now: int,
        dead: list[DeadLetter],
    ) -> Settled:
        """Ack (`nack_delay_ms` None) or nack the messages whose current delivery the receipts name."""
        settled: list[str] = []
        unknown: list[str] = []
        for text, receipt in zip(receipts, parsed, strict=True):
            record = self._book.current(self.incarnation, receipt)
            if record is None:
                unknown.append(text)
                continue
            settled.append(text)
            offset = receipt[1]
            if nack_delay_ms is None:
                self._book.remove(offset)
                self.totals.acked += 1
            else:
                self.totals.nacked += 1
                self._end_delivery(log, offset, record, now, now + nack_delay_ms, dead)
        return Settled(settled, unknown)
