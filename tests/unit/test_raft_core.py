"""Hand-driven scenarios, one Raft rule each, on a single RaftCore fed with crafted messages."""

from __future__ import annotations

import random

import pytest

from mom.replication._elections import CHECK_QUORUM_PERIODS
from mom.replication.messages import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    JoinProbe,
    JoinReply,
    LogEntry,
    Message,
    RequestVote,
    SnapshotChunkAck,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
    decode_messages,
    encode_messages,
)
from mom.replication.raft import HardState, NotLeader, PersistedState, RaftCore, Ready, Snapshot, SnapshotMeta

VOTERS = ("a", "b", "c")


def core(
    node: str = "a",
    *,
    term: int = 0,
    log: list[int] | None = None,
    commit: int = 0,
    voters: tuple[str, ...] = VOTERS,
) -> RaftCore:
    """A node whose disk holds entries of the given terms (payloads "1", "2", ...)."""
    entries = [LogEntry(t, str(i + 1).encode()) for i, t in enumerate(log or [])]
    persisted = PersistedState(HardState(term, None, commit, member=True), Snapshot(), entries)
    return RaftCore(
        node, voters, persisted=persisted, rng=random.Random(0), election_ticks=10, group="g", join_when_empty=False
    )


def flush(raft: RaftCore) -> Ready:
    """Play the driver once: take the Ready and acknowledge it."""
    ready = raft.ready()
    assert ready is not None
    raft.advance(ready)
    return ready


def sent(raft: RaftCore) -> list[Message]:
    ready = raft.ready()
    if ready is None:
        return []
    raft.advance(ready)
    return ready.messages


def elect(raft: RaftCore) -> None:
    """Make `raft` leader: time out, win the pre-vote and the vote from b."""
    for _ in range(20):
        raft.tick()
    pre = raft.term + 1
    flush(raft)
    raft.step(VoteResponse("g", pre, "b", raft.node_id, True, True))
    assert raft.term == pre
    raft.step(VoteResponse("g", raft.term, "b", raft.node_id, True, False))
    assert raft.role == "leader"
    flush(raft)


def test_messages_round_trip_through_one_frame() -> None:
    messages: list[Message] = [
        AppendEntries("q1", 3, "a", "b", 4, 2, [LogEntry(3, b"x"), LogEntry(3, b"")], 4),
        AppendResponse("q2", 3, "b", "a", False, 4, 2),
        RequestVote("q1", 4, "c", "a", 9, 3, True, False),
        VoteResponse("q1", 4, "a", "c", True, True),
        InstallSnapshot("meta", 5, "a", "b", 100, 4, 1 << 20, b"\x00state", True),
        SnapshotChunkAck("meta", 5, "b", "a", 100, 1 << 20),
        SnapshotResponse("meta", 5, "b", "a", 100),
        TimeoutNow("q1", 3, "a", "b"),
    ]
    assert decode_messages(encode_messages(messages)) == messages


def test_vote_is_refused_to_a_candidate_with_a_stale_log() -> None:
    raft = core(term=2, log=[1, 2])
    raft.step(RequestVote("g", 3, "b", "a", 5, 1, False, False))  # longer, but older last term
    raft.step(RequestVote("g", 3, "c", "a", 1, 2, False, False))  # same last term, shorter
    votes = [m for m in sent(raft) if isinstance(m, VoteResponse)]
    assert [v.granted for v in votes] == [False, False]
    raft.step(RequestVote("g", 3, "c", "a", 2, 2, False, False))
    ready = flush(raft)
    assert ready.messages == [VoteResponse("g", 3, "a", "c", True, False)]
    assert ready.hard_state == HardState(3, "c", 0, member=True), "the vote is persisted in the Ready that sends it"


def test_one_vote_per_term() -> None:
    raft = core(term=1)
    raft.step(RequestVote("g", 2, "b", "a", 0, 0, False, False))
    raft.step(RequestVote("g", 2, "c", "a", 0, 0, False, False))
    assert [m.granted for m in sent(raft) if isinstance(m, VoteResponse)] == [True, False]


def test_figure_8_old_term_entries_do_not_commit_by_counting() -> None:
    raft = core(term=3, log=[1, 2])
    elect(raft)  # term 4, no-op at index 3
    assert raft.term == 4 and raft.last_index == 3
    raft.step(AppendResponse("g", 4, "b", "a", True, 2, 0))
    assert raft.commit_index == 0, "entry 2 (term 2) is on a majority but must not commit by counting"
    raft.step(AppendResponse("g", 4, "b", "a", True, 3, 0))
    assert raft.commit_index == 3, "committing the no-op of term 4 commits everything before it"


def test_leader_counts_itself_only_once_its_entries_are_durable() -> None:
    raft = core()
    elect(raft)
    first, last = raft.propose([b"x"])
    assert (first, last) == (2, 2)
    raft.step(AppendResponse("g", raft.term, "b", "a", True, 2, 0))
    raft.step(AppendResponse("g", raft.term, "c", "a", True, 2, 0))
    assert raft.commit_index == 2  # two followers are a majority without the leader
    solo = core(voters=("a",))
    for _ in range(20):
        solo.tick()
    assert solo.role == "leader"
    while (ready := solo.ready()) is not None:
        solo.advance(ready)
    solo.propose([b"y"])
    ready = solo.ready()
    assert ready is not None and ready.entries == [LogEntry(1, b"y")] and not ready.committed
    assert solo.commit_index == 1, "not committed before the driver persisted it"
    solo.advance(ready)
    assert solo.commit_index == 2
    assert flush(solo).committed == [LogEntry(1, b"y")]


def test_conflicting_suffix_is_truncated_and_rewritten() -> None:
    raft = core(term=2, log=[1, 1, 2], commit=1)
    raft.step(AppendEntries("g", 3, "b", "a", 1, 1, [LogEntry(3, b"d")], 1))
    ready = flush(raft)
    assert ready.truncate_after == 1
    assert (ready.entries_index, ready.entries) == (2, [LogEntry(3, b"d")])
    assert ready.messages == [AppendResponse("g", 3, "a", "b", True, 2, 0, raft.incarnation)]
    assert raft.last_index == 2 and raft.log.term_at(2) == 3


def test_follower_acknowledges_only_in_the_ready_that_persists_the_entries() -> None:
    raft = core(term=1)
    raft.step(AppendEntries("g", 1, "b", "a", 0, 0, [LogEntry(1, b"x")], 0))
    ready = flush(raft)
    assert ready.entries == [LogEntry(1, b"x")]
    assert ready.messages == [AppendResponse("g", 1, "a", "b", True, 1, 0, raft.incarnation)]


def test_rejection_hint_skips_a_whole_conflicting_term() -> None:
    raft = core(term=3, log=[1, 1, 3, 3, 3])
    raft.step(AppendEntries("g", 4, "b", "a", 5, 2, [], 0))
    assert sent(raft) == [AppendResponse("g", 4, "a", "b", False, 5, 2, raft.incarnation)]


def test_leader_backs_off_to_the_hint_and_probes() -> None:
    raft = core(term=1, log=[1, 1, 1])
    elect(raft)
    raft.step(AppendResponse("g", raft.term, "b", "a", False, 3, 1))
    [append] = [m for m in sent(raft) if isinstance(m, AppendEntries) and m.receiver == "b"]
    assert (append.prev_index, append.prev_term) == (1, 1)
    assert [e.payload for e in append.entries] == [b"2", b"3", b""]


def test_pre_vote_does_not_bump_terms() -> None:
    isolated = core("c", term=5)
    for _ in range(100):
        isolated.tick()
    requests = [m for m in sent(isolated) if isinstance(m, RequestVote)]
    assert isolated.term == 5 and requests and all(r.pre_vote and r.term == 6 for r in requests)
    follower = core("b", term=5)
    follower.step(AppendEntries("g", 5, "a", "b", 0, 0, [], 0))
    sent(follower)
    follower.step(requests[0])
    assert follower.term == 5 and sent(follower) == [], "a follower with a live leader ignores it"
    leaderless = core("a", term=5)
    leaderless.step(requests[0])
    assert leaderless.term == 5
    assert sent(leaderless) == [VoteResponse("g", 6, "a", "c", True, True)]


def test_check_quorum_makes_a_cut_off_leader_step_down() -> None:
    """Its voters count as heard from in its first period; then it stands CHECK_QUORUM_PERIODS periods of
    silence (a slow disk delays answers, see `_elections`) and steps down at the end of the last."""
    raft = core()
    elect(raft)
    for _ in range(10 * (1 + CHECK_QUORUM_PERIODS) - 1):
        raft.tick()
    assert raft.role == "leader"
    raft.tick()
    assert raft.role == "follower"
    with pytest.raises(NotLeader):
        raft.propose([b"x"])


def test_a_leader_that_hears_from_a_majority_stays() -> None:
    raft = core()
    elect(raft)
    for _ in range(30):
        raft.tick()
        raft.step(AppendResponse("g", raft.term, "b", "a", True, 1, 0))
        sent(raft)
    assert raft.role == "leader"


def test_stale_leader_is_told_the_new_term() -> None:
    raft = core(term=4)
    raft.step(AppendEntries("g", 3, "b", "a", 0, 0, [LogEntry(3, b"x")], 0))
    assert sent(raft) == [AppendResponse("g", 4, "a", "b", False, 0, 0, raft.incarnation)]
    assert raft.last_index == 0


def test_not_leader_names_the_leader() -> None:
    raft = core(term=1)
    raft.step(AppendEntries("g", 1, "b", "a", 0, 0, [], 0))
    with pytest.raises(NotLeader) as caught:
        raft.propose([b"x"])
    assert caught.value.leader_id == "b"


def test_follower_hands_snapshot_chunks_to_its_driver_and_installs_the_whole_snapshot() -> None:
    raft = core(term=1, log=[1])
    first = InstallSnapshot("g", 2, "b", "a", 50, 2, 0, b"sta", False)
    last = InstallSnapshot("g", 2, "b", "a", 50, 2, 3, b"te", True)
    raft.step(first)
    raft.step(last)
    ready = flush(raft)
    assert ready.snapshot_chunks == [first, last] and ready.snapshot is None and ready.messages == []
    assert raft.term == 2 and raft.leader_id == "b" and raft.commit_index == 0, "nothing installed from chunks alone"
    assert raft.snapshot_received("b", SnapshotMeta(50, 2)) is True
    ready = flush(raft)
    assert ready.snapshot == SnapshotMeta(50, 2)
    assert ready.messages == [SnapshotResponse("g", 2, "a", "b", 50, raft.incarnation)]
    assert raft.last_index == raft.commit_index == raft.applied_index == 50


def test_chunks_of_a_snapshot_the_log_already_holds_are_answered_at_once() -> None:
    raft = core(term=2, log=[1, 2, 2], commit=1)
    raft.step(InstallSnapshot("g", 2, "b", "a", 3, 2, 0, b"x", False))
    ready = flush(raft)
    assert ready.snapshot_chunks == [] and ready.messages == [SnapshotResponse("g", 2, "a", "b", 3, raft.incarnation)]
    assert raft.commit_index == 3 and raft.last_index == 3, "log matching: entries up to 3 are the leader's"
    raft.step(InstallSnapshot("g", 2, "b", "a", 2, 2, 0, b"x", False))
    assert sent(raft) == [SnapshotResponse("g", 2, "a", "b", 3, raft.incarnation)]


def test_a_snapshot_received_after_it_stopped_mattering_is_not_installed() -> None:
    raft = core(term=1, log=[1])
    raft.step(InstallSnapshot("g", 2, "b", "a", 50, 2, 0, b"state", True))
    flush(raft)
    raft.step(AppendEntries("g", 2, "b", "a", 0, 0, [LogEntry(2, b"x")] * 60, 60))
    flush(raft)
    assert raft.commit_index == 60
    assert raft.snapshot_received("b", SnapshotMeta(50, 2)) is False
    ready = flush(raft)
    assert ready.snapshot is None and ready.messages == [SnapshotResponse("g", 2, "a", "b", 60, raft.incarnation)]
    assert raft.last_index == 60


def test_stale_snapshot_chunks_are_refused_with_the_current_term() -> None:
    raft = core(term=3)
    raft.step(InstallSnapshot("g", 2, "b", "a", 50, 2, 0, b"old", False))
    ready = flush(raft)
    assert ready.snapshot_chunks == [] and ready.messages == [
        AppendResponse("g", 3, "a", "b", False, 0, 0, raft.incarnation)
    ]


def test_leader_sends_a_snapshot_when_the_follower_needs_compacted_entries() -> None:
    raft = core(voters=("a", "b", "c"))
    elect(raft)
    raft.propose([b"x", b"y"])
    flush(raft)
    raft.step(AppendResponse("g", raft.term, "c", "a", True, 3, 0))
    flush(raft)
    assert raft.applied_index == 3
    raft.compact(3)
    raft.tick()
    raft.tick()  # the heartbeat re-probes b, which never answered: its next entry is compacted
    ready = flush(raft)
    assert ready.send_snapshots == [("b", SnapshotMeta(3, raft.term))]
    assert not [m for m in ready.messages if m.receiver == "b" and isinstance(m, AppendEntries) and m.entries]
    assert raft.follower("b") is not None and raft.follower("b").state == "snapshot"  # type: ignore[union-attr]
    for _ in range(6):  # three heartbeats without news: the leader asks again (the transfer may be lost)
        raft.tick()
        raft.step(SnapshotChunkAck("g", raft.term, "b", "a", 3, 1024))  # ... unless the transfer progresses
    assert flush(raft).send_snapshots == []
    for _ in range(6):
        raft.tick()
    assert flush(raft).send_snapshots == [("b", SnapshotMeta(3, raft.term))]
    raft.step(SnapshotResponse("g", raft.term, "b", "a", 3))
    assert raft.follower("b") == raft.followers()["b"] and raft.followers()["b"].state == "replicate"


def test_a_learner_caught_up_by_a_snapshot_hears_promote_at_once() -> None:
    """A replica that lost data (incarnation 7, a learner) needs the snapshot; once it says it holds it, and so
    everything up to the leader's last index, the leader gives its vote back right away, not a heartbeat later."""
    raft = core()
    elect(raft)
    raft.propose([b"x", b"y"])
    flush(raft)
    raft.step(AppendResponse("g", raft.term, "c", "a", True, 3, 0))
    flush(raft)
    raft.compact(3)
    raft.tick()
    raft.tick()  # the heartbeat re-probes b, which never answered: its next entry is compacted
    assert flush(raft).send_snapshots == [("b", SnapshotMeta(3, raft.term))]
    raft.step(SnapshotResponse("g", raft.term, "b", "a", 3, 7, True))
    to_b = [m for m in sent(raft) if m.receiver == "b"]
    assert [(type(m), m.promote) for m in to_b if isinstance(m, AppendEntries)] == [(AppendEntries, 7)]


def test_a_follower_restarting_mid_snapshot_is_probed_again_and_asked_for_the_snapshot_anew() -> None:
    """A new incarnation during a transfer: what the old one acknowledged no longer counts, the byte window is
    empty, and the core asks its driver for the snapshot again at once (which restarts the stream)."""
    raft = core()
    elect(raft)
    raft.step(AppendResponse("g", raft.term, "b", "a", True, 1, 0, 5, False))
    raft.propose([b"x", b"y"])
    flush(raft)
    raft.step(AppendResponse("g", raft.term, "c", "a", True, 3, 0))
    flush(raft)
    raft.compact(3)
    for _ in range(6):  # b stays silent: three heartbeats, then it is probed again, and needs the snapshot
        raft.tick()
    assert flush(raft).send_snapshots == [("b", SnapshotMeta(3, raft.term))]
    raft.step(SnapshotChunkAck("g", raft.term, "b", "a", 3, 1024))
    raft.step(AppendResponse("g", raft.term, "b", "a", True, 1, 0, 9, False))  # restarted: answers a heartbeat
    b = raft.follower("b")
    assert b is not None and b.state == "snapshot" and b.inflight_bytes == 0
    assert flush(raft).send_snapshots == [("b", SnapshotMeta(3, raft.term))]
    raft.step(SnapshotResponse("g", raft.term, "b", "a", 3, 9, False))
    assert raft.followers()["b"].state == "replicate" and raft.followers()["b"].match == 3


def test_leadership_transfer_sends_timeout_now_and_the_target_campaigns_at_once() -> None:
    raft = core()
    elect(raft)
    raft.step(AppendResponse("g", raft.term, "b", "a", True, 1, 0))
    sent(raft)
    raft.transfer_leadership("b")
    assert TimeoutNow("g", raft.term, "a", "b") in sent(raft)
    with pytest.raises(NotLeader):
        raft.propose([b"x"])
    target = core("b", term=raft.term, log=[raft.term])
    target.step(TimeoutNow("g", raft.term, "a", "b"))
    [request, _] = [m for m in sent(target) if isinstance(m, RequestVote)]
    assert request.transfer and not request.pre_vote and request.term == raft.term + 1
    follower = core("c", term=raft.term, log=[raft.term])
    follower.step(AppendEntries("g", raft.term, "a", "c", 0, 0, [], 0))
    sent(follower)
    follower.step(request)
    assert sent(follower) == [VoteResponse("g", raft.term + 1, "c", "b", True, False)]


def test_stand_after_times_out_once_at_the_given_tick_then_randomly_again() -> None:
    eager, patient = core("a"), core("b")
    eager.stand_after(3)
    for _ in range(3):
        eager.tick()
        patient.tick()
    assert eager.role == "candidate" and patient.role == "follower"
    assert [m for m in sent(eager) if isinstance(m, RequestVote) and m.pre_vote], "a pre-vote first"
    for _ in range(9):
        eager.tick()
    assert not [m for m in sent(eager) if isinstance(m, RequestVote)], "the next timeout is a random one again"


def empty_core(node: str, *, held_before: bool | None = None) -> RaftCore:
    """A replica that starts with nothing on disk: joining, as every replica of a brand-new group does."""
    return RaftCore(
        node,
        VOTERS,
        persisted=PersistedState(HardState(), Snapshot(), []),
        rng=random.Random(0),
        group="g",
        held_before=held_before,
    )


def test_a_wiped_replica_never_counts_as_empty_and_one_that_never_held_the_group_votes() -> None:
    """The "empty majority": a (the wiped disk of a replica that held the group) and c (whose node had not
    started the group yet) both start with nothing; b holds the group's acknowledged entries. a and c must not
    decide the group is new. The wiped one becomes a learner; the one that never held anything may vote, since
    it never acknowledged an entry that its vote could help lose."""
    wiped, lagging = empty_core("a", held_before=True), empty_core("c", held_before=False)
    assert wiped.joining and lagging.joining
    probes = {m.receiver: m for m in sent(wiped) + sent(lagging) if isinstance(m, JoinProbe)}
    wiped.step(probes["a"])
    (answer,) = sent(wiped)
    assert isinstance(answer, JoinReply) and answer.exists and not answer.untouched, "not empty: it may have held it"
    lagging.step(answer)
    lagging.step(probes["c"])
    wiped.step(next(m for m in sent(lagging) if isinstance(m, JoinReply)))
    assert wiped.joining and lagging.joining, "one empty answer (c's) makes no majority without the wiped one"
    wiped.step(JoinReply("g", 3, "b", "a", True))
    lagging.step(JoinReply("g", 3, "b", "c", True))
    assert not wiped.joining and wiped.learner and not wiped.voting
    assert not lagging.joining and not lagging.learner and lagging.voting


def test_a_new_group_starts_when_a_majority_never_held_it_even_with_a_wiped_replica() -> None:
    wiped, new = empty_core("a", held_before=True), empty_core("b", held_before=False)
    wiped.step(JoinReply("g", 0, "b", "a", False))
    wiped.step(JoinReply("g", 0, "c", "a", False))
    assert wiped.voting, "b and c never held anything: nothing was ever committed"
    new.step(JoinReply("g", 0, "c", "b", False))
    assert new.voting, "b and c are a majority of replicas that never held the group: it is new"


def test_stand_after_given_while_joining_holds_once_the_group_turns_out_new() -> None:
    eager = empty_core("a")
    eager.stand_after(3)
    assert eager.joining
    assert all(isinstance(m, JoinProbe) for m in sent(eager))
    eager.step(JoinReply("g", 0, "b", "a", False))  # a majority (a and b) never held anything: a new group
    assert eager.voting
    for _ in range(3):
        eager.tick()
    assert eager.role == "candidate", "the preferred replica stands 3 ticks after it knows the group is new"


def test_stand_after_given_while_joining_does_nothing_for_a_replica_that_turns_out_a_learner() -> None:
    wiped = empty_core("a")
    wiped.stand_after(3)
    wiped.step(JoinReply("g", 0, "b", "a", True))
    wiped.step(JoinReply("g", 0, "c", "a", True))
    assert wiped.learner
    for _ in range(30):
        wiped.tick()
    assert wiped.role == "follower" and not [m for m in sent(wiped) if isinstance(m, RequestVote)]
