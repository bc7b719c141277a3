"""Who leads the groups this node does not replicate: hints, learned from the leaders themselves.

A node routes every request about a destination to the destination's leader. For the groups it replicates it
knows the leader from Raft; for the others (most of them, once a cluster has more nodes than a destination has
replicas) it keeps the last leader it heard of, with that leader's term. It hears of them two ways:

- A node that becomes the ready leader of a group and serves its destination tells every other node once
  (`LeaderNews`: one small message per node per change, batched with the Raft traffic into one frame per
  peer; nothing is sent while leadership stays put, however many destinations there are).
- Every answer a node relays from another node names the group's leader and term (the `X-Mom-Leader` header),
  so a node that missed the news (it was down, or restarted) learns with its first forwarded request.

A hint is only a routing guess: the node it names serves a request only if it is the group's ready leader at that
moment, and otherwise forwards it to the leader it knows or answers 503. A stale hint therefore costs one hop or
one retry and never a wrong answer, which is what keeps hints safe under partitions. A hint of a higher term
replaces a lower one, never the other way round; a newer incarnation of a destination (deleted and declared
again: a new group id) replaces the older one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hint:
    group_id: str
    leader: str
    term: int


def _base(group_id: str) -> tuple[str, int]:
    """`q.orders@1700000000000` -> ("q.orders", 1700000000000): the destination and its declare time."""
    base, _, created = group_id.rpartition("@")
    if not base:
        return group_id, 0
    return base, int(created) if created.isdigit() else 0


class LeaderHints:
    """The last known leader of each destination's group, one entry per destination (so at most the catalog's
    size), forgotten when the destination is deleted."""

    def __init__(self) -> None:
        self._hints: dict[str, Hint] = {}

    def __len__(self) -> int:
        return len(self._hints)

    def note(self, group_id: str, leader: str, term: int) -> bool:
        """Record that `leader` leads `group_id` in `term`, unless something newer is known; True if recorded."""
        base, created = _base(group_id)
        known = self._hints.get(base)
        if known is not None:
            known_created = _base(known.group_id)[1]
            if created < known_created or (created == known_created and term < known.term):
                return False
        self._hints[base] = Hint(group_id, leader, term)
        return True

    def get(self, group_id: str) -> Hint | None:
        hint = self._hints.get(_base(group_id)[0])
        return hint if hint is not None and hint.group_id == group_id else None

    def forget(self, base: str) -> None:
        """The destination (`q.NAME` or `t.NAME`) was deleted: its hint goes with it."""
        self._hints.pop(base, None)
