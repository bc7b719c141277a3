"""The broker as the REST layer sees it: find where a destination is served, submit commands, long-poll.

Route handlers talk only to this object, and get from it a `Handle` for a group this node serves, never the
Raft group. The rooms behind it: `locator` (who serves what, and when "does not exist" may be said),
`wakeups` (long-polls sleep until the apply path wakes them), `housekeeping` (one task per led group for the
work that time makes due) and `coalesce` (concurrent publishes to one destination share a log command).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import trio

from mom.broker import Broker
from mom.broker.commands import (
    ClientRecord,
    Command,
    Delivery,
    Destination,
    NewMessage,
    Publish,
    QueueRef,
    Receive,
    Received,
    Result,
    Source,
    TopicRef,
    UserRecord,
)
from mom.config import LimitsSection
from mom.errors import MomError, NotFound, Unavailable
from mom.replication.manager import GroupManager, Placement, Ref
from mom.service.coalesce import CoalescerLimits, PublishCoalescer
from mom.service.housekeeping import HeldCounter, Housekeepers, Housekeeping, SendDeadLetters
from mom.service.locator import Handle, Located, Locator, group_of, is_current, is_ready_leader
from mom.service.wakeups import WakeUps

R = TypeVar("R", bound=Result)

DECLARE_WAIT_S = 10.0
"""How long a declare waits for the new destination's group to serve before answering anyway."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class DestinationStatus:
    """One destination in the cluster view, as this node sees it (exact only for the groups it replicates)."""

    kind: str
    name: str
    group: str
    leader: str | None
    replicas: list[str]
    commit_index: int | None
    replica_lag: dict[str, int] | None


class BrokerService:
    """Commands in, results out; one instance per node, owned by the node's nursery."""

    def __init__(
        self,
        manager: GroupManager,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        limits: LimitsSection | None = None,
        on_dead_letters_held: HeldCounter | None = None,
    ) -> None:
        self._manager = manager
        self._clock_ms = clock_ms
        self._locator = Locator(manager)
        self._wakeups = WakeUps()
        self._coalescers: dict[tuple[str, Destination], PublishCoalescer] = {}
        self._coalescer_limits = CoalescerLimits.from_settings(limits or LimitsSection())
        self._housekeeping = Housekeeping(clock_ms)
        if on_dead_letters_held is not None:
            self._housekeeping.on_held = on_dead_letters_held
        self._housekeepers = Housekeepers(manager, self._housekeeping)
        self.waiting_receives = 0
        """Receives (long-polls, SSE and stream consumers) waiting for a message now: for /metrics."""
        manager.add_listener(self._wakeups.on_applied)

    def set_dead_letter_sender(self, sender: SendDeadLetters) -> None:
        self._housekeeping.send = sender

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Housekeeping of every group this node leads, until cancelled."""
        await self._housekeepers.run(task_status=task_status)

    # --------------------------------------------------------------------------------------------------------
    # Where things are

    @property
    def node_id(self) -> str:
        return self._manager.node_id

    @property
    def node_ids(self) -> list[str]:
        return list(self._manager.node_ids)

    @property
    def catalog(self) -> Broker:
        """Users, clients and every declared destination (the metadata group's applied state)."""
        return self._manager.meta.broker

    def now_ms(self) -> int:
        return self._clock_ms()

    def user(self, username: str) -> UserRecord | None:
        return self.catalog.user(username)

    def client(self, client_id: str) -> ClientRecord | None:
        return self.catalog.client(client_id)

    def placement(self, ref: Ref) -> Placement:
        """NotFound only where certain (see `mom.service.locator`); MetadataBehind while catching up."""
        return self._locator.placement(ref)

    def locate(self, ref: Ref) -> Located:
        return self._locator.locate(ref)

    def whereabouts(self, ref: Ref) -> tuple[Placement, str | None]:
        return self._locator.whereabouts(ref)

    def locate_meta(self) -> Handle | str | None:
        return self._locator.locate_meta()

    def serving_replica(self, ref: Ref) -> Broker | None:
        return self._locator.serving_replica(ref)

    def is_ready(self) -> bool:
        return self._manager.meta.leader_id is not None

    def metadata_current(self) -> bool:
        """This node's catalog (destinations, accounts) holds everything committed before the metadata group's
        current term: what it lacks then is only what its leader committed a moment ago (see `is_current`)."""
        return is_current(self._manager.meta)

    @property
    def metadata_leader(self) -> str | None:
        return self._manager.meta.leader_id

    def cluster_view(self) -> list[DestinationStatus]:
        now = self.now_ms()
        refs: list[tuple[str, QueueRef | TopicRef]] = [
            ("queue", QueueRef(q.name)) for q in self.catalog.list_queues(now)
        ]
        refs += [("topic", TopicRef(t.name)) for t in self.catalog.list_topics(now)]
        view = []
        for kind, ref in refs:
            placement = self._manager.placement(ref)
            group = self._manager.group(placement.group_id)
            view.append(
                DestinationStatus(
                    kind=kind,
                    name=ref.name,
                    group=placement.group_id,
                    leader=group.leader_id if group else None,
                    replicas=list(placement.replicas),
                    commit_index=group.commit_index if group else None,
                    replica_lag=group.replica_lag() if group and group.is_leader else None,
                )
            )
        return view

    def dead_letters_waiting(self) -> int:
        """Dead letters in the outboxes of the groups this node leads (not yet taken by their queue)."""
        return sum(g.broker.outbox_size() for g in self._manager.groups() if is_ready_leader(g))

    # --------------------------------------------------------------------------------------------------------
    # Doing things (on the leader)

    @overload
    async def submit(self, here: Handle, command: Command) -> Result: ...

    @overload
    async def submit(self, here: Handle, command: Command, expect: type[R]) -> R: ...

    async def submit(self, here: Handle, command: Command, expect: type[Any] | None = None) -> Result:
        """Commit `command` in the group `here`; concurrent publishes to one destination share one command.

        `expect` is the result type the command gives; anything else is a bug, answered as one (500).
        """
        group = group_of(here)
        if isinstance(command, Publish):
            key = (group.group_id, command.destination)
            # A publish counts against the group's write budget from arrival to answer, so a flood waiting in
            # the coalescer is refused (429) like one waiting in the Raft log.
            with group.admitted(sum(len(message.body) for message in command.messages)):
                coalescer = self._coalescers.get(key)
                if coalescer is None:
                    coalescer = self._coalescers[key] = PublishCoalescer(group.submit, self._coalescer_limits)
                try:
                    result: Result = await coalescer.publish(command)
                finally:
                    if coalescer.idle:
                        self._coalescers.pop(key, None)
        else:
            result = await group.submit(command)
        if expect is not None and not isinstance(result, expect):
            raise MomError(f"{type(command).__name__} answered {type(result).__name__}, not {expect.__name__}")
        return result

    async def wait_serving(self, ref: Ref) -> None:
        """After a declare: wait (bounded) until a replica here has the destination, so the next call finds it."""
        with trio.move_on_after(DECLARE_WAIT_S):
            while True:
                try:
                    placement = self._manager.placement(ref)
                except NotFound:
                    return
                if self.node_id not in placement.replicas or self.serving_replica(ref) is not None:
                    return
                await trio.sleep(0.02)

    async def wait_attributes(self, name: str) -> None:
        """After an update: wait (bounded) until the queue's replica here has the catalog's attributes."""
        with trio.move_on_after(DECLARE_WAIT_S):
            while True:
                try:
                    wanted = self.catalog.queue_info(name, 0).attrs
                except NotFound:
                    return
                replica = self.serving_replica(QueueRef(name))
                if replica is None or replica.queue_info(name, 0).attrs == wanted:
                    return
                await trio.sleep(0.02)

    async def publish_to_queue(self, queue: str, messages: list[NewMessage]) -> None:
        """Publish to a queue wherever its leader is (as dead letters travel); NotFound, QueueFull, Unavailable."""
        send = self._housekeeping.send
        if send is None:
            raise Unavailable("this node cannot publish to other nodes yet")
        await send(queue, messages)

    async def receive(
        self, here: Handle, source: Source, *, max_messages: int, wait_s: float, visibility_timeout_ms: int | None
    ) -> list[Delivery]:
        """Lease up to `max_messages`, waiting up to `wait_s` for the first one to become available."""
        group = group_of(here)
        deadline = trio.current_time() + wait_s
        while True:
            if not group.is_leader:
                raise Unavailable("leadership of this destination moved; retry")
            now = self.now_ms()
            ready_at = group.broker.ready_at(source, now)
            if ready_at is not None and ready_at <= now:
                result = await self.submit(here, Receive(source, max_messages, visibility_timeout_ms), Received)
                if result.messages:
                    return result.messages
                continue
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return []
            timeout = remaining if ready_at is None else min(remaining, (ready_at - now) / 1000)
            self.waiting_receives += 1
            try:
                with trio.move_on_after(timeout):
                    await self._wakeups.event(group.group_id, source).wait()
            finally:
                self.waiting_receives -= 1
