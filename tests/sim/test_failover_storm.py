"""Failover of many quiet groups at once, on disks of bounded throughput: the election storm of issue 10.

With 1,200 to 1,500 destinations on 3 nodes, killing one node left the groups it led without a leader for good
(`503 no leader`), while at 12 and 200 the same steps failed over in a second. The cause is in the core: when the
node liveness declares a node dead, the followers of every group it led (hundreds per surviving node) campaign
within the same few ticks. Every real vote costs an fsync of the hard state on the candidate and then on the
voter, and a node's disk does a bounded number of them per second, so a round of voting takes as long as the
node's whole queue of hard-state writes. Once that exceeds an election timeout, both surviving followers of a
group time out and stand again before either hears the other (a split vote, 1 of 2 live voters each), and every
new round queues as many writes again: a livelock that never ends on its own.

The model here is the real `RaftCore` with the real driver's contract, many groups per node, a network that
delivers in one tick, and per node a disk that makes at most `disk_rate` Readies durable per tick (FIFO, each
group one Ready at a time, as `RaftGroup` does). A Ready that changes nothing durable is done at once.
"""

from __future__ import annotations

import random
from collections import deque

import pytest

from mom.replication.messages import LogEntry, Message
from mom.replication.raft import HardState, PersistedState, RaftCore, Ready
from tests.sim.cpu_cluster import needs_disk

NODES = ("n1", "n2", "n3")
FAILOVER_BOUND = 600
"""Ticks (30 s at 50 ms a tick) in which every group of the killed node must have a leader again."""


class ManyGroups:
    def __init__(self, seed: int, groups: int, *, disk_rate: int) -> None:
        self.rng = random.Random(seed)
        self.disk_rate = disk_rate
        self.live = set(NODES)
        self.group_ids = [f"g{i}" for i in range(groups)]
        # Every group starts as an existing one (one committed entry, term 1), led by n3 as its preferred leader.
        persisted = PersistedState(HardState(1, None, 1, False, True), entries=[LogEntry(1, b"")])
        self.cores: dict[tuple[str, str], RaftCore] = {
            (node, gid): RaftCore(
                node,
                NODES,
                persisted=persisted,
                rng=random.Random(self.rng.getrandbits(32)),
                group=gid,
                quiesce=True,
            )
            for node in NODES
            for gid in self.group_ids
        }
        self.disks: dict[str, deque[tuple[str, Ready]]] = {node: deque() for node in NODES}
        self.busy: set[tuple[str, str]] = set()
        self.wire: list[Message] = []
        self.lasting: dict[tuple[str, str], HardState] = {}

    def core(self, node: str, gid: str) -> RaftCore:
        return self.cores[(node, gid)]

    def step(self) -> None:
        arriving, self.wire = self.wire, []
        for m in arriving:
            if m.receiver in self.live:
                self.core(m.receiver, m.group).step(m)
        for (node, _), core in self.cores.items():
            if node in self.live:
                core.tick()
        for node in self.live:
            disk = self.disks[node]
            for _ in range(min(self.disk_rate, len(disk))):
                gid, ready = disk.popleft()
                self._done(node, gid, ready)
        for (node, gid), core in self.cores.items():
            if node not in self.live or (node, gid) in self.busy:
                continue
            while (ready := core.ready()) is not None:
                if self._needs_disk(node, gid, ready):
                    self.busy.add((node, gid))
                    self.disks[node].append((gid, ready))
                    break
                self._done(node, gid, ready)

    def _needs_disk(self, node: str, gid: str, ready: Ready) -> bool:
        return needs_disk(self.lasting, (node, gid), ready)

    def _done(self, node: str, gid: str, ready: Ready) -> None:
        self.busy.discard((node, gid))
        self.wire.extend(ready.messages)
        self.core(node, gid).advance(ready)

    def run_until(self, predicate: object, bound: int) -> int | None:
        for tick in range(bound):
            if predicate():  # type: ignore[operator]
                return tick
            self.step()
        return None

    def led_by(self, node: str) -> list[str]:
        return [gid for gid in self.group_ids if self.core(node, gid).role == "leader"]

    def settled(self, gid: str) -> bool:
        """A live leader that every live replica follows."""
        leaders = [n for n in self.live if self.core(n, gid).role == "leader"]
        return len(leaders) == 1 and all(self.core(n, gid).leader_id == leaders[0] for n in self.live)

    def kill(self, node: str) -> None:
        """SIGKILL: the node is gone; the liveness of the others declares it dead (to every group, at once)."""
        self.live.discard(node)
        self.disks[node].clear()
        for (other, _), core in self.cores.items():
            if other in self.live:
                core.peer_down(node)


def quiet_cluster(seed: int, groups: int, disk_rate: int) -> ManyGroups:
    """Every group led by n3 and quiesced (what an idle cluster of many destinations looks like)."""
    cluster = ManyGroups(seed, groups, disk_rate=10_000)
    for gid in cluster.group_ids:
        cluster.core("n3", gid).stand_after(1)
    quiet = cluster.run_until(
        lambda: all(c.quiesced for c in cluster.cores.values()) and len(cluster.led_by("n3")) == groups, 400
    )
    assert quiet is not None, "the groups did not elect n3 and quiesce"
    cluster.disk_rate = disk_rate
    return cluster


@pytest.mark.parametrize("seed", range(3))
def test_many_quiet_groups_of_a_killed_node_elect_leaders_on_a_slow_disk(seed: int) -> None:
    """1,000 groups per node with a disk doing 40 hard-state writes per tick (800/s at 50 ms a tick): every one
    of the killed node's groups has a settled leader again within the bound."""
    groups = 1000
    cluster = quiet_cluster(seed, groups, disk_rate=40)
    cluster.kill("n3")
    took = cluster.run_until(lambda: all(cluster.settled(gid) for gid in cluster.group_ids), FAILOVER_BOUND)
    leaderless = sum(not cluster.settled(gid) for gid in cluster.group_ids)
    assert took is not None, f"{leaderless} of {groups} groups have no settled leader {FAILOVER_BOUND} ticks after"
    print(f"seed {seed}: {groups} groups failed over in {took} ticks")


def test_a_few_quiet_groups_fail_over_within_an_election_timeout_or_two() -> None:
    """The bound above is no excuse to be slow when there is little to do: 20 groups take about an election
    timeout (10 to 20 ticks), plus the round trips."""
    cluster = quiet_cluster(0, 20, disk_rate=40)
    cluster.kill("n3")
    took = cluster.run_until(lambda: all(cluster.settled(gid) for gid in cluster.group_ids), FAILOVER_BOUND)
    assert took is not None and took <= 40, took
