"""Failover of many quiet groups at once on nodes of bounded CPU: the 3,000-destination storm of issue 10.

At 3,000 destinations on 3 real nodes, a kill -9 of node 3 left every one of the ~1,000 groups it led without a
leader for minutes (980 candidates on node 1 two minutes after the kill, not one of 200 sampled queues writable),
while at 1,000 destinations the same step failed over in 6.5 s. The disk model of `test_failover_storm.py`
passed: what it lacked is the event loop. Every message and every Ready is Python work on one loop per node, so
when a round of a thousand elections outlasts the election timeout, every candidate times out before its answers
are handled, and each new round queues as much work again. `cpu_cluster.CpuCluster` bounds the work a node does
per tick; with 1,500 groups and 60 units a tick, the old behaviour (every group campaigning when the liveness
says so, every quiet leader of a group with a replica on the dead node waking, every awake group's driver woken
at every tick) left all 1,500 groups unsettled 1,200 ticks after the kill, and the survivors' backlogs grew
without bound (over 100,000 messages each).

What fixed it, all timers (never safety): the `CampaignGate` admits only as many campaigns at a time as a node
completes (AIMD on elections that end or time out); a quiesced leader whose live voters are still a majority
stays quiet when a follower's node dies; of two replicas whose pre-votes cross, one refuses the other's
(`RaftCore._outranks`), so they do not split the vote; and a tick wakes a group's driver only when it changed
something.
"""

from __future__ import annotations

import pytest

from tests.sim.cpu_cluster import CpuCluster, quiet_cpu_cluster

FAILOVER_BOUND = 800
"""Ticks (40 s at 50 ms a tick) in which every group must have a settled leader again."""


@pytest.mark.parametrize("seed", range(2))
def test_a_thousand_and_a_half_groups_fail_over_on_starved_nodes(seed: int) -> None:
    """1,500 groups (500 led by the node killed), nodes handling 60 messages or Readies per tick, disks making 40
    Readies durable per tick: every group has a settled leader within the bound, no live node is declared dead,
    and the survivors' backlogs drain."""
    cluster = quiet_cpu_cluster(seed, 1500, cpu=60, disk_rate=40)
    cluster.kill("n3")
    took = cluster.run_until(lambda: all(cluster.settled(gid) for gid in cluster.group_ids), FAILOVER_BOUND)
    leaderless = sum(not cluster.settled(gid) for gid in cluster.group_ids)
    assert took is not None, f"{leaderless} of 1500 groups have no settled leader {FAILOVER_BOUND} ticks after"
    assert all(peer == "n3" for _, _, peer in cluster.declared_dead), cluster.declared_dead
    gate = cluster.gates["n1"]
    assert gate is not None
    cluster.run_until(lambda: not any(cluster.inbox.values()) and gate.campaigning == 0, 100)
    assert not any(cluster.inbox.values()) and gate.campaigning == 0, "the backlog drains, every slot is given back"
    print(f"seed {seed}: 1500 groups settled {took} ticks after the kill; n1's gate admitted {gate.admitted}")


def test_a_few_groups_on_starved_nodes_still_fail_over_within_an_election_timeout_or_two() -> None:
    """The gate is no excuse to be slow when there is little to do: 30 groups (10 lost) take about an election
    timeout after the liveness declared the node dead (10 ticks), plus the round trips."""
    cluster = quiet_cpu_cluster(0, 30, cpu=60, disk_rate=40)
    cluster.kill("n3")
    took = cluster.run_until(lambda: all(cluster.settled(gid) for gid in cluster.group_ids), FAILOVER_BOUND)
    assert took is not None and took <= 50, took


RETURN_BOUND = 2000
"""Ticks (100 s at 50 ms a tick) after the restart watched (and in which the returning node should lead half its
share again)."""
BACKLOG_BOUND = 6000
"""Messages queued on a node at most after the return: 100 ticks of its work (5 s) that any request through it
waits behind. Waking every leader of a group with a replica on the returning node at once queued over 10,000
(8 s) on all three nodes, and every one of the 900 groups was without a leader for 600 ticks."""


def _return(seed: int, ticks: int = RETURN_BOUND) -> tuple[CpuCluster, int, list[tuple[int, int, int]]]:
    """900 groups with preferred leaders n1, n2, n3 in turn on the starved nodes of the failover test: n3 is
    killed, the survivors take over its 300 groups and quiesce, then n3 starts again on its disk (issue 10: at
    10,000 destinations a publish through the returning node was not served within 120 s). Returns the cluster,
    the tick of the return, and every 50 ticks (the largest backlog, groups without a live leader, groups n3
    leads)."""
    cluster = quiet_cpu_cluster(seed, 900, cpu=60, disk_rate=40, preferred=True)
    cluster.kill("n3")
    took = cluster.run_until(lambda: all(cluster.settled(gid) for gid in cluster.group_ids), FAILOVER_BOUND)
    assert took is not None
    quiet = cluster.run_until(lambda: all(c.quiesced for n in ("n1", "n2") for c in cluster.cores[n].values()), 400)
    assert quiet is not None
    cluster.restart("n3")
    returned = cluster.now
    share = sum(cluster.preferred[gid] == "n3" for gid in cluster.group_ids)
    samples: list[tuple[int, int, int]] = []
    for _ in range(ticks // 50):
        cluster.run_until(lambda: False, 50)
        backlog = max(len(q) for q in cluster.inbox.values())
        leaderless = sum(
            not any(cluster.core(n, gid).role == "leader" for n in cluster.live) for gid in cluster.group_ids
        )
        led = sum(cluster.core("n3", gid).role == "leader" for gid in cluster.group_ids)
        samples.append((backlog, leaderless, led))
        if led >= share // 2:
            break
    return cluster, returned, samples


SWAMPED_WITHIN = 400
"""Ticks after the return in which waking every leader at once had swamped every node (10,852 queued at the first
sample, 50 ticks in)."""


def test_a_killed_node_returns_without_swamping_the_cluster() -> None:
    """While n3 returns, no node's backlog outgrows `BACKLOG_BOUND` (when every leader woke on the return: 10,900
    at once, and none of the 900 groups had a leader for 600 ticks) and no live node is declared dead. Its groups
    find their leaders through its `CampaignGate` (a quiet leader it had acknowledged everything of stays quiet
    until it asks). Not good enough yet: 150 to 330 of the 900 groups are without a leader at a time (the xfail
    test below)."""
    cluster, returned, samples = _return(0, SWAMPED_WITHIN)
    print(f"(backlog, leaderless, n3 leads) every 50 ticks: {samples}")
    assert max(backlog for backlog, _, _ in samples) <= BACKLOG_BOUND, samples
    wrongly = [(tick, node, peer) for tick, node, peer in cluster.declared_dead if tick >= returned and peer != "n3"]
    assert wrongly == [], f"live nodes declared dead after the return: {wrongly}"


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="issue 10: leadership does not return to a restarted node within the bound")
def test_a_killed_node_leads_half_its_share_again_within_the_bound() -> None:
    """Known gap (docs/cluster.md, "A node's return"): the survivors' leaders that catch n3 up and the
    hand-backs to it queue more messages than the nodes handle within an election timeout, so CheckQuorum steps
    leaders down and a third of the groups are without a leader at a time (n3 leads half its 300 groups after
    about 1,400 ticks). Passing this means the return is fixed."""
    _, _, samples = _return(0)
    assert samples[-1][2] >= 150 and max(leaderless for _, leaderless, _ in samples) <= 90, samples
