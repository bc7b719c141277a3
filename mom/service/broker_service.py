"""The broker as the REST layer sees it: find where a destination is served, submit commands, long-poll.

Route handlers talk only to this object, and get from it a `Handle` for a group this node serves, never the
Raft group. The rooms behind it: `locator` (who serves what, and when "does not exist" may be said), `leaders`
(who leads the groups this node does not replicate), `wakeups` (long-polls sleep until the apply path wakes
them), `housekeeping` (one task per led group for the work that time makes due) and `coalesce` (concurrent
publishes to one destination share a log command).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, TypeVar, overload

import trio

from mom.broker import Broker
from mom.broker.commands import (
    ClientRecord,
    Command,
    DeleteQueue,
    DeleteTopic,
    Delivery,
    Destination,
    MemberRecord,
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
from mom.replication.group import RaftGroup
from mom.replication.manager import GroupManager, Placement, Ref
from mom.replication.messages import LeaderNews
from mom.replication.placement import METADATA_GROUP, group_id
from mom.replication.raft import NotLeader
from mom.service.coalesce import CoalescerLimits, PublishCoalescer
from mom.service.housekeeping import HeldCounter, Housekeepers, Housekeeping, SendDeadLetters
from mom.service.leaders import LeaderHints
from mom.service.locator import Handle, LeadershipMoved, Located, Locator, group_of, is_current, is_ready_leader
from mom.service.membership import seed_members
from mom.service.wakeups import WakeUps

R = TypeVar("R", bound=Result)

DECLARE_WAIT_S = 10.0
"""How long a declare waits for the new destination's group to serve before answering anyway."""

HANDOVER_WAIT_S = 1.0
"""How long a write refused by a leader that is handing over waits to learn who took over (a transfer completes
within one round trip once the new leader is caught up, and is abandoned after an election timeout)."""


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
        self._hints = LeaderHints()
        self._locator = Locator(manager, self._hints)
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
        manager.add_listener(self._forget_deleted)
        manager.add_news_listener(self._on_news)

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
        """The cluster's members now (the catalog's; the configured nodes until it records them)."""
        return list(self._manager.node_ids)

    @property
    def seed_ids(self) -> list[str]:
        """The configured nodes: rendezvous placement's node set for destinations without explicit replicas."""
        return list(self._manager.seed_ids)

    def seed_members(self) -> list[MemberRecord]:
        """The members as `[[cluster.nodes]]` names them: what the metadata leader records first."""
        return seed_members(self._manager.settings)

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

    def electing_here(self, gid: str, leader: str | None) -> bool:
        """Whether this node's replica of group `gid` is electing a leader (it lost its leader to a node declared
        dead, or stands itself), knows of no live one (`leader`, as this node knows it), and its node's campaigns
        queue for a slot (it elects leaders for many groups at once, so a leader may take seconds)."""
        group = self._manager.group(gid)
        if group is None or not group.electing or (leader is not None and self._manager.peer_alive(leader)):
            return False
        return group.electing_in_queue

    def note_leader(self, gid: str, leader: str, term: int) -> None:
        """Another node said (in an answer it relayed) that `leader` leads group `gid` in `term`: a hint."""
        if gid != METADATA_GROUP and leader in self._manager.node_ids:
            self._hints.note(gid, leader, term)

    def _on_news(self, news: LeaderNews) -> None:
        self.note_leader(news.group, news.sender, news.term)

    def _forget_deleted(self, gid: str, command: Command) -> None:
        if gid == METADATA_GROUP and isinstance(command, DeleteQueue):
            self._hints.forget(group_id(QueueRef(command.name)))
        elif gid == METADATA_GROUP and isinstance(command, DeleteTopic):
            self._hints.forget(group_id(TopicRef(command.name)))

    def seeded(self) -> bool:
        """The catalog records the cluster's members (the metadata leader seeds them on the first start)."""
        return self._manager.meta.broker.members.seeded

    async def submit_to_meta(self, command: Command) -> bool:
        """Submit `command` to the metadata group if this node leads it; False (nothing done) if not."""
        meta = self.locate_meta()
        if not isinstance(meta, Handle):
            return False
        await self.submit(meta, command)
        return True

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
                    leader=self._locator.leader_of_group(placement.group_id),
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
        try:
            result = await self._submit(group, command)
        except NotLeader:  # refused before anything was written: the leader is handing over, or stepped down
            result = await self._after_hand_over(group, command)
        if expect is not None and not isinstance(result, expect):
            raise MomError(f"{type(command).__name__} answered {type(result).__name__}, not {expect.__name__}")
        return result

    async def _after_hand_over(self, group: RaftGroup, command: Command) -> Result:
        """Once leadership settles (within `HANDOVER_WAIT_S`): LeadershipMoved if another node took over, the
        command's result if this node kept the lead (a transfer that does not complete in time is abandoned)."""
        deadline = trio.current_time() + HANDOVER_WAIT_S
        pause = POLL_S[0]
        while trio.current_time() < deadline:
            await trio.sleep(pause)
            pause = min(POLL_S[1], pause * 2)
            leader = group.leader_id
            if leader is not None and leader != self.node_id:
                raise LeadershipMoved(group.group_id, leader)
            if leader == self.node_id and is_ready_leader(group):
                try:
                    return await self._submit(group, command)
                except NotLeader:  # still handing over
                    continue
        raise LeadershipMoved(group.group_id, None)

    async def _submit(self, group: RaftGroup, command: Command) -> Result:
        if not isinstance(command, Publish):
            return await group.submit(command)
        key = (group.group_id, command.destination)
        # A publish counts against the group's write budget from arrival to answer, so a flood waiting in the
        # coalescer is refused (429) like one waiting in the Raft log.
        with group.admitted(sum(len(message.body) for message in command.messages)):
            coalescer = self._coalescers.get(key)
            if coalescer is None:
                coalescer = self._coalescers[key] = PublishCoalescer(group.submit, self._coalescer_limits)
            try:
                return await coalescer.publish(command)
            finally:
                if coalescer.idle:
                    self._coalescers.pop(key, None)

    async def wait_serving(self, ref: Ref) -> None:
        """After a declare: wait (bounded by `DECLARE_WAIT_S`) until the destination has a leader that serves it
        and this node knows which, so that a request right after the declare's answer, through any node, is
        served (see `Locator.settled`)."""
        await _until(lambda: self._locator.settled(ref), DECLARE_WAIT_S, longest=DECLARE_POLL_S)

    async def wait_for_leader(self, ref: Ref | None, *, timeout_s: float, unless: Collection[str] = ()) -> bool:
        """Wait up to `timeout_s` until `ref`'s group (None: the metadata group) is served here or has a leader
        known here that is not one of `unless`; False if none came. Anything else locating it says now (not
        found, being created) ends the wait too: the request finds out."""
        return await _until(lambda: self._has_leader(ref, unless), timeout_s)

    def _has_leader(self, ref: Ref | None, unless: Collection[str]) -> bool:
        if ref is None:
            meta = self.locate_meta()
            return isinstance(meta, Handle) or (meta is not None and meta not in unless)
        try:
            located = self.locate(ref)
        except MomError:
            return True
        if located.here is not None:
            return True
        return located.leader is not None and located.leader != self.node_id and located.leader not in unless

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
        woken = False
        while True:
            if not group.is_leader:
                raise LeadershipMoved(group.group_id, group.leader_id)
            now = self.now_ms()
            ready_at = group.broker.ready_at(source, now)
            if ready_at is not None and ready_at <= now:
                receive = Receive(source, max_messages, visibility_timeout_ms)
                if woken:  # the other waiters woke too: look again in turn, after the one before has committed
                    async with self._wakeups.turn(group.group_id, source):
                        result = await self._receive_if_ready(here, receive)
                else:
                    result = await self.submit(here, receive, Received)
                if result is not None and result.messages:
                    return result.messages
                woken = False
                continue
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return []
            timeout = remaining if ready_at is None else min(remaining, (ready_at - now) / 1000)
            self.waiting_receives += 1
            try:
                with trio.move_on_after(timeout):
                    await self._wakeups.event(group.group_id, source).wait()
                    woken = True
            finally:
                self.waiting_receives -= 1

    async def _receive_if_ready(self, here: Handle, receive: Receive) -> Received | None:
        """`receive` if its source still has a message ready here (None: none, or no longer the leader)."""
        group = group_of(here)
        now = self.now_ms()
        ready_at = group.broker.ready_at(receive.source, now) if group.is_leader else None
        if ready_at is None or ready_at > now:
            return None
        return await self.submit(here, receive, Received)


POLL_S = (0.02, 0.2)
"""First and longest pause between two looks at a condition that `_until` waits for."""


DECLARE_POLL_S = 0.05
"""The longest pause between two looks of a declare waiting for its destination to serve: a new group's leader
settles within a few hundred milliseconds, and the 200 ms of `POLL_S` added half of that again to every create
(one look costs a dictionary lookup or two)."""


async def _until(condition: Callable[[], bool], timeout_s: float, *, longest: float = POLL_S[1]) -> bool:
    """Whether `condition` became true within `timeout_s`. Polled, with a pause that doubles from 20 ms to 200 ms:
    what it waits for (a leader elected, news of one, a declare applied) is told by Raft, other nodes and the apply
    path alike, so there is no one event to wait on, and many requests waiting at once (an election under load)
    must stay cheap."""
    pause = POLL_S[0]
    with trio.move_on_after(timeout_s):
        while True:
            if condition():
                return True
            await trio.sleep(pause)
            pause = min(longest, pause * 2)
    return False
