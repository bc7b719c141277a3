"""Housekeeping: the writes that time or other groups make due, one housekeeper per group this node leads.

A housekeeper appends a Tick when leases, delays, TTLs or retention of its group expire, declares its
destination in a new group from the catalog, and hands its dead letters to their dead-letter queue. Each group
has its own task (started when this node becomes its ready leader, cancelled when it stops leading or the group
stops) and every step is bounded by `STEP_TIMEOUT_S`, so one slow group (a dead-letter queue that takes
30 s to answer) delays nobody else's lease expiry.

Dead letters leave a source's outbox in order and only once their dead-letter queue has taken them: a full or
missing dead-letter queue keeps them (and every later letter of that source) in the outbox, to be offered again
after a back-off; `on_held` counts them (a metric). Each letter carries a dedup id derived from its place in the
outbox, so offering it again never stores it twice within the dedup window.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import msgspec
import trio

from mom.broker.commands import (
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
from mom.service.locator import is_ready_leader

log = logging.getLogger("mom.service")

INTERVAL_S = 0.25
"""How often a housekeeper looks for due work (only due work is written), and how often leadership is checked."""
STEP_TIMEOUT_S = 5.0
"""The longest one step of one group may take (a Tick, a declare, one batch of dead letters)."""
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
        self._running: dict[str, tuple[RaftGroup, trio.CancelScope]] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            task_status.started()
            while True:
                self._reconcile(nursery)
                await trio.sleep(INTERVAL_S)

    def leading(self) -> list[str]:
        """The groups that have a housekeeper now."""
        return list(self._running)

    def _reconcile(self, nursery: trio.Nursery) -> None:
        led = {g.group_id: g for g in self._manager.groups() if is_ready_leader(g)}
        for gid, (group, scope) in list(self._running.items()):
            if led.get(gid) is not group:
                scope.cancel()
                del self._running[gid]
        for gid, group in led.items():
            if gid not in self._running:
                scope = trio.CancelScope()
                self._running[gid] = (group, scope)
                nursery.start_soon(self._keep, group, scope)

    async def _keep(self, group: RaftGroup, scope: trio.CancelScope) -> None:
        with scope:
            await Housekeeper(group, self._manager, self._shared).run()


class Housekeeper:
    """The due work of one group, step by step, each step bounded."""

    def __init__(self, group: RaftGroup, manager: GroupManager, shared: Housekeeping) -> None:
        self._group = group
        self._manager = manager
        self._shared = shared
        self._retry_at = 0.0
        self._pause = RETRY_S[0]

    async def run(self) -> None:
        while True:
            for step in (self._declare_from_catalog, self._tick, self._forward_dead_letters):
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
