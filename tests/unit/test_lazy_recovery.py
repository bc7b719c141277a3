"""A restarted node recovers its groups lazily: on a request, on a peer's message, or in the background pass.

Until a group has read its storage it is not routed: nothing reaches its Raft core, so it neither votes nor
answers on a state it has not loaded. Held dormant here by keeping the background pass from starting.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
import trio.testing

from mom.broker.commands import QueueRef, Receive, Received
from mom.config import StorageSection
from mom.log import SegmentedLog
from mom.log.fs import OS_FILES, sync_file_system
from mom.replication import _dormant as dormant_module
from mom.replication._dormant import RECOVERIES_AT_ONCE, START_UP_GATE_S, DormantGroups
from mom.replication._raftlog import HardState
from mom.replication._storage import RaftStorage
from mom.replication.manager import GroupManager
from mom.replication.messages import LogEntry, RequestVote, encode_messages
from mom.service import BrokerService
from tests.unit.test_housekeeping import declare, here, one_node, publish, until

QUEUES = [f"q{i}" for i in range(5)]


def _hold_dormant(monkeypatch: pytest.MonkeyPatch) -> None:
    """The background pass never starts: only requests and messages recover groups."""
    monkeypatch.setattr(GroupManager, "_catalog_current", lambda self: False)
    monkeypatch.setattr(dormant_module, "START_UP_GATE_S", 10**9)


async def _first_run(tmp_path: Path) -> dict[str, tuple[str, int, str | None, int]]:
    """Declare the queues, publish one message to each; their (group id, term, vote, last index) at the stop."""
    states = {}
    async with one_node(tmp_path) as service:
        for name in QUEUES:
            await declare(service, name)
            await publish(service, name, name.encode())
        for name in QUEUES:
            group = service._manager.group(_gid(service, name))
            assert group is not None and group.core is not None
            core = group.core
            states[name] = (group.group_id, core.term, core.voted_for, core.log.last_index)
    return states


def _gid(service: BrokerService, name: str) -> str:
    return service._manager.placement(QueueRef(name)).group_id


@asynccontextmanager
async def _restarted_dormant(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[BrokerService, dict[str, tuple[str, int, str | None, int]]]]:
    """The node after a first run, restarted with every queue's group placed and held dormant; and the groups'
    (id, term, vote, last index) at the first run's stop."""
    before = await _first_run(tmp_path)
    _hold_dormant(monkeypatch)
    async with one_node(tmp_path) as service:
        await until(lambda: service._manager.dormant == len(QUEUES), "every queue's group placed, dormant")
        yield service, before


async def test_a_request_recovers_its_group_and_the_others_stay_dormant(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(300):
        async with _restarted_dormant(tmp_path, monkeypatch) as (service, before):
            manager = service._manager
            await trio.sleep(5)
            assert manager.dormant == len(QUEUES), "nothing recovers them but a request or a message"
            for name in QUEUES:
                assert manager.group(_gid(service, name)) is None
                assert _gid(service, name) not in manager._router.groups, "not routed before it recovered"
            await until(lambda: service.locate(QueueRef("q2")).here is not None, "q2 recovered by its request")
            result = await service.submit(here(service, "q2"), Receive(QueueRef("q2"), 1, 1000))
            assert isinstance(result, Received) and [m.body for m in result.messages] == [b"q2"]
            assert manager.dormant == len(QUEUES) - 1
            gid, term, vote, last = before["q2"]
            group = manager.group(gid)
            assert group is not None and group.core is not None
            assert group.core.log.last_index > last, "its log was loaded (and it leads again, with a new entry)"
            assert group.core.term > term or group.core.voted_for == vote, "its term and vote were loaded"


async def test_a_peer_message_recovers_its_group_before_the_core_sees_anything(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(300):
        async with _restarted_dormant(tmp_path, monkeypatch) as (service, before):
            manager = service._manager
            gid, term, vote, last = before["q3"]
            router = manager._router
            # A vote request of a later term from a (made-up) peer, for the dormant group: dropped, since no core
            # holds the group's term and vote yet; it starts the group's recovery.
            frame = encode_messages([RequestVote(gid, term + 5, "mom2", "mom1", last + 10, term + 5, False, False)])
            router._deliver("mom2", frame)
            assert router.unknown_group_messages == 1 and manager.dormant == len(QUEUES) - 1
            group = manager.group(gid)
            assert group is not None and group.core is None and gid not in router.groups
            await until(lambda: gid in router.groups, "q3's group recovered and routed")
            assert group.core is not None and group.core.log.last_index >= last, "the log recovered whole"
            assert group.core.term > term or group.core.voted_for == vote, "its term and vote were loaded"
            assert group.core.term < term + 5, "the dropped vote request changed nothing"
            others = [manager.group(_gid(service, n)) for n in QUEUES if n != "q3"]
            assert others == [None] * (len(QUEUES) - 1)


async def test_the_background_pass_recovers_every_group_as_they_were(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(300):
        before = await _first_run(tmp_path)
        async with one_node(tmp_path) as service:
            manager = service._manager
            await until(lambda: manager.dormant == 0 and len(manager.groups()) == len(QUEUES) + 1, "all recovered")
            for name in QUEUES:
                gid, term, vote, last = before[name]
                group = manager.group(gid)
                assert group is not None
                await until(lambda group=group: group.core is not None, f"{name} recovered")
                assert group.core is not None and group.core.log.last_index >= last
                assert group.core.term > term or (group.core.term, group.core.voted_for) == (term, vote)


def test_a_durable_log_that_recovery_leaves_alone_is_not_synced_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "log"
    log = SegmentedLog.open(directory, segment_bytes=64)
    log.append([b"x" * 20 for _ in range(10)])  # several segments
    log.sync()
    log.close()
    sync_file_system(tmp_path)
    syncs: list[str] = []
    real_sync_directory = OS_FILES.sync_directory
    monkeypatch.setattr(OS_FILES, "sync_directory", lambda d: (syncs.append(str(d)), real_sync_directory(d)))
    again = SegmentedLog.open(directory, segment_bytes=64, durable=True)
    assert syncs == [] and [r for _, r in again.read(1)] == [b"x" * 20] * 10
    again.close()
    plain = SegmentedLog.open(directory, segment_bytes=64)
    assert syncs == [str(directory)], "without the file system synced first, recovery syncs as before"
    plain.close()
    with (directory / sorted(p.name for p in directory.iterdir())[-1]).open("ab") as torn:
        torn.write(b"\x01\x02")  # a torn tail: recovery cuts it, and syncs what it changed
    syncs.clear()
    cut = SegmentedLog.open(directory, segment_bytes=64, durable=True)
    assert syncs == [str(directory)] and cut.last_index == 10
    cut.close()


async def test_a_burst_of_peer_messages_recovers_a_bounded_number_at_once_and_the_pass_the_rest_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    launched: list[str] = []
    settled: dict[str, trio.Event] = {}

    def launch(gid: str) -> trio.Event:
        launched.append(gid)
        settled[gid] = trio.Event()
        return settled[gid]

    dormant = DormantGroups(launch)
    gids = [f"g{i:02d}" for i in range(40)]
    for gid in gids:
        dormant.add(gid)
    async with trio.open_nursery() as nursery:
        for gid in reversed(gids[20:]):  # every leader heartbeats the restarted node's groups at once
            dormant.hurry(gid, nursery)
        assert launched == list(reversed(gids[20:]))[:RECOVERIES_AT_ONCE]
        assert len(dormant) == 40 - RECOVERIES_AT_ONCE
        for gid in launched:
            settled[gid].set()
        await trio.testing.wait_all_tasks_blocked()
        dormant.hurry("g00", nursery)  # a slot is free again
        assert launched[-1] == "g00"
        nursery.start_soon(dormant.run, lambda: False)  # the catalog never catches up: the pass starts anyway
        await trio.sleep(START_UP_GATE_S - 1)
        assert len(launched) == RECOVERIES_AT_ONCE + 1 and dormant.lazy
        await trio.sleep(2)
        assert not dormant.lazy
        assert launched[RECOVERIES_AT_ONCE + 1 :] == ["g20", "g21", "g22", "g23", *gids[1:13]], (
            "the hurried ones first (the latest first), then in placement order, 16 at a time"
        )
        settled["g20"].set()
        await trio.testing.wait_all_tasks_blocked()
        assert launched[-1] == "g13"
        for gid in gids:
            if gid in settled:
                settled[gid].set()
        while len(dormant):
            for event in settled.values():
                event.set()
            await trio.sleep(0.01)
        assert sorted(launched) == gids
        nursery.cancel_scope.cancel()


def test_a_group_recovered_after_the_file_system_sync_loads_what_an_eager_recovery_loads(tmp_path: Path) -> None:
    settings = StorageSection(fsync="always", segment_bytes=256)
    storage = RaftStorage(tmp_path, settings)
    storage.load()
    storage.append(1, [LogEntry(1, f"entry {i}".encode()) for i in range(1, 40)])  # several segments
    storage.sync(HardState(term=3, voted_for="n2", commit=12))
    storage.append(40, [LogEntry(3, b"unsynced")])  # written, never synced: a kill -9 now
    storage.close()
    sync_file_system(tmp_path)
    lazily = RaftStorage(tmp_path, settings, durable_at_start=True)
    loaded = lazily.load()
    lazily.close()
    eagerly = RaftStorage(tmp_path, settings)
    assert loaded == eagerly.load()
    eagerly.close()
    assert (loaded.hard_state.term, loaded.hard_state.voted_for) == (3, "n2")
    assert len(loaded.entries) == 40 and loaded.entries[-1] == LogEntry(3, b"unsynced")
