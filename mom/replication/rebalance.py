"""The rebalancer's planner: which replicas to move next, bounded, from the member list and the replica sets.

Pure and deterministic (the metadata leader runs it; a new leader plans the same from the same catalog). Two kinds
of moves, in this order:

1. off a node that is not active (draining, or no longer a member): every replica it holds goes to the active
   node holding fewest replicas (ties by id), taking its place in the ordered set, so a preferred leader that
   leaves hands its preference to its replacement;
2. once the members differ from the seed (a node was added): while the most loaded active node holds more than
   one replica more than the least loaded, one of its replicas (a group the least loaded does not hold;
   preferred-leader replicas first, so leadership spreads too) moves over.

At most `max_in_flight` moves run at once in the whole cluster (those already recorded count), and a group never
has two at once: moving a replica copies the group's whole log to the target, which is what the throttle bounds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from mom.broker.commands import MemberRecord, Move
from mom.broker.members import ACTIVE, moved


def plan(
    placements: Mapping[str, Sequence[str]],
    members: Sequence[MemberRecord],
    in_flight: Sequence[Move],
    max_in_flight: int,
    *,
    balance: bool = True,
) -> list[Move]:
    """The moves to start now. `placements` maps each group base id to its current ordered replica set.

    `balance` false plans only the moves off inactive nodes: rendezvous hashing over an unchanged cluster of more
    nodes than replicas is not perfectly even, and such a cluster must not start moving replicas by itself."""
    budget = max_in_flight - len(in_flight)
    active = sorted(m.id for m in members if m.state == ACTIVE)
    if budget <= 0 or not active:
        return []
    busy = {move.group for move in in_flight}
    current = {group: list(nodes) for group, nodes in placements.items()}
    for move in in_flight:  # count in-flight moves as done: their targets are loaded already
        if move.group in current:
            current[move.group] = moved(current[move.group], move)
    load = Counter({node: 0 for node in active})
    for nodes in current.values():
        load.update(node for node in nodes if node in load)
    moves: list[Move] = []

    def take(move: Move) -> None:
        moves.append(move)
        busy.add(move.group)
        current[move.group] = moved(current[move.group], move)
        load[move.target] += 1
        if move.source is not None and move.source in load:
            load[move.source] -= 1

    for group in sorted(current):
        if len(moves) >= budget:
            return moves
        if group in busy:
            continue
        nodes = current[group]
        leaving = next((node for node in nodes if node not in load), None)
        if leaving is None:
            continue
        candidates = [node for node in active if node not in nodes]
        if candidates:
            take(Move(group, leaving, min(candidates, key=lambda node: (load[node], node))))

    while balance and len(moves) < budget:
        most = max(active, key=lambda node: (load[node], node))
        least = min(active, key=lambda node: (load[node], node))
        if load[most] - load[least] <= 1:
            break
        choices = [g for g in sorted(current) if g not in busy and most in current[g] and least not in current[g]]
        if not choices:
            break
        leaders = [g for g in choices if current[g][0] == most]
        take(Move((leaders or choices)[0], most, least))
    return moves
