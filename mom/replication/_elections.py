"""When a Raft follower stands for election: what keeps many groups failing over at once from a vote storm.

A node that dies leaves hundreds of groups leaderless at the same moment on every surviving node (the node
liveness tells all of them at once). Each real vote costs an fsync of the hard state on the candidate and then on
the voter, and a disk does only so many a second: a round of voting then lasts as long as the node's whole queue
of hard-state writes. Plain Raft timers assume a round trip far below the election timeout; past it, both live
followers of a group stand in every round (a split vote) and every round queues as many writes again, so no
group ever elects a leader (issue 10, reproduced in `tests/sim/test_failover_storm.py`). Three rules stop that:

- One follower goes first (`failover_rank`): of the group's live voters, a ranking by a hash of the group and the
  node (so the groups of a dead node spread evenly over the survivors) picks the one that campaigns after a
  random part of an election timeout (0 to E ticks); the next after a whole one and a half more (1.5E to 2.5E), and
  so on. Its pre-vote is refused by
  the first while that one's election runs, so it costs no write.
- A candidate's timer starts when its own vote is durable (`RaftCore.tick`): a slow disk delays the election, it
  does not make it time out before its vote requests have even left.
- A candidate whose election timed out waits longer the next time (`election_timeout`): the timeout range
  doubles with each failure in a row, up to `MAX_BACKOFF` doublings, and resets once a leader is heard from. Under
  any load, the rounds thin out until they fit in a timeout, which is what ends a storm.

A leader elected under such load hears its followers late too: a follower answers after its own Ready, which
waits behind every other group's writes on its disk. CheckQuorum therefore steps a leader down only after
`CHECK_QUORUM_PERIODS` election timeouts in a row without a quorum (one was enough before, and the leaders that
the storm elected stepped down again at once, queueing yet more votes). A leader cut off from the others keeps
refusing nothing for a timeout longer; its writes cannot commit meanwhile, and nothing reads from a lease.

Timers only decide when elections happen, never what commits: none of this touches safety.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable

CHECK_QUORUM_PERIODS = 2
MAX_BACKOFF = 3
"""At most 2**3 = 8 times the base range: 0.5 to 8 s with the default 10 ticks of 50 ms."""


def election_timeout(rng: random.Random, election_ticks: int, failures: int) -> int:
    """A random election timeout: [E, 2E) ticks, its upper bound doubled for each election that failed in a row."""
    if failures <= 0:
        return rng.randrange(election_ticks, 2 * election_ticks)
    return rng.randrange(election_ticks, election_ticks << (min(failures, MAX_BACKOFF) + 1))


def stands_before(group: str, node: str, other: str) -> bool:
    """Whether `node` comes before `other` in `group`'s order of candidates (the same on every node; spread over
    the nodes by a hash of the group's name, as `failover_rank` orders them)."""
    return (zlib.crc32(f"{group}/{node}".encode()), node) < (zlib.crc32(f"{group}/{other}".encode()), other)


def failover_rank(group: str, voters: Iterable[str], dead: str, node_id: str) -> int:
    """This node's place (0 first) among the group's voters other than `dead` in standing for election after
    `dead`'s node was declared dead. Every node computes the same order from the same names alone."""
    ranked = sorted((v for v in voters if v != dead), key=lambda v: (zlib.crc32(f"{group}/{v}".encode()), v))
    return ranked.index(node_id) if node_id in ranked else 0


ASK_EVERY_TICKS = 10
"""A group refused a campaign slot asks again after this many ticks (the router does not tick it in between):
at 10,000 destinations ~3,000 groups waiting for a slot, each ticked every 50 ms to ask, were 54 % of a
survivor's CPU, which starved the elections it had admitted until they timed out."""


class CampaignGate:
    """How many of one node's groups campaign at once: what turns a storm of elections into a steady flow.

    Every election is work on the node's one event loop (the votes' messages, Readies and hard-state writes on
    the candidate and its voters). When a node dies, every group it led campaigns on the survivors at once: with
    a thousand of them the work of one round outlasts the election timeout, every candidate times out before it
    hears back, and the next round queues as much work again (issue 10: 818 of 1,000 groups still campaigning
    100 s after the kill). The gate admits at most `limit` campaigns at a time; a group whose election timer
    fired waits (a follower still, ticking) until a slot is free, and a slot is freed when its election ends
    (won, lost, or the group heard from a leader) or times out (the group then asks for a slot again, so one
    that cannot win holds none). An election that ends makes the limit grow by one (up to `high`), a round that
    timed out halves it (at least `low`; once per `cut_every` ticks, an election timeout, since the rounds admitted
    together time out together): the node admits as many as it keeps up with, and each election
    admitted finishes within its timeout, so the flow of leaders never stops. Admission is in the order the
    router ticks the waiting groups.

    Timers only: the gate decides when a group campaigns, never how votes count, so safety does not depend on
    it. A slot held longer than `expire_ticks` (a group removed mid-election) is taken back.
    """

    def __init__(
        self, *, limit: int = 32, low: int = 16, high: int = 128, expire_ticks: int = 400, cut_every: int = 10
    ) -> None:
        self._limit = float(limit)
        self._low = low
        self._high = high
        self._expire = expire_ticks
        self._cut_every = cut_every
        self._cut_at = -cut_every
        self._now = 0
        self._holders: dict[str, int] = {}
        """Group -> the tick its campaign was admitted."""
        self._asked: dict[str, int] = {}
        """Group -> the tick it last asked for a slot and was refused (it asks again every `ASK_EVERY_TICKS`)."""
        self.admitted = 0
        self.timed_out = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    @property
    def campaigning(self) -> int:
        return len(self._holders)

    @property
    def waiting(self) -> int:
        """Groups due to campaign that asked for a slot within the last `ASK_EVERY_TICKS` and got none."""
        return len(self._asked)

    def tick(self) -> None:
        self._now += 1
        if self._asked and self._now % ASK_EVERY_TICKS == 0:
            self._asked = {g: t for g, t in self._asked.items() if self._now - t <= ASK_EVERY_TICKS}
        if self._expire and self._holders:
            stale = [g for g, since in self._holders.items() if self._now - since > self._expire]
            for group in stale:
                del self._holders[group]

    def admit(self, group: str) -> bool:
        """May `group` campaign now? True also while it holds a slot already (a new round of its election)."""
        if group in self._holders:
            return True
        if len(self._holders) >= int(self._limit):
            self._asked[group] = self._now
            return False
        self._asked.pop(group, None)
        self._holders[group] = self._now
        self.admitted += 1
        return True

    def timed_out_round(self, group: str) -> None:
        """`group`'s election (or pre-vote) timed out: the node does not keep up with this many campaigns. Its
        slot is given back (it asks again, like the others waiting): a group that cannot win (its voters
        unreachable, a log too far behind) must not hold a slot that another could use."""
        if self._holders.pop(group, None) is not None:
            self.timed_out += 1
            if self._now - self._cut_at >= self._cut_every:  # once per election timeout: a burst is one signal
                self._cut_at = self._now
                self._limit = max(float(self._low), self._limit / 2)

    def release(self, group: str) -> None:
        """`group`'s campaign ended (won, refused, or a leader was heard from) before timing out: its slot goes
        to the next, and the limit grows by one."""
        if self._holders.pop(group, None) is not None:
            self._limit = min(float(self._high), self._limit + 1)

    def withdraw(self, group: str) -> None:
        """`group` no longer waits for a slot (it heard from a leader, or stopped)."""
        self._asked.pop(group, None)

    def forget(self, group: str) -> None:
        """`group` stopped on this node (deleted, moved away, the node shutting down): its slot is free."""
        self._holders.pop(group, None)
        self._asked.pop(group, None)
