"""Rebalancing at run time: the metadata leader plans moves and changes its own group's members; each destination
group's leader carries out the moves of its group.

`Rebalancer` runs on every node and acts while the node leads the metadata group: it keeps the metadata group's
Raft configuration in step with the catalog's member list (a new member joins as a learner, becomes a voter once
caught up; a removed one leaves), one change at a time, and records the moves `mom.replication.rebalance.plan`
returns (`StartMove`), at most `max_moves` in flight. `Mover` runs on every node too and carries out each recorded
move of a group this node leads: add the target as a learner, wait until it has caught up, promote it, remove the
source (a leader that is the source hands leadership to the target first, and the new leader finishes), then
record the new replica set (`FinishMove`) on the metadata leader, here or over its REST API. A move whose target
stops being an active member before it is promoted is abandoned: the learner leaves, and the unchanged replica set
is recorded. Only the group's leader records an outcome, so the catalog always holds the group's real members.
Every step is idempotent, so a leader that changes or restarts in the middle resumes from the catalog's intent.

Both need Raft configuration changes of the groups (`Reconfigurable`); a group without them is left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, Protocol, runtime_checkable

import trio

from mom.broker.commands import FinishMove, Move, QueueRef, StartMove, TopicRef
from mom.broker.members import moved
from mom.errors import MomError, NotFound
from mom.replication.manager import GroupManager
from mom.replication.raft import NotLeader
from mom.replication.rebalance import plan

log = logging.getLogger("mom.membership")

POLL_S = 0.2


class Configuration(Protocol):
    @property
    def voters(self) -> Sequence[str]: ...

    @property
    def learners(self) -> Sequence[str]: ...


@runtime_checkable
class Reconfigurable(Protocol):
    """What a group offers for single-server membership changes (leader only; each returns once committed)."""

    @property
    def membership(self) -> Configuration: ...

    def caught_up(self, node: str) -> bool: ...

    async def add_learner(self, node: str) -> None: ...

    async def promote(self, node: str) -> None: ...

    async def remove_member(self, node: str) -> None: ...

    def transfer_leadership(self, to: str) -> None: ...


Outcome = Literal["done", "handed_over", "abandoned"]
FinishSender = Callable[[FinishMove], Awaitable[None]]
"""Records a finished move on the metadata leader (locally, or over its REST API)."""


async def reconfigure(
    group: Reconfigurable,
    node_id: str,
    move: Move,
    *,
    poll_s: float = POLL_S,
    wanted: Callable[[], bool] = lambda: True,
) -> Outcome:
    """Carry out `move` in `group`, led here: `done` once the target votes and the source is gone; `handed_over`
    when this leader was the source and handed leadership to the target (the new leader finishes the move);
    `abandoned` when `wanted` turned false before the target was promoted (it left the group again). Once
    promoted, a move is finished whatever happens: the catalog must record the group's real members."""
    config = group.membership
    if move.target not in config.voters:
        if move.target not in config.learners:
            if not wanted():
                return "abandoned"  # its learner left already (recording that failed): nothing to undo
            await group.add_learner(move.target)
        await _until(lambda: group.caught_up(move.target) or not wanted(), poll_s)
        promoted = move.target in group.membership.voters  # by another leader, while this one waited
        if not wanted() and not promoted:
            if move.target in group.membership.learners:
                await group.remove_member(move.target)
            return "abandoned"
        if not promoted:
            await group.promote(move.target)
    config = group.membership
    if move.source is not None and move.source in (*config.voters, *config.learners):
        if move.source == node_id:
            group.transfer_leadership(move.target)
            return "handed_over"
        await group.remove_member(move.source)
    return "done"


async def _until(condition: Callable[[], bool], poll_s: float) -> None:
    """Poll `condition` (a learner's progress is the leader's state: no event tells of it)."""
    while True:
        if condition():
            return
        await trio.sleep(poll_s)


class Mover:
    """Carries out the recorded moves of the groups this node leads."""

    def __init__(self, manager: GroupManager, finish: FinishSender, *, poll_s: float = POLL_S) -> None:
        self._manager = manager
        self._finish = finish
        self._poll_s = poll_s
        self._running: set[str] = set()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            while True:
                for move in self._manager.meta.broker.members.moves():
                    if move.group not in self._running:
                        self._maybe_start(nursery, move)
                await trio.sleep(self._poll_s)

    def _maybe_start(self, nursery: trio.Nursery, move: Move) -> None:
        kind, _, name = move.group.partition(".")
        try:
            placement = self._manager.placement(QueueRef(name) if kind == "q" else TopicRef(name))
        except NotFound:
            return
        group = self._manager.group(placement.group_id)
        if group is None or not group.is_leader or not isinstance(group, Reconfigurable):
            return
        self._running.add(move.group)
        nursery.start_soon(self._carry_out, group, move, list(placement.replicas))

    def _wanted(self, move: Move) -> Callable[[], bool]:
        """Whether `move` is still worth doing: still recorded, its target still an active member."""
        members = self._manager.meta.broker.members

        def wanted() -> bool:
            target = members.member(move.target)
            return members.move_of(move.group) == move and target is not None and target.state == "active"

        return wanted

    async def _carry_out(self, group: Reconfigurable, move: Move, replicas: list[str]) -> None:
        try:
            outcome = await reconfigure(
                group, self._manager.node_id, move, poll_s=self._poll_s, wanted=self._wanted(move)
            )
            if outcome == "done":
                await self._finish(FinishMove(move, moved(replicas, move)))
                log.info("moved the replica of %s from %s to %s", move.group, move.source, move.target)
            elif outcome == "abandoned":
                await self._finish(FinishMove(move, replicas, done=False))
                log.info("abandoned the move of %s to %s: no longer an active member", move.group, move.target)
        except (NotLeader, MomError) as exc:
            log.info(
                "move of %s from %s to %s paused (%s); it resumes on its leader",
                move.group,
                move.source,
                move.target,
                exc,
            )
        finally:
            self._running.discard(move.group)


class Rebalancer:
    """On the metadata leader: the metadata group's members follow the catalog, and moves get planned."""

    def __init__(
        self,
        manager: GroupManager,
        submit: Callable[[StartMove], Awaitable[object]],
        *,
        max_moves: int,
        replication_factor: int,
        poll_s: float = POLL_S,
    ) -> None:
        self._manager = manager
        self._submit = submit
        self._max_moves = max_moves
        self._factor = replication_factor
        self._poll_s = poll_s
        self._settled_at = -1
        """The metadata group's applied index when the last plan found nothing to move: the plan depends on the
        catalog alone, so until it changes there is nothing new to plan (planning places every destination,
        which at 3,000 of them cost the metadata leader a fifth of a core, idle or not)."""

    async def run(self) -> None:
        while True:
            await trio.sleep(self._poll_s)
            meta = self._manager.meta
            if not meta.is_leader or not meta.broker.members.seeded or not isinstance(meta, Reconfigurable):
                continue
            try:
                if await self.step_metadata(meta):
                    continue
                applied = meta.applied_index
                if applied == self._settled_at:
                    continue
                moves = self.planned()
                if not moves:
                    self._settled_at = applied
                for move in moves:
                    await self._submit(StartMove(move))
                    log.info("planned: move the replica of %s from %s to %s", move.group, move.source, move.target)
            except (NotLeader, MomError) as exc:
                log.info("rebalancing paused: %s", exc)

    async def step_metadata(self, meta: Reconfigurable) -> bool:
        """One membership change of the metadata group towards the catalog's members; True if one was made."""
        members = {m.id for m in self._manager.meta.broker.members.members()}
        config = meta.membership
        for node in sorted(members):
            if node not in config.voters and node not in config.learners:
                await meta.add_learner(node)
                return True
        for node in sorted(config.learners):
            if node in members and meta.caught_up(node):
                await meta.promote(node)
                return True
        for node in sorted({*config.voters, *config.learners} - members):
            if node != self._manager.node_id:
                await meta.remove_member(node)
                return True
            successor = next((v for v in sorted(config.voters) if v in members), None)
            if successor is not None:  # this leader was removed: the next one takes it out of the group
                meta.transfer_leadership(successor)
                return True
        return False

    def planned(self) -> list[Move]:
        catalog = self._manager.meta.broker
        # The recorded seed, not this node's configured ids: a node that joined lists itself among them.
        seed = catalog.members.seed_ids or self._manager.seed_ids
        placements = {
            group: catalog.members.replicas(group, own or self._factor, seed=seed) for group, own in catalog.placed()
        }
        members = catalog.members.members()
        changed = sorted(m.id for m in members if m.state == "active") != sorted(seed)
        return plan(placements, members, catalog.members.moves(), self._max_moves, balance=changed)
