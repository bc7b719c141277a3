"""The election timing rules that keep many groups failing over at once from a vote storm (`_elections`)."""

from __future__ import annotations

import random

from mom.replication._elections import MAX_BACKOFF, election_timeout, failover_rank
from mom.replication.messages import AppendEntries, LogEntry, RequestVote, VoteResponse
from mom.replication.raft import HardState, PersistedState, RaftCore, Snapshot
from tests.unit.test_raft_core import core, flush


def test_failover_order_is_the_same_on_every_node_and_spreads_the_groups() -> None:
    voters = ("a", "b", "c")
    firsts = []
    for i in range(300):
        group = f"q{i}"
        ranks = {node: failover_rank(group, voters, "c", node) for node in ("a", "b")}
        assert sorted(ranks.values()) == [0, 1], "exactly one live voter goes first"
        firsts.append(min(ranks, key=ranks.__getitem__))
    assert 100 < firsts.count("a") < 200, "the dead node's groups spread over the survivors"


def test_election_timeouts_back_off_after_failures_and_stay_bounded() -> None:
    rng = random.Random(1)
    assert {election_timeout(rng, 10, 0) for _ in range(500)} == set(range(10, 20))
    backed_off = [election_timeout(rng, 10, 2) for _ in range(500)]
    assert min(backed_off) >= 10 and max(backed_off) > 30 and max(backed_off) < 80
    assert max(election_timeout(rng, 10, 50) for _ in range(500)) < 10 << (MAX_BACKOFF + 1)


def quiet_follower(node: str) -> RaftCore:
    """`node` follows c in a group that c quiesced."""
    persisted = PersistedState(HardState(1, "c", 1, member=True), Snapshot(), [LogEntry(1, b"1")])
    raft = RaftCore(node, ("a", "b", "c"), persisted=persisted, rng=random.Random(0), group="g", quiesce=True)
    raft.step(AppendEntries("g", 1, "c", node, 1, 1, [], 1, 0, True))
    flush(raft)
    assert raft.quiesced and raft.leader_id == "c"
    return raft


def test_only_the_first_in_failover_order_campaigns_at_once_when_the_leader_dies() -> None:
    first, second = sorted(("a", "b"), key=lambda n: failover_rank("g", ("a", "b", "c"), "c", n))
    rafts = {node: quiet_follower(node) for node in (first, second)}
    for raft in rafts.values():
        raft.peer_down("c")
    for _ in range(14):
        for raft in rafts.values():
            raft.tick()
    assert rafts[first].role == "candidate"
    assert rafts[second].role == "follower"
    for _ in range(12):
        rafts[second].tick()
    assert rafts[second].role == "candidate"  # the next in line stands too if the first never wins


def test_a_candidate_times_out_only_once_its_vote_is_durable() -> None:
    raft = core("a", term=1, log=[1], commit=1)
    for _ in range(20):
        raft.tick()
    flush(raft)
    raft.step(VoteResponse("g", 2, "b", "a", True, True))  # the pre-vote won: a real campaign at term 2
    assert raft.role == "candidate" and raft.term == 2
    for _ in range(100):  # the disk has not made the vote durable yet: no request left, no timeout
        raft.tick()
    assert raft.term == 2
    ready = raft.ready()
    assert ready is not None and any(isinstance(m, RequestVote) and not m.pre_vote for m in ready.messages)
    raft.advance(ready)
    for _ in range(20):  # now it runs: a timeout (of at most 19 ticks) brings a pre-vote for term 3
        raft.tick()
    ready = raft.ready()
    assert ready is not None and any(isinstance(m, RequestVote) and m.pre_vote and m.term == 3 for m in ready.messages)
