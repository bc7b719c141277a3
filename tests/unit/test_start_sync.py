"""The one file-system sync at start-up (`fsync = "always"`) spares only the first open of each group found then.

A node syncs its data's file system once before any group reads its storage, so a log that recovery leaves
unchanged is not synced again. That covers what existed at the start, nothing this process writes later: a group
built again in the same process (stopped and started, moved away and back) must sync its log when it opens it,
and must never open files that its previous incarnation's removal is about to delete.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from mom.broker.commands import QueueRef
from mom.config import StorageSection
from mom.log.fs import OsFile, OsFileSystem
from mom.replication import _dormant as dormant_module
from mom.replication.manager import GroupManager
from tests.unit.test_housekeeping import declare, one_node, publish, until

ALWAYS = StorageSection(fsync="always")


class _RecordingFile:
    """An OS file that notes its syncs in the file system's journal."""

    def __init__(self, file: OsFile, path: Path, journal: list[tuple[str, Path]]) -> None:
        self._file, self._path, self._journal = file, path, journal

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def pread(self, length: int, offset: int) -> bytes:
        return self._file.pread(length, offset)

    def size(self) -> int:
        return self._file.size()

    def truncate(self, size: int) -> None:
        self._file.truncate(size)

    def sync(self) -> None:
        self._journal.append(("sync", self._path))
        self._file.sync()

    def mapped(self) -> contextlib.AbstractContextManager[memoryview]:
        return self._file.mapped()

    def close(self) -> None:
        self._file.close()


class RecordingFileSystem(OsFileSystem):
    """The operating system's files, with a journal of opens, syncs and tree removals."""

    def __init__(self) -> None:
        self.journal: list[tuple[str, Path]] = []

    def open(self, path: Path, *, create: bool = False) -> _RecordingFile:  # type: ignore[override]
        self.journal.append(("open", path))
        return _RecordingFile(super().open(path, create=create), path, self.journal)

    def sync_directory(self, directory: Path) -> None:
        self.journal.append(("sync", directory))
        super().sync_directory(directory)

    def remove_tree(self, directory: Path) -> None:
        self.journal.append(("remove", directory))
        super().remove_tree(directory)

    def synced_under(self, directory: Path) -> list[Path]:
        return [path for op, path in self.journal if op == "sync" and path.is_relative_to(directory)]


@contextlib.contextmanager
def _held_dormant(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The background pass never starts: only a request recovers a group (so the test knows when)."""
    monkeypatch.setattr(GroupManager, "_catalog_current", lambda self: False)
    monkeypatch.setattr(dormant_module, "START_UP_GATE_S", 10**9)
    yield


async def _written_before(tmp_path: Path) -> str:
    """A first run declares queue q and publishes to it; q's group id."""
    async with one_node(tmp_path, storage=ALWAYS) as service:
        await declare(service, "q")
        await publish(service, "q", b"before the restart")
        return service._manager.placement(QueueRef("q")).group_id


async def test_a_group_built_again_in_the_same_process_syncs_its_log_and_the_first_recovery_does_not(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(300):
        gid = await _written_before(tmp_path)
        log_directory = tmp_path / "groups" / gid / "log"
        fs = RecordingFileSystem()
        with _held_dormant(monkeypatch):
            async with one_node(tmp_path, storage=ALWAYS, fs=fs) as service:
                manager = service._manager
                await until(lambda: manager.dormant == 1, "q's group placed, dormant")
                await until(lambda: service.locate(QueueRef("q")).here is not None, "q recovered by its request")
                assert log_directory not in fs.synced_under(log_directory), (
                    "the first open after the sync at start does not sync the log again"
                )
                running = manager._running[gid]
                assert running.group is not None
                running.scope.cancel()  # stopped (a write of this process may be in its log, never synced)
                await until(lambda: gid not in manager._router.groups, "q's group stopped")
                fs.journal.clear()
                again = manager._new_group(gid, list(running.placement.replicas), external_dead_letters=True)
                again._storage.load()
                again._storage.close()
                assert log_directory in fs.synced_under(log_directory), "built again: its log is synced on open"


async def test_a_group_moved_away_and_back_at_once_opens_its_files_only_after_the_old_ones_are_removed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(300):
        gid = await _written_before(tmp_path)
        directory = tmp_path / "groups" / gid
        fs = RecordingFileSystem()
        with _held_dormant(monkeypatch):
            async with one_node(tmp_path, storage=ALWAYS, fs=fs) as service:
                manager = service._manager
                await until(lambda: manager.dormant == 1, "q's group placed, dormant")
                await until(lambda: service.locate(QueueRef("q")).here is not None, "q recovered by its request")
                placed = manager.placement(QueueRef("q"))
                fs.journal.clear()
                manager._stop(gid)  # moved away: its data is to be removed
                manager._start(placed)  # and back, in the same catalog batch
                manager.wake(gid)
                await until(lambda: gid in manager._router.groups, "q's new incarnation routed")
                await trio.sleep(1)
                removed = fs.journal.index(("remove", directory))
                opened = [
                    i for i, (op, path) in enumerate(fs.journal) if op == "open" and path.is_relative_to(directory)
                ]
                assert opened and min(opened) > removed, "the new incarnation opened its files after the removal"
                assert (directory / "log").is_dir() and (directory / "hard_state").is_file(), "its files survive"
                assert directory / "log" in fs.synced_under(directory / "log"), "its (new) log synced on open"
