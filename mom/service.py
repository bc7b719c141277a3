"""The broker as the REST layer sees it: find where a destination is served, submit commands, long-poll.

Route handlers talk only to this object. `locate` says whether this node leads a destination's group (then the
handler runs here) or who does (then the API forwards the request). Waiting costs nothing: a long-poll sleeps on
a trio.Event that the apply path sets when something it could receive appears, with a timeout at the moment a
delayed or leased message becomes visible.

The housekeeping loop does, for every group this node leads, the work that time or other groups make due:
appending a Tick when leases, TTLs or retention expire, declaring a new destination in its own group from the
catalog, and handing dead letters to their dead-letter queue's group.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from mom.broker import Broker
from mom.broker.commands import (
    ClientRecord,
    Command,
    DeclareQueue,
    DeclareTopic,
    DeleteQueue,
    DeleteSubscription,
    DeleteTopic,
    Delivery,
    Destination,
    ForwardedDeadLetters,
    Nack,
    NewMessage,
    Publish,
    QueueRef,
    Receive,
    Received,
    Result,
    Source,
    SubscriptionRef,
    Tick,
    TopicRef,
    UserRecord,
)
from mom.coalesce import PublishCoalescer
from mom.errors import MomError, NotFound, QueueFull, Unavailable
from mom.replication.group import RaftGroup
from mom.replication.manager import GroupManager, Placement, Ref

log = logging.getLogger("mom.service")

HOUSEKEEPING_INTERVAL_S = 0.25
"""How often the leader looks for due Ticks, undeclared destinations and dead letters (only due work is written)."""

DECLARE_WAIT_S = 10.0
"""How long a declare waits for the new destination's group to serve before answering anyway."""

DeadLetterSender = Callable[[str, list[NewMessage]], Awaitable[None]]
"""Publishes dead letters to the named queue wherever its leader is (the node supplies it: it may need HTTP)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Located:
    """Where a request about a destination is handled: here (`group` set) or at `leader` (None: unknown yet)."""

    placement: Placement
    group: RaftGroup | None
    leader: str | None


class BrokerService:
    """Commands in, results out; one instance per node, owned by the node's nursery."""

    def __init__(self, manager: GroupManager, *, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self.manager = manager
        self._clock_ms = clock_ms
        self._signals: dict[tuple[str, Source], trio.Event] = {}
        self._dead_letter_sender: DeadLetterSender | None = None
        self._coalescers: dict[tuple[str, Destination], PublishCoalescer] = {}
        manager.add_listener(self._on_applied)

    def set_dead_letter_sender(self, sender: DeadLetterSender) -> None:
        self._dead_letter_sender = sender

    # --------------------------------------------------------------------------------------------------------
    # Where things are

    @property
    def catalog(self) -> Broker:
        """Users, clients and every declared destination (the metadata group's applied state)."""
        return self.manager.meta.broker

    def now_ms(self) -> int:
        return self._clock_ms()

    def user(self, username: str) -> UserRecord | None:
        return self.catalog.user(username)

    def client(self, client_id: str) -> ClientRecord | None:
        return self.catalog.client(client_id)

    def locate(self, ref: Ref) -> Located:
        """NotFound if the destination was never declared (or is deleted)."""
        placement = self.manager.placement(ref)
        group = self.manager.group(placement.group_id)
        if group is not None and group.is_leader:
            return Located(placement, group, self.manager.node_id)
        leader = group.leader_id if group is not None else None
        return Located(placement, None, leader)

    def locate_meta(self) -> RaftGroup | str | None:
        """The metadata group if this node leads it, else its leader's id (None: no leader known)."""
        meta = self.manager.meta
        return meta if meta.is_leader else meta.leader_id

    def serving_replica(self, ref: Ref) -> Broker | None:
        """This node's applied state of the destination's group, if it replicates it and it is declared there."""
        try:
            group = self.manager.group(self.manager.placement(ref).group_id)
        except NotFound:
            return None
        if group is None or not _declared_in(group.broker, ref):
            return None
        return group.broker

    def is_ready(self) -> bool:
        return self.manager.meta.leader_id is not None

    # --------------------------------------------------------------------------------------------------------
    # Doing things (on the leader)

    async def submit(self, group: RaftGroup, command: Command) -> Result:
        """Commit `command` in `group` (this node leads it); concurrent publishes to one destination share one."""
        if isinstance(command, Publish):
            key = (group.group_id, command.destination)
            with group.admitted(sum(len(message.body) for message in command.messages)):
                coalescer = self._coalescers.get(key)
                if coalescer is None:
                    coalescer = self._coalescers[key] = PublishCoalescer(group.submit)
                try:
                    return await coalescer.publish(command)
                finally:
                    if coalescer.idle:
                        self._coalescers.pop(key, None)
        return await group.submit(command)

    async def wait_serving(self, ref: Ref) -> None:
        """After a declare: wait (bounded) until a replica here has the destination, so the next call finds it."""
        with trio.move_on_after(DECLARE_WAIT_S):
            while True:
                try:
                    placement = self.manager.placement(ref)
                except NotFound:
                    return
                if self.manager.node_id not in placement.replicas or self.serving_replica(ref) is not None:
                    return
                await trio.sleep(0.02)

    async def receive(
        self, group: RaftGroup, source: Source, *, max_messages: int, wait_s: float, visibility_timeout_ms: int | None
    ) -> list[Delivery]:
        """Lease up to `max_messages`, waiting up to `wait_s` for the first one to become available."""
        deadline = trio.current_time() + wait_s
        while True:
            if not group.is_leader:
                raise Unavailable("leadership of this destination moved; retry")
            now = self.now_ms()
            ready_at = group.broker.ready_at(source, now)
            if ready_at is not None and ready_at <= now:
                result = await group.submit(Receive(source, max_messages, visibility_timeout_ms))
                assert isinstance(result, Received)
                if result.messages:
                    return result.messages
                continue
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return []
            timeout = remaining if ready_at is None else min(remaining, (ready_at - now) / 1000)
            with trio.move_on_after(timeout):
                await self._signal(group.group_id, source).wait()

    # --------------------------------------------------------------------------------------------------------
    # Housekeeping

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(HOUSEKEEPING_INTERVAL_S)
            for group in self.manager.groups():
                if group.is_leader:
                    try:
                        await self._housekeep(group)
                    except MomError as exc:  # leadership moved, or the DLQ's group is not serving yet
                        log.debug("housekeeping of %s postponed: %s", group.group_id, exc)

    async def _housekeep(self, group: RaftGroup) -> None:
        await self._declare_from_catalog(group)
        deadline = group.broker.next_deadline_ms()
        if deadline is not None and deadline <= self.now_ms():
            await group.submit(Tick())
        await self._forward_dead_letters(group)

    async def _declare_from_catalog(self, group: RaftGroup) -> None:
        """A new destination group starts empty: its first leader declares the destination as the catalog has it."""
        declared = self.manager.declared_in(group.group_id)
        if declared is None:
            return
        ref: Ref = QueueRef(declared.name) if isinstance(declared, DeclareQueue) else TopicRef(declared.name)
        if not _declared_in(group.broker, ref):
            await group.submit(declared)

    async def _forward_dead_letters(self, group: RaftGroup) -> None:
        letters = group.broker.outbox()
        if not letters or self._dead_letter_sender is None:
            return
        by_queue: dict[str, list[NewMessage]] = {}
        for letter in letters:
            death = {**letter.headers.get("x-death", {}), "message_id": letter.id}
            by_queue.setdefault(letter.dead_letter_queue, []).append(
                NewMessage(
                    id=str(uuid.uuid4()),
                    body=letter.body,
                    binary=letter.binary,
                    headers={**letter.headers, "x-death": death},
                    dedup_id=f"dead-letter:{group.group_id}:{letter.seq}",
                )
            )
        for queue, messages in by_queue.items():
            try:
                await self._dead_letter_sender(queue, messages)
            except (NotFound, QueueFull) as exc:
                log.warning("dropping %d dead letters for %s: %s", len(messages), queue, exc.detail)
        await group.submit(ForwardedDeadLetters(letters[-1].seq))

    # --------------------------------------------------------------------------------------------------------
    # Long-poll wake-ups

    def _signal(self, gid: str, source: Source) -> trio.Event:
        key = (gid, source)
        event = self._signals.get(key)
        if event is None:
            event = self._signals[key] = trio.Event()
        return event

    def _wake(self, gid: str, source: Source) -> None:
        event = self._signals.pop((gid, source), None)
        if event is not None:
            event.set()

    def _wake_group(self, gid: str, topic: str | None = None) -> None:
        for key in [k for k in self._signals if k[0] == gid]:
            if topic is None or (isinstance(key[1], SubscriptionRef) and key[1].topic == topic):
                self._wake(*key)

    def _on_applied(self, gid: str, command: Command) -> None:
        """Wake the long-polls that this command may have given something to receive (or ended)."""
        match command:
            case Publish(destination=QueueRef() as queue):
                self._wake(gid, queue)
            case Publish(destination=TopicRef(name=topic)) | DeleteTopic(name=topic):
                self._wake_group(gid, topic)
            case Nack(source=source):
                self._wake(gid, source)
            case DeleteQueue(name=name):
                self._wake(gid, QueueRef(name))
            case DeleteSubscription(topic=topic, name=name):
                self._wake(gid, SubscriptionRef(topic, name))
            case Tick() | DeclareQueue() | DeclareTopic():
                self._wake_group(gid)
            case _:
                pass


def _declared_in(broker: Broker, ref: Ref) -> bool:
    try:
        if isinstance(ref, QueueRef):
            broker.queue_info(ref.name, 0)
        else:
            broker.topic_info(ref.topic if isinstance(ref, SubscriptionRef) else ref.name, 0)
    except NotFound:
        return False
    return True
