"""A topic's retained log as each replica holds it on disk, read after the run with the nodes stopped.

The REST API always answers a replay from the leader, so to compare replicas the engine reads each node's copy
of the topic's group directly: it copies the directory (recovery may cut a torn tail, and evidence must stay as
the node left it), recovers it with the node's own storage code, applies every entry in the log to a fresh
state machine from the snapshot, and reads the topic. The log may end with a few entries the leader never
committed; the checker allows a replica to be shorter (a prefix), not different.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import msgspec

from mom.broker import Broker, decode_entry
from mom.config import BrokerSection, StorageSection
from mom.errors import MomError
from mom.replication._storage import RaftStorage

ReplicaLog = list[tuple[int, str, str | None]]
"""(offset, message id, payload id) of every retained message, in offset order."""

_READ_PAGE = 10_000


def group_directories(data_dir: Path, topic: str) -> list[Path]:
    """The topic's group directories on a node (one, unless the topic was declared more than once)."""
    return sorted((data_dir / "groups").glob(f"t.{topic}@*"))


def read_topic_log(group_dir: Path, topic: str) -> ReplicaLog:
    """Recover a copy of one replica's group and replay it into a state machine; the topic's messages."""
    dedup_ms = round(BrokerSection().dedup_window_s * 1000)
    with tempfile.TemporaryDirectory(prefix="mom-chaos-replica-") as scratch:
        copy = Path(scratch) / group_dir.name
        shutil.copytree(group_dir, copy)
        storage = RaftStorage(copy, StorageSection(fsync="never"))
        try:
            persisted = storage.load()
        finally:
            storage.close()
    broker = (
        Broker.restore(persisted.snapshot.data, dedup_window_ms=dedup_ms, external_dead_letters=True)
        if persisted.snapshot.index
        else Broker(dedup_window_ms=dedup_ms, external_dead_letters=True)
    )
    for entry in persisted.entries:
        if entry.payload:
            with contextlib.suppress(MomError):  # the command's own error answer, the same on every replica
                broker.apply(decode_entry(entry.payload))
    found: ReplicaLog = []
    offset = 0
    try:
        while page := broker.read_topic(topic, offset, _READ_PAGE):
            for message in page:
                found.append((message.offset, message.id, _pid(message.body, message.binary)))
            offset = page[-1].offset + 1
    except MomError:
        return found  # the topic is not declared in this copy (a replica that never caught up)
    return found


def _pid(body: bytes, binary: bool) -> str | None:
    if binary:
        return None
    try:
        decoded = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    pid = decoded.get("pid") if isinstance(decoded, dict) else None
    return pid if isinstance(pid, str) else None


def replica_logs(data_dirs: dict[str, Path], topic: str) -> tuple[dict[str, ReplicaLog], dict[str, str]]:
    """Every node's copy of the topic (nodes without one are left out), and the nodes whose copy failed to load
    with the reason."""
    logs: dict[str, ReplicaLog] = {}
    errors: dict[str, str] = {}
    for node, data_dir in data_dirs.items():
        directories = group_directories(data_dir, topic)
        if not directories:
            continue
        try:
            logs[node] = read_topic_log(directories[-1], topic)
        except (MomError, OSError) as exc:
            errors[node] = f"{type(exc).__name__}: {exc}"
    return logs, errors
