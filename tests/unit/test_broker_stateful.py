"""The Broker against an obviously correct model (lists and linear scans), driven by random command sequences.

The model keeps every message of a queue or subscription as a plain record and answers each question by
scanning them; the Broker must give the same results, counts and dead letters after every step. A shadow
Broker restored from a snapshot at random points receives the same entries and must stay identical. The same
machine runs again with external dead letters, which the model keeps in an outbox instead of the DLQ.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mom.broker import (
    Ack,
    Broker,
    ChangeVisibility,
    Command,
    DeclareQueue,
    DeclareSubscription,
    DeclareTopic,
    Delivery,
    Entry,
    ForwardedDeadLetters,
    Nack,
    NewMessage,
    OutboxLetter,
    Publish,
    PublishedMessage,
    Purge,
    Purged,
    QueueAttrs,
    QueueRef,
    Receive,
    Received,
    Result,
    Settled,
    Source,
    SubscriptionAttrs,
    SubscriptionRef,
    Tick,
    TopicAttrs,
    TopicRef,
)
from mom.errors import InvalidInput, MomError, QueueFull

WINDOW = 400
VISIBILITY = 100
TTL = 300
MAX_LENGTH = 4
MAX_DELIVERIES = 2
RETENTION_BYTES = 12
Q, DLQ, SUB = QueueRef("q"), QueueRef("dlq"), SubscriptionRef("t", "s")


@dataclass
class Message:
    offset: int
    id: str
    body: bytes
    headers: dict[str, Any]
    published_at: int
    visible_at: int = 0
    deliveries: int = 0
    lease_until: int | None = None
    receipt: str | None = None


@dataclass
class Consumer:
    """A queue or subscription as a list of messages with leases, scanned linearly for every question."""

    label: str
    visibility: int
    max_deliveries: int | None = None
    ttl: int | None = None
    dead_letters_to_dlq: bool = False
    messages: list[Message] = field(default_factory=list)

    def expired(self, message: Message, now: int) -> bool:
        return self.ttl is not None and message.published_at + self.ttl <= now

    def housekeep(self, now: int, dead: list[Message]) -> None:
        ended = [m for m in self.messages if m.lease_until is not None and m.lease_until <= now]
        for message in sorted(ended, key=lambda m: (m.lease_until or 0, m.offset)):
            self.end_delivery(message, now, now, dead)
        for message in list(self.messages):
            if message.lease_until is None and self.expired(message, now):
                self.kill(message, "expired", dead)

    def end_delivery(self, message: Message, now: int, visible_at: int, dead: list[Message]) -> None:
        if self.max_deliveries is not None and message.deliveries >= self.max_deliveries:
            self.kill(message, "max_deliveries", dead)
        elif self.expired(message, now):
            self.kill(message, "expired", dead)
        else:
            message.lease_until, message.visible_at = None, visible_at

    def kill(self, message: Message, reason: str, dead: list[Message]) -> None:
        self.messages.remove(message)
        if self.dead_letters_to_dlq:
            headers = {**message.headers, "x-death": {"queue": self.label, "reason": reason}}
            dead.append(Message(-1, message.id, message.body, headers, -1))

    def ready(self, now: int) -> list[Message]:
        return [m for m in self.messages if m.lease_until is None and m.visible_at <= now]

    def receive(self, n: int, lease: int | None, now: int) -> list[Message]:
        taken = sorted(self.ready(now), key=lambda m: m.offset)[:n]
        for message in taken:
            message.deliveries += 1
            message.lease_until = now + (lease or self.visibility)
        return taken

    def settle(self, receipts: list[str], delay: int | None, now: int, dead: list[Message]) -> Settled:
        settled, unknown = [], []
        for receipt in receipts:
            match = [m for m in self.messages if m.receipt == receipt]
            if not match:
                unknown.append(receipt)
                continue
            settled.append(receipt)
            if delay is None:
                self.messages.remove(match[0])
            else:
                self.end_delivery(match[0], now, now + delay, dead)
        return Settled(settled, unknown)

    def change_visibility(self, receipts: list[str], timeouts: list[int], now: int, dead: list[Message]) -> Settled:
        settled, unknown = [], []
        for receipt, timeout in zip(receipts, timeouts, strict=True):
            match = [m for m in self.messages if m.receipt == receipt and m.lease_until is not None]
            if not match:
                unknown.append(receipt)
                continue
            settled.append(receipt)
            if timeout == 0:
                self.end_delivery(match[0], now, now, dead)
            else:
                match[0].lease_until = now + timeout
        return Settled(settled, unknown)

    def counts(self, now: int) -> tuple[int, int, int, int]:
        def leased(m: Message) -> bool:
            return m.lease_until is not None and m.lease_until > now

        delayed = sum(1 for m in self.messages if m.lease_until is None and m.visible_at > now)
        in_flight = sum(1 for m in self.messages if leased(m))
        return len(self.messages) - delayed - in_flight, delayed, in_flight, len(self.messages)

    def next_change(self) -> int | None:
        """The earliest time at which housekeeping must remove or return a message (a lease or a TTL ends)."""
        times = [m.lease_until for m in self.messages if m.lease_until is not None]
        if self.ttl is not None:
            times += [m.published_at + self.ttl for m in self.messages if m.lease_until is None]
        return min(times, default=None)


class Dedup:
    """Dedup ids with the time, id and offset of their first publish; `commit` once a publish took."""

    def __init__(self) -> None:
        self.seen: dict[str, tuple[int, str, int]] = {}
        self.pending = self.seen

    def plan(self, messages: list[NewMessage], next_offset: int, now: int) -> list[PublishedMessage]:
        plan, batch = [], dict(self.seen)
        for message in messages:
            first = batch.get(message.dedup_id) if message.dedup_id is not None else None
            if first is not None and now < first[0] + WINDOW:
                plan.append(PublishedMessage(first[1], first[2], duplicate=True))
                continue
            plan.append(PublishedMessage(message.id, next_offset))
            if message.dedup_id is not None:
                batch[message.dedup_id] = (now, message.id, next_offset)
            next_offset += 1
        self.pending = batch
        return plan

    def commit(self) -> None:
        self.seen = self.pending


bodies = st.lists(st.binary(min_size=1, max_size=3), min_size=1, max_size=3)
dedup_ids = st.sampled_from([None, None, "a", "b", "c"])


class BrokerVsModel(RuleBasedStateMachine):
    external = False

    def __init__(self) -> None:
        super().__init__()
        self.broker = Broker(dedup_window_ms=WINDOW, external_dead_letters=self.external)
        self.shadow = Broker(dedup_window_ms=WINDOW, external_dead_letters=self.external)
        self.outbox: list[OutboxLetter] = []
        self.next_seq = 0
        self.clock = 1_000_000
        self.now = self.clock
        self.serial = 0
        self.queue = Consumer("q", VISIBILITY, MAX_DELIVERIES, TTL, dead_letters_to_dlq=True)
        self.dlq = Consumer("dlq", 30_000)
        self.sub = Consumer("t/s", VISIBILITY, MAX_DELIVERIES, dead_letters_to_dlq=True)
        self.consumers: dict[Source, Consumer] = {Q: self.queue, DLQ: self.dlq, SUB: self.sub}
        self.next_offsets = {Q: 0, DLQ: 0}
        self.queue_dedup, self.topic_dedup = Dedup(), Dedup()
        self.log: list[Message] = []
        self.first_offset = 0
        self.topic_next_offset = 0
        self.receipts: dict[Source, list[str]] = {Q: ["999.0.1"], DLQ: [], SUB: ["0.0.1"]}
        self.apply(DeclareQueue("dlq", QueueAttrs(), "o"))
        attrs = QueueAttrs(
            visibility_timeout_s=VISIBILITY / 1000,
            max_deliveries=MAX_DELIVERIES,
            dead_letter_queue="dlq",
            max_length=MAX_LENGTH,
            message_ttl_s=TTL / 1000,
        )
        self.apply(DeclareQueue("q", attrs, "o"))
        self.apply(DeclareTopic("t", TopicAttrs(retention_bytes=RETENTION_BYTES), "o"))
        sub_attrs = SubscriptionAttrs(
            start="earliest",
            visibility_timeout_s=VISIBILITY / 1000,
            max_deliveries=MAX_DELIVERIES,
            dead_letter_queue="dlq",
        )
        self.apply(DeclareSubscription("t", "s", sub_attrs, "o"))

    # -- plumbing --------------------------------------------------------------------------------------------

    def apply(self, command: Command) -> Any:
        """Apply to the broker and its shadow; both must answer alike. Returns the result or the error."""
        entry = Entry(self.clock, command)
        outcomes: list[Result | MomError] = []
        for broker in (self.broker, self.shadow):
            before = broker.snapshot()
            try:
                outcomes.append(broker.apply(entry))
            except MomError as exc:
                assert broker.snapshot() == before, "a failed command changed the state"
                outcomes.append(exc)
        first, second = outcomes
        assert type(first) is type(second) and (isinstance(first, MomError) or first == second)
        if not isinstance(first, MomError):
            self.now = max(self.clock, self.now)
        return first

    def route(self, dead: list[Message]) -> None:
        if self.external:
            for letter in dead:
                self.outbox.append(OutboxLetter(self.next_seq, "dlq", letter.id, letter.body, False, letter.headers))
                self.next_seq += 1
            return
        for letter in dead:
            offset = self.next_offsets[DLQ]
            self.next_offsets[DLQ] += 1
            self.dlq.messages.append(
                Message(offset, letter.id, letter.body, letter.headers, self.now, visible_at=self.now)
            )

    def check_deliveries(self, source: Source, got: list[Delivery], expected: list[Message]) -> None:
        assert [(d.id, d.offset, d.body, d.headers, d.deliveries, d.published_at_ms) for d in got] == [
            (m.id, m.offset, m.body, m.headers, m.deliveries, m.published_at) for m in expected
        ]
        for delivery, message in zip(got, expected, strict=True):
            message.receipt = delivery.receipt
        fresh = {d.receipt for d in got}
        assert len(fresh) == len(got) and not fresh & set(self.receipts[source]), "a receipt was reused"
        self.receipts[source].extend(d.receipt for d in got)

    def drop_below(self, first_offset: int) -> None:
        self.first_offset = first_offset
        self.log = [m for m in self.log if m.offset >= first_offset]
        self.sub.messages = [m for m in self.sub.messages if m.offset >= first_offset]

    def housekeep_all(self, now: int) -> None:
        dead: list[Message] = []
        for consumer in (self.dlq, self.queue, self.sub):
            consumer.housekeep(now, dead)
        self.route(dead)

    # -- rules -----------------------------------------------------------------------------------------------

    def new_messages(self, data: list[bytes], dedup: list[str | None], delays: list[int]) -> list[NewMessage]:
        messages = []
        for body, dedup_id, delay in zip(data, dedup, delays, strict=False):
            self.serial += 1
            headers = {"n": self.serial}
            messages.append(NewMessage(f"m{self.serial}", body, False, headers, delay, dedup_id))
        return messages

    @rule(
        data=bodies,
        dedup=st.lists(dedup_ids, min_size=3, max_size=3),
        delays=st.lists(st.sampled_from([0, 0, 100]), min_size=3, max_size=3),
        wait=st.sampled_from([0, 0, TTL]),
    )
    def publish_to_queue(self, data: list[bytes], dedup: list[str | None], delays: list[int], wait: int) -> None:
        self.clock += wait
        messages = self.new_messages(data, dedup, delays)
        now = max(self.clock, self.now)
        plan = self.queue_dedup.plan(messages, self.next_offsets[Q], now)
        dead: list[Message] = []
        after = copy.deepcopy(self.queue)
        after.housekeep(now, dead)
        new = [(m, p) for m, p in zip(messages, plan, strict=True) if not p.duplicate]
        result = self.apply(Publish(Q, messages))
        if len(after.messages) + len(new) > MAX_LENGTH:
            assert isinstance(result, QueueFull)
            return
        assert result.messages == plan
        self.queue_dedup.commit()
        self.queue.messages = after.messages
        self.route(dead)
        for message, published in new:
            self.queue.messages.append(
                Message(published.offset, message.id, message.body, message.headers, now, now + message.delay_ms)
            )
            self.next_offsets[Q] = published.offset + 1

    @rule(data=bodies, dedup=st.lists(dedup_ids, min_size=3, max_size=3))
    def publish_to_topic(self, data: list[bytes], dedup: list[str | None]) -> None:
        messages = self.new_messages(data, dedup, [0, 0, 0])
        now = max(self.clock, self.now)
        plan = self.topic_dedup.plan(messages, self.topic_next_offset, now)
        result = self.apply(Publish(TopicRef("t"), messages))
        assert result.messages == plan
        self.topic_dedup.commit()
        for message, published in zip(messages, plan, strict=True):
            if not published.duplicate:
                self.topic_next_offset = published.offset + 1
                record = (published.offset, message.id, message.body, message.headers, now)
                self.log.append(Message(*record))
                self.sub.messages.append(Message(*record))
        first = self.first_offset
        while sum(len(m.body) for m in self.log if m.offset >= first) > RETENTION_BYTES:
            first = min(m.offset for m in self.log if m.offset >= first) + 1
        self.drop_below(first)

    @rule(
        source=st.sampled_from([Q, DLQ, SUB]),
        n=st.integers(1, 4),
        lease=st.sampled_from([None, 50, 300]),
        wait=st.sampled_from([0, 0, VISIBILITY]),
    )
    def receive(self, source: Source, n: int, lease: int | None, wait: int) -> None:
        self.clock += wait
        result = self.apply(Receive(source, n, lease))
        assert isinstance(result, Received)
        consumer, dead = self.consumers[source], list[Message]()
        consumer.housekeep(self.now, dead)
        self.route(dead)
        self.check_deliveries(source, result.messages, consumer.receive(n, lease, self.now))

    @rule(
        source=st.sampled_from([Q, DLQ, SUB]),
        picks=st.lists(st.integers(0, 50), min_size=1, max_size=3),
        nack_delay=st.sampled_from([None, None, 0, 50]),
    )
    def settle(self, source: Source, picks: list[int], nack_delay: int | None) -> None:
        known = self.receipts[source]
        if not known:
            return
        receipts = [known[-1 - (pick % len(known))] for pick in picks]
        command = Ack(source, receipts) if nack_delay is None else Nack(source, receipts, nack_delay)
        result = self.apply(command)
        consumer, dead = self.consumers[source], list[Message]()
        consumer.housekeep(self.now, dead)
        assert result == consumer.settle(receipts, nack_delay, self.now, dead)
        self.route(dead)

    @rule(
        source=st.sampled_from([Q, DLQ]),
        picks=st.lists(st.integers(0, 50), min_size=1, max_size=3),
        timeouts=st.lists(st.sampled_from([0, 50, 300]), min_size=3, max_size=3),
    )
    def change_visibility(self, source: QueueRef, picks: list[int], timeouts: list[int]) -> None:
        known = self.receipts[source]
        if not known:
            return
        receipts = [known[-1 - (pick % len(known))] for pick in picks]
        timeouts = timeouts[: len(receipts)]
        result = self.apply(ChangeVisibility(source, receipts, timeouts))
        consumer, dead = self.consumers[source], list[Message]()
        consumer.housekeep(self.now, dead)
        assert result == consumer.change_visibility(receipts, timeouts, self.now, dead)
        self.route(dead)

    @rule(source=st.sampled_from([Q, DLQ]))
    def purge(self, source: QueueRef) -> None:
        result = self.apply(Purge(source))
        consumer = self.consumers[source]
        assert result == Purged(len(consumer.messages))
        consumer.messages.clear()

    @rule(source=st.sampled_from([Q, SUB]), bad=st.sampled_from(["", "1.2", "x.1.1", "1.1.1.1"]))
    def settle_malformed(self, source: Source, bad: str) -> None:
        assert isinstance(self.apply(Ack(source, [*self.receipts[source][-1:], bad])), InvalidInput)

    @rule(ms=st.sampled_from([0, 50, 100, 200, 400]))
    def advance(self, ms: int) -> None:
        self.clock = max(self.clock, self.now) + ms

    @rule()
    def jump_to_next_deadline(self) -> None:
        """What the engine does: wait until the broker says something is due."""
        deadline = self.broker.next_deadline_ms()
        if deadline is not None:
            self.clock = max(self.clock, deadline)

    @rule(ms=st.sampled_from([50, 300]))
    def skew_back(self, ms: int) -> None:
        self.clock -= ms

    @rule()
    def tick(self) -> None:
        self.apply(Tick())
        self.housekeep_all(self.now)
        deadline = self.broker.next_deadline_ms()
        assert deadline is None or deadline > self.now

    @rule(back=st.sampled_from([0, 0, 1, 3]))
    def forward_dead_letters(self, back: int) -> None:
        """What the leader does after publishing the outbox: acknowledge it, sometimes late or twice."""
        upto = self.next_seq - 1 - back
        self.apply(ForwardedDeadLetters(upto))
        self.outbox = [letter for letter in self.outbox if letter.seq > upto]

    @rule()
    def take_snapshot(self) -> None:
        self.shadow = Broker.restore(
            self.broker.snapshot(), dedup_window_ms=WINDOW, external_dead_letters=self.external
        )

    # -- invariants ------------------------------------------------------------------------------------------

    @invariant()
    def views_match_the_model(self) -> None:
        now = max(self.clock, self.now)
        for name, consumer in (("q", self.queue), ("dlq", self.dlq)):
            info = self.broker.queue_info(name, self.clock)
            assert (info.ready, info.delayed, info.in_flight, info.messages) == consumer.counts(now)
        ready, _, in_flight, _ = self.sub.counts(now)
        sub = self.broker.subscription_info("t", "s", self.clock)
        assert (sub.ready, sub.in_flight) == (ready, in_flight)
        undelivered = [m.offset for m in self.sub.messages if m.deliveries == 0]
        assert sub.next_offset == min(undelivered, default=self.topic_next_offset)
        topic = self.broker.topic_info("t", self.clock)
        assert topic.first_offset == self.first_offset
        assert topic.bytes == sum(len(m.body) for m in self.log)
        assert [m.id for m in self.broker.read_topic("t", 0, 100)] == [m.id for m in self.log]

    @invariant()
    def ready_at_and_deadlines_are_never_late(self) -> None:
        now = max(self.clock, self.now)
        for source, consumer in self.consumers.items():
            ready_at = self.broker.ready_at(source, self.clock)
            if consumer.counts(now)[0]:
                assert ready_at is not None and ready_at <= now
            else:
                times = [m.lease_until if m.lease_until is not None else m.visible_at for m in consumer.messages]
                assert ready_at == min(times, default=None)
        changes = [c.next_change() for c in self.consumers.values()]
        due = min((c for c in changes if c is not None), default=None)
        if due is not None:
            deadline = self.broker.next_deadline_ms()
            assert deadline is not None and deadline <= due

    @invariant()
    def outbox_matches_the_model(self) -> None:
        assert self.broker.outbox(1000) == self.outbox
        assert self.broker.outbox_size() == len(self.outbox)

    @invariant()
    def shadow_is_identical(self) -> None:
        assert self.broker == self.shadow


BrokerVsModel.TestCase.settings = settings(max_examples=100, stateful_step_count=80, deadline=None)
TestBrokerVsModel = BrokerVsModel.TestCase


class ExternalDeadLettersVsModel(BrokerVsModel):
    external = True


ExternalDeadLettersVsModel.TestCase.settings = settings(max_examples=60, stateful_step_count=80, deadline=None)
TestExternalDeadLettersVsModel = ExternalDeadLettersVsModel.TestCase
