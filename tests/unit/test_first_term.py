"""A new group's first term without an election (`RaftCore(first_term=True)`), rule by rule on hand-driven cores.

Random schedules with crashes and wiped disks are in tests/sim/test_raft_safety.py (`first_term`)."""

from __future__ import annotations

import random

from mom.replication.messages import AppendEntries, JoinProbe, JoinReply, LogEntry, Message, RequestVote
from mom.replication.raft import HardState, PersistedState, RaftCore, Snapshot

VOTERS = ("a", "b", "c")


def new(node: str, *, run: int = 1, persisted: PersistedState | None = None) -> RaftCore:
    return RaftCore(
        node,
        VOTERS,
        persisted=persisted or PersistedState(),
        rng=random.Random(7),
        preferred_leader="a",
        first_term=True,
        run=run,
    )


def drain(raft: RaftCore) -> list[Message]:
    ready = raft.ready()
    if ready is None:
        return []
    raft.advance(ready)
    return list(ready.messages)


def exchange(cores: dict[str, RaftCore], rounds: int = 6) -> list[Message]:
    """Deliver every message between `cores` for a few rounds; returns all that were sent."""
    sent: list[Message] = []
    for _ in range(rounds):
        batch = [m for raft in cores.values() for m in drain(raft)]
        sent += batch
        for message in batch:
            if message.receiver in cores:
                cores[message.receiver].step(message)
    return sent


def test_the_preferred_leader_leads_term_1_without_a_vote() -> None:
    cores = {node: new(node) for node in VOTERS}
    sent = exchange(cores)
    assert cores["a"].role == "leader" and cores["a"].term == 1
    assert not [m for m in sent if isinstance(m, RequestVote)]
    assert all(c.term == 1 and c.voted_for == "a" for c in cores.values())
    first, _ = cores["a"].propose([b"x"])
    exchange(cores)
    assert all(c.commit_index >= first for c in cores.values())


def test_no_one_but_the_preferred_leader_wins_term_1() -> None:
    """A follower that found the group new voted for the preferred leader in term 1: it refuses anyone else."""
    cores = {node: new(node) for node in VOTERS}
    exchange(cores)
    follower = cores["b"]
    follower.step(RequestVote("", 1, "c", "b", 5, 1, False, False))
    reply = [m for m in drain(follower) if m.receiver == "c"]
    assert reply and not getattr(reply[0], "granted", True)


def test_a_voter_holding_state_means_an_election() -> None:
    """One voter holds state of the group (a replaced disk elsewhere): the preferred leader does not lead term 1
    by itself but stands for election (from term 2) once it found the group new."""
    a = new("a")
    for message in drain(a):
        assert isinstance(message, JoinProbe)
        a.step(JoinReply("", 0, message.receiver, "a", message.receiver == "c", message.incarnation))
    for _ in range(12):
        a.tick()
    assert not a.joining and a.role != "leader"
    assert a.term == 1 and a.voted_for == "a"  # its term-1 vote, like every replica's, is its own


def test_first_term_entries_of_an_earlier_run_are_refused() -> None:
    """The preferred leader's disk was wiped and it runs again (a larger `run`): its earlier run's term-1 entries,
    still on the way, must not land on a follower that its new run probed, which may lead term 1 again."""
    b = new("b", persisted=PersistedState(HardState(1, "a", 0, member=True), Snapshot(), []))
    b.step(JoinProbe("", 0, "a", "b", incarnation=42, run=2))
    reply = [m for m in drain(b) if isinstance(m, JoinReply)]
    assert reply and reply[0].untouched and reply[0].incarnation == 42
    b.step(AppendEntries("", 1, "a", "b", 0, 0, [LogEntry(1, b""), LogEntry(1, b"old")], 0, run=1))
    assert b.log.last_index == 0
    b.step(AppendEntries("", 1, "a", "b", 0, 0, [LogEntry(1, b""), LogEntry(1, b"new")], 0, run=2))
    assert b.log.last_index == 2 and b.log.entry(2).payload == b"new"
