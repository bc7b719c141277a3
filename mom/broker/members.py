"""The cluster's members and where each destination's replicas live: state of the metadata group's catalog.

Membership is replicated like accounts, so every node agrees on who is in the cluster and where to find it. The
first member list comes from `[[cluster.nodes]]` (`SeedMembers`, written once by the metadata leader); add, drain
and remove change it afterwards. Placement stays rendezvous hashing over the *seed* ids for every destination with
no explicit replica set, so an unchanged cluster (and data written before membership was state) keeps every
replica where it was; a destination declared after a change, or moved by the rebalancer, gets an explicit replica
set here. Moves in progress are state too: a leader that restarts in the middle of one finds the intent here.

Pure, like the rest of the broker: checks first, mutates after, the same on every replica.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from msgspec import Struct, field

from mom.broker.commands import (
    AddNode,
    DrainNode,
    FinishMove,
    MemberRecord,
    MembersChanged,
    Move,
    RemoveNode,
    SeedMembers,
    StartMove,
)
from mom.errors import Conflict, InvalidInput, NotFound, Unavailable

ACTIVE, DRAINING = "active", "draining"
MEMBER_STATES = (ACTIVE, DRAINING)

Placed = tuple[str, int | None]
"""A destination's group base id (`q.name`, `t.name`) and its own replication factor (None: the cluster's)."""


def _weight(node: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rendezvous(group: str, nodes: Sequence[str], replication_factor: int) -> list[str]:
    """The ordered replica set of `group` by highest-random-weight hashing: preferred leader first."""
    if not 1 <= replication_factor <= len(nodes):
        raise ValueError(f"replication factor {replication_factor} needs 1 to {len(nodes)} nodes")
    return sorted(nodes, key=lambda node: (-_weight(node, group), node))[:replication_factor]


def moved(replicas: Sequence[str], move: Move) -> list[str]:
    """The replica set once `move` is done: the target takes the source's place (or joins last)."""
    if move.source is None:
        return [*replicas, move.target]
    return [move.target if node == move.source else node for node in replicas]


class MembersState(Struct, array_like=True):
    members: list[MemberRecord] = field(default_factory=list)
    seed: list[str] = field(default_factory=list)
    replication_factor: int = 0
    """The cluster's default replication factor, recorded with the seed (0: not seeded yet)."""
    replicas: dict[str, list[str]] = field(default_factory=dict)
    """Explicit replica sets by group base id; a group absent here is placed by rendezvous over `seed`."""
    moves: list[Move] = field(default_factory=list)


class Members:
    def __init__(self, state: MembersState) -> None:
        self._members = {m.id: m for m in state.members}
        self._seed = list(state.seed)
        self._factor = state.replication_factor
        self._replicas = {group: list(nodes) for group, nodes in state.replicas.items()}
        self._moves = {move.group: move for move in state.moves}

    # -- queries ---------------------------------------------------------------------------------------------

    @property
    def seeded(self) -> bool:
        return bool(self._seed)

    @property
    def seed_ids(self) -> list[str]:
        """The recorded seed members' ids, sorted (empty before the seed is recorded)."""
        return list(self._seed)

    def members(self) -> list[MemberRecord]:
        """Every member, in id order."""
        return [self._members[node] for node in sorted(self._members)]

    def member(self, node_id: str) -> MemberRecord | None:
        return self._members.get(node_id)

    def moves(self) -> list[Move]:
        return [self._moves[group] for group in sorted(self._moves)]

    def move_of(self, group: str) -> Move | None:
        return self._moves.get(group)

    def explicit(self, group: str) -> list[str] | None:
        nodes = self._replicas.get(group)
        return list(nodes) if nodes is not None else None

    def replicas(self, group: str, factor: int | None, seed: Sequence[str] | None = None) -> list[str]:
        """The ordered replica set of `group`: its explicit one, else rendezvous over the seed ids (or `seed`
        before the catalog recorded any)."""
        explicit = self._replicas.get(group)
        if explicit is not None:
            return list(explicit)
        nodes = self._seed or list(seed or ())
        wanted = factor or self._factor or len(nodes)
        return rendezvous(group, nodes, min(wanted, len(nodes))) if nodes else []

    def state(self) -> MembersState:
        return MembersState(
            self.members(),
            list(self._seed),
            self._factor,
            {group: list(nodes) for group, nodes in sorted(self._replicas.items())},
            self.moves(),
        )

    # -- changes ---------------------------------------------------------------------------------------------

    def seed(self, command: SeedMembers) -> MembersChanged:
        if self._seed:
            return MembersChanged(False)
        ids = [node.id for node in command.nodes]
        if not ids or len(set(ids)) != len(ids):
            raise InvalidInput(f"a cluster's seed members must be distinct and at least one, not {ids}")
        self._members = {node.id: node for node in command.nodes}
        self._seed = sorted(ids)
        self._factor = command.replication_factor
        return MembersChanged(True)

    def add(self, command: AddNode) -> MembersChanged:
        node = command.node
        if not self._seed:  # the seed, when recorded, replaces the member list: an earlier add would be lost
            raise Unavailable("the cluster's members are not recorded yet (the cluster is starting); retry shortly")
        if node.state != ACTIVE:
            raise InvalidInput(f"a node joins active, not {node.state!r}")
        known = self._members.get(node.id)
        if known is not None:
            if known == node:
                return MembersChanged(False)
            raise Conflict(f"node {node.id!r} is already a member (REST {known.rest}, replication {known.replication})")
        for other in self._members.values():
            if node.rest == other.rest or node.replication == other.replication:
                raise Conflict(f"node {other.id!r} already uses the address {node.rest} or {node.replication}")
        self._members[node.id] = node
        return MembersChanged(True)

    def drain(self, command: DrainNode) -> MembersChanged:
        node = self._known(command.node_id)
        if node.state == DRAINING:
            return MembersChanged(False)
        if len(self._active()) - 1 < self._factor:
            raise Conflict(
                f"draining {node.id!r} would leave {len(self._active()) - 1} active nodes, fewer than the "
                f"replication factor {self._factor}: add a node first"
            )
        self._members[node.id] = MemberRecord(node.id, node.rest, node.replication, DRAINING)
        return MembersChanged(True)

    def remove(self, command: RemoveNode, destinations: Iterable[Placed]) -> MembersChanged:
        node = self._known(command.node_id)
        if len(self._members) - 1 < max(self._factor, 1):
            raise Conflict(
                f"removing {node.id!r} would leave {len(self._members) - 1} nodes, fewer than the replication "
                f"factor {self._factor}"
            )
        held = [group for group, factor in destinations if node.id in self.replicas(group, factor)]
        moving = [move.group for move in self._moves.values() if node.id in (move.source, move.target)]
        if held or moving:
            shown = ", ".join(sorted({*held, *moving})[:5])
            raise Conflict(
                f"node {node.id!r} still holds replicas of {len(set(held) | set(moving))} destinations ({shown}): "
                f"drain it first (mom cluster drain {node.id}) and wait until its replicas have moved"
            )
        del self._members[node.id]
        return MembersChanged(True)

    def start_move(self, command: StartMove, factor: int | None) -> MembersChanged:
        move = command.move
        if move.group in self._moves:
            raise Conflict(f"group {move.group} is already moving a replica ({self._moves[move.group]})")
        target = self._members.get(move.target)
        if target is None or target.state != ACTIVE:
            raise Conflict(f"node {move.target!r} is not an active member: it cannot take a replica")
        current = self.replicas(move.group, factor)
        if move.target in current or (move.source is not None and move.source not in current):
            raise Conflict(f"move {move} does not fit the replica set {current} of {move.group}")
        if not self._seed:
            raise Conflict("the cluster's members are not recorded yet")
        self._replicas[move.group] = current  # explicit from now on: the move's outcome is recorded over it
        self._moves[move.group] = move
        return MembersChanged(True)

    def finish_move(self, command: FinishMove) -> MembersChanged:
        move = self._moves.get(command.move.group)
        if move != command.move:
            return MembersChanged(False)
        if not command.replicas or len(set(command.replicas)) != len(command.replicas):
            raise InvalidInput(f"a replica set must be distinct nodes, not {command.replicas}")
        current = self._replicas.get(move.group)  # explicit since the move started
        if current is not None and command.replicas not in (current, moved(current, move)):
            # Every node stops and erases its replica of a group not placed on it: a set that is neither
            # outcome would drop replicas the group really has.
            raise InvalidInput(
                f"the replicas of {move.group} after the move {move} are {moved(current, move)} (done) or "
                f"{current} (abandoned), not {command.replicas}"
            )
        del self._moves[move.group]
        self._replicas[move.group] = list(command.replicas)
        return MembersChanged(True)

    def declared(self, group: str, factor: int | None) -> None:
        """A destination was declared: after a membership change its replicas are chosen among the active
        members now and recorded (rendezvous over the seed would place it on nodes that may be gone)."""
        if not self._seed:
            return
        active = self._active()
        if sorted(active) == self._seed:
            self._replicas.pop(group, None)
            return
        wanted = min(factor or self._factor or len(active), len(active))
        self._replicas[group] = rendezvous(group, active, wanted)

    def deleted(self, group: str) -> None:
        self._replicas.pop(group, None)
        self._moves.pop(group, None)

    def _active(self) -> list[str]:
        return sorted(node.id for node in self._members.values() if node.state == ACTIVE)

    def _known(self, node_id: str) -> MemberRecord:
        node = self._members.get(node_id)
        if node is None:
            raise NotFound(f"node {node_id!r} is not a member of this cluster ({', '.join(sorted(self._members))})")
        return node
