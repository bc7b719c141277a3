"""This node's replication groups: the metadata group on every node, and one group per destination it replicates.

The metadata group's state machine is the catalog: users, OAuth clients and every declared destination with its
attributes. Each node watches it and keeps exactly the destination groups that placement gives it: a declare
starts a group on each of its replicas, a delete stops them and removes their data. A group's id carries the
destination's declare time, so a destination deleted and declared again is a new group with a fresh log, never
a continuation of the old one's terms and entries.

The manager owns both the groups and the router: a group gets the router's `send` for its messages, and is
registered with the router (to be stepped and ticked) once it has recovered, until it stops.

At start-up the groups are recovered lazily: the catalog's replay only places them (dormant: no storage read, no
Raft core), and each is recovered on its first request, on a peer's message, or by a bounded background pass once
the catalog has caught up, so that a node with thousands of destinations is ready in seconds. A dormant group is
not routed, so nothing reaches a Raft core before its term, vote and log are loaded.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import trio

from mom.broker.commands import (
    AddNode,
    Command,
    DeclareQueue,
    DeclareTopic,
    DeleteQueue,
    DeleteTopic,
    DrainNode,
    FinishMove,
    MemberRecord,
    QueueRef,
    RemoveNode,
    SeedMembers,
    StartMove,
    SubscriptionRef,
    TopicRef,
)
from mom.config import ReplicationSection, Settings
from mom.errors import NotFound
from mom.log.disk import Disk
from mom.log.fs import sync_file_system
from mom.replication._disk_age import born_ms, held_before
from mom.replication._dormant import DormantGroups
from mom.replication.group import GroupObserver, RaftGroup
from mom.replication.messages import LeaderNews
from mom.replication.placement import METADATA_GROUP, declared_ms, group_id
from mom.replication.router import Router

log = logging.getLogger("mom.replication")

Ref = QueueRef | TopicRef | SubscriptionRef
GroupListener = Callable[[str, Command], None]
MembersListener = Callable[[list[MemberRecord]], None]
MEMBER_COMMANDS = (SeedMembers, AddNode, DrainNode, RemoveNode)

ELECTION_TICKS = 10
"""Ticks (of the router's 50 ms) without a leader before a replica stands: 0.5 to 1 s. A one-replica group
stands at once: nobody else could."""
META_DISK_THREADS = 2
"""Storage threads of the metadata group's own (the data groups share the node's `Disk`)."""


@dataclass(frozen=True)
class Placement:
    """Where a destination lives: its group id and ordered replicas (preferred leader first)."""

    group_id: str
    replicas: tuple[str, ...]
    declared: DeclareQueue | DeclareTopic


@dataclass
class _Running:
    """A group placed here: dormant (`group` None: its storage not read yet) until woken, then running."""

    placement: Placement
    group: RaftGroup | None = None
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    settled: trio.Event = field(default_factory=trio.Event)
    """Set once the group has recovered (it is routed), or stopped before."""
    erase: bool = False
    after: trio.Event | None = None
    """Set once the previous incarnation of the group here (stopped) has had its data removed."""
    erased: trio.Event = field(default_factory=trio.Event)
    """Set once this incarnation stopped (and had its data removed, if it was to be)."""


class GroupManager:
    """Starts, finds and stops this node's groups. Start it with `await nursery.start(manager.run)`."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        *,
        disk: Disk,
        clock_ms: Callable[[], int],
        rng: random.Random,
        observer: GroupObserver | None = None,
    ) -> None:
        self._settings = settings
        self.settings = settings
        self._observer = observer
        self._router = router
        self._disk = disk
        self._meta_disk = disk.lane(META_DISK_THREADS)
        """The metadata group's own storage threads: readiness, creates and logins never queue behind the data
        groups' storage work (thousands of recoveries at start-up, a storm of votes after a node died)."""
        self._clock_ms = clock_ms
        self._rng = rng
        self.node_id = settings.node_id
        self.seed_ids = [n.id for n in settings.cluster.nodes] or [settings.node_id]
        """The configured nodes: the metadata group's voters, and the cluster's members until the catalog
        records them."""
        self._directory = settings.data_dir / "groups"
        self._durable_at_start = self._found_at_start(disk) if settings.storage.fsync == "always" else set()
        """The groups whose directory existed when this node started: `run` syncs the data's file system once
        before any group reads its storage, so the first open of each of these directories need not sync its
        log again (see `SegmentedLog.open(durable=)`). An id leaves the set when its group is first built (or
        stopped): a later incarnation in this process may find files it wrote itself and never synced (it was
        cancelled before its fsync), which no sync at start covered."""
        self._born_ms = born_ms(disk.fs, settings.data_dir, clock_ms())
        """When the data directory was first used: a group declared by then may have been held by a disk since
        wiped (`mom.replication._disk_age`)."""
        self._sync_at_start = bool(self._durable_at_start)
        """`run` syncs the data's file system before any group reads its storage: there is data to make durable."""
        self._erasing: dict[str, _Running] = {}
        """The stopped groups whose data is being removed: a group placed here again (a move away and back)
        starts only once the removal is done, or the removal would delete the new incarnation's files."""
        self._running: dict[str, _Running] = {}
        self._dormant = DormantGroups(self._launch_dormant)
        """Groups placed here whose storage is not read yet (see `mom.replication._dormant`)."""
        self._by_base: dict[str, set[str]] = {}
        """The running group ids of each destination, by the id's part before the '@' (its kind and name)."""
        self._nursery: trio.Nursery | None = None
        self._listeners: list[GroupListener] = []
        self._members_listeners: list[MembersListener] = []
        joining = settings.cluster.join and len(self.seed_ids) > 1
        if joining:  # the cluster it joins was seeded without it
            self.seed_ids = [n for n in self.seed_ids if n != self.node_id]
        self.meta = self._new_group(METADATA_GROUP, self.seed_ids, external_dead_letters=False, learner=joining)
        """A node that joins a running cluster starts its metadata group as a learner of the others: empty and
        silent until the metadata leader adds it (after `mom cluster add-node`), then catching up."""

    @property
    def node_ids(self) -> list[str]:
        """The cluster's members now: the catalog's, or the configured nodes before it recorded any."""
        members = self.meta.broker.members
        return [m.id for m in members.members()] if members.seeded else list(self.seed_ids)

    def members(self) -> list[MemberRecord]:
        """The catalog's member records (empty until the metadata leader has seeded them)."""
        return self.meta.broker.members.members()

    def add_members_listener(self, listener: MembersListener) -> None:
        """Told the member list whenever the catalog changes it (a node added, drained or removed)."""
        self._members_listeners.append(listener)

    def add_listener(self, listener: GroupListener) -> None:
        """Told (group id, command) of every command applied by any group of this node, present or future."""
        self._listeners.append(listener)
        for group in self.groups():
            group.add_listener(functools.partial(listener, group.group_id))

    def announce_leader(self, gid: str, term: int) -> None:
        """Tell every other node that this node leads group `gid` in `term` (batched with the Raft traffic)."""
        self._router.send([LeaderNews(gid, term, self.node_id, peer) for peer in self.node_ids if peer != self.node_id])

    def add_news_listener(self, listener: Callable[[LeaderNews], None]) -> None:
        """Told the `LeaderNews` other nodes send (the leaders of groups this node may not replicate)."""
        self._router.add_news_listener(listener)

    def _replication_for(self, voters: list[str]) -> ReplicationSection:
        """The replication settings of a group of `voters`: quiescence only where the router's node liveness
        watches every other voter (without it, the followers of a quiet group whose leader died would never
        hear of it)."""
        replication = self._settings.replication
        if replication.quiesce and not self._router.liveness.watches(voters):
            return msgspec.structs.replace(replication, quiesce=False)
        return replication

    def _new_group(
        self, gid: str, voters: list[str], *, external_dead_letters: bool, learner: bool = False
    ) -> RaftGroup:
        group = RaftGroup(
            gid,
            self.node_id,
            voters,
            self._directory / gid,
            self._settings.storage,
            self._router.send,
            disk=self._meta_disk if gid == METADATA_GROUP else self._disk,
            replication=self._replication_for(voters),
            dedup_window_ms=round(self._settings.broker.dedup_window_s * 1000),
            clock_ms=self._clock_ms,
            rng=random.Random(self._rng.random()),
            preferred_leader=voters[0],
            joining_as_learner=learner,
            first_term=gid != METADATA_GROUP and not learner,
            held_before=None if gid == METADATA_GROUP else held_before(self._born_ms, declared_ms(gid)),
            election_ticks=1 if len(voters) == 1 else ELECTION_TICKS,
            external_dead_letters=external_dead_letters,
            observer=self._observer,
            campaign_gate=None if gid == METADATA_GROUP else self._router.campaigns,
            durable_at_start=self._first_open(gid),
            greets_restarts=gid == METADATA_GROUP,
            hand_back_gate=None if gid == METADATA_GROUP else self._router.hand_backs,
        )
        for listener in self._listeners:
            group.add_listener(functools.partial(listener, gid))
        return group

    def _found_at_start(self, disk: Disk) -> set[str]:
        """The group directories on disk before this process wrote anything (blocks: one directory listing)."""
        try:
            return set(disk.fs.listdir(self._directory))
        except OSError:  # no data yet (a new node): nothing to sync either
            return set()

    def _first_open(self, gid: str) -> bool:
        """Whether group `gid`'s storage is durable as found (the sync at start covered it): only on the first
        build of a directory that existed at start; never again for the same id (see `_durable_at_start`)."""
        if gid not in self._durable_at_start:
            return False
        self._durable_at_start.discard(gid)
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._sync_at_start:
            # What a killed process wrote but never synced becomes durable here, once, so that no group's
            # recovery syncs its own files again (two fsyncs per group: 20,000 at 10,000 destinations).
            await self._disk.run(sync_file_system, self._settings.data_dir)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self._routed, self.meta)
            self.meta.add_listener(self._on_catalog_change)
            self.meta.add_install_listener(self._on_catalog_installed)
            self._router.on_unknown_group = self.hurry
            self._reconcile()
            nursery.start_soon(self._dormant.run, self._catalog_current)
            task_status.started()

    def placement(self, ref: Ref) -> Placement:
        """The group and replicas of a declared destination; NotFound if the catalog has no such destination."""
        catalog, now = self.meta.broker, self._clock_ms()
        declared: DeclareQueue | DeclareTopic
        if isinstance(ref, QueueRef):
            queue = catalog.queue_info(ref.name, now)
            declared = DeclareQueue(queue.name, queue.attrs, queue.owner)
            created, factor = queue.created_at_ms, queue.attrs.replication_factor
        else:
            topic = catalog.topic_info(ref.topic if isinstance(ref, SubscriptionRef) else ref.name, now)
            declared = DeclareTopic(topic.name, topic.attrs, topic.owner)
            created, factor = topic.created_at_ms, topic.attrs.replication_factor
        base = group_id(ref)
        factor = factor or self._settings.cluster.replication_factor
        nodes = catalog.members.replicas(base, factor, seed=self.seed_ids)
        return Placement(f"{base}@{created}", tuple(nodes), declared)

    def peer_alive(self, node: str) -> bool:
        """Whether the node liveness believes `node` alive (this node is)."""
        return node == self.node_id or self._router.liveness.alive(node)

    def group(self, gid: str) -> RaftGroup | None:
        """The group `gid` running here (None: not placed here, or dormant: see `wake`)."""
        if gid == METADATA_GROUP:
            return self.meta
        running = self._running.get(gid)
        return running.group if running is not None else None

    @property
    def dormant(self) -> int:
        """Groups placed here whose storage was not read yet (recovered on first use or by the background pass)."""
        return len(self._dormant)

    def wake(self, gid: str) -> None:
        """Recover the dormant group `gid` now (a request for it arrived): it is routed once its storage is
        read, and answers nothing before. Nothing happens for a group running already, or not placed here."""
        if gid in self._dormant:
            self._dormant.take(gid)
            self._launch_dormant(gid)

    def hurry(self, gid: str) -> None:
        """A peer sent a message for group `gid`, which is dormant here (or unknown): recover it soon (the
        message is dropped; Raft's sender retries it)."""
        if self._nursery is not None:
            self._dormant.hurry(gid, self._nursery)

    def _catalog_current(self) -> bool:
        """The metadata group knows its leader and applied all it knows to be committed."""
        core = self.meta.core
        return core is not None and core.leader_id is not None and self.meta.applied_index >= core.commit_index

    def declared_in(self, gid: str) -> DeclareQueue | DeclareTopic | None:
        """The catalog's declaration of the destination that group `gid` holds (None for the metadata group)."""
        running = self._running.get(gid)
        return running.placement.declared if running is not None else None

    def groups(self) -> list[RaftGroup]:
        """Every group running on this node (not the dormant ones), the metadata group first."""
        return [self.meta, *(r.group for r in self._running.values() if r.group is not None)]

    def changing_groups(self) -> list[RaftGroup]:
        """The groups whose leadership may have changed since the last call (the router's awake ones and those
        that fell quiet since): what a watcher of leadership checks instead of every group."""
        return [g for g in self._router.changing_groups() if isinstance(g, RaftGroup)]

    def _wanted(self) -> dict[str, Placement]:
        catalog, now = self.meta.broker, self._clock_ms()
        refs: list[Ref] = [QueueRef(q.name) for q in catalog.list_queues(now)]
        refs += [TopicRef(t.name) for t in catalog.list_topics(now)]
        wanted: dict[str, Placement] = {}
        for ref in refs:
            try:
                placed = self.placement(ref)
            except NotFound:  # pragma: no cover - listed a moment ago, on the same thread
                continue
            if self._hosts(placed):
                wanted[placed.group_id] = placed
        return wanted

    def _on_catalog_installed(self) -> None:
        """The catalog came whole, in a snapshot from the metadata leader (this node was behind its compacted
        log): the declares, deletes, moves and member changes it covers were never applied here one by one, so
        start and stop groups, and tell the members listeners, from the new catalog as a whole."""
        self._reconcile()
        if not self.meta.broker.members.seeded:
            return  # no member list yet: the configured nodes stand (an empty list would drop every peer)
        members = self.members()
        for listener in self._members_listeners:
            listener(members)

    def _on_catalog_change(self, command: Command) -> None:
        """Start or stop the one group a declare, delete or move concerns: a full `_reconcile` per catalog entry
        would be quadratic in the destinations (a restarted node replays thousands of declares). A membership
        change goes to the members listeners (transport, liveness, forwarding)."""
        if isinstance(command, MEMBER_COMMANDS):
            if isinstance(command, SeedMembers):
                self._reconcile()  # placement's node set is the recorded seed from now on
            members = self.members()
            for listener in self._members_listeners:
                listener(members)
            return
        if isinstance(command, StartMove | FinishMove):
            kind, _, name = command.move.group.partition(".")
            self._replace(QueueRef(name) if kind == "q" else TopicRef(name))
        elif isinstance(command, DeclareQueue | DeclareTopic | DeleteQueue | DeleteTopic):
            self._replace(
                QueueRef(command.name) if isinstance(command, DeclareQueue | DeleteQueue) else TopicRef(command.name)
            )

    def _replace(self, ref: Ref) -> None:
        """Start or stop this node's group of `ref` as its placement now says."""
        base = group_id(ref)
        stale = [gid for gid in self._by_base.get(base, ()) if gid in self._running]
        try:
            placed: Placement | None = self.placement(ref)
        except NotFound:
            placed = None
        for gid in stale:
            if placed is None or gid != placed.group_id or not self._hosts(placed):
                self._stop(gid)
        if placed is not None and self._hosts(placed):
            self._start(placed)
            running = self._running.get(placed.group_id)
            if running is not None and running.placement.replicas != placed.replicas:
                running.placement = placed  # a move finished: its replica set, and maybe its preferred leader
                if running.group is not None:
                    running.group.prefer(placed.replicas[0])

    def _hosts(self, placed: Placement) -> bool:
        """This node runs the group: it is a replica, or the target of a move into it (joining as a learner)."""
        return self.node_id in placed.replicas or self._move_target(placed)

    def _move_target(self, placed: Placement) -> bool:
        move = self.meta.broker.members.move_of(placed.group_id.rpartition("@")[0])
        return move is not None and move.target == self.node_id and self.node_id not in placed.replicas

    def _reconcile(self) -> None:
        """Start the groups placement gives this node and stop (and erase) the ones it no longer does."""
        if self._nursery is None:
            return
        wanted = self._wanted()
        for placed in wanted.values():
            self._start(placed)
        for gid in [gid for gid in self._running if gid not in wanted]:
            self._stop(gid)

    def _start(self, placed: Placement) -> None:
        """Place group `placed` here: during start-up dormant (cheap: replaying thousands of declares reads no
        storage) and queued for the background pass; after it, started at once."""
        gid = placed.group_id
        if self._nursery is None or gid in self._running:
            return
        previous = self._erasing.get(gid)
        self._running[gid] = _Running(placed, after=None if previous is None else previous.erased)
        self._by_base.setdefault(gid.rpartition("@")[0], set()).add(gid)
        if self._dormant.lazy:
            self._dormant.add(gid)
        else:
            self._launch_dormant(gid)

    def _launch_dormant(self, gid: str) -> trio.Event | None:
        """Build the dormant group `gid` and start it: it reads its storage on the storage threads, and is routed
        (takes messages, votes, answers) only once that is done. Returns the event set then (or once it stopped);
        None if `gid` is not placed here, or not dormant."""
        running = self._running.get(gid)
        if running is None or running.group is not None or self._nursery is None:
            return None
        placed = running.placement
        learner = self._move_target(placed)
        running.group = self._new_group(gid, list(placed.replicas), external_dead_letters=True, learner=learner)
        self._nursery.start_soon(self._run_group, gid, running)
        return running.settled

    def _stop(self, gid: str) -> None:
        running = self._running.pop(gid)
        base = gid.rpartition("@")[0]
        self._by_base.get(base, set()).discard(gid)
        if not self._by_base.get(base):
            self._by_base.pop(base, None)
        running.erase = True
        self._erasing[gid] = running
        self._durable_at_start.discard(gid)
        running.scope.cancel()
        if self._dormant.take(gid) and self._nursery is not None:  # never started: only its data to erase
            self._nursery.start_soon(self._run_group, gid, running)
        log.info("group %s is no longer placed here: stopping it and removing its data", gid)

    async def _routed(self, group: RaftGroup, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run `group`, routed to from the moment it has recovered until it stops."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(group.run)
                self._router.add_group(group)
                task_status.started()
        finally:
            self._router.remove_group(group.group_id)

    async def _run_group(self, gid: str, running: _Running) -> None:
        if running.after is not None:
            await running.after.wait()  # the previous incarnation's files must be gone before this one opens any
        try:
            with running.scope:
                if running.group is not None:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(self._routed, running.group)
                        running.settled.set()
        finally:
            running.settled.set()
        try:
            if running.erase:
                await self._disk.run(self._disk.fs.remove_tree, self._directory / gid)
        finally:
            if self._erasing.get(gid) is running:
                del self._erasing[gid]
            running.erased.set()
