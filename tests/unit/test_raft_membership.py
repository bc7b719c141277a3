"""Configurations in the log and in snapshots (`mom.replication.membership`, `RaftLog`), and the core's rules
for membership changes that the simulation (tests/sim/test_membership.py) exercises under faults."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mom.config import StorageSection
from mom.errors import MembershipChangeRefused
from mom.replication._raftlog import RaftLog, SnapshotMeta
from mom.replication._storage import RaftStorage
from mom.replication.membership import Membership, config_entry, decode_config, is_config
from mom.replication.messages import LogEntry
from mom.replication.raft import HardState, PersistedState, RaftCore, Snapshot

THREE = Membership(("a", "b", "c"))
FOUR = Membership(("a", "b", "c"), ("d",))


def test_a_configuration_entry_is_told_apart_from_commands_and_no_ops() -> None:
    entry = config_entry(3, FOUR)
    assert is_config(entry) and decode_config(entry) == FOUR
    assert not is_config(LogEntry(1, b"")) and not is_config(LogEntry(1, b"\x82\xa1a\x01"))


def test_the_latest_configuration_in_the_log_is_in_force_and_truncation_restores_the_previous() -> None:
    log = RaftLog(SnapshotMeta(), [LogEntry(1, b"x")], THREE)
    assert log.config == THREE and log.config_index == 0 and not log.config_is_explicit
    log.append([config_entry(1, FOUR), LogEntry(1, b"y")])
    assert log.config == FOUR and log.config_index == 2 and log.previous_config == THREE
    log.truncate_after(1)  # a conflict with a new leader
    assert log.config == THREE and log.config_index == 0


def test_compaction_and_snapshots_keep_the_configuration() -> None:
    log = RaftLog(SnapshotMeta(), [LogEntry(1, b"x"), config_entry(1, FOUR), LogEntry(1, b"y")], THREE)
    log.stable = log.last_index
    log.compact(1)
    assert log.snapshot.membership is None and log.config == FOUR  # the fallback was in force at 1
    log.compact(3)
    assert log.snapshot.membership == FOUR and log.config == FOUR and log.config_index == 3
    other = RaftLog(SnapshotMeta(), [], THREE)
    other.restore(SnapshotMeta(9, 2, FOUR))
    assert other.config == FOUR


def test_a_snapshot_with_its_configuration_survives_a_restart(tmp_path: Path) -> None:
    settings = StorageSection(fsync="always")
    storage = RaftStorage(tmp_path, settings)
    storage.load()
    storage.append(1, [LogEntry(1, b"x"), config_entry(1, FOUR)])
    storage.sync(HardState(1, "a", 2))
    storage.save_snapshot(Snapshot(2, 1, b"state", FOUR))
    storage.close()
    loaded = RaftStorage(tmp_path, settings).load()
    assert loaded.snapshot.membership == FOUR and loaded.snapshot.meta == SnapshotMeta(2, 1, FOUR)
    core = RaftCore("d", ["a", "b", "c"], persisted=loaded, rng=random.Random(1), joining_as_learner=True)
    assert core.membership == FOUR and not core.voting


def test_a_node_outside_its_configuration_needs_to_say_it_joins() -> None:
    with pytest.raises(ValueError, match="neither a voter"):
        RaftCore("d", ["a", "b", "c"], persisted=PersistedState(), rng=random.Random(1))
    joining = RaftCore("d", ["a", "b", "c"], persisted=PersistedState(), rng=random.Random(1), joining_as_learner=True)
    assert not joining.joining and joining.learner and not joining.voting  # waits for a leader, probes no one
    for _ in range(100):
        joining.tick()
    ready = joining.ready()
    assert ready is None or not ready.messages


def test_a_single_voter_changes_its_membership_and_refuses_what_it_cannot_do() -> None:
    core = RaftCore("a", ["a"], persisted=PersistedState(), rng=random.Random(1), election_ticks=2)
    for _ in range(5):
        core.tick()
    assert core.role == "leader"
    ready = core.ready()
    assert ready is not None
    core.advance(ready)  # its no-op commits: it may change the configuration now
    with pytest.raises(MembershipChangeRefused, match="last voter"):
        core.change_membership("remove", "a")
    with pytest.raises(MembershipChangeRefused, match="not a learner"):
        core.change_membership("promote", "b")
    index = core.change_membership("add_learner", "b")
    assert core.membership == Membership(("a",), ("b",))
    with pytest.raises(MembershipChangeRefused, match="previous membership change"):
        core.change_membership("remove", "b")
    assert core.change_membership("add_learner", "b") == index  # in effect: the same entry
    with pytest.raises(MembershipChangeRefused, match="not caught up"):
        ready = core.ready()
        assert ready is not None
        core.advance(ready)  # a single voter commits alone
        assert core.commit_index >= index
        core.change_membership("promote", "b")
