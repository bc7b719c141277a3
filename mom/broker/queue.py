"""One queue: point to point, competing consumers, at-least-once, first deliveries in publish order.

Every held message is a `QueueMessage` keyed by its offset; its state (ready, waiting, leased) lives in the
record itself so that a snapshot is just the records. Receive and ack cost O(log n) through the lease book's
heaps. Message TTLs expire in publish order (publish times never decrease within a queue), so they need only a
deque of offsets, not a heap.

Time-based changes ("housekeeping") run at the start of every command that touches the queue and on Tick; a
command that may fail checks everything, including what housekeeping would free, before anything changes.

A FIFO queue delivers through its message groups (`_groups.FifoGroups`) instead of the lowest ready offset.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal

from msgspec import Struct, field

from mom.broker._dead import DeadLetter, Reason, dead_letter
from mom.broker._dedup import DedupEntry, DedupTable
from mom.broker._groups import FifoGroups, group_of
from mom.broker._leases import LEASED, READY, WAITING, LeaseBook, make_receipt
from mom.broker.commands import (
    Delivery,
    NewMessage,
    PeekedMessage,
    PublishedMessage,
    QueueAttrs,
    QueueInfo,
    Settled,
    Totals,
)
from mom.errors import InvalidInput, QueueFull


def millis(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class QueueMessage(Struct, array_like=True, gc=False):
    id: str
    body: bytes
    binary: bool
    headers: dict[str, Any]
    published_at_ms: int
    deliveries: int = 0
    state: int = READY
    until: int = 0
    """When a WAITING message becomes visible or a LEASED one's lease ends; 0 when READY."""
    group_id: str | None = None


class QueueState(Struct, array_like=True):
    """A queue as a snapshot holds it."""

    name: str
    attrs: QueueAttrs
    owner: str
    created_at_ms: int
    incarnation: int
    next_offset: int
    messages: dict[int, QueueMessage]
    dedup: list[DedupEntry]
    tags: dict[str, str] = field(default_factory=dict)
    totals: Totals = field(default_factory=Totals)


def _weigh(record: QueueMessage) -> int:
    return len(record.body)


class Queue:
    __slots__ = (
        "_book",
        "_dedup",
        "_delay_ms",
        "_groups",
        "_lease_ms",
        "_ttl_ms",
        "_ttl_order",
        "attrs",
        "created_at_ms",
        "incarnation",
        "name",
        "next_offset",
        "owner",
        "tags",
        "totals",
    )

    def __init__(self, state: QueueState, dedup_window_ms: int) -> None:
        self.name = state.name
        self.attrs = state.attrs
        self.owner = state.owner
        self.created_at_ms = state.created_at_ms
        self.incarnation = state.incarnation
        self.next_offset = state.next_offset
        self.tags = state.tags
        self._book = LeaseBook(state.messages, _weigh)
        self._dedup = DedupTable(dedup_window_ms, state.dedup)
        self.totals = state.totals
        self._groups = FifoGroups(state.messages) if state.attrs.fifo else None
        self._ttl_order: deque[int] = deque()
        """Offsets in publish order, candidates for TTL expiry; gone messages are skipped lazily."""
        self._configure(state.attrs)

    def _configure(self, attrs: QueueAttrs) -> None:
        """Derive the caches of `attrs`; a TTL set now applies to the messages held already."""
        had_ttl = getattr(self, "_ttl_ms", None) is not None
        self.attrs = attrs
        self._lease_ms = millis(attrs.visibility_timeout_s)
        self._delay_ms = round(attrs.delay_s * 1000)
        ttl = attrs.message_ttl_s
        self._ttl_ms = None if ttl is None else millis(ttl)
        if ttl is None:
            self._ttl_order.clear()
        elif not had_ttl:
            self._ttl_order = deque(self._book.records)

    def update(self, attrs: QueueAttrs) -> None:
        """Take new attributes (the kind of queue never changes: the Broker checks that)."""
        self._configure(attrs)

    @classmethod
    def new(cls, name: str, attrs: QueueAttrs, owner: str, now: int, incarnation: int, dedup_window_ms: int) -> Queue:
        return cls(QueueState(name, attrs, owner, now, incarnation, 0, {}, []), dedup_window_ms)

    def state(self) -> QueueState:
        return QueueState(
            self.name,
            self.attrs,
            self.owner,
            self.created_at_ms,
            self.incarnation,
            self.next_offset,
            self._book.records,
            self._dedup.entries(),
            self.tags,
            self.totals,
        )

    def info(self, now: int) -> QueueInfo:
        """Counts as of `now`: leases and delays ended by then count as ready (TTLs wait for a command)."""
        waiting_due, leased_due = self._book.due_counts(now)
        counts = self._book.counts
        oldest = self._book.oldest()
        return QueueInfo(
            name=self.name,
            attrs=self.attrs,
            owner=self.owner,
            created_at_ms=self.created_at_ms,
            ready=counts[READY] + waiting_due + leased_due,
            delayed=counts[WAITING] - waiting_due,
            in_flight=counts[LEASED] - leased_due,
            messages=len(self._book.records),
            tags=dict(self.tags),
            bytes=self._book.bytes,
            oldest_age_ms=None if oldest is None else max(0, now - oldest.published_at_ms),
            totals=self.totals.copy(),
        )

    def peek(self, from_offset: int, limit: int, now: int) -> list[PeekedMessage]:
        """Held messages from `from_offset` in offset order, as of `now`, without leasing or changing them."""
        out: list[PeekedMessage] = []
        for offset, record in self._book.records.items():
            if len(out) >= limit:
                break
            if offset < from_offset:
                continue
            hidden = record.state != READY and record.until > now
            state: Literal["ready", "delayed", "in_flight"] = (
                "ready" if not hidden else "in_flight" if record.state == LEASED else "delayed"
            )
            out.append(
                PeekedMessage(
                    record.id,
                    offset,
                    record.body,
                    record.binary,
                    record.headers,
                    state,
                    record.deliveries,
                    record.published_at_ms,
                    record.until if hidden else None,
                    record.group_id,
                )
            )
        return out

    # -- publishing ------------------------------------------------------------------------------------------

    def _dedup_id(self, message: NewMessage) -> str | None:
        if message.dedup_id is None and self.attrs.content_based_dedup:
            return hashlib.sha256(message.body).hexdigest()
        return message.dedup_id

    def _check_messages(self, messages: Sequence[NewMessage]) -> None:
        for position, message in enumerate(messages):
            if message.delay_ms is not None and message.delay_ms < 0:
                raise InvalidInput(f"message {position}: delay_ms must not be negative")
            if not self.attrs.fifo:
                continue
            if message.group_id is None:
                raise InvalidInput(f"message {position}: a message to the FIFO queue {self.name!r} needs a group_id")
            if self._dedup_id(message) is None:
                raise InvalidInput(
                    f"message {position}: the FIFO queue {self.name!r} needs a dedup_id on every message, "
                    "or content_based_dedup"
                )
            if message.delay_ms:
                raise InvalidInput(f"message {position}: FIFO queues delay messages only by the queue's delay_s")

    def plan_publish(self, messages: Sequence[NewMessage], now: int) -> list[PublishedMessage]:
        """The answer publishing `messages` at `now` will give, or QueueFull / InvalidInput; changes nothing."""
        self._check_messages(messages)
        plan: list[PublishedMessage] = []
        in_batch: dict[str, PublishedMessage] = {}
        offset = self.next_offset
        for message in messages:
            dedup_id = self._dedup_id(message)
            if dedup_id is not None:
                first = in_batch.get(dedup_id)
                if first is None and (entry := self._dedup.lookup(dedup_id, now)) is not None:
                    first = PublishedMessage(entry.id, entry.offset)
                if first is not None:
                    plan.append(PublishedMessage(first.id, first.offset, duplicate=True))
                    continue
            published = PublishedMessage(message.id, offset)
            offset += 1
            if dedup_id is not None:
                in_batch[dedup_id] = published
            plan.append(published)
        self._check_room(offset - self.next_offset, now)
        return plan

    def _check_room(self, new: int, now: int) -> None:
        limit = self.attrs.max_length
        held = len(self._book.records)
        if limit is None or held + new <= limit:
            return
        held -= self._removable(now)
        if held + new > limit:
            raise QueueFull(f"queue {self.name!r} holds {held} of at most {limit} messages; {new} more do not fit")

    def _removable(self, now: int) -> int:
        """How many messages housekeeping at `now` would remove, computed without running it."""
        removable = 0
        ttl_ms = self._ttl_ms
        for due in self._book.due(now).values():
            if due.state == LEASED and self._spent(due, now) is not None:
                removable += 1
        if ttl_ms is not None:
            records = self._book.records
            for offset in self._ttl_order:
                record = records.get(offset)
                if record is None:
                    continue
                if record.published_at_ms + ttl_ms > now:
                    break
                removable += record.state != LEASED
        return removable

    def publish(self, messages: Sequence[NewMessage], plan: list[PublishedMessage], now: int) -> None:
        """Store the messages that `plan_publish` accepted (after housekeeping at the same `now`)."""
        dedup = self._dedup
        for message, published in zip(messages, plan, strict=True):
            if published.duplicate:
                continue
            record = QueueMessage(
                message.id, message.body, message.binary, message.headers, now, group_id=message.group_id
            )
            delay_ms = self._delay_ms if message.delay_ms is None else message.delay_ms
            if delay_ms > 0:
                record.state, record.until = WAITING, now + delay_ms
            self._add(published.offset, record)
            dedup_id = self._dedup_id(message)
            if dedup_id is not None:
                dedup.remember(dedup_id, message.id, published.offset, now)
            self.next_offset = published.offset + 1
            self.totals.published += 1

    def _add(self, offset: int, record: QueueMessage) -> None:
        self._book.add(offset, record)
        if self._ttl_ms is not None:
            self._ttl_order.append(offset)
        if self._groups is not None:
            self._groups.add(group_of(record, offset), offset)

    def _remove(self, offset: int) -> QueueMessage:
        record = self._book.remove(offset)
        if self._groups is not None:
            self._groups.remove(group_of(record, offset), offset)
        return record

    def purge(self) -> int:
        """Remove every message (leased ones too: their receipts match nothing any more); returns how many."""
        count = len(self._book.records)
        self._book = LeaseBook({}, _weigh)
        self._ttl_order.clear()
        if self._groups is not None:
            self._groups.clear()
        return count

    def accept(self, letter: DeadLetter, now: int) -> bool:
        """Take a dead letter as a new message; False (and dropped) when the queue is full."""
        limit = self.attrs.max_length
        if limit is not None and len(self._book.records) >= limit:
            return False
        offset = self.next_offset
        self.next_offset += 1
        self._add(
            offset, QueueMessage(letter.id, letter.body, letter.binary, letter.headers, now, group_id=letter.group_id)
        )
        self.totals.published += 1
        return True

    # -- time ------------------------------------------------------------------------------------------------

    def housekeep(self, now: int, dead: list[DeadLetter]) -> None:
        """Apply what is due at `now`: ended delays and leases (in time order), then TTLs (publish order)."""
        book = self._book
        while (due := book.pop_due(now)) is not None:
            offset, record = due
            if record.state == LEASED:
                self._end_delivery(offset, record, now, now, dead)
            else:
                book.set_ready(offset, record)
        ttl_ms = self._ttl_ms
        if ttl_ms is not None:
            order, records = self._ttl_order, book.records
            while order:
                candidate = records.get(order[0])
                if candidate is not None:
                    if candidate.published_at_ms + ttl_ms > now:
                        break
                    if candidate.state != LEASED:
                        self._kill(order[0], "expired", dead)
                order.popleft()
        self._dedup.sweep(now)

    def _spent(self, record: QueueMessage, now: int) -> Reason | None:
        """Why a message whose delivery just ended must leave the queue, if it must."""
        limit = self.attrs.max_deliveries
        if limit is not None and record.deliveries >= limit:
            return "max_deliveries"
        if self._ttl_ms is not None and record.published_at_ms + self._ttl_ms <= now:
            return "expired"
        return None

    def _end_delivery(
        self, offset: int, record: QueueMessage, now: int, visible_at: int, dead: list[DeadLetter]
    ) -> None:
        reason = self._spent(record, now)
        if reason is None:
            self._book.set_waiting(offset, record, visible_at, now)
        else:
            self._kill(offset, reason, dead)

    def _kill(self, offset: int, reason: Reason, dead: list[DeadLetter]) -> None:
        record = self._remove(offset)
        self.totals.dead_lettered += 1
        target = self.attrs.dead_letter_queue
        if target is not None:
            dead.append(
                dead_letter(
                    target, self.name, reason, record.id, record.body, record.binary, record.headers, record.group_id
                )
            )

    def ready_at(self, now: int) -> int | None:
        if self._groups is not None:
            if self._groups.available(self._book.records):
                return now
        elif self._book.first_ready() is not None:
            return now
        return self._book.next_timer()

    def next_deadline(self) -> int | None:
        deadlines = [self._book.next_timer(), self._dedup.next_deadline()]
        ttl_ms = self._ttl_ms
        if ttl_ms is not None:
            order, records = self._ttl_order, self._book.records
            while order and order[0] not in records:
                order.popleft()
            if order:
                deadlines.append(records[order[0]].published_at_ms + ttl_ms)
        return min((d for d in deadlines if d is not None), default=None)

    # -- consuming -------------------------------------------------------------------------------------------

    def receive(self, max_messages: int, lease_ms: int | None, now: int) -> list[Delivery]:
        book = self._book
        until = now + (self._lease_ms if lease_ms is None else lease_ms)
        out: list[Delivery] = []
        if self._groups is not None:
            return self._receive_fifo(self._groups, max_messages, until)
        while len(out) < max_messages and (offset := book.pop_ready()) is not None:
            out.append(self._deliver(offset, until))
        return out

    def _receive_fifo(self, groups: FifoGroups, max_messages: int, until: int) -> list[Delivery]:
        """Oldest group first, as many of a group's messages in a row as are visible (SQS does the same)."""
        records = self._book.records
        out: list[Delivery] = []
        for _, group in groups.available(records):
            for offset in groups.deliverable(group, records):
                if len(out) >= max_messages:
                    break
                out.append(self._deliver(offset, until))
        self._book.compact_ready()
        return out

    def _deliver(self, offset: int, until: int) -> Delivery:
        record = self._book.records[offset]
        record.deliveries += 1
        self.totals.delivered += 1
        self._book.lease(offset, record, until)
        return Delivery(
            record.id,
            offset,
            record.body,
            record.binary,
            record.headers,
            make_receipt(self.incarnation, offset, record.deliveries),
            record.deliveries,
            record.published_at_ms,
            record.group_id,
        )

    def settle(
        self,
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
                self._remove(offset)
                self.totals.acked += 1
            else:
                self.totals.nacked += 1
                self._end_delivery(offset, record, now, now + nack_delay_ms, dead)
        return Settled(settled, unknown)

    def change_visibility(
        self,
        receipts: Sequence[str],
        parsed: Sequence[tuple[int, int, int]],
        timeouts_ms: Sequence[int],
        now: int,
        dead: list[DeadLetter],
    ) -> Settled:
        """Move the end of leases; a timeout of 0 ends the delivery as a nack does. Unleased ones are unknown."""
        settled: list[str] = []
        unknown: list[str] = []
        for text, receipt, timeout_ms in zip(receipts, parsed, timeouts_ms, strict=True):
            record = self._book.current(self.incarnation, receipt)
            if record is None or record.state != LEASED:
                unknown.append(text)
                continue
            settled.append(text)
            if timeout_ms == 0:
                self._end_delivery(receipt[1], record, now, now, dead)
            else:
                self._book.lease(receipt[1], record, now + timeout_ms)
        return Settled(settled, unknown)
