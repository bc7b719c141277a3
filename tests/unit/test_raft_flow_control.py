"""Flow control in the Raft core: what a slow follower or a stuck quorum may cost the leader, in bytes."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mom.config import ReplicationSection, StorageSection
from mom.errors import Overloaded
from mom.log.disk import Disk
from mom.replication.group import RaftGroup
from mom.replication.messages import AppendEntries, AppendResponse, LogEntry, VoteResponse
from mom.replication.raft import HardState, PersistedState, RaftCore, Snapshot

KiB = 1024


def leader(**limits: int) -> RaftCore:
    """A leader of a, b, c (b voted for it) whose followers have acknowledged nothing yet."""
    raft = RaftCore("a", ("a", "b", "c"), persisted=PersistedState(HardState(member=True), Snapshot(), []),
                    rng=random.Random(0), group="g", **limits)  # fmt: skip
    for _ in range(20):
        raft.tick()
    drain(raft)
    raft.step(VoteResponse("g", raft.term + 1, "b", "a", True, True))
    raft.step(VoteResponse("g", raft.term, "b", "a", True, False))
    assert raft.role == "leader"
    drain(raft)
    for peer in ("b", "c"):  # both followers match the no-op: replicating from here on
        raft.step(AppendResponse("g", raft.term, peer, "a", True, 1, 0))
    drain(raft)
    return raft


def drain(raft: RaftCore) -> list[AppendEntries]:
    """Play the driver until the core has nothing more to say; the AppendEntries it sent."""
    appends = []
    while (ready := raft.ready()) is not None:
        appends += [m for m in ready.messages if isinstance(m, AppendEntries)]
        raft.advance(ready)
    return appends


def test_in_flight_entries_to_a_follower_are_bounded_in_bytes() -> None:
    raft = leader(max_bytes_per_message=64 * KiB, max_inflight_bytes=256 * KiB)
    for _ in range(40):
        raft.propose([b"x" * (32 * KiB)])  # 1.25 MiB in all, in 40 entries
    appends = [m for m in drain(raft) if m.receiver == "b"]
    sent_bytes = sum(len(e.payload) for m in appends for e in m.entries)
    assert sent_bytes == 256 * KiB, "the window is full at 256 KiB, not at 64 messages"
    assert all(sum(len(e.payload) for e in m.entries) <= 64 * KiB for m in appends)
    follower = raft.follower("b")
    assert follower is not None and follower.inflight_bytes == 256 * KiB and follower.state == "replicate"
    last = appends[-1].prev_index + len(appends[-1].entries)
    raft.step(AppendResponse("g", raft.term, "b", "a", True, last - 4, 0))  # 4 entries (128 KiB) still in flight
    more = [m for m in drain(raft) if m.receiver == "b" and m.entries]
    assert sum(len(e.payload) for m in more for e in m.entries) == 128 * KiB, "acknowledged bytes reopen the window"


def test_a_message_is_bounded_in_bytes_but_carries_at_least_one_entry() -> None:
    raft = leader(max_bytes_per_message=10 * KiB)
    raft.propose([b"y" * (100 * KiB)])
    raft.propose([b"z" * KiB, b"z" * KiB])
    appends = [m for m in drain(raft) if m.receiver == "c" and m.entries]
    assert [len(m.entries) for m in appends] == [1, 2]


def test_proposals_beyond_the_uncommitted_budget_are_refused_with_overloaded() -> None:
    raft = leader(max_uncommitted_bytes=100 * KiB)
    raft.propose([b"a" * (60 * KiB)])
    raft.propose([b"b" * (40 * KiB)])  # exactly at the budget
    with pytest.raises(Overloaded) as refused:
        raft.propose([b"c"])
    assert refused.value.status == 429 and refused.value.retry_after_s >= 1
    assert raft.uncommitted_bytes == 100 * KiB and raft.last_index == 3, "a refused proposal appends nothing"
    drain(raft)
    raft.step(AppendResponse("g", raft.term, "b", "a", True, 2, 0))  # the first entry commits
    drain(raft)
    assert raft.commit_index == 2 and raft.uncommitted_bytes == 40 * KiB
    raft.propose([b"d" * (60 * KiB)])
    with pytest.raises(Overloaded):
        raft.propose([b"e"])


def test_one_proposal_is_always_admitted_when_nothing_is_uncommitted() -> None:
    raft = leader(max_uncommitted_bytes=10 * KiB)
    first, last = raft.propose([b"huge" * (100 * KiB)])
    assert first == last == 2
    with pytest.raises(Overloaded):
        raft.propose([b"x"])


def test_a_new_leader_starts_with_an_empty_budget() -> None:
    raft = leader(max_uncommitted_bytes=10 * KiB)
    raft.propose([b"x" * (20 * KiB)])
    raft.step(AppendEntries("g", raft.term + 1, "c", "a", 2, raft.term, [], 0))  # deposed
    assert raft.role == "follower" and raft.uncommitted_bytes == 0
    assert [LogEntry(raft.term - 1, b"x" * (20 * KiB))] == raft.log.slice(2, 3)


def test_writes_held_by_a_group_from_arrival_to_answer_are_bounded_by_the_budget(tmp_path: Path) -> None:
    """Publishes wait in the coalescer before they are proposed: the group's budget counts them from arrival."""
    group = RaftGroup("g", "n1", ["n1"], tmp_path, StorageSection(fsync="never"), lambda messages: None,
                      disk=Disk(), replication=ReplicationSection(max_uncommitted_bytes=100 * KiB),
                      dedup_window_ms=1000, clock_ms=lambda: 0, rng=random.Random(0))  # fmt: skip
    with group.admitted(60 * KiB), group.admitted(40 * KiB):
        with pytest.raises(Overloaded) as refused, group.admitted(1):
            pass
        assert refused.value.status == 429
    with group.admitted(500 * KiB), pytest.raises(Overloaded), group.admitted(1):  # the first alone, however large
        pass
    with group.admitted(100 * KiB):
        pass  # everything was released
