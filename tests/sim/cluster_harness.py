"""A whole mom cluster in one trio run: real RaftGroups, Routers and storage over the memory transport.

Everything random comes from one seed: the hub's faults, each group's election timeouts, the fault schedule
and the clients' pauses; trio's own scheduler is seeded too and time is `MockClock` virtual time, so a seed
replays the same run. A node is a nursery holding its transport, router and groups, over the real storage
classes on its own simulated disk (`tests.sim.memfs`); a crash cancels it and its disk loses whatever was not
synced (a power loss, not just a killed process), and a restart builds everything again from what is left.

`SafetyObserver` watches every group of every incarnation of every node: at most one leader per term, and a
single applied history per group (whatever any node applied at an index, every node applied there).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import trio
import trio._core._run as trio_run

from mom.broker.commands import (
    Ack,
    Command,
    DeclareQueue,
    NewMessage,
    Publish,
    QueueAttrs,
    QueueRef,
    Receive,
    Received,
    Result,
    Tick,
)
from mom.config import Address, ReplicationSection, StorageSection
from mom.errors import Unavailable
from mom.log.disk import Disk
from mom.log.segment import HEADER
from mom.replication._disk_age import born_ms, held_before
from mom.replication.group import RaftGroup
from mom.replication.raft import NotLeader
from mom.replication.router import Router
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport
from tests.sim.memfs import MemoryFileSystem

EPOCH_MS = 1_700_000_000_000
TICK_S = 0.05
LAZY_RECOVERY_S = 0.5
"""A node restarted in the chaos recovers its groups one by one, up to this long apart (virtual seconds)."""
STORAGE = StorageSection(fsync="always", segment_bytes=4096, snapshot_bytes=8192)
"""Small segments and snapshots, so that compaction and snapshot transfers happen in every run; every sync is
real (on the simulated disk, which forgets what was not synced when its node crashes)."""
REPLICATION = ReplicationSection(
    max_frame_bytes=64 * 1024,
    max_append_bytes=2048,
    max_inflight_bytes=8192,
    snapshot_chunk_bytes=512,
    snapshot_window=3,
)
"""Small messages, windows and snapshot chunks, so that every snapshot is streamed in several chunks."""


class SafetyViolation(AssertionError):
    pass


def seed_trio_scheduler(seed: int) -> None:
    """Make trio's choice among runnable tasks follow the seed (trio's own hook for reproducible runs, the one
    its Hypothesis integration uses); otherwise two runs of a seed would interleave tasks differently."""
    trio_run._ALLOW_DETERMINISTIC_SCHEDULING = True  # type: ignore[misc]
    trio_run._r.seed(seed)


def clock_ms() -> int:
    return EPOCH_MS + int(trio.current_time() * 1000)


@dataclass
class SimNode:
    node_id: str
    router: Router
    groups: dict[str, RaftGroup]
    scope: trio.CancelScope


@dataclass
class SafetyObserver:
    leader_of_term: dict[tuple[str, int], str] = field(default_factory=dict)
    history: dict[str, dict[int, Command]] = field(default_factory=dict)
    """Group -> index -> the command applied there (no-ops are not applied, so some indexes are absent)."""
    committed_by: dict[str, dict[int, int]] = field(default_factory=dict)
    """Group -> index -> a term by which that entry was committed (the lowest term of a replica applying it)."""

    def applied(self, node_id: str, group: RaftGroup, command: Command) -> None:
        index = group.applied_index
        known = self.history.setdefault(group.group_id, {}).setdefault(index, command)
        if known != command:
            raise SafetyViolation(f"{node_id} applied {command} at {group.group_id}[{index}] where {known} was applied")
        terms = self.committed_by.setdefault(group.group_id, {})
        terms[index] = min(terms.get(index, group.term), group.term)

    def check(self, nodes: dict[str, SimNode | None]) -> None:
        for node in nodes.values():
            if node is None:
                continue
            for group in node.groups.values():
                if group.is_leader and group.core is not None:
                    key = (group.group_id, group.term)
                    holder = self.leader_of_term.setdefault(key, node.node_id)
                    if holder != node.node_id:
                        raise SafetyViolation(
                            f"two leaders of {group.group_id} in term {group.term}: {holder} and {node.node_id}"
                        )
                    self._check_completeness(node.node_id, group)

    def _check_completeness(self, node_id: str, leader: RaftGroup) -> None:
        """Leader Completeness, as far as log lengths show: a leader of term T holds every entry committed by
        T (an entry applied by a replica in term T was committed in T or before)."""
        assert leader.core is not None
        terms = self.committed_by.get(leader.group_id, {})
        needed = max((index for index, term in terms.items() if term <= leader.term), default=0)
        if leader.core.last_index < needed:
            raise SafetyViolation(
                f"{node_id} leads {leader.group_id} in term {leader.term} with a log that ends at "
                f"{leader.core.last_index}, but entry {needed} was committed by then: a committed entry is lost"
            )


class Cluster:
    """Nodes n1..nN running the same groups; group i prefers node i mod N as its leader."""

    def __init__(self, seed: int, data_dir: Path, nursery: trio.Nursery, *, nodes: int = 3, queues: int = 3) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.data_dir = data_dir
        self.nursery = nursery
        self.ids = [f"n{i + 1}" for i in range(nodes)]
        self.group_ids = ["meta", *(f"q{i}" for i in range(queues))]
        self.preferred = {gid: self.ids[i % nodes] for i, gid in enumerate(self.group_ids)}
        self.hub = MemoryHub(random.Random(self.rng.getrandbits(64)))
        self.disks = {node_id: MemoryFileSystem() for node_id in self.ids}
        """Each node's disk: it outlives the node, less what the node had not synced when it crashed."""
        for node_id, disk in self.disks.items():  # set up before the groups were declared (at EPOCH_MS)
            born_ms(disk, data_dir / node_id, EPOCH_MS - 1)
        self._crash_rngs = {node_id: random.Random(self.rng.getrandbits(64)) for node_id in self.ids}
        self.nodes: dict[str, SimNode | None] = dict.fromkeys(self.ids)
        self.observer = SafetyObserver()
        self.recovering: set[str] = set()
        """Nodes that lost data and may not have caught up yet (no more data loss until they have)."""
        self.events: list[str] = []
        """The faults injected, with their virtual time, for the report of a failing seed."""
        self.snapshot_chunks_sent = 0
        self.snapshots_installed = 0
        """Over every incarnation of every node: shows that snapshots were streamed (in chunks) and installed."""

    # -- nodes

    async def start(self, node_id: str, *, lazy: bool = False) -> None:
        """Start `node_id`. `lazy`: as a real node recovers its groups (`mom.replication._dormant`), one at a time
        in a random order, each routed only once recovered (messages for the others are dropped), the node up
        meanwhile."""
        await self.nursery.start(partial(self._run_node, node_id, self.rng.getrandbits(64), lazy=lazy))

    async def _run_node(
        self, node_id: str, seed: int, *, lazy: bool = False, task_status: trio.TaskStatus[None]
    ) -> None:
        rng = random.Random(seed)
        peers = {peer: Address("127.0.0.1", 0) for peer in self.ids if peer != node_id}
        transport = MemoryTransport(TransportSettings(node_id, Address("127.0.0.1", 0), peers), self.hub)
        router = Router(
            node_id,
            transport,
            tick_interval_s=TICK_S,
            max_frame_bytes=REPLICATION.max_frame_bytes,
            peers=self.ids,
            incarnation=rng.getrandbits(62) + 1,
        )
        disk = Disk.inline(self.disks[node_id])
        born = born_ms(self.disks[node_id], self.data_dir / node_id, clock_ms())  # a wiped disk is born again
        groups = {
            gid: RaftGroup(
                gid,
                node_id,
                self.ids,
                self.data_dir / node_id / gid,
                STORAGE,
                router.send,
                disk=disk,
                replication=REPLICATION,
                dedup_window_ms=3_600_000,
                clock_ms=clock_ms,
                rng=random.Random(rng.getrandbits(64)),
                preferred_leader=self.preferred[gid],
                held_before=held_before(born, EPOCH_MS),
                campaign_gate=router.campaigns,
            )
            for gid in self.group_ids
        }
        for group in groups.values():
            group.add_listener(lambda command, g=group: self.observer.applied(node_id, g, command))
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(transport.run)
                    await nursery.start(router.run)
                    order = list(groups.values())
                    if lazy:
                        rng.shuffle(order)
                        self.nodes[node_id] = SimNode(node_id, router, groups, scope)
                        task_status.started()
                    for group in order:
                        await nursery.start(group.run)
                        router.add_group(group)
                        if lazy:
                            await trio.sleep(rng.uniform(0, LAZY_RECOVERY_S))
                    if not lazy:
                        self.nodes[node_id] = SimNode(node_id, router, groups, scope)
                        task_status.started()
        finally:
            self.nodes[node_id] = None
            self.snapshot_chunks_sent += sum(group.snapshot_chunks_sent for group in groups.values())
            self.snapshots_installed += sum(group.snapshots_installed for group in groups.values())
            outcome = self.disks[node_id].crash(self._crash_rngs[node_id])
            self.events.append(f"{trio.current_time():.2f} {node_id} down: {outcome}")

    def crash(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node is not None:
            self.hub.crash(node_id)
            node.scope.cancel()

    def live(self) -> list[SimNode]:
        return [node for node in self.nodes.values() if node is not None]

    def leader(self, group_id: str) -> RaftGroup | None:
        """The leader of the highest term among the live nodes, if any."""
        leaders = [n.groups[group_id] for n in self.live() if n.groups[group_id].is_leader]
        return max(leaders, key=lambda g: g.term) if leaders else None

    # -- background tasks

    async def observe(self) -> None:
        while True:
            self.observer.check(self.nodes)
            await trio.sleep(TICK_S / 5)

    async def chaos(self, duration_s: float) -> None:
        """Faults for `duration_s`: loss, duplication, delay, partitions, crashes and restarts (one node down
        at a time, or all of them at once: a power loss, which only what was synced survives); then heal
        everything, so that the cluster can finish its work."""
        rng = random.Random(self.rng.getrandbits(64))
        self.hub.set_faults(loss=0.05, duplicate=0.05, delay=(0.0, 0.03))
        end = trio.current_time() + duration_s
        while trio.current_time() < end:
            await trio.sleep(rng.uniform(0.3, 1.5))
            down = [node_id for node_id, node in self.nodes.items() if node is None]
            kind = rng.choice(["partition", "heal", "crash", "restart", "faults", "power"])
            event = kind
            if kind == "partition":
                shuffled = rng.sample(self.ids, len(self.ids))
                cut = rng.randint(1, len(shuffled) - 1)
                self.hub.partition(shuffled[:cut], shuffled[cut:])
                event = f"partition {shuffled[:cut]} {shuffled[cut:]}"
            elif kind == "heal":
                self.hub.heal()
            elif kind == "crash" and not down:
                victim = rng.choice(self.ids)
                self.crash(victim)
                event = f"crash {victim}"
            elif kind == "restart" and down:
                lost = self.lose_data(down[0], rng) if rng.random() < 0.5 and self.all_voting() else ""
                await self.start(down[0], lazy=True)
                event = f"restart {down[0]}{lost}"
            elif kind == "power" and not down:
                for node_id in self.ids:
                    self.crash(node_id)
                await trio.sleep(rng.uniform(0.1, 1.0))
                for node_id in self.ids:
                    await self.start(node_id, lazy=True)
                event = "power loss on every node, then all restart"
            elif kind == "faults":
                loss, duplicate = rng.choice([0.0, 0.05, 0.2]), rng.choice([0.0, 0.05, 0.2])
                delay = (0.0, rng.choice([0.0, 0.02, 0.1]))
                self.hub.set_faults(loss=loss, duplicate=duplicate, delay=delay)
                event = f"faults loss={loss} duplicate={duplicate} delay={delay}"
            else:
                continue
            self.events.append(f"{trio.current_time():.2f} {event}")
        self.events.append(f"{trio.current_time():.2f} heal all")
        await self.heal_all()

    def all_voting(self) -> bool:
        """No replica anywhere is a learner or joining, or will be when it restarts: data may be lost again."""
        for node_id in list(self.recovering):
            node = self.nodes[node_id]
            if node is not None and all(g.core is not None and g.core.voting for g in node.groups.values()):
                self.recovering.discard(node_id)
        return not self.recovering and all(
            g.core is not None and g.core.voting for n in self.live() for g in n.groups.values()
        )

    def lose_data(self, node_id: str, rng: random.Random) -> str:
        """Before a restart: wipe the node's disk (a replaced machine), or flip a bit in a record of one of its
        logs that has valid records after it (damage, not a torn tail). Returns what was done."""
        disk, root = self.disks[node_id], self.data_dir / node_id
        self.recovering.add(node_id)
        damageable = []
        for gid in self.group_ids:
            for name, size in disk.files(root / gid / "log").items():
                path = root / gid / "log" / name
                if size > HEADER.size and HEADER.size + HEADER.unpack_from(disk.read_bytes(path))[0] < size:
                    damageable.append(path)
        if damageable and rng.random() < 0.6:
            path = rng.choice(sorted(damageable))
            disk.flip_bit(path, HEADER.size, rng.randrange(8))
            return f" after flipping a bit in the first record of {path.relative_to(self.data_dir)}"
        disk.wipe(root)
        return " with a wiped disk"

    async def heal_all(self) -> None:
        self.hub.heal()
        self.hub.set_faults()
        for node_id in self.ids:
            while (node := self.nodes[node_id]) is not None and node.scope.cancel_called:
                await trio.lowlevel.checkpoint()
            if node is None:
                await self.start(node_id)

    # -- clients

    async def submit(self, group_id: str, command: Command, *, attempt_s: float = 2.0) -> Result:
        """Submit to whoever leads, following NotLeader hints and retrying on Unavailable until it succeeds."""
        target: str | None = None
        while True:
            node = self.nodes.get(target) if target is not None else None
            if node is None:
                live = self.live()
                node = self.rng.choice(live) if live else None
            target = None
            if node is not None:
                try:
                    with trio.move_on_after(attempt_s):
                        return await node.groups[group_id].submit(command)
                except NotLeader as exc:
                    target = exc.leader_id
                except Unavailable:
                    pass
            await trio.sleep(0.01 if target is not None else 0.05)

    async def wait_until(self, what: str, predicate: Callable[[], bool], timeout_s: float) -> None:
        with trio.move_on_after(timeout_s):
            while True:
                if predicate():
                    return
                await trio.sleep(TICK_S)
        raise AssertionError(
            f"{what}: not within {timeout_s} virtual seconds\n{self.describe()}\nfaults: {self.events}"
        )

    def describe(self) -> str:
        parts = []
        for node_id, node in self.nodes.items():
            if node is None:
                parts.append(f"{node_id}: down")
                continue
            for gid, g in node.groups.items():
                role = "L" if g.is_leader else "f"
                parts.append(f"{node_id}/{gid}: {role} t{g.term} commit={g.commit_index} applied={g.applied_index}")
        return "; ".join(parts)


@dataclass
class QueueClient:
    """Publishes numbered messages to one queue and consumes them, remembering what the cluster promised."""

    cluster: Cluster
    group_id: str
    queue: str
    rng: random.Random
    published: set[str] = field(default_factory=set)
    """Every id ever submitted (acknowledged or not): nothing else may be delivered."""
    acknowledged: set[str] = field(default_factory=set)
    received: set[str] = field(default_factory=set)

    async def declare(self) -> None:
        await self.cluster.submit(self.group_id, DeclareQueue(self.queue, QueueAttrs(visibility_timeout_s=2), "sim"))

    async def publish(self, count: int, *, pause_s: float = 0.1) -> None:
        for number in range(count):
            message_id = f"{self.queue}-{number}"
            self.published.add(message_id)
            message = NewMessage(message_id, b'"m"', dedup_id=message_id)
            await self.cluster.submit(self.group_id, Publish(QueueRef(self.queue), [message]))
            self.acknowledged.add(message_id)
            await trio.sleep(self.rng.uniform(0.0, 2 * pause_s))

    async def consume_once(self) -> int:
        """Receive a batch and ack it; returns how many were received."""
        result = await self.cluster.submit(self.group_id, Receive(QueueRef(self.queue), 10, 1000))
        assert isinstance(result, Received)
        if result.messages:
            self.received.update(m.id for m in result.messages)
            acks = Ack(QueueRef(self.queue), [m.receipt for m in result.messages])
            await self.cluster.submit(self.group_id, acks)
        return len(result.messages)

    async def consume(self) -> None:
        while True:
            if not await self.consume_once():
                await trio.sleep(self.rng.uniform(0.1, 0.4))

    async def housekeeping(self) -> None:
        """What BrokerService.run does on the leader: write a Tick when leases or TTLs are due."""
        while True:
            await trio.sleep(0.25)
            leader = self.cluster.leader(self.group_id)
            deadline = leader.broker.next_deadline_ms() if leader is not None else None
            if deadline is not None and deadline <= clock_ms():
                with trio.move_on_after(1.0):
                    await self.cluster.submit(self.group_id, Tick())

    async def drain(self, timeout_s: float) -> None:
        """Receive (and ack) until everything acknowledged was received, or fail with what is missing."""
        with trio.move_on_after(timeout_s):
            while not self.acknowledged <= self.received:
                if not await self.consume_once():
                    await trio.sleep(0.3)
            return
        missing = sorted(self.acknowledged - self.received)
        raise AssertionError(f"{self.queue}: acknowledged but never delivered: {missing[:10]} ({len(missing)})")


async def in_background(nursery: trio.Nursery, fn: Callable[[], Awaitable[None]]) -> trio.CancelScope:
    """Start `fn` in its own cancel scope within `nursery`; cancel the scope to stop it."""
    scope = trio.CancelScope()

    async def runner() -> None:
        with scope:
            await fn()

    nursery.start_soon(runner)
    return scope
