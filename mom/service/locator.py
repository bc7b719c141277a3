"""Where a request about a destination is served, and whether this node may answer it at all.

A node answers about a destination only from state it knows to be current, so that "does not exist" is never
said by a node that merely has not caught up (after a restart its catalog replays for a moment; a new leader
has not yet applied what earlier leaders committed):

- A group is served here only by its *ready* leader: one that has applied an entry of its own term (the no-op
  every new leader commits first), so everything committed before it is applied too.
- "No such destination" is authoritative only on the ready leader of the metadata group, whose catalog holds
  every committed declare and delete. Any other node raises `MetadataBehind` (a 503) naming that leader, and
  the REST layer asks it instead.
- A destination the catalog has but whose group here has not declared it yet (a group just created) is
  `Unavailable` for a moment, not missing.

Where a group is led: Raft knows for the groups this node replicates; for the others the locator falls back to the
leader hints (`mom.service.leaders`), which may be stale and are only ever used to pick where to forward.

What leaves this module for the REST layer is a `Handle`: an opaque token that this node serves a group, which
routes hand back to the service, never the Raft group itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from mom.broker import Broker
from mom.broker.commands import Destination, QueueRef, SubscriptionRef, TopicRef
from mom.errors import NotFound, Unavailable
from mom.replication.group import RaftGroup
from mom.replication.manager import GroupManager, Placement, Ref
from mom.service.leaders import LeaderHints

__all__ = [
    "Handle",
    "LeadershipMoved",
    "Located",
    "Locator",
    "MetadataBehind",
    "Ref",
    "group_of",
    "is_current",
    "is_ready_leader",
]


class Handle:
    """Proof that this node serves a group as its ready leader: routes read `state` and pass it back."""

    __slots__ = ("_group",)

    def __init__(self, group: RaftGroup) -> None:
        self._group = group

    @property
    def state(self) -> Broker:
        """The group's applied state, for reading (every change goes through the service as a command)."""
        return self._group.broker

    @property
    def group_id(self) -> str:
        return self._group.group_id

    @property
    def term(self) -> int:
        return self._group.term


def group_of(handle: Handle) -> RaftGroup:
    """The group behind a handle: for the service package only."""
    return handle._group


@dataclass(frozen=True)
class Located:
    """Where a request about a destination is handled: here (`here` set) or at `leader` (None: unknown yet).

    `leader` is Raft's for a group this node replicates, else the last one heard of (a hint, maybe stale)."""

    placement: Placement
    here: Handle | None
    leader: str | None


class MetadataBehind(Unavailable):
    """This node cannot tell whether a destination exists; the metadata leader (`meta_leader`) can."""

    def __init__(self, detail: str, meta_leader: str | None) -> None:
        super().__init__(detail)
        self.meta_leader = meta_leader


class LeadershipMoved(Unavailable):
    """This node stopped leading the group before the request changed anything: `leader` leads it now (None:
    nobody known yet). Safe to send on to that leader, since nothing was written here."""

    def __init__(self, group_id: str, leader: str | None) -> None:
        where = f"to {leader}" if leader is not None else "to a new leader"
        super().__init__(f"leadership of {group_id} moved {where} before the request was written; retry shortly")
        self.group_id = group_id
        self.leader = leader


def is_ready_leader(group: RaftGroup) -> bool:
    """Leading, and applied up to an entry of its own term: its state holds everything committed so far."""
    core = group.core
    return core is not None and core.role == "leader" and is_current(group)


def is_current(group: RaftGroup) -> bool:
    """Knows the leader of the term it is in, applied an entry of that term and all it knows to be committed (for a
    leader its own entry is enough: it follows all it committed): then everything committed before that term's
    leader took over is in its state. A replica that restarts, or rejoins empty, is not, until it has heard from
    the current leader (or become it) and caught up with that leader's first entry: replaying its own log of the
    term it was in before the restart is not enough, since the commit index it persisted may lag what was
    committed (an empty replica in term 0 is not either).
    """
    core = group.core
    return (
        core is not None
        and core.leader_id is not None
        and group.applied_index > 0
        and (core.role == "leader" or group.applied_index >= core.commit_index)
        and core.log.term_at(group.applied_index) == core.term
    )


def destination_of(ref: Ref) -> Destination:
    return TopicRef(ref.topic) if isinstance(ref, SubscriptionRef) else ref


def describe(ref: Ref) -> str:
    return f"queue {ref.name!r}" if isinstance(ref, QueueRef) else f"topic {destination_of(ref).name!r}"


class Locator:
    """Answers "who serves this?" from the node's groups; holds no state of its own."""

    def __init__(self, manager: GroupManager, hints: LeaderHints) -> None:
        self._manager = manager
        self._hints = hints

    @property
    def node_id(self) -> str:
        return self._manager.node_id

    def placement(self, ref: Ref) -> Placement:
        """The destination's group and replicas; NotFound only where that is certain, else MetadataBehind."""
        try:
            return self._manager.placement(ref)
        except NotFound:
            meta = self._manager.meta
            if is_ready_leader(meta):
                raise
            leader = meta.leader_id if meta.leader_id != self.node_id else None
            raise MetadataBehind(
                f"this node is catching up with the cluster metadata and cannot yet tell whether {describe(ref)} "
                "exists; retry shortly",
                leader,
            ) from None

    def leader_of_group(self, gid: str) -> str | None:
        """The group's leader as this node knows it: Raft's if it replicates the group and knows one, else the
        latest hint (unless older than the term its replica is in, or naming this node, which does not lead)."""
        group = self._manager.group(gid)
        if group is not None and group.leader_id is not None:
            return group.leader_id
        hint = self._hints.get(gid)
        if hint is None or hint.leader == self.node_id or (group is not None and hint.term < group.term):
            return None
        return hint.leader

    def locate(self, ref: Ref) -> Located:
        placement = self.placement(ref)
        self._manager.wake(placement.group_id)  # a group not recovered since the node started: recover it now
        group = self._manager.group(placement.group_id)
        if group is None or not is_ready_leader(group):
            return Located(placement, None, self.leader_of_group(placement.group_id))
        if not group.broker.declares(destination_of(ref)):
            raise Unavailable(f"{describe(ref)} is being created; retry shortly")
        return Located(placement, Handle(group), self.node_id)

    def whereabouts(self, ref: Ref) -> tuple[Placement, str | None]:
        """The destination's placement and its leader as this node knows it (for views: never "being created")."""
        placement = self.placement(ref)
        return placement, self.leader_of_group(placement.group_id)

    def settled(self, ref: Ref) -> bool:
        """Whether the destination (declared a moment ago) has a leader that serves it, as far as this node can
        tell: its replica here has the declare and knows the leader (this node: ready), or that leader's news
        reached this node. True as well once it is deleted again: nothing more to wait for."""
        try:
            placement = self._manager.placement(ref)
        except NotFound:
            return True
        group = self._manager.group(placement.group_id)
        if group is None:
            return self._hints.get(placement.group_id) is not None
        if not group.broker.declares(destination_of(ref)) or group.leader_id is None:
            return False
        return group.leader_id != self.node_id or is_ready_leader(group)

    def locate_meta(self) -> Handle | str | None:
        """The metadata group if this node is its ready leader, else its leader's id (None: none ready known)."""
        meta = self._manager.meta
        if is_ready_leader(meta):
            return Handle(meta)
        return meta.leader_id if meta.leader_id != self.node_id else None

    def serving_replica(self, ref: Ref) -> Broker | None:
        """This node's applied state of the destination's group, if it replicates it and it is declared there."""
        try:
            group = self._manager.group(self._manager.placement(ref).group_id)
        except NotFound:
            return None
        if group is None or not group.broker.declares(destination_of(ref)):
            return None
        return group.broker
