"""Log segments share a bounded number of descriptors (`CachedFiles`): no file descriptor per idle log."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from mom.log.filecache import CachedFiles
from mom.log.fs import OS_FILES, File
from mom.log.log import SegmentedLog


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class CountingFiles:
    """The real files, counting fsyncs."""

    def __init__(self) -> None:
        self.syncs = 0

    def __getattr__(self, name: str) -> object:
        return getattr(OS_FILES, name)

    def open(self, path: Path, *, create: bool = False) -> File:
        file = OS_FILES.open(path, create=create)
        outer = self

        class Counted:
            def __getattr__(self, name: str) -> object:
                return getattr(file, name)

            def sync(self) -> None:
                outer.syncs += 1
                file.sync()

        return Counted()  # type: ignore[return-value]


def test_many_logs_hold_at_most_max_open_descriptors_and_keep_their_records(tmp_path: Path) -> None:
    files = CachedFiles(OS_FILES, max_open=8)
    before = open_fds()
    logs = [SegmentedLog.open(tmp_path / f"g{i}", segment_bytes=4096, fs=files) for i in range(100)]
    for i, log in enumerate(logs):
        log.append([f"log {i} record {k}".encode() for k in range(3)])
        log.sync()
    assert open_fds() - before <= 8
    assert files.open_count <= 8
    for i, log in enumerate(logs):  # every segment opened again to be read, then closed again
        assert [p for _, p in log.read(1)] == [f"log {i} record {k}".encode() for k in range(3)]
    assert open_fds() - before <= 8
    for log in logs:
        log.close()
    assert open_fds() == before and files.open_count == 0
    reopened = SegmentedLog.open(tmp_path / "g42", segment_bytes=4096, fs=files)
    assert [p for _, p in reopened.read(1)] == [f"log 42 record {k}".encode() for k in range(3)]
    reopened.close()


def test_a_segment_closed_with_unsynced_writes_is_fsynced_first(tmp_path: Path) -> None:
    counting = CountingFiles()
    files = CachedFiles(counting, max_open=1)  # type: ignore[arg-type]
    first = files.open(tmp_path / "00000000000000000001.log", create=True)
    first.write(b"not yet durable")
    second = files.open(tmp_path / "00000000000000000002.log", create=True)  # evicts the first
    assert counting.syncs == 1
    first.sync()  # closed since its last sync: nothing to do, and no descriptor opened for it
    assert counting.syncs == 1 and files.reopened == 0
    assert first.pread(100, 0) == b"not yet durable"
    first.close()
    second.close()


def test_other_files_are_not_cached(tmp_path: Path) -> None:
    files = CachedFiles(OS_FILES, max_open=1)
    snapshot = files.open(tmp_path / "snapshot-1.snap", create=True)
    files.open(tmp_path / "00000000000000000001.log", create=True)
    files.open(tmp_path / "00000000000000000002.log", create=True)
    snapshot.write(b"kept open")
    assert snapshot.pread(9, 0) == b"kept open"
    assert files.open_count == 1
    snapshot.close()


def test_threads_using_many_segments_at_once_never_lose_a_write(tmp_path: Path) -> None:
    files = CachedFiles(OS_FILES, max_open=3)
    logs = [SegmentedLog.open(tmp_path / f"g{i}", fs=files) for i in range(12)]

    def work(log: SegmentedLog, n: int) -> None:
        for k in range(50):
            log.append([f"{n}:{k}".encode()])
            log.sync()

    threads = [threading.Thread(target=work, args=(log, n)) for n, log in enumerate(logs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n, log in enumerate(logs):
        assert [p for _, p in log.read(1)] == [f"{n}:{k}".encode() for k in range(50)]
        log.close()
