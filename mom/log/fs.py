"""The file operations storage uses, behind one small interface: the operating system's, or a simulated disk's.

The log, the snapshots and the Raft hard state reach files only through a `FileSystem`, so that the deterministic
simulation can run them over an in-memory disk that forgets, at a crash, whatever was not made durable: data not
fsynced, and file creations, renames and deletions whose directory was not fsynced. A missing fsync is then a
failing seed, not a silent hope. `OS_FILES` is the real thing, a thin layer over `os`.

Durability follows POSIX: `File.sync` makes a file's data durable, `FileSystem.sync_directory` the names in a
directory (created, renamed, removed). Errors are `OSError`s, as from `os`.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

_APPEND_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


class File(Protocol):
    """An open file that grows by appending, is read at offsets, and can be cut short."""

    def write(self, data: bytes) -> None:
        """Append all of `data` (not durable until `sync`)."""

    def pread(self, length: int, offset: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer at the end of the file)."""

    def size(self) -> int: ...

    def truncate(self, size: int) -> None:
        """Cut the file to `size` bytes (not durable until `sync`)."""

    def sync(self) -> None:
        """Make everything written to this file so far durable."""

    def mapped(self) -> contextlib.AbstractContextManager[memoryview]:
        """The whole file as a read-only buffer, valid inside the `with` block (memory-mapped when real)."""

    def close(self) -> None: ...


class FileSystem(Protocol):
    def open(self, path: Path, *, create: bool = False) -> File:
        """Open `path` for appending and reading; `create` makes it (or empties it) first."""

    def read_bytes(self, path: Path) -> bytes: ...

    def listdir(self, directory: Path) -> list[str]: ...

    def makedirs(self, directory: Path) -> None:
        """Create `directory` and its missing parents, durably (each new directory's parent is synced)."""

    def unlink(self, path: Path) -> None: ...

    def replace(self, source: Path, target: Path) -> None:
        """Rename `source` to `target` atomically, replacing it."""

    def sync_directory(self, directory: Path) -> None:
        """Make the creation, renaming or removal of names in `directory` durable."""

    def remove_tree(self, directory: Path) -> None:
        """Delete `directory` with everything in it, if it exists."""


class OsFile:
    """A file descriptor opened with O_APPEND. `fd` is -1 once closed, so a stale use fails instead of reaching
    whatever file the number is reused for."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def sync(self) -> None:
        os.fsync(self.fd)

    @contextlib.contextmanager
    def mapped(self) -> Iterator[memoryview]:
        size = self.size()
        if size == 0:
            yield memoryview(b"")
            return
        with mmap.mmap(self.fd, size, access=mmap.ACCESS_READ) as mapping, memoryview(mapping) as view:
            yield view

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class OsFileSystem:
    def open(self, path: Path, *, create: bool = False) -> OsFile:
        flags = _APPEND_FLAGS | (os.O_CREAT | os.O_TRUNC if create else 0)
        return OsFile(os.open(path, flags, 0o644))

    def read_bytes(self, path: Path) -> bytes:
        return path.read_bytes()

    def listdir(self, directory: Path) -> list[str]:
        return os.listdir(directory)

    def makedirs(self, directory: Path) -> None:
        missing: list[Path] = []
        while not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            self.sync_directory(path.parent)

    def unlink(self, path: Path) -> None:
        path.unlink()

    def replace(self, source: Path, target: Path) -> None:
        os.replace(source, target)

    def sync_directory(self, directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove_tree(self, directory: Path) -> None:
        shutil.rmtree(directory, ignore_errors=True)


OS_FILES: FileSystem = OsFileSystem()
"""The operating system's files: what every node uses."""


def sync_file_system(path: Path) -> None:
    """Make everything written to the file system holding `path` durable, by anyone (Linux `syncfs`; elsewhere
    `sync`): what a killed process wrote but never synced may sit in the page cache only. Blocks."""
    syncfs = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
    if syncfs is None:  # pragma: no cover - not Linux
        os.sync()
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error), str(path))
    finally:
        os.close(fd)
