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


def failover_rank(group: str, voters: Iterable[str], dead: str, node_id: str) -> int:
    """This node's place (0 first) among the group's voters other than `dead` in standing for election after
    `dead`'s node was declared dead. Every node computes the same order from the same names alone."""
    ranked = sorted((v for v in voters if v != dead), key=lambda v: (zlib.crc32(f"{group}/{v}".encode()), v))
    return ranked.index(node_id) if node_id in ranked else 0
