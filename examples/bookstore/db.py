"""A service's SQLite database: its own file, shared by the service's instances, one transaction at a time.

sqlite3 blocks, so every transaction runs in a worker thread (`trio.to_thread`) while the event loop keeps
serving. Instances of one service on one host share the file: WAL mode lets readers run beside the one writer,
and a writer waits for another instance's write (busy timeout) instead of failing. `synchronous=FULL` makes a
commit durable before it returns, so "ack after commit" means the effect survives a crash of the machine, not
only of the process.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import trio

T = TypeVar("T")

BUSY_TIMEOUT_S = 30.0

PROCESSED_SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (
    key TEXT PRIMARY KEY,       -- the message's business key (messages.key), or dead:<key> for a dead letter
    outcome TEXT NOT NULL,      -- JSON list of the messages handling it produced, re-published on redelivery
    instance TEXT NOT NULL,     -- which instance handled it (shows competing consumers at work)
    at REAL NOT NULL
);
"""
"""Every consuming service records what it has handled, in the same transaction as the effect."""


class Database:
    """One instance's connection to its service's database."""

    def __init__(self, path: Path, schema: str, *, clock: Callable[[], float] = time.time) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.clock = clock
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._lock = trio.Lock()
        self._conn.executescript(schema + PROCESSED_SCHEMA)  # CREATE ... IF NOT EXISTS: idempotent, one per statement

    def close(self) -> None:
        self._conn.close()

    def _transaction(self, work: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        # BEGIN IMMEDIATE takes the write lock up front: a read-modify-write never loses to another instance.
        self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            result = work(self._conn)
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")
        return result

    async def write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one write transaction, committed (durably) when this returns, rolled back if it raises."""
        async with self._lock:
            return await trio.to_thread.run_sync(lambda: self._transaction(work, write=True))

    async def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one read transaction: a consistent snapshot."""
        async with self._lock:
            return await trio.to_thread.run_sync(lambda: self._transaction(work, write=False))


def open_database(data_dir: Path, service: str, schema: str) -> Database:
    return Database(data_dir / f"{service}.sqlite3", schema)
