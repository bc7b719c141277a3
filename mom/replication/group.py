"""One replicated state machine on this node: a group's Raft core, driven over real storage and the router.

`RaftGroup` is what the service submits commands to and reads the applied state and the cluster view from. Its
driver follows the core's contract for every Ready, in this order: persist the snapshot,
the log changes and the hard state (one fsync for all of them), install the snapshot into
the broker, hand the messages to `send` (only now, so every vote and acknowledgement is backed by the disk),
apply the committed entries and wake their submitters, then `advance`. Snapshots travel in chunks beside
that loop (`_snapshot_transfer`): the leader streams its snapshot file to the followers the core names, a
follower stores the chunks its core accepts and offers the whole file back to the core.

The group knows nothing of the router: it is given a `send` callable for its outgoing messages, and the
manager (which owns both) registers it with the router once it has recovered.

Nothing that blocks runs on the event loop: loading the storage, persisting a Ready, saving and restoring
snapshots (the state machine's encoding and decoding included), storing received snapshot chunks go to the
node's `Disk` worker threads, one call at a time per group from the driver. The only other caller is the
snapshot sender, which opens and reads a snapshot file of its own (an open file survives the compaction that
deletes its name), so it shares nothing with the driver's calls. While the driver awaits one, the router goes
on stepping and ticking the core (the core is pure memory), and the broker is left alone: only the driver
changes it. In the simulation the `Disk` runs every call inline, so a seed still replays exactly.

A submitter gets the result of its own entry only: the entry is identified by (index, term), and whatever
else lands at that index, or a loss of leadership before it commits, answers it with `OutcomeUnknown` (the
write may or may not take effect later; a retry with a dedup id is safe).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import trio

from mom.broker import Broker
from mom.broker.commands import Command, Entry, Result, decode_entry, encode_entry
from mom.config import ReplicationSection, StorageSection
from mom.errors import MomError, OutcomeUnknown, Overloaded
from mom.log.disk import Disk
from mom.replication._elections import CampaignGate
from mom.replication._hand_backs import HandBackGate
from mom.replication._snapshot_transfer import SnapshotReceiver, SnapshotSender
from mom.replication._storage import RaftStorage, fault_delay_s
from mom.replication.membership import Membership, decode_config, is_config
from mom.replication.messages import LogEntry, Message, SnapshotChunkAck
from mom.replication.raft import Change, NotLeader, PersistedState, RaftCore, Ready, Snapshot

log = logging.getLogger("mom.replication")
_T = TypeVar("_T")

Send = Callable[[Sequence[Message]], None]
"""Hands outgoing Raft messages to the wire (the router's `send`): never blocks."""

Listener = Callable[[Command], None]
"""Told of every applied command (also the failed ones), on the trio thread: wakes long-polls."""

MembershipListener = Callable[[Membership, bool], None]
"""Told (configuration, removed) whenever a configuration entry is applied here (committed), on the trio thread;
`removed`: this node is no member of it any more (see `RaftGroup.removed`). Must not block."""

FIRST_ELECTION_TICKS = 3
"""A new group's preferred leader stands this soon after its join probes found the group new (the others wait 10
to 20 ticks): the replicas that answered them have started the group, so its votes are not lost."""


class GroupObserver(Protocol):
    """Told what operators watch (the node's metrics implement it); called on the trio thread, must not block."""

    def synced(self, seconds: float, entries: int) -> None:
        """One flush of the log (fsync under `always`) took `seconds` and made `entries` new entries durable."""

    def new_terms(self, count: int) -> None:
        """The group moved `count` terms on: each one is an election somewhere in the group."""

    def new_leader(self, group_id: str, leader: str) -> None:
        """The group learned of a leader other than the last one it knew."""


class NoObserver:
    def synced(self, seconds: float, entries: int) -> None:
        pass

    def new_terms(self, count: int) -> None:
        pass

    def new_leader(self, group_id: str, leader: str) -> None:
        pass


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


@dataclass(eq=False)
class _ConfigWaiter:
    index: int
    term: int
    committed: bool = False
    done: trio.Event = field(default_factory=trio.Event)


class RaftGroup:
    """The log, snapshots and broker state machine of one group, kept in agreement with the other voters."""

    def __init__(
        self,
        group_id: str,
        node_id: str,
        voters: Sequence[str],
        directory: Path,
        storage: StorageSection,
        send: Send,
        *,
        disk: Disk,
        replication: ReplicationSection | None = None,
        dedup_window_ms: int,
        clock_ms: Callable[[], int],
        rng: random.Random,
        preferred_leader: str | None = None,
        election_ticks: int = 10,
        heartbeat_ticks: int = 2,
        external_dead_letters: bool = False,
        observer: GroupObserver | None = None,
        learners: Sequence[str] = (),
        joining_as_learner: bool = False,
        first_term: bool = False,
        held_before: bool | None = None,
        campaign_gate: CampaignGate | None = None,
        durable_at_start: bool = False,
        greets_restarts: bool = False,
        hand_back_gate: HandBackGate | None = None,
    ) -> None:
        if node_id not in voters and node_id not in learners and not joining_as_learner:
            raise ValueError(f"{node_id!r} is not one of the voters {list(voters)} of group {group_id!r}")
        self.group_id = group_id
        self.node_id = node_id
        self.voters = tuple(voters)
        """The configuration this group was constructed with (used until its log or snapshot holds one; the one in
        force is `membership`)."""
        self.learners = tuple(learners)
        self._joining_as_learner = joining_as_learner
        self._first_term = first_term
        """A new group's first term without an election (`RaftCore(first_term=True)`)."""
        self._held_before = held_before
        """Whether this node's disk may have held the group before (`RaftCore(held_before=...)`)."""
        self._directory = directory
        self._settings = storage
        self._replication = replication if replication is not None else ReplicationSection()
        self._send = send
        self._disk = disk
        self._dedup_window_ms = dedup_window_ms
        self._clock_ms = clock_ms
        self._rng = rng
        self._preferred = preferred_leader
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks
        self._external_dead_letters = external_dead_letters
        self._observer: GroupObserver = observer or NoObserver()
        self._campaign_gate = campaign_gate
        """The node's bound on campaigns at once, shared by its data groups (`_elections.CampaignGate`)."""
        self._greets_restarts = greets_restarts
        """The metadata group, which a node's readiness waits for: after a restart its replica asks for the
        leader at the first tick, and its leader heartbeats a restarted peer at once (`RaftCore(greets_restarts)`)."""
        self._hand_back_gate = hand_back_gate
        """The node's bound on hand-backs of leadership at once, shared by its data groups (`_hand_backs`)."""
        self._seen: tuple[int, str | None] = (0, None)
        """The term and leader last reported to the observer (the term recovered at start counts as seen)."""
        self.broker = self._restore(None)
        self.core: RaftCore | None = None
        """The Raft state machine, once `run` recovered it (None before and after): observers may read it."""
        self._storage = RaftStorage(
            directory,
            storage,
            fs=disk.fs,
            fault_delay_s=fault_delay_s(storage, group_id),
            durable_at_start=durable_at_start,  # the file system was synced since anyone last wrote here
        )
        self._sender = SnapshotSender(
            group_id,
            node_id,
            open_snapshot=self._storage.open_snapshot,
            send=send,
            wanted=self._wants_snapshot,
            run_blocking=self._run_blocking,
            chunk_bytes=self._replication.snapshot_chunk_bytes,
            window=self._replication.snapshot_window,
        )
        self._receiver = SnapshotReceiver(
            group_id,
            node_id,
            receive_snapshot=self._storage.receive_snapshot,
            load_snapshot=self._storage.load_snapshot,
            send=send,
            run_blocking=self._run_blocking,
        )
        self._listeners: list[Listener] = []
        self._membership_listeners: list[MembershipListener] = []
        self._install_listeners: list[Callable[[], None]] = []
        self._config_waiters: list[_ConfigWaiter] = []
        """The configuration entries membership changes wait for."""
        self._pending: dict[int, _Pending] = {}
        self._changed = trio.Event()
        self._applied_index = 0
        self._bytes_since_snapshot = 0
        self.snapshots_installed = 0
        """Snapshots received from a leader and installed (a replica that fell behind the compacted log)."""
        self._held_bytes = 0
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
        """Recover from the directory, then drive the core until cancelled; `started()` once it can take
        messages (`step`) and ticks."""
        try:
            persisted, self.broker = await self._disk.run(self._recover)
            self._applied_index = persisted.snapshot.index
            replication = self._replication
            self.core = RaftCore(
                self.node_id,
                self.voters,
                learners=self.learners,
                joining_as_learner=self._joining_as_learner,
                persisted=persisted,
                rng=self._rng,
                election_ticks=self._election_ticks,
                heartbeat_ticks=self._heartbeat_ticks,
                preferred_leader=self._preferred,
                max_bytes_per_message=replication.max_append_bytes,
                max_inflight_bytes=replication.max_inflight_bytes,
                max_uncommitted_bytes=replication.max_uncommitted_bytes,
                group=self.group_id,
                quiesce=replication.quiesce,
                first_term=self._first_term,
                held_before=self._held_before,
                run=self._clock_ms(),
                campaign_gate=self._campaign_gate,
                greets_restarts=self._greets_restarts,
                hand_back_gate=self._hand_back_gate,
            )
            if persisted.empty and self._preferred == self.node_id and len(self.voters) > 1:
                self.core.stand_after(FIRST_ELECTION_TICKS)
            self._seen = (persisted.hard_state.term, None)
            log.debug(  # debug: thousands of groups recover at a node's start
                "group %s recovered: snapshot at %d, %d entries, term %d",
                self.group_id,
                persisted.snapshot.index,
                len(persisted.entries),
                persisted.hard_state.term,
            )
            del persisted  # the snapshot's data must not outlive recovery: it can be as large as the state
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sender.run)
                task_status.started()
                await self._drive(self.core)
        finally:
            if self._campaign_gate is not None:
                self._campaign_gate.forget(self.group_id)
            if self._hand_back_gate is not None:
                self._hand_back_gate.forget(self.group_id)
            self.core = None
            self._fail_pending(OutcomeUnknown(_STOPPED))
            self._settle_config_waiters(None)
            with trio.CancelScope(shield=True):
                await self._receiver.close()
            self._storage.close()

    def _recover(self) -> tuple[PersistedState, Broker]:
        """What the disk holds, and the state machine restored from its snapshot (in a worker thread)."""
        persisted = self._storage.load(alone=len(self.voters) == 1 and not self.learners)
        broker = self._restore(persisted.snapshot.data) if persisted.snapshot.index else self.broker
        return persisted, broker

    @contextmanager
    def admitted(self, nbytes: int) -> Iterator[None]:
        """Count a write of `nbytes` against the group's budget (`max_uncommitted_bytes`) from its arrival until
        it is answered, whether it waits to be proposed (publishes are merged, one merged command at a time)
        or waits for its replicas; Overloaded (429) when the writes held already fill the budget. One write is
        always admitted, however large. With the core's own bound on its uncommitted log, this is what keeps a
        leader's memory bounded when its followers cannot keep up (or are stopped)."""
        budget = self._replication.max_uncommitted_bytes
        if self._held_bytes and self._held_bytes + nbytes > budget:
            raise Overloaded(
                f"group {self.group_id} holds {self._held_bytes} bytes of writes waiting for its replicas (the "
                f"limit is {budget}); retry shortly"
            )
        self._held_bytes += nbytes
        try:
            yield
        finally:
            self._held_bytes -= nbytes

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
    def electing(self) -> bool:
        """A voter here whose leader's node was declared dead (or that stands for election) and that has heard
        of no leader since: the other replicas know no more than this one about who leads next."""
        core = self.core
        return core is not None and core.voting and (core.lost_leader or core.role == "candidate")

    @property
    def electing_in_queue(self) -> bool:
        """Campaigns of this node's groups wait for a slot now (`_elections.CampaignGate`): a storm of elections."""
        return self._campaign_gate is not None and self._campaign_gate.waiting > 0

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
        matches = {peer: follower.match for peer, follower in core.followers().items()}
        return {member: core.last_index - matches.get(member, core.last_index) for member in core.membership.members}

    @property
    def snapshot_chunks_sent(self) -> int:
        return self._sender.chunks_sent

    def snapshot_transfers(self) -> dict[str, tuple[int, int, int]]:
        """Follower -> (snapshot index, bytes acknowledged, size or -1) of the snapshots this leader streams."""
        return self._sender.transfers()

    def prefer(self, node: str | None) -> None:
        """Make `node` this group's preferred leader from now on (see `RaftCore.prefer`)."""
        self._preferred = node
        if self.core is not None:
            self.core.prefer(node)
            self._changed.set()

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to `to` once it has caught up; raises NotLeader unless leading."""
        if self.core is None:
            raise NotLeader(None)
        self.core.transfer_leadership(to)
        self._changed.set()

    # --------------------------------------------------------------------------------------------------------
    # Membership changes (Raft's single-server changes: see `mom.replication.membership`)

    @property
    def membership(self) -> Membership:
        """The latest configuration this replica knows (appended or committed; the one in force here)."""
        if self.core is not None:
            return self.core.membership
        return Membership(self.voters, self.learners)

    @property
    def removed(self) -> bool:
        """This replica was a member and a committed configuration removed it: the group goes on without it (the
        manager stops it and erases its data). Membership listeners hear it too. A removed follower learns it
        from the leader's last message to it; should that be lost, the cluster's own record says so."""
        return self.core is not None and self.core.removed

    def caught_up(self, node: str) -> bool:
        """Leader only: `node` (a learner) holds every entry this leader has committed, so it can be promoted."""
        return self.core is not None and self.core.caught_up(node)

    def add_membership_listener(self, listener: MembershipListener) -> None:
        self._membership_listeners.append(listener)

    def add_install_listener(self, listener: Callable[[], None]) -> None:
        """Told when a snapshot from the leader replaced the state: the commands it covers were never applied
        here one by one, so whoever follows them through `add_listener` must look at the new state as a whole."""
        self._install_listeners.append(listener)

    async def add_learner(self, node: str) -> None:
        """Add `node` as a learner (it replicates, votes in nothing); returns once the change committed."""
        await self._change_membership("add_learner", node)

    async def promote(self, node: str) -> None:
        """Make the learner `node` a voter, once it has caught up (else MembershipChangeRefused)."""
        await self._change_membership("promote", node)

    async def remove_member(self, node: str) -> None:
        """Remove the voter or learner `node`; removing the leader makes it step down once the change commits."""
        await self._change_membership("remove", node)

    async def _change_membership(self, change: Change, node: str) -> None:
        """Leader only (NotLeader otherwise); idempotent (a change in effect already waits only for its entry to
        commit); MembershipChangeRefused when it cannot be made now; OutcomeUnknown when leadership changed
        before it committed (it may still take effect: ask again, the retry is idempotent)."""
        core = self.core
        if core is None:
            raise NotLeader(None)
        index = core.change_membership(change, node)
        if index <= core.commit_index:
            return
        waiter = _ConfigWaiter(index, core.log.term_at(index) or 0)
        self._config_waiters.append(waiter)
        self._changed.set()
        await waiter.done.wait()
        if not waiter.committed:
            raise OutcomeUnknown(_LOST)

    def _settle_config_waiters(self, core: RaftCore | None) -> None:
        """Wake the membership changes whose entry committed, or can no longer commit as proposed (None: the
        group stopped)."""
        waiting = []
        for waiter in self._config_waiters:
            term = core.log.term_at(waiter.index) if core is not None else -1
            if core is not None and core.commit_index >= waiter.index:
                waiter.committed = term in (waiter.term, None)  # None: compacted since, so applied
                waiter.done.set()
            elif core is None or core.role != "leader" or term != waiter.term:
                waiter.done.set()
            else:
                waiting.append(waiter)
        self._config_waiters = waiting

    def step(self, message: Message) -> None:
        if self.core is not None:
            self.core.step(message)
            if isinstance(message, SnapshotChunkAck):
                self._sender.acknowledged(message)
            self._changed.set()

    def tick(self) -> None:
        """Advance the core's timers; the driver wakes only when the tick changed something (a thousand awake
        groups ticked every 50 ms would otherwise wake a thousand drivers for nothing, which is what starved the
        event loop in an election storm)."""
        core = self.core
        if core is not None:
            before = (core.role, core.leader_id, core.term)
            core.tick()
            self._sender.tick()
            if core.has_ready() or (core.role, core.leader_id, core.term) != before:
                self._changed.set()

    @property
    def waiting_for_slot(self) -> bool:
        """Due to campaign, refused a slot (`_elections.CampaignGate`): the router ticks it less often."""
        return self.core is not None and self.core.waiting_for_slot

    @property
    def quiesced(self) -> bool:
        """Idle, with no timer running: the router stops ticking it until something wakes it."""
        return self.core is not None and self.core.quiesced

    def peer_down(self, peer: str) -> None:
        """The node liveness declared `peer`'s node dead (see `RaftCore.peer_down`)."""
        if self.core is not None:
            self.core.peer_down(peer)
            self._changed.set()

    def peer_up(self, peer: str) -> None:
        if self.core is not None:
            self.core.peer_up(peer)
            self._changed.set()

    def retry_hand_back(self) -> None:
        """A hand-back slot is free (see `RaftCore.retry_hand_back`)."""
        if self.core is not None:
            self.core.retry_hand_back()

    def peer_restarted(self, peer: str) -> None:
        """`peer`'s node is a new process (see `RaftCore.peer_restarted`)."""
        if self.core is not None:
            self.core.peer_restarted(peer)

    def _wants_snapshot(self, peer: str, term: int) -> bool:
        """Does the core, leading in `term`, still wait for `peer` to get a snapshot?"""
        core = self.core
        follower = core.follower(peer) if core is not None and core.term == term else None
        return follower is not None and follower.state == "snapshot"

    # --------------------------------------------------------------------------------------------------------
    # The driver

    async def _drive(self, core: RaftCore) -> None:
        standing = self._report_standing(core, None)
        while True:
            await self._changed.wait()
            self._changed = trio.Event()
            while (ready := core.ready()) is not None:
                await self._handle(core, ready)
                standing = self._report_standing(core, standing)
            self._observe(core)
            if core.role == "leader" and self._led_term != core.term:  # one line per leadership change
                self._led_term = core.term
                log.info("group %s: %s leads (term %d)", self.group_id, self.node_id, core.term)
            self._fail_lost(core)
            if self._config_waiters:
                self._settle_config_waiters(core)
            if self._bytes_since_snapshot >= self._settings.snapshot_bytes:
                await self._snapshot(core)

    async def _handle(self, core: RaftCore, ready: Ready) -> None:
        received = await self._receiver.install(ready.snapshot) if ready.snapshot is not None else None
        # A new commit index alone is not written (see `RaftStorage.sync`): such a Ready skips the disk queue, so
        # heartbeat answers do not wait behind other groups' fsyncs (a leader would step down for the silence).
        lasting = ready.hard_state is not None and self._storage.changes_lasting(ready.hard_state)
        if ready.entries or lasting or ready.snapshot is not None or ready.truncate_after is not None:
            installed, sync_s = await self._disk.run(self._persist, ready, received)
            if sync_s is not None:
                self._observer.synced(sync_s, len(ready.entries))
            if installed is not None:
                self._install(*installed)
        self._send(ready.messages)
        for peer, snapshot in ready.send_snapshots:
            self._sender.start(peer, snapshot, core.term)
        for offset, entry in enumerate(ready.committed):
            self._apply(ready.committed_index + offset, entry)
        for chunk in ready.snapshot_chunks:
            await self._receiver.store(chunk, core.snapshot_received)
        core.advance(ready)

    def _report_standing(self, core: RaftCore, before: str | None) -> str:
        """Log when this replica starts joining, becomes a learner, or votes again."""
        standing = "joining" if core.joining else "learner" if core.learner else "voter"
        if standing == before or (before is None and standing == "voter"):
            return standing
        where = f"group {self.group_id} on {self.node_id}"
        if standing == "joining":
            log.info("%s starts with nothing on disk: asking the other replicas whether the group is new", where)
        elif standing == "learner" and before is None and self._joining_as_learner:
            log.info("%s starts empty to be added to the group: it catches up before it votes", where)
        elif standing == "learner":
            log.warning(
                "%s is a learner: it lost entries it may have acknowledged (a damaged log or a replaced disk), so "
                "it does not vote until it has caught up with the leader",
                where,
            )
        elif before == "learner" and self._joining_as_learner:
            log.info("%s caught up with the leader (a learner until promoted)", where)
        elif before == "learner":
            log.warning("%s caught up with the leader: it votes again", where)
        else:
            log.info("%s is a new group: it votes", where)
        return standing

    async def _run_blocking(self, fn: Callable[[], _T]) -> _T:
        """The snapshot transfers' disk work, on the node's `Disk` like the rest of this group's storage."""
        return await self._disk.run(fn)

    def _persist(self, ready: Ready, received: Snapshot | None) -> tuple[tuple[Snapshot, Broker] | None, float | None]:
        """Make what `ready` changes durable, in a worker thread. A snapshot received from the leader (`received`,
        already in place on disk) becomes the start of the log, and the state machine is restored from it here
        too (decoding a large state is no work for the event loop). Returns that snapshot with its state machine,
        and how long the flush of the log took (None: no flush)."""
        storage = self._storage
        installed = None
        if received is not None:
            storage.installed(received)
            installed = received, self._restore(received.data)
        if ready.truncate_after is not None:
            storage.truncate_after(ready.truncate_after)
        if ready.entries:
            storage.append(ready.entries_index, ready.entries)
        sync_s = None
        if ready.entries or ready.hard_state is not None:
            started = time.perf_counter()
            storage.sync(ready.hard_state)
            sync_s = time.perf_counter() - started
        return installed, sync_s

    def _install(self, snapshot: Snapshot, broker: Broker) -> None:
        self.broker = broker
        self._applied_index = snapshot.index
        self._bytes_since_snapshot = 0
        self.snapshots_installed += 1
        for index in [i for i in self._pending if i <= snapshot.index]:
            self._pending.pop(index).fail(OutcomeUnknown(_LOST))
        log.info("group %s installed the leader's snapshot at %d", self.group_id, snapshot.index)
        for listener in self._install_listeners:
            listener()

    def _apply(self, index: int, entry: LogEntry) -> None:
        """Apply one committed entry; a MomError is its command's answer, never a reason to stop applying.

        Any other exception is a bug that may have left the state machine half-changed: it propagates (crash-only),
        stopping the node rather than serving from state no replica can vouch for; a restart rebuilds the state
        from the snapshot and the log."""
        if index != self._applied_index + 1:
            raise AssertionError(f"group {self.group_id} applies {index} after {self._applied_index}")
        self._applied_index = index
        pending = self._pending.pop(index, None)
        if pending is not None and pending.term != entry.term:
            pending.fail(OutcomeUnknown(_LOST))
            pending = None
        if not entry.payload:  # the no-op a new leader commits its term with
            return
        if is_config(entry):
            self._config_applied(decode_config(entry))
            return
        self._bytes_since_snapshot += len(entry.payload)
        decoded = decode_entry(entry.payload)
        result: Result | None = None
        error: BaseException | None = None
        try:
            result = self.broker.apply(decoded)
        except MomError as exc:
            error = exc
        except Exception:
            log.critical(
                "group %s: applying entry %d failed with an unexpected error; the state may be half-changed, "
                "stopping the node",
                self.group_id,
                index,
                exc_info=True,
            )
            if pending is not None:
                pending.fail(OutcomeUnknown(_STOPPED))
            raise
        for listener in self._listeners:
            listener(decoded.command)
        if pending is not None:
            pending.result, pending.error = result, error
            pending.done.set()

    def _config_applied(self, membership: Membership) -> None:
        removed = self.removed
        log.info(
            "group %s on %s: configuration voters %s, learners %s%s",
            self.group_id,
            self.node_id,
            list(membership.voters),
            list(membership.learners),
            " (this node was removed)" if removed else "",
        )
        for listener in self._membership_listeners:
            listener(membership, removed)

    def _observe(self, core: RaftCore) -> None:
        """Report elections and leader changes; the first leader learned after a start is no change."""
        term, leader = self._seen
        if core.term > term:
            self._observer.new_terms(core.term - term)
        if core.leader_id is not None and core.leader_id != leader:
            if leader is not None:
                self._observer.new_leader(self.group_id, core.leader_id)
            leader = core.leader_id
        self._seen = (max(term, core.term), leader)

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
        self._bytes_since_snapshot = 0
        membership = core.log.explicit_config_at(index)
        snapshot = await self._disk.run(self._save_snapshot, index, term, membership)
        core.compact(index)
        self._sender.newer_snapshot(snapshot.meta)
        log.info("group %s: snapshot at %d (%d bytes)", self.group_id, index, len(snapshot.data))

    def _save_snapshot(self, index: int, term: int, membership: Membership | None) -> Snapshot:
        """Encode the state machine, save it and free the log it covers (in a worker thread, while the driver
        awaits: nothing applies to the broker meanwhile, and what the event loop reads from it only prunes
        derived indexes, never what a snapshot encodes)."""
        snapshot = Snapshot(index, term, self.broker.snapshot(), membership)
        self._storage.save_snapshot(snapshot)
        self._storage.compacted(snapshot)
        return snapshot
