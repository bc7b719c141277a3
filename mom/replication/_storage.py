"""The durable Raft state of one group on this node: its log, its hard state and its snapshots.

Layout of the group's directory:

- `log/`: a `SegmentedLog` whose record `i` is the Raft entry at index `i`, encoded as a `LogEntry` (term,
  payload), so the terms that Raft's safety depends on survive a restart with the commands;
- `hard_state`: the `HardState` (term, vote, commit, learner and member flags), written whenever anything but the
  commit index changes, as a record appended to a small journal (`mom.replication._hard_state`: one fsync);
- `snapshots/`: a `SnapshotStore` of `Snapshot` structs (index, term, state machine data).

What is durable when follows the `fsync` policy: `always` makes `sync` flush the log and the hard state, once
per Ready; `never` leaves both to the OS, except the rare truncations and resets that `SegmentedLog` always
makes durable. Every method may block on the disk: the driver calls them from a worker thread, one at a time.

A snapshot from the leader arrives in chunks as the leader's snapshot file (`receive_snapshot`), is verified,
and is put in place like a snapshot of our own before the log is reset to start after it. A crash in between
leaves the new snapshot followed by the old log: its entries after the snapshot are then from another
history, but harmless, because none of them can match an entry of the leader (Log Matching: the old log had
a different term at the snapshot's index, so every later entry differs from the leader's too) and the leader
overwrites them.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from pathlib import Path

import msgspec

from mom.config import StorageSection
from mom.errors import StorageError
from mom.log import SegmentedLog, SnapshotStore
from mom.log.fs import OS_FILES, FileSystem
from mom.log.log import LogDamaged
from mom.log.snapshot import IncomingSnapshot, SnapshotReader
from mom.replication._hard_state import HardStateFile
from mom.replication._raftlog import HardState, PersistedState, Snapshot
from mom.replication.messages import LogEntry

logger = logging.getLogger("mom.replication")
_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(LogEntry)
_snapshot_decoder = msgspec.msgpack.Decoder(Snapshot)


def fault_delay_s(storage: StorageSection, group_id: str) -> float:
    """The injected stall of group `group_id`'s disk writes (`[storage] fault_delay_ms`, for fault testing only)."""
    if storage.fault_delay_ms and fnmatch.fnmatchcase(group_id, storage.fault_delay_groups):
        return storage.fault_delay_ms / 1000
    return 0.0


def _lasting(hard_state: HardState) -> HardState:
    """What of a hard state must never be forgotten: all of it but the commit index."""
    return msgspec.structs.replace(hard_state, commit=0)


class RaftStorage:
    """One group's durable Raft state. Methods run on the trio thread, except as their contracts allow."""

    def __init__(
        self,
        directory: Path,
        storage: StorageSection,
        *,
        fs: FileSystem = OS_FILES,
        fault_delay_s: float = 0.0,
        durable_at_start: bool = False,
    ) -> None:
        self.directory = directory
        self._durable_at_start = durable_at_start
        """Everything on disk was made durable before `load` (see `SegmentedLog.open(durable=...)`): true only of
        the first open, in this process, of a directory that existed when it started (`GroupManager`)."""
        self._fs = fs
        self._fault_delay_s = fault_delay_s
        self._fsync = storage.fsync == "always"
        self._segment_bytes = storage.segment_bytes
        self._snapshots = SnapshotStore(directory / "snapshots", fs=fs)
        self._hard_state = HardStateFile(directory / "hard_state", fs, fsync=self._fsync)
        self._log: SegmentedLog | None = None
        self._lasting = _lasting(HardState())
        self.snapshot_index = 0
        """The index of the newest snapshot on disk (0: none)."""
        self.previous_snapshot_index = 0
        """The one before: the log keeps the entries after it, in case the newest snapshot is unreadable."""

    @property
    def log(self) -> SegmentedLog:
        if self._log is None:
            raise StorageError(f"the Raft log in {self.directory} is not open")
        return self._log

    def load(self, *, alone: bool = False) -> PersistedState:
        """Open the log and read back what survived: the newest readable snapshot, the hard state, and the
        entries after the snapshot.

        Lost entries (a log damaged in its middle, or missing the entries right after the snapshot) make this
        replica a learner: the flag is persisted before the log is cut, so a crash meanwhile keeps it. A
        replica that is its group's only one (`alone`) refuses to start instead: nobody could give them back.
        A snapshot that was arriving from the leader when the node stopped (a `.part`) is dropped: the leader
        sends it again.
        """
        self._snapshots.remove_partial()
        loaded = self._snapshots.load_latest()
        snapshot = Snapshot()
        if loaded is not None:
            index, data = loaded
            snapshot = _snapshot_decoder.decode(data)
            if snapshot.index != index:
                raise StorageError(f"snapshot file {index} in {self.directory} holds index {snapshot.index}")
        self.snapshot_index = self.previous_snapshot_index = snapshot.index
        hard_state = self._hard_state.load()
        directory, segment_bytes = self.directory / "log", self._segment_bytes
        try:
            log = SegmentedLog.open(
                directory,
                segment_bytes=segment_bytes,
                fs=self._fs,
                accept_damage=hard_state.learner,
                durable=self._durable_at_start,
            )
        except LogDamaged as damage:
            hard_state = self._lost_entries(hard_state, str(damage), alone=alone)
            log = SegmentedLog.open(directory, segment_bytes=segment_bytes, fs=self._fs, accept_damage=True)
        self._log = log
        if log.last_index < snapshot.index:
            log.reset(snapshot.index + 1)
        if log.first_index > snapshot.index + 1:
            missing = f"the log starts at entry {log.first_index} but the snapshot covers only up to {snapshot.index}"
            hard_state = self._lost_entries(hard_state, missing, alone=alone)
            log.reset(snapshot.index + 1)
        entries = [_entry_decoder.decode(record) for _, record in log.read(snapshot.index + 1)]
        self._lasting = _lasting(hard_state)
        return PersistedState(hard_state, snapshot, entries)

    def _lost_entries(self, hard_state: HardState, what: str, *, alone: bool) -> HardState:
        """Entries this replica may have acknowledged are gone: become a learner, durably, before anything else."""
        if alone:
            raise StorageError(
                f"the Raft log in {self.directory} lost entries ({what}) and the group has no other replica to "
                "recover them from: refusing to start on partial state. Restore the directory from a backup, or, "
                "to go on without what was lost, truncate the damaged segment before the invalid record and remove "
                "the segments after it."
            )
        if not hard_state.learner:
            logger.warning(
                "%s: %s. This replica lost entries it may have acknowledged: it rejoins as a learner, without a "
                "vote, until it has caught up with the leader",
                self.directory,
                what,
            )
            hard_state = msgspec.structs.replace(hard_state, learner=True)
            self._hard_state.write(hard_state)
        return hard_state

    def _stall(self) -> None:
        """Fault testing only: act like a disk that takes `fault_delay_s` to do anything."""
        if self._fault_delay_s:
            time.sleep(self._fault_delay_s)

    def truncate_after(self, index: int) -> None:
        """Drop the entries after `index` (a new leader overwrites them); durable before it returns."""
        self._stall()
        self.log.truncate_suffix(index)

    def append(self, first_index: int, entries: list[LogEntry]) -> None:
        """Write `entries` from `first_index`, which must follow the last entry (durable after `sync`)."""
        if first_index != self.log.last_index + 1:
            raise StorageError(
                f"entries from {first_index} would not follow the last entry {self.log.last_index} of "
                f"the Raft log in {self.directory}"
            )
        self.log.append([_entry_encoder.encode(entry) for entry in entries])

    def sync(self, hard_state: HardState | None) -> None:
        """Make the appended entries durable (per the policy), and the hard state if anything but its commit
        index changed (the term, the vote, the learner or member flag).

        A vote must never be forgotten, so a new term or vote is written (and flushed) at once. A change of
        the commit index alone is not written: recovering an older commit index is safe (the leader tells it
        again, and the entries up to it are re-applied then), and skipping it keeps a steady stream of writes
        at one fsync per Ready.

        May run in a worker thread while the trio thread goes on stepping the Raft core, as long as nothing
        else here is called meanwhile (the driver awaits it); `SegmentedLog.sync` allows that.
        """
        self._stall()
        if self._fsync:
            self.log.sync()
        if hard_state is not None and _lasting(hard_state) != self._lasting:
            self._hard_state.write(hard_state)
            self._lasting = _lasting(hard_state)

    def changes_lasting(self, hard_state: HardState) -> bool:
        """Whether `sync(hard_state)` would write it: something but its commit index changed."""
        return _lasting(hard_state) != self._lasting

    def save_snapshot(self, snapshot: Snapshot) -> None:
        """Store a snapshot durably (always fsynced: it replaces log segments). Blocks: a worker thread may
        call it while nothing else here is called."""
        self._stall()
        self._snapshots.save(snapshot.index, _entry_encoder.encode(snapshot))

    def open_snapshot(self, index: int) -> SnapshotReader:
        """Our snapshot file at `index`, open to stream to a follower in chunks."""
        return self._snapshots.open(index)

    def receive_snapshot(self, index: int) -> IncomingSnapshot:
        """An empty file for the leader's snapshot `index`, filled chunk by chunk; `commit()` it once verified,
        then `load_snapshot`."""
        return self._snapshots.receive(index)

    def load_snapshot(self, index: int) -> Snapshot:
        """The snapshot stored at `index` (one we took, or one received and committed), decoded."""
        try:
            snapshot = _snapshot_decoder.decode(self._snapshots.load(index))
        except msgspec.DecodeError as exc:
            raise StorageError(f"snapshot file {index} in {self.directory} does not decode: {exc}") from exc
        if snapshot.index != index:
            raise StorageError(f"snapshot file {index} in {self.directory} holds index {snapshot.index}")
        return snapshot

    def compacted(self, snapshot: Snapshot) -> None:
        """The state machine's own snapshot was saved: free the segments that even the previous one covers.

        Entries after the previous snapshot stay: should the newest snapshot prove unreadable, recovery falls
        back to the previous one and needs every later entry.
        """
        self.log.truncate_prefix(self.snapshot_index)
        self.previous_snapshot_index, self.snapshot_index = self.snapshot_index, snapshot.index

    def installed(self, snapshot: Snapshot) -> None:
        """A snapshot from the leader was saved: the log now starts after it (durable before it returns)."""
        self._stall()
        self.log.reset(snapshot.index + 1)
        self.previous_snapshot_index = self.snapshot_index = snapshot.index

    def size_bytes(self) -> int:
        return self.log.size_bytes() if self._log is not None else 0

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
