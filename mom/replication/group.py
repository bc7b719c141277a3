"""One replicated state machine on this node: a group's Raft core, driven over real storage and the router.

`RaftGroup` is what the service submits commands to and reads the applied state and the cluster view from. Its
driver follows the core's contract for every Ready, in this order: persist the snapshot,
the log changes and the hard state (one fsync for all of them, off the event loop), install the snapshot into
the broker, hand the messages to the router (only now, so every vote and acknowledgement is backed by the
disk), apply the committed entries and wake their submitters, then `advance`.

A submitter gets the result of its own entry only: the entry is identified by (index, term), and whatever
else lands at that index, or a loss of leadership before it commits, answers it with `OutcomeUnknown` (the
write may or may not take effect later; a retry with a dedup id is safe).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVarTuple, Unpack

import trio

from mom.broker import Broker
from mom.broker.commands import Command, Entry, Result, decode_entry, encode_entry
from mom.config import StorageSection
from mom.errors import MomError, OutcomeUnknown
from mom.replication._storage import RaftStorage
from mom.replication.messages import LogEntry, Message
from mom.replication.raft import NotLeader, RaftCore, Ready, Snapshot

if TYPE_CHECKING:
    from mom.replication.router import Router

log = logging.getLogger("mom.replication")
_Args = TypeVarTuple("_Args")

Listener = Callable[[Command], None]
"""Told of every applied command (also the failed ones), on the trio thread: wakes long-polls."""

FIRST_ELECTION_TICKS = 3
"""A new group's preferred leader stands this soon (the others wait 10 to 20 ticks): time enough for the other
replicas to have started the group, so its votes are not lost."""

_LOST = "leadership changed before the write committed; it may or may not have been applied: retry with a dedup_id"
_STOPPED = "the node is shutting down; the write may or may not have been applied: retry with a dedup_id"


@dataclass(eq=False)
class _Pending:
    term: int
    done: trio.Event = field(default_factory=trio.Event)
    result: Result | None = None
    error: BaseException | None = None

    def fail(self, error: BaseException) -> None:
        self.error = error
        self.done.set()


class RaftGroup:
    """The log, snapshots and broker state machine of one group, kept in agreement with the other voters."""

    def __init__(
        self,
        group_id: str,
        node_id: str,
        voters: Sequence[str],
        directory: Path,
        storage: StorageSection,
        router: Router,
        *,
        dedup_window_ms: int,
        clock_ms: Callable[[], int],
        rng: random.Random,
        preferred_leader: str | None = None,
        election_ticks: int = 10,
        heartbeat_ticks: int = 2,
        external_dead_letters: bool = False,
    ) -> None:
        if node_id not in voters:
            raise ValueError(f"{node_id!r} is not one of the voters {list(voters)} of group {group_id!r}")
        self.group_id = group_id
        self.node_id = node_id
        self.voters = tuple(voters)
        self._directory = directory
        self._settings = storage
        self._router = router
        self._dedup_window_ms = dedup_window_ms
        self._clock_ms = clock_ms
        self._rng = rng
        self._preferred = preferred_leader
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks
        self._external_dead_letters = external_dead_letters
        self.broker = self._restore(None)
        self.core: RaftCore | None = None
        """The Raft state machine, once `run` recovered it (None before and after): observers may read it."""
        self._storage = RaftStorage(directory, storage)
        self._listeners: list[Listener] = []
        self._pending: dict[int, _Pending] = {}
        self._changed = trio.Event()
        self._applied_index = 0
        self._bytes_since_snapshot = 0
        self._led_term = 0
        """The term this node last took the lead in (and said so in the log)."""

    def _restore(self, data: bytes | None) -> Broker:
        """A fresh state machine, or one restored from a snapshot, configured the same on every replica."""
        if data is None:
            return Broker(dedup_window_ms=self._dedup_window_ms, external_dead_letters=self._external_dead_letters)
        return Broker.restore(
            data, dedup_window_ms=self._dedup_window_ms, external_dead_letters=self._external_dead_letters
        )

    # --------------------------------------------------------------------------------------------------------
    # What the service uses

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Recover from the directory, join the router, then drive the core until cancelled."""
        try:
            persisted = self._storage.load()
            if persisted.snapshot.index:
                self.broker = self._restore(persisted.snapshot.data)
            self._applied_index = persisted.snapshot.index
            self.core = RaftCore(
                self.node_id,
                self.voters,
                persisted=persisted,
                rng=self._rng,
                election_ticks=self._election_ticks,
                heartbeat_ticks=self._heartbeat_ticks,
                preferred_leader=self._preferred,
                group=self.group_id,
            )
            fresh = persisted.hard_state.term == 0 and not persisted.entries and not persisted.snapshot.index
            if fresh and self._preferred == self.node_id and len(self.voters) > 1:
                self.core.stand_after(FIRST_ELECTION_TICKS)
            log.info(
                "group %s recovered: snapshot at %d, %d entries, term %d",
                self.group_id,
                persisted.snapshot.index,
                len(persisted.entries),
                persisted.hard_state.term,
            )
            self._router.add_group(self)
            task_status.started()
            await self._drive(self.core)
        finally:
            self._router.remove_group(self.group_id)
            self.core = None
            self._fail_pending(OutcomeUnknown(_STOPPED))
            self._storage.close()

    async def submit(self, command: Command) -> Result:
        """Replicate `command` and return the result of applying it (or raise its error); leader only."""
        core = self.core
        if core is None:
            raise NotLeader(None)
        first, _ = core.propose([encode_entry(Entry(self._clock_ms(), command))])
        pending = self._pending[first] = _Pending(core.term)
        self._changed.set()
        await pending.done.wait()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def storage_stats(self) -> dict[str, float]:
        """Sizes and positions for /metrics and the cluster view."""
        core = self.core
        return {
            "log_bytes": float(self._storage.size_bytes()),
            "applied_index": float(self._applied_index),
            "snapshot_index": float(self._storage.snapshot_index),
            "commit_index": float(core.commit_index if core else 0),
            "term": float(core.term if core else 0),
        }

    # --------------------------------------------------------------------------------------------------------
    # The cluster view

    @property
    def is_leader(self) -> bool:
        return self.core is not None and self.core.role == "leader"

    @property
    def leader_id(self) -> str | None:
        return self.core.leader_id if self.core is not None else None

    @property
    def term(self) -> int:
        return self.core.term if self.core is not None else 0

    @property
    def commit_index(self) -> int:
        return self.core.commit_index if self.core is not None else 0

    def replica_lag(self) -> dict[str, int]:
        """Entries each voter lacks, as far as the leader knows (itself: 0); empty unless leading."""
        core = self.core
        if core is None or core.role != "leader":
            return {}
        matches = {peer: pr.match for peer, pr in core._progress.items()}
        return {voter: core.last_index - matches.get(voter, core.last_index) for voter in self.voters}

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to `to` once it has caught up; raises NotLeader unless leading."""
        if self.core is None:
            raise NotLeader(None)
        self.core.transfer_leadership(to)
        self._changed.set()

    def step(self, message: Message) -> None:
        if self.core is not None:
            self.core.step(message)
            self._changed.set()

    def tick(self) -> None:
        if self.core is not None:
            self.core.tick()
            self._changed.set()

    # --------------------------------------------------------------------------------------------------------
    # The driver

    async def _drive(self, core: RaftCore) -> None:
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            while (ready := core.ready()) is not None:
                await self._handle(core, ready)
            if core.role == "leader" and self._led_term != core.term:  # one line per leadership change
                self._led_term = core.term
                log.info("group %s: %s leads (term %d)", self.group_id, self.node_id, core.term)
            self._fail_lost(core)
            if self._bytes_since_snapshot >= self._settings.snapshot_bytes:
                await self._snapshot(core)

    async def _handle(self, core: RaftCore, ready: Ready) -> None:
        storage = self._storage
        if ready.snapshot is not None:
            await self._blocking(storage.save_snapshot, ready.snapshot)
            storage.installed(ready.snapshot)
        if ready.truncate_after is not None:
            storage.truncate_after(ready.truncate_after)
        if ready.entries:
            storage.append(ready.entries_index, ready.entries)
        if ready.entries or ready.hard_state is not None:
            await self._blocking(storage.sync, ready.hard_state)
        if ready.snapshot is not None:
            self._install(ready.snapshot)
        self._router.send(ready.messages)
        for offset, entry in enumerate(ready.committed):
            self._apply(ready.committed_index + offset, entry)
        core.advance(ready)

    async def _blocking(self, fn: Callable[[Unpack[_Args]], None], *args: *_Args) -> None:
        """Run a call that may flush to disk: in a worker thread when flushing (`fsync = "always"`), inline
        otherwise, so that a simulation with `never` stays on the trio thread and deterministic."""
        if self._settings.fsync == "always":
            await trio.to_thread.run_sync(fn, *args)
        else:
            fn(*args)

    def _install(self, snapshot: Snapshot) -> None:
        self.broker = self._restore(snapshot.data)
        self._applied_index = snapshot.index
        self._bytes_since_snapshot = 0
        for index in [i for i in self._pending if i <= snapshot.index]:
            self._pending.pop(index).fail(OutcomeUnknown(_LOST))
        log.info("group %s installed the leader's snapshot at %d", self.group_id, snapshot.index)

    def _apply(self, index: int, entry: LogEntry) -> None:
        """Apply one committed entry; a MomError is its command's answer, never a reason to stop applying."""
        if index != self._applied_index + 1:
            raise AssertionError(f"group {self.group_id} applies {index} after {self._applied_index}")
        self._applied_index = index
        pending = self._pending.pop(index, None)
        if pending is not None and pending.term != entry.term:
            pending.fail(OutcomeUnknown(_LOST))
            pending = None
        if not entry.payload:  # the no-op a new leader commits its term with
            return
        self._bytes_since_snapshot += len(entry.payload)
        decoded = decode_entry(entry.payload)
        result: Result | None = None
        error: BaseException | None = None
        try:
            result = self.broker.apply(decoded)
        except MomError as exc:
            error = exc
        except Exception as exc:
            # A bug in the state machine: every replica hits it identically, so keep applying.
            log.exception("group %s: applying entry %d failed", self.group_id, index)
            error = exc
        for listener in self._listeners:
            listener(decoded.command)
        if pending is not None:
            pending.result, pending.error = result, error
            pending.done.set()

    def _fail_lost(self, core: RaftCore) -> None:
        """Answer the submitters whose entries can no longer commit under the leadership they were proposed
        in."""
        if not self._pending:
            return
        leading = core.role == "leader"
        for index in [i for i, p in self._pending.items() if not leading or p.term != core.term]:
            self._pending.pop(index).fail(OutcomeUnknown(_LOST))

    def _fail_pending(self, error: MomError) -> None:
        for pending in self._pending.values():
            pending.fail(error)
        self._pending.clear()

    async def _snapshot(self, core: RaftCore) -> None:
        """Save the applied state and compact the log up to it: this is what bounds disk use."""
        index = self._applied_index
        term = core.log.term_at(index)
        if index > core.log.stable or term is None or index <= core.snapshot.index:
            return  # applied beyond what is durable here (or nothing new): try again after the next Ready
        snapshot = Snapshot(index, term, self.broker.snapshot())
        self._bytes_since_snapshot = 0
        await self._blocking(self._storage.save_snapshot, snapshot)
        core.compact(index, snapshot.data)
        self._storage.compacted(snapshot)
        log.info("group %s: snapshot at %d (%d bytes)", self.group_id, index, len(snapshot.data))
