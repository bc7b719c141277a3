"""Group commit: one fsync for many appends, reports in order, and failures that are never acknowledged."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path

import pytest
import trio
import trio.testing

from mom.errors import StorageError
from mom.log import GroupCommitter, SegmentedLog


class CountingLog:
    """Wraps `log.sync` to count the syncs and to make each one take a little while, like a real disk."""

    def __init__(self, log: SegmentedLog, delay: float = 0.002) -> None:
        self.syncs = 0
        self.threads: set[int] = set()
        self._sync = log.sync
        self._delay = delay
        log.sync = self.sync  # type: ignore[method-assign]

    def sync(self) -> None:
        self.syncs += 1
        self.threads.add(threading.get_ident())
        time.sleep(self._delay)
        self._sync()


class Durable:
    """Records every on_durable report and lets tasks wait until an index is covered."""

    def __init__(self) -> None:
        self.reports: list[int] = []
        self._changed = trio.Event()

    def __call__(self, index: int) -> None:
        self.reports.append(index)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, index: int) -> None:
        while not self.reports or self.reports[-1] < index:
            await self._changed.wait()


async def test_concurrent_appenders_share_few_syncs_and_reports_cover_all_in_order(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path, segment_bytes=4096)
    counter = CountingLog(log)
    durable = Durable()
    committer = GroupCommitter(log, fsync=True, on_durable=durable)
    written: dict[int, bytes] = {}
    per_task: dict[int, list[int]] = {}

    async def appender(task: int) -> None:
        for n in range(20):
            data = f"task {task} message {n}".encode()
            index = committer.append(data)
            written[index] = data
            per_task.setdefault(task, []).append(index)
            await durable.wait_for(index)
            assert committer.durable_index >= index

    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        async with trio.open_nursery() as appenders:
            for task in range(50):
                appenders.start_soon(appender, task)
        nursery.cancel_scope.cancel()

    appends = 50 * 20
    assert 0 < counter.syncs < appends / 10
    assert threading.get_ident() not in counter.threads
    assert durable.reports == sorted(set(durable.reports))
    assert durable.reports[-1] == committer.durable_index == appends
    assert sorted(written) == list(range(1, appends + 1))
    assert all(indexes == sorted(indexes) for indexes in per_task.values())
    assert dict(log.read(1)) == written


async def test_appends_during_a_sync_are_covered_by_the_next_one(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    counter = CountingLog(log, delay=0.05)
    durable = Durable()
    committer = GroupCommitter(log, fsync=True, on_durable=durable)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        committer.append(b"first")
        await trio.sleep(0.01)  # the first sync is now running in its thread
        assert committer.append_many([b"second", b"third"]) == 3
        committer.append(b"fourth")
        await durable.wait_for(4)
        nursery.cancel_scope.cancel()
    assert durable.reports == [1, 4]
    assert counter.syncs == 2


async def test_an_idle_committer_does_not_sync(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    log.append([b"recovered"])
    counter = CountingLog(log, delay=0)
    durable = Durable()
    committer = GroupCommitter(log, fsync=True, on_durable=durable)
    assert committer.durable_index == 1
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        await trio.testing.wait_all_tasks_blocked()
        assert (counter.syncs, durable.reports) == (0, [])
        committer.append(b"one")
        await durable.wait_for(2)
        await trio.testing.wait_all_tasks_blocked()
        assert counter.syncs == 1
        nursery.cancel_scope.cancel()


async def test_without_fsync_reports_are_batched_and_nothing_is_synced(tmp_path: Path) -> None:
    log = SegmentedLog.open(tmp_path)
    counter = CountingLog(log, delay=0)
    durable = Durable()
    committer = GroupCommitter(log, fsync=False, on_durable=durable)
    async with trio.open_nursery() as nursery:
        await nursery.start(committer.run)
        for n in range(100):
            committer.append(b"%d" % n)
        await durable.wait_for(100)
        committer.append_many([b"a", b"b"])
        await durable.wait_for(102)
        nursery.cancel_scope.cancel()
    assert counter.syncs == 0
    assert durable.reports == [100, 102]
    assert committer.durable_index == 102


async def test_a_failed_fsync_propagates_out_of_run_and_is_not_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = SegmentedLog.open(tmp_path)
    durable = Durable()
    committer = GroupCommitter(log, fsync=True, on_durable=durable)

    def io_error(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", io_error)
    committer.append(b"never durable")
    with pytest.raises(StorageError) as info:
        await committer.run()
    assert isinstance(info.value.__cause__, OSError)
    assert durable.reports == []
    assert committer.durable_index == 0


@pytest.mark.parametrize("fsync", [True, False])
async def test_a_failed_write_raises_in_the_appender_and_stops_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    log = SegmentedLog.open(tmp_path)
    durable = Durable()
    committer = GroupCommitter(log, fsync=fsync, on_durable=durable)

    def disk_full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", disk_full)
    with pytest.raises(StorageError):
        committer.append(b"lost")
    with pytest.raises(StorageError, match="nothing more is acknowledged"):
        await committer.run()
    assert durable.reports == []
