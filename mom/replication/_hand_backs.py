"""How many of one node's groups hand leadership back to their preferred node at once.

A group's leader hands leadership back to the group's preferred node once that node has kept up for an election
timeout (`RaftCore._maybe_return_leadership`), so that leadership spreads over the nodes again after a failover.
When a node returns after a crash, that is every group it led before: 3,300 at 10,000 destinations. Each hand-back
is an election (the hard state written on three nodes, a new leader's first entry on three disks), and they came
at 100 to 250 a second, as fast as the returning node recovered its groups: the disks' queues filled, and a
publish over 1,000 queues of that cluster got 12 to 18 msg/s where the settled cluster takes 182 (issue 10).

The gate admits `limit` hand-backs at a time per node (on the leaders' side). A leader refused a slot stops
waiting for its hand-back: it may quiesce like any idle leader, and the gate remembers it. The router wakes the
remembered leaders, first refused first, as slots free up (`due`); each then hands back once its preferred node
has kept up for another election timeout. A slot is given back when the leader steps down (the hand-back worked,
or anything else) or its transfer times out; one held longer than `expire_ticks` is taken back.

Leadership returns more slowly (minutes for thousands of groups, as Kafka's leader rebalance also takes its
time), and an idle group's leadership costs nothing anyway. Timers only: which node leads, never what commits.
"""

from __future__ import annotations

from collections import OrderedDict

HAND_BACKS_AT_ONCE = 8
"""Per node. A hand-back takes 0.1 to 1 s under a return's load: 10 to 50 a second per survivor in the bench at
10,000 destinations, against 100 to 250 a second over the cluster without the gate."""


class HandBackGate:
    """The node's hand-back slots, and the leaders refused one in the order they asked (see the module)."""

    def __init__(self, *, limit: int = HAND_BACKS_AT_ONCE, expire_ticks: int = 400) -> None:
        self.limit = limit
        self._expire = expire_ticks
        self._now = 0
        self._holders: dict[str, int] = {}
        """Group -> the tick its hand-back was admitted."""
        self._refused: OrderedDict[str, None] = OrderedDict()
        """Groups refused a slot, in the order they asked: woken by `due` as slots free up."""
        self.admitted = 0

    @property
    def handing_back(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        return len(self._refused)

    def tick(self) -> None:
        self._now += 1
        if self._expire and self._holders:
            for group in [g for g, since in self._holders.items() if self._now - since > self._expire]:
                del self._holders[group]

    def admit(self, group: str) -> bool:
        """May `group`'s leader hand back now? True also while it holds a slot (a transfer under way)."""
        if group in self._holders:
            return True
        if len(self._holders) >= self.limit:
            self._refused[group] = None
            return False
        self._refused.pop(group, None)
        self._holders[group] = self._now
        self.admitted += 1
        return True

    def done(self, group: str) -> None:
        """`group`'s hand-back ended (its leader stepped down, or the transfer timed out): the slot is free."""
        self._holders.pop(group, None)

    def forget(self, group: str) -> None:
        """`group` stopped on this node."""
        self._holders.pop(group, None)
        self._refused.pop(group, None)

    def due(self) -> list[str]:
        """The refused groups to wake now (the router asks after ticking its groups): as many as there are free
        slots, first refused first. Each asks again at its next tick, before the next call sees the slots free
        (one that no longer needs to hand back leaves its slot to the next call's); one refused again, because
        others took the slots meanwhile, is remembered again."""
        woken: list[str] = []
        for _ in range(self.limit - len(self._holders)):
            if not self._refused:
                break
            woken.append(self._refused.popitem(last=False)[0])
        return woken
