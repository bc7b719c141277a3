"""A bounded number of open log segments per node, whatever the number of logs: no file descriptor per idle group.

Every replication group keeps its log in segment files, and a segment used to stay open for its whole life: a node
holding 10,000 destinations held 10,000 descriptors or more, past the usual limit of 1,024, for files nobody used.
`CachedFiles` wraps a `FileSystem` so that a segment (`*.log`) is opened when it is first written or read and
closed again once it is among the least recently used beyond `max_open`; other files (snapshots, the hard state,
temporary files) are opened as before, since a snapshot reader must outlive the deletion of its file's name.

Durability is unchanged: a segment with writes not yet fsynced is fsynced before its descriptor is closed (Linux
reports a write-back error only to descriptors open when it happened), and an fsync through a descriptor opened
later covers everything written to the file before.

Thread safety: groups' storage calls run on the node's worker threads, one call at a time per group, several
groups at once. Each file has a lock held while its descriptor is used; the cache's lock guards the LRU order.
Eviction holds the cache's lock and only *tries* a victim's lock (a file in use is skipped), so the two locks are
never waited for in opposite orders.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

from mom.log.fs import File, FileSystem

DEFAULT_MAX_OPEN = 256


class CachedFiles:
    """A `FileSystem` whose log segments share at most `max_open` descriptors (least recently used closed)."""

    def __init__(self, fs: FileSystem, max_open: int = DEFAULT_MAX_OPEN) -> None:
        if max_open < 1:
            raise ValueError("max_open must be at least 1")
        self._fs = fs
        self.max_open = max_open
        self._open: OrderedDict[int, _LazyFile] = OrderedDict()
        self._lock = threading.Lock()
        self.reopened = 0
        """Descriptors opened again for a segment closed earlier (a cache miss)."""

    @property
    def open_count(self) -> int:
        return len(self._open)

    def open(self, path: Path, *, create: bool = False) -> File:
        if path.suffix != ".log":
            return self._fs.open(path, create=create)
        file = _LazyFile(self, path)
        if create:
            with file.lock:
                file.attach(self._fs.open(path, create=True))
        return file

    def read_bytes(self, path: Path) -> bytes:
        return self._fs.read_bytes(path)

    def listdir(self, directory: Path) -> list[str]:
        return self._fs.listdir(directory)

    def makedirs(self, directory: Path) -> None:
        self._fs.makedirs(directory)

    def unlink(self, path: Path) -> None:
        self._fs.unlink(path)

    def replace(self, source: Path, target: Path) -> None:
        self._fs.replace(source, target)

    def sync_directory(self, directory: Path) -> None:
        self._fs.sync_directory(directory)

    def remove_tree(self, directory: Path) -> None:
        self._fs.remove_tree(directory)

    # -- the LRU, for _LazyFile

    def _reopen(self, path: Path) -> File:
        self.reopened += 1
        return self._fs.open(path)

    def _used(self, file: _LazyFile) -> None:
        """`file` holds a descriptor and was just used (its own lock is held by the caller)."""
        with self._lock:
            self._open[id(file)] = file
            self._open.move_to_end(id(file))
            if len(self._open) <= self.max_open:
                return
            for key, victim in list(self._open.items()):
                if len(self._open) <= self.max_open:
                    break
                if victim is not file and victim.try_release():
                    del self._open[key]

    def _forget(self, file: _LazyFile) -> None:
        with self._lock:
            self._open.pop(id(file), None)


class _LazyFile:
    """A segment file whose descriptor comes and goes; `File` to the log, which never notices."""

    def __init__(self, cache: CachedFiles, path: Path) -> None:
        self._cache = cache
        self._path = path
        self._file: File | None = None
        self._dirty = False
        self._closed = False
        self.lock = threading.Lock()

    def attach(self, file: File) -> None:
        self._file = file
        self._cache._used(self)

    def _get(self) -> File:
        """The descriptor, opened again if it was closed (call with `lock` held)."""
        if self._closed:
            raise OSError(f"{self._path} is closed")
        if self._file is None:
            self._file = self._cache._reopen(self._path)
        self._cache._used(self)
        return self._file

    def try_release(self) -> bool:
        """Close the descriptor unless the file is in use now (fsynced first if written since the last sync)."""
        if not self.lock.acquire(blocking=False):
            return False
        try:
            if self._file is not None:
                if self._dirty:
                    self._file.sync()
                    self._dirty = False
                self._file.close()
                self._file = None
            return True
        finally:
            self.lock.release()

    def write(self, data: bytes) -> None:
        with self.lock:
            self._dirty = True
            self._get().write(data)

    def pread(self, length: int, offset: int) -> bytes:
        with self.lock:
            return self._get().pread(length, offset)

    def size(self) -> int:
        with self.lock:
            return self._get().size()

    def truncate(self, size: int) -> None:
        with self.lock:
            self._dirty = True
            self._get().truncate(size)

    def sync(self) -> None:
        with self.lock:
            if self._file is None and not self._dirty:
                return  # closed since its last sync (a release syncs first): nothing to make durable
            self._get().sync()
            self._dirty = False

    @contextlib.contextmanager
    def mapped(self) -> Iterator[memoryview]:
        with self.lock, self._get().mapped() as view:
            yield view

    def close(self) -> None:
        with self.lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
        self._cache._forget(self)
