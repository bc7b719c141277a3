"""An in-memory file system that loses, at a crash, what was never made durable: the simulation's disk.

It implements `mom.log.fs.FileSystem`, so the real storage classes (SegmentedLog, SnapshotStore, RaftStorage) run
over it unchanged. Every change that is not yet durable is kept in one journal, in the order it happened: data
written to or cut from a file (durable once that file is synced) and names created, renamed or removed in a
directory (durable once that directory is synced). A crash (`crash`) keeps what was durable plus a random prefix
of the journal, the last write of it possibly torn (cut short, or its end zero-filled): what a journaling file
system leaves after a power loss, in the order the writes were issued. Whatever relied on a sync that never
happened is gone, so a missing fsync in the storage code shows up as a failing seed.

Directories created by `makedirs` are durable at once (that is its contract: `OsFileSystem` syncs each parent).
Faults beyond a crash, for the recovery paths: `wipe` (a replaced disk) and `flip_bit` (silent corruption).
"""

from __future__ import annotations

import contextlib
import errno
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(eq=False)
class _Inode:
    data: bytearray = field(default_factory=bytearray)
    durable: bytearray = field(default_factory=bytearray)


@dataclass(eq=False)
class _Dir:
    entries: dict[str, _Inode | _Dir] = field(default_factory=dict)
    durable: dict[str, _Inode | _Dir] = field(default_factory=dict)


@dataclass
class _Write:
    inode: _Inode
    offset: int
    data: bytes


@dataclass
class _Truncate:
    inode: _Inode
    size: int


@dataclass
class _Link:
    directory: _Dir
    name: str
    node: _Inode | _Dir | None
    """None: the name is removed."""


@dataclass
class _Rename:
    directory: _Dir
    source: str
    target: str


_Op = _Write | _Truncate | _Link | _Rename


def _apply(op: _Op) -> None:
    """Make one journalled change durable."""
    match op:
        case _Write(inode, offset, data):
            if len(inode.durable) < offset:
                inode.durable.extend(bytes(offset - len(inode.durable)))
            inode.durable[offset : offset + len(data)] = data
        case _Truncate(inode, size):
            if len(inode.durable) > size:
                del inode.durable[size:]
            else:
                inode.durable.extend(bytes(size - len(inode.durable)))
        case _Link(directory, name, node):
            if node is None:
                directory.durable.pop(name, None)
            else:
                directory.durable[name] = node
        case _Rename(directory, source, target):
            node = directory.durable.pop(source, None)
            if node is not None:
                directory.durable[target] = node


class MemoryFile:
    def __init__(self, fs: MemoryFileSystem, inode: _Inode) -> None:
        self._fs = fs
        self._inode = inode
        self._epoch = fs.epoch
        self._closed = False

    def _check(self) -> _Inode:
        if self._closed or self._epoch != self._fs.epoch:
            raise OSError(errno.EBADF, "file closed, or opened before a crash")
        return self._inode

    def write(self, data: bytes) -> None:
        inode = self._check()
        self._fs.journal.append(_Write(inode, len(inode.data), bytes(data)))
        inode.data.extend(data)

    def pread(self, length: int, offset: int) -> bytes:
        return bytes(self._check().data[offset : offset + length])

    def size(self) -> int:
        return len(self._check().data)

    def truncate(self, size: int) -> None:
        inode = self._check()
        self._fs.journal.append(_Truncate(inode, size))
        if len(inode.data) > size:
            del inode.data[size:]
        else:
            inode.data.extend(bytes(size - len(inode.data)))

    def sync(self) -> None:
        inode = self._check()
        self._fs.syncs += 1
        self._fs.settle(lambda op: isinstance(op, _Write | _Truncate) and op.inode is inode)

    @contextlib.contextmanager
    def mapped(self) -> Iterator[memoryview]:
        yield memoryview(bytes(self._check().data))

    def close(self) -> None:
        self._closed = True


class MemoryFileSystem:
    """One machine's disk. Paths are absolute; everything starts empty."""

    def __init__(self) -> None:
        self.root = _Dir()
        self.journal: list[_Op] = []
        self.epoch = 0
        """Bumped by a crash: files opened before it are dead, like the process that opened them."""
        self.syncs = 0

    # -- the FileSystem interface

    def open(self, path: Path, *, create: bool = False) -> MemoryFile:
        directory, name = self._parent(path)
        node = directory.entries.get(name)
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if node is None:
            if not create:
                raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
            node = _Inode()
            directory.entries[name] = node
            self.journal.append(_Link(directory, name, node))
        elif create and node.data:
            self.journal.append(_Truncate(node, 0))
            node.data.clear()
        return MemoryFile(self, node)

    def read_bytes(self, path: Path) -> bytes:
        directory, name = self._parent(path)
        node = directory.entries.get(name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        return bytes(node.data)

    def listdir(self, directory: Path) -> list[str]:
        return list(self._dir(directory).entries)

    def makedirs(self, directory: Path) -> None:
        current = self.root
        for part in directory.parts[1:]:
            node = current.entries.get(part)
            if node is None:
                self._settle_directory(current)
                node = current.entries[part] = current.durable[part] = _Dir()
            if not isinstance(node, _Dir):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(directory))
            current = node

    def unlink(self, path: Path) -> None:
        directory, name = self._parent(path)
        node = directory.entries.get(name)
        if node is None:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
        if isinstance(node, _Dir):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        del directory.entries[name]
        self.journal.append(_Link(directory, name, None))

    def replace(self, source: Path, target: Path) -> None:
        directory, name = self._parent(source)
        target_directory, target_name = self._parent(target)
        if target_directory is not directory:
            raise OSError(errno.EXDEV, "renames across directories are not simulated")
        if name not in directory.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(source))
        directory.entries[target_name] = directory.entries.pop(name)
        self.journal.append(_Rename(directory, name, target_name))

    def sync_directory(self, directory: Path) -> None:
        self.syncs += 1
        self._settle_directory(self._dir(directory))

    def remove_tree(self, directory: Path) -> None:
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            parent, name = self._parent(directory)
            if isinstance(parent.entries.get(name), _Dir):
                del parent.entries[name]
                self.journal.append(_Link(parent, name, None))

    # -- crashes and faults

    def settle(self, durable_now: object) -> None:
        """Make the journalled changes that `durable_now(op)` selects durable, in order."""
        assert callable(durable_now)
        kept: list[_Op] = []
        for op in self.journal:
            if durable_now(op):
                _apply(op)
            else:
                kept.append(op)
        self.journal = kept

    def crash(self, rng: random.Random) -> str:
        """Power loss: keep the durable state and a random prefix of the journal (its last write maybe torn);
        everything reverts to that. Returns what happened, for the failure report."""
        keep = rng.randint(0, len(self.journal))
        lost = len(self.journal) - keep
        for op in self.journal[:keep]:
            _apply(op)
        torn = ""
        if keep < len(self.journal) and isinstance(op := self.journal[keep], _Write) and rng.random() < 0.5:
            cut = rng.randrange(len(op.data)) if op.data else 0
            fill = bytes(len(op.data) - cut) if rng.random() < 0.5 else b""
            _apply(_Write(op.inode, op.offset, op.data[:cut] + fill))
            torn = f", the next write torn at {cut} of {len(op.data)} bytes{' and zero-filled' if fill else ''}"
        self.journal = []
        self.epoch += 1
        self._revert(self.root)
        return f"kept {keep} unsynced changes, lost {lost}{torn}"

    def wipe(self, directory: Path) -> None:
        """The disk is replaced: `directory` and everything in it are gone, durably."""
        self.settle(lambda op: True)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            parent, name = self._parent(directory)
            parent.entries.pop(name, None)
            parent.durable.pop(name, None)

    def flip_bit(self, path: Path, offset: int, bit: int = 0) -> None:
        """Silent corruption of a durable byte (the journal is settled first, as after a clean shutdown)."""
        self.settle(lambda op: True)
        directory, name = self._parent(path)
        node = directory.entries[name]
        assert isinstance(node, _Inode)
        node.data[offset] ^= 1 << bit
        node.durable[offset] ^= 1 << bit

    def files(self, directory: Path) -> dict[str, int]:
        """The files under `directory` (relative paths) and their sizes."""
        found: dict[str, int] = {}

        def walk(node: _Dir, prefix: str) -> None:
            for name, child in node.entries.items():
                if isinstance(child, _Dir):
                    walk(child, f"{prefix}{name}/")
                else:
                    found[f"{prefix}{name}"] = len(child.data)

        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            walk(self._dir(directory), "")
        return found

    # -- internals

    def _settle_directory(self, node: _Dir) -> None:
        self.settle(lambda op: isinstance(op, _Link | _Rename) and op.directory is node)

    def _revert(self, directory: _Dir) -> None:
        directory.entries = dict(directory.durable)
        for node in directory.entries.values():
            if isinstance(node, _Dir):
                self._revert(node)
            else:
                node.data = bytearray(node.durable)

    def _dir(self, path: Path) -> _Dir:
        current = self.root
        for part in path.parts[1:]:
            node = current.entries.get(part)
            if node is None:
                raise FileNotFoundError(errno.ENOENT, "no such directory", str(path))
            if not isinstance(node, _Dir):
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path))
            current = node
        return current

    def _parent(self, path: Path) -> tuple[_Dir, str]:
        if not path.is_absolute():
            raise ValueError(f"the simulated file system takes absolute paths, not {path}")
        return self._dir(path.parent), path.name
