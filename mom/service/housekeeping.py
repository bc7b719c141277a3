"""Housekeeping: the writes that time or other groups make due, one housekeeper per group this node leads.

A housekeeper appends a Tick when leases, delays, TTLs or retention of its group expire, declares its
destination in a new group from the catalog, tells the other nodes once per term that this node leads the group
and serves its destination (`LeaderNews`: they route to it, see `mom.service.leaders`), and hands its dead
letters to their dead-letter queue. Each group has its own task (started when this node becomes its ready
leader, cancelled when it stops leading or the group stops) and every step is bounded by `STEP_TIMEOUT_S`, so
one slow group (a dead-letter queue that takes 30 s to answer) delays nobody else's lease expiry.

An idle group costs nothing here: a housekeeper sleeps until its group's next deadline (the state machine knows
it), until a command is applied to its group or its destination's catalog entry changes, or until dead letters
are due for another offer; and the set of housekeepers is reconciled only over the groups that are awake (a
quiesced group's leadership cannot change without waking it) and those that just went quiet.

Dead letters leave a source's outbox in order and only once their dead-letter queue has taken them: a full or
missing dead-letter queue keeps them (and every later letter of that source) in the outbox, to be offered again
after a back-off; `on_held` counts them (a metric). Each letter carries a dedup id derived from its place in the
outbox, so offering it again never stores it twice within the dedup window.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import msgspec
import trio

from mom.broker.commands import (
    Command,
    DeclareQueue,
    ForwardedDeadLetters,
    NewMessage,
    OutboxLetter,
    QueueRef,
    Tick,
    TopicRef,
    UpdateQueue,
)
from mom.errors import MomError, NotFound, QueueFull
from mom.replication.group import RaftGroup
from mom.replication.manager import GroupManager
from mom.replication.placement import METADATA_GROUP, group_id
from mom.service.locator import is_ready_leader

log = logging.getLogger("mom.service")

INTERVAL_S = 0.25
"""The shortest pause between two rounds of one housekeeper (under load, a round per applied command would be
waste), and how often leadership is checked."""
STEP_TIMEOUT_S = 5.0
"""The longest one step of one group may take (a Tick, a declare, one batch of dead letters)."""
RECONCILE_S = 0.1
"""How often the groups whose leadership may have changed are looked at for housekeepers to start or stop: a new
destination's first leader declares it from its housekeeper, so this bounds part of every create's wait (only the
awake groups are looked at: none on an idle node)."""
STOPPED_EVERY = 10
"""Reconcile rounds between two looks for housekeepers of groups that stopped running here (deleted, moved)."""
RETRY_S = (1.0, 30.0)
"""First and longest pause before dead letters refused by their queue are offered again."""

SendDeadLetters = Callable[[str, list[NewMessage]], Awaitable[None]]
"""Publishes dead letters to the named queue wherever its leader is (the node supplies it: it may need HTTP)."""
HeldCounter = Callable[[str, int], None]
"""Told (reason, letters) each time dead letters stay in an outbox because their queue refused them."""


@dataclass
class Housekeeping:
    """What housekeepers share: the dead-letter sender (set once the node has built one) and the metric hook."""

    clock_ms: Callable[[], int]
    send: SendDeadLetters | None = None
    on_held: HeldCounter = lambda reason, count: None


class Housekeepers:
    """Keeps exactly one housekeeper running per group this node leads. Start with `nursery.start(run)`."""

    def __init__(self, manager: GroupManager, shared: Housekeeping) -> None:
        self._manager = manager
        self._shared = shared
        self._running: dict[str, tuple[RaftGroup, trio.CancelScope, Housekeeper]] = {}
        self._by_base: dict[str, str] = {}
        """The group id of each destination with a housekeeper here, by the id's part before the '@'."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._manager.add_listener(self._on_applied)
        async with trio.open_nursery() as nursery:
            task_status.started()
            self._reconcile(nursery, self._manager.groups())
            rounds = 0
            while True:
                await trio.sleep(RECONCILE_S)
                rounds += 1
                self._reconcile(nursery, self._manager.changing_groups(), stopped=rounds % STOPPED_EVERY == 0)

    def _on_applied(self, gid: str, command: Command) -> None:
        """Nudge the housekeeper of the group that applied `command` (for the metadata group: the one whose
        destination's catalog entry it changed)."""
        if gid == METADATA_GROUP:
            name = getattr(command, "name", None)
            if not isinstance(name, str):
                return
            for base in (group_id(QueueRef(name)), group_id(TopicRef(name))):
                running = self._running.get(self._by_base.get(base, ""))
                if running is not None:
                    running[2].nudge()
            return
        running = self._running.get(gid)
        if running is not None:
            running[2].nudge()

    def leading(self) -> list[str]:
        """The groups that have a housekeeper now."""
        return list(self._running)

    def _reconcile(self, nursery: trio.Nursery, groups: Iterable[RaftGroup], *, stopped: bool = True) -> None:
        """Start a housekeeper for each of `groups` this node is the ready leader of, stop those of the others
        and (`stopped`) of the groups that stopped running here: that looks at every housekeeper, a third of
        10,000 groups on each of 3 nodes, so it runs every `STOPPED_EVERY` rounds only (at every round it was 40 %
        of an idle node's CPU at 10,000 destinations)."""
        for gid, (group, scope, _) in list(self._running.items()) if stopped else ():
            if self._manager.group(gid) is not group:
                scope.cancel()
                del self._running[gid]
        for group in groups:
            gid = group.group_id
            running = self._running.get(gid)
            if not is_ready_leader(group):
                if running is not None:
                    running[1].cancel()
                    del self._running[gid]
            elif running is None or running[0] is not group:
                if running is not None:
                    running[1].cancel()
                scope = trio.CancelScope()
                keeper = Housekeeper(group, self._manager, self._shared)
                self._running[gid] = (group, scope, keeper)
                self._by_base[gid.rpartition("@")[0]] = gid
                nursery.start_soon(self._keep, keeper, scope)

    async def _keep(self, keeper: Housekeeper, scope: trio.CancelScope) -> None:
        with scope:
            await keeper.run()


class Housekeeper:
    """The due work of one group, step by step, each step bounded."""

    def __init__(self, group: RaftGroup, manager: GroupManager, shared: Housekeeping) -> None:
        self._group = group
        self._manager = manager
        self._shared = shared
        self._retry_at = 0.0
        self._pause = RETRY_S[0]
        self._announced_term = 0
        self._nudged = trio.Event()

    def nudge(self) -> None:
        """Something happened to the group (or its catalog entry): look again soon."""
        self._nudged.set()

    async def _until_due(self) -> None:
        """Sleep until the group's next deadline, a nudge, or the next offer of waiting dead letters."""
        wake_at = math.inf
        deadline = self._group.broker.next_deadline_ms()
        if deadline is not None:
            wake_at = trio.current_time() + max(0, deadline - self._shared.clock_ms()) / 1000
        if self._group.broker.outbox():
            wake_at = min(wake_at, max(self._retry_at, trio.current_time()))
        with trio.move_on_at(wake_at):
            await self._nudged.wait()

    async def run(self) -> None:
        while True:
            self._nudged = trio.Event()
            for step in (self._declare_from_catalog, self._announce, self._tick, self._forward_dead_letters):
                with trio.move_on_after(STEP_TIMEOUT_S) as bounded:
                    try:
                        await step()
                    except MomError as exc:  # leadership moved, the DLQ's group is not serving yet, ...
                        log.debug("housekeeping of %s postponed: %s", self._group.group_id, exc)
                if bounded.cancelled_caught:
                    log.warning(
                        "housekeeping of %s: %s took over %ss", self._group.group_id, step.__name__, STEP_TIMEOUT_S
                    )
            await trio.sleep(INTERVAL_S)
            await self._until_due()

    async def _declare_from_catalog(self) -> None:
        """A new destination group starts empty: its first leader declares the destination as the catalog has it.

        Later attribute updates reach the catalog first; the leader then brings its group's copy up to date, so
        whichever node leads after a crash converges on the catalog's attributes.
        """
        declared = self._manager.declared_in(self._group.group_id)
        if declared is None:
            return
        ref = QueueRef(declared.name) if isinstance(declared, DeclareQueue) else TopicRef(declared.name)
        if not self._group.broker.declares(ref):
            await self._group.submit(declared)
        elif isinstance(ref, QueueRef):
            try:
                wanted = self._manager.meta.broker.queue_info(ref.name, 0).attrs
            except NotFound:  # deleted meanwhile: the manager stops this group
                return
            if self._group.broker.queue_info(ref.name, 0).attrs != wanted:
                await self._group.submit(UpdateQueue(ref.name, msgspec.to_builtins(wanted)))

    async def _announce(self) -> None:
        """Once per term this node leads the group in, as soon as the destination is served here."""
        declared = self._manager.declared_in(self._group.group_id)
        term = self._group.term
        if term == self._announced_term or declared is None or not is_ready_leader(self._group):
            return
        ref = QueueRef(declared.name) if isinstance(declared, DeclareQueue) else TopicRef(declared.name)
        if self._group.broker.declares(ref):
            self._manager.announce_leader(self._group.group_id, term)
            self._announced_term = term

    async def _tick(self) -> None:
        deadline = self._group.broker.next_deadline_ms()
        if deadline is not None and deadline <= self._shared.clock_ms():
            await self._group.submit(Tick())

    async def _forward_dead_letters(self) -> None:
        """Offer the outbox to its dead-letter queues in order, run by run; forget what was taken."""
        send = self._shared.send
        letters = self._group.broker.outbox()
        if not letters or send is None or trio.current_time() < self._retry_at:
            return
        taken: int | None = None
        for queue, run in _runs(letters):
            try:
                await send(queue, [self._message(letter) for letter in run])
            except (QueueFull, NotFound) as exc:
                self._hold(queue, exc, self._group.broker.outbox_size())
                break
            except MomError:
                self._back_off()
                raise
            taken = run[-1].seq
        else:
            self._pause = RETRY_S[0]
        if taken is not None:
            await self._group.submit(ForwardedDeadLetters(taken))

    def _message(self, letter: OutboxLetter) -> NewMessage:
        death = {**letter.headers.get("x-death", {}), "message_id": letter.id}
        return NewMessage(
            id=str(uuid.uuid4()),
            body=letter.body,
            binary=letter.binary,
            headers={**letter.headers, "x-death": death},
            dedup_id=f"dead-letter:{self._group.group_id}:{letter.seq}",
            group_id=letter.group_id,
        )

    def _hold(self, queue: str, exc: QueueFull | NotFound, waiting: int) -> None:
        reason = "full" if isinstance(exc, QueueFull) else "missing"
        if self._pause == RETRY_S[0]:
            log.warning(
                "dead-letter queue %s is %s: %d dead letters of %s wait in its outbox (%s)",
                queue,
                reason,
                waiting,
                self._group.group_id,
                exc.detail,
            )
        self._shared.on_held(reason, waiting)
        self._back_off()

    def _back_off(self) -> None:
        self._retry_at = trio.current_time() + self._pause
        self._pause = min(RETRY_S[1], self._pause * 2)


def _runs(letters: list[OutboxLetter]) -> list[tuple[str, list[OutboxLetter]]]:
    """Consecutive letters bound for the same queue, in outbox order: each run is one publish."""
    runs: list[tuple[str, list[OutboxLetter]]] = []
    for letter in letters:
        if runs and runs[-1][0] == letter.dead_letter_queue:
            runs[-1][1].append(letter)
        else:
            runs.append((letter.dead_letter_queue, [letter]))
    return runs
