"""The election timing rules that keep many groups failing over at once from a vote storm (`_elections`)."""

from __future__ import annotations

import random
from typing import Any

from mom.replication._elections import MAX_BACKOFF, CampaignGate, election_timeout, failover_rank, stands_before
from mom.replication.messages import AppendEntries, AppendResponse, JoinProbe, LogEntry, RequestVote, VoteResponse
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


def gated(node: str, group: str, gate: CampaignGate) -> RaftCore:
    persisted = PersistedState(HardState(1, None, 1, member=True), Snapshot(), [LogEntry(1, b"1")])
    return RaftCore(node, ("a", "b", "c"), persisted=persisted, rng=random.Random(0), group=group, campaign_gate=gate)


def test_the_gate_admits_a_bounded_number_of_campaigns_and_the_next_when_one_ends() -> None:
    gate = CampaignGate(limit=2, low=1)
    rafts = [gated("a", f"g{i}", gate) for i in range(4)]
    for _ in range(25):  # every election timer (10 to 19 ticks) fired
        gate.tick()
        for raft in rafts:
            raft.tick()
    assert [r.role for r in rafts].count("candidate") == 2 and gate.campaigning == 2
    assert gate.waiting == 2, "the other two wait for a slot, as followers"
    winner = next(r for r in rafts if r.role == "candidate")
    flush(winner)
    winner.step(VoteResponse(winner.group, 2, "b", "a", True, True))  # pre-vote won
    flush(winner)
    winner.step(VoteResponse(winner.group, 2, "b", "a", True, False))  # vote won
    assert winner.role == "leader" and gate.campaigning == 1
    other = next(r for r in rafts if r.role == "candidate")
    other.step(AppendEntries(other.group, 5, "b", "a", 1, 1, [], 1, 0, False))  # it hears of a leader: ends
    assert other.role == "follower" and gate.campaigning == 0
    waiting = [r for r in rafts if r not in (winner, other)]
    gate.tick()
    for raft in waiting:
        raft.tick()
    assert [r.role for r in waiting] == ["candidate", "candidate"], "the freed slots admit the ones waiting"


def test_an_election_that_times_out_halves_the_gate_and_a_stale_slot_expires() -> None:
    gate = CampaignGate(limit=8, low=2, expire_ticks=50, cut_every=1)
    raft = gated("a", "g", gate)
    for _ in range(20):
        gate.tick()
        raft.tick()
    assert raft.role == "candidate" and gate.campaigning == 1
    for _ in range(40):  # nobody answers the pre-vote: it times out, gives its slot back and gets it again
        gate.tick()
        raft.tick()
    assert gate.timed_out >= 1 and gate.limit <= 4 and gate.campaigning == 1
    gate.forget("g")
    assert gate.campaigning == 0
    gate.admit("h")
    for _ in range(51):
        gate.tick()
    assert gate.campaigning == 0, "a slot held past expire_ticks is taken back"


def test_of_two_crossing_pre_votes_only_the_first_in_order_goes_on() -> None:
    first, second = sorted(("a", "b"), key=lambda n: 0 if stands_before("g", n, "a" if n == "b" else "b") else 1)
    rafts = {n: core(n, term=1, log=[1], commit=1) for n in ("a", "b")}
    for raft in rafts.values():
        for _ in range(20):
            raft.tick()
        assert raft.role == "candidate"
        flush(raft)
    answers = {}
    for node, raft in rafts.items():
        other = "b" if node == "a" else "a"
        raft.step(RequestVote("g", 2, other, node, 1, 1, True, False))
        (answer,) = [m for m in flush(raft).messages if isinstance(m, VoteResponse)]
        answers[other] = answer.granted
    assert answers == {first: True, second: False}


def test_a_quiet_leader_stays_quiet_when_one_follower_dies_and_wakes_without_a_majority() -> None:
    raft = quiet_leader()
    raft.peer_down("c")
    assert raft.quiesced, "a and b are still a majority, caught up: nothing to heartbeat"
    raft.peer_down("b")
    assert not raft.quiesced, "no live majority: it wakes (and CheckQuorum steps it down)"


def test_has_ready_says_what_ready_would() -> None:
    raft = core("a", term=1, log=[1], commit=1)
    flush(raft) if raft.has_ready() else None
    assert not raft.has_ready() and raft.ready() is None
    raft.tick()
    assert not raft.has_ready()
    for _ in range(20):
        raft.tick()
    assert raft.has_ready() and raft.ready() is not None


def test_a_crossing_pre_vote_from_a_newer_log_is_granted_whatever_the_order() -> None:
    """The order only breaks ties: refusing a candidate with a newer log, while our own pre-vote is refused for
    our older log and the third voter is down, would leave the group without a leader for good."""
    first, second = ("a", "b") if stands_before("g", "a", "b") else ("b", "a")
    behind = core(first, term=1, log=[1], commit=1)
    for _ in range(20):
        behind.tick()
    assert behind.role == "candidate"
    flush(behind)
    behind.step(RequestVote("g", 2, second, first, 2, 1, True, False))  # `second` holds one entry more
    (answer,) = [m for m in flush(behind).messages if isinstance(m, VoteResponse)]
    assert answer.granted


def test_a_candidate_that_wins_while_waiting_for_a_slot_is_ticked_as_a_leader() -> None:
    """An election that timed out may still be won: the votes were only late (the voters' disks are busy in a
    storm). The winner waited for a slot meanwhile, and the router ticks a waiting group only every few ticks: a
    leader ticked so seldom heartbeats too late, and its followers stand for election against it."""
    gate = CampaignGate(limit=2, low=1, high=2)
    raft = gated("a", "g", gate)
    for _ in range(25):
        gate.tick()
        raft.tick()
    flush(raft)
    raft.step(VoteResponse("g", 2, "b", "a", True, True))  # the pre-vote won: a real election in term 2
    flush(raft)  # its vote is durable, the requests left
    assert raft.role == "candidate" and raft.term == 2
    assert gate.admit("other")  # another group of this node takes the other slot
    for _ in range(80):  # no answer in time: the round times out, which halves the limit: no slot is free
        gate.tick()
        raft.tick()
        if raft.waiting_for_slot:
            break
    assert raft.waiting_for_slot and raft.role == "candidate" and raft.term == 2
    raft.step(VoteResponse("g", 2, "b", "a", True, False))  # b's vote of term 2, late
    assert raft.role == "leader"
    assert not raft.waiting_for_slot, "a leader is ticked every tick"
    assert gate.waiting == 0, "it no longer counts as waiting"


def elected_leader(group: str = "g", **options: Any) -> RaftCore:
    """`a` leading term 2 of `group` (voters a, b, c), quiesce on, the other `RaftCore` options as given."""
    persisted = PersistedState(HardState(1, "a", 1, member=True), Snapshot(), [LogEntry(1, b"1")])
    raft = RaftCore(
        "a", ("a", "b", "c"), persisted=persisted, rng=random.Random(0), group=group, quiesce=True, **options
    )
    for _ in range(20):
        raft.tick()
    raft.step(VoteResponse(group, 2, "b", "a", True, True))
    flush(raft)
    raft.step(VoteResponse(group, 2, "b", "a", True, False))
    assert raft.role == "leader"
    return raft


def quiet_leader(*, greets_restarts: bool = False) -> RaftCore:
    """`a` leading term 2 of a 3-voter group, every follower caught up, quiesced."""
    raft = elected_leader(greets_restarts=greets_restarts)
    answer_for_a_while(raft, ("b", "c"))
    assert raft.quiesced
    return raft


def answer_for_a_while(raft: RaftCore, followers: tuple[str, ...]) -> None:
    """30 ticks of `followers` acknowledging whatever the leader sends them."""
    for _ in range(30):
        for m in flush(raft).messages if raft.has_ready() else []:
            if isinstance(m, AppendEntries) and m.receiver in followers:
                raft.step(AppendResponse("g", 2, m.receiver, "a", True, m.prev_index + len(m.entries), 0, 1, False))
        raft.tick()


def test_a_quiet_leader_stays_quiet_when_a_follower_returns_until_that_follower_asks() -> None:
    """Issue 10: a node returning after a crash woke every leader of a group it replicates at once (5,000 per
    survivor at 10,000 destinations), each heartbeating until the returning node answered, which it could not
    under that load. The returning replica's own pre-vote, paced by its node's gate, wakes its leader, even a
    pre-vote of the older term it restarted with."""
    raft = quiet_leader()
    raft.peer_down("c")
    raft.peer_up("c")
    assert raft.quiesced, "a and b are a live majority, c had everything: c asks when it needs the leader"
    raft.step(RequestVote("g", 1, "c", "a", 1, 1, True, False))  # c restarted in an older term
    assert not raft.quiesced and raft.role == "leader"
    raft = quiet_leader()
    raft.peer_up("c")  # news of a node that was never declared dead (a link back up): heartbeat at once
    assert not raft.quiesced


def test_a_quiet_leader_wakes_at_once_for_a_returning_follower_that_lags() -> None:
    """A follower that missed entries may be a quiesced one that never lost touch with the leader (an asymmetric
    partition: the random-fault simulation found it), which would never ask: the leader catches it up at once."""
    raft = quiet_leader()
    raft.peer_down("c")
    raft.propose([b"while c was away"])
    answer_for_a_while(raft, ("b",))
    assert raft.quiesced and raft.commit_index == raft.log.last_index
    raft.peer_up("c")
    assert not raft.quiesced


def test_a_leader_woken_for_a_lagging_follower_quiesces_without_it_once_told_its_node_restarted() -> None:
    """Issue 10: every group that failed over while a node was dead lags that node by its new term, so the node's
    return woke all their leaders (a thousand and more per survivor at 10,000 destinations), each heartbeating the
    returning node until it had recovered that group. A restarted node's groups ask for their leaders once
    recovered, so its leaders need not wait for it; what it then sends wakes them to catch it up."""
    raft = quiet_leader()
    raft.peer_down("c")
    raft.propose([b"while c was away"])
    answer_for_a_while(raft, ("b",))
    raft.peer_up("c")
    assert not raft.quiesced, "c lags: the leader wakes"
    raft.peer_restarted("c")
    answer_for_a_while(raft, ("b",))
    assert raft.quiesced, "c restarted: it asks when it has recovered the group"
    raft.step(RequestVote("g", 1, "c", "a", 1, 1, True, False))  # c's recovered group asks, in its old term
    assert not raft.quiesced
    answer_for_a_while(raft, ("b",))
    assert not raft.quiesced, "c spoke: the leader waits to hear it caught up before it quiesces again"
    answer_for_a_while(raft, ("b", "c"))
    assert raft.quiesced and raft.follower("c") is not None and raft.follower("c").match == raft.log.last_index


def test_a_wiped_follower_that_restarted_wakes_its_quiet_leader_with_its_join_probe() -> None:
    """A restarted node's replica that came back empty (a wiped disk; found in the nemesis run, where the node never
    got ready) does not campaign: it probes while it joins, then waits as a learner. Its probes follow the node's
    first heartbeat on the same link, so each one ends the restart news and wakes the leader, whose heartbeats
    bring the replica in once it has decided."""
    raft = quiet_leader()
    raft.peer_down("c")
    raft.peer_up("c")
    raft.peer_restarted("c")
    answer_for_a_while(raft, ("b",))
    assert raft.quiesced
    raft.step(JoinProbe("g", 0, "c", "a", 7, 1))
    assert not raft.quiesced, "its probe wakes the leader"
    answer_for_a_while(raft, ("b",))
    assert not raft.quiesced, "and the leader waits to hear from it before it quiesces again"


def test_the_metadata_leader_heartbeats_a_restarted_node_at_once_until_it_answers() -> None:
    """Issue 10: a restarted node is ready once its metadata replica knows the leader. Left to ask, that replica
    waited an election timeout of ticks that ran late while the node recovered thousands of groups: /readyz took
    4.5 to 6.6 s at 10,000 destinations. So the metadata leader greets the restarted node."""
    raft = quiet_leader(greets_restarts=True)
    raft.peer_restarted("c")
    assert not raft.quiesced, "the metadata leader wakes for the restarted node"
    answer_for_a_while(raft, ("b",))
    assert not raft.quiesced, "and heartbeats it until it answers"
    heartbeats = [m for m in flush(raft).messages if isinstance(m, AppendEntries)] if raft.has_ready() else []
    raft.tick()
    raft.tick()
    heartbeats += [m for m in flush(raft).messages if isinstance(m, AppendEntries)]
    assert any(m.receiver == "c" for m in heartbeats)
    answer_for_a_while(raft, ("b", "c"))
    assert raft.quiesced, "it answered and is caught up: quiet again"


def test_a_restarted_metadata_replica_asks_for_its_leader_at_its_first_tick() -> None:
    """The other side of the greeting: the restarted metadata replica does not wait an election timeout (10 to 20
    ticks, which ran late while its node recovered thousands of groups) before its pre-vote wakes the leader."""
    persisted = PersistedState(HardState(2, "a", 1, member=True), Snapshot(), [LogEntry(1, b"1")])

    def restarted(greets_restarts: bool) -> RaftCore:
        return RaftCore(
            "c", ("a", "b", "c"), persisted=persisted, rng=random.Random(0), group="g", greets_restarts=greets_restarts
        )

    metadata, data = restarted(True), restarted(False)
    metadata.tick()
    data.tick()
    asked = [m for m in flush(metadata).messages if isinstance(m, RequestVote)]
    assert {m.receiver for m in asked} == {"a", "b"} and all(m.pre_vote for m in asked)
    assert not any(isinstance(m, RequestVote) for m in flush(data).messages), (
        "a data group's replica waits an election timeout"
    )
    empty = RaftCore("c", ("a", "b", "c"), persisted=PersistedState(), rng=random.Random(0), greets_restarts=True)
    empty.tick()
    assert not any(isinstance(m, RequestVote) for m in (flush(empty).messages if empty.has_ready() else []))
