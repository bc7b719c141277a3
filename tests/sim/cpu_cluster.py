"""Many Raft groups per node on nodes of bounded CPU: the model of `tests/sim/test_failover_cpu.py`.

`tests/sim/test_failover_storm.py` bounds the disk; this bounds the event loop too. Each node handles at most
`cpu` units of work per tick: a message stepped costs 1, a Ready handled costs 1, a tick of an awake group
`tick_cost` (the router ticks every awake group, whose driver then wakes). Work beyond the budget waits for the
next tick, in arrival order, as frames wait in a starved event loop. The node liveness (the real
`mom.replication.liveness.Liveness`) is fed by the same queue, so a node whose backlog outgrows the liveness
bound declares its live peers dead, as a starved real node does, and their groups campaign too.

The real `RaftCore` with the real driver's contract, the real `CampaignGate` (`mom.replication._elections`) and
`HandBackGate` (`mom.replication._hand_backs`) when asked for, a network that delivers in one tick, and per node a
disk that makes `disk_rate` Readies durable per tick (FIFO, one Ready at a time per group).
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

import msgspec

from mom.replication._elections import ASK_EVERY_TICKS, CampaignGate
from mom.replication._hand_backs import HandBackGate
from mom.replication.liveness import Liveness
from mom.replication.messages import LogEntry, Message, NodeHeartbeat
from mom.replication.raft import HardState, PersistedState, RaftCore, Ready
from mom.replication.router import _bucket

NODES = ("n1", "n2", "n3")


class CpuCluster:
    def __init__(
        self,
        seed: int,
        groups: int,
        *,
        cpu: float,
        disk_rate: int,
        gate: bool = True,
        lean_ticks: bool = True,
        tick_cost: float = 0.02,
        wake_cost: float = 0.25,
        preferred: bool = False,
    ) -> None:
        self.rng = random.Random(seed)
        self.cpu = cpu
        self.disk_rate = disk_rate
        self.tick_cost = tick_cost
        self.wake_cost = wake_cost
        self.lean_ticks = lean_ticks
        self.live = set(NODES)
        self.now = 0
        self.group_ids = [f"g{i}" for i in range(groups)]
        self.gate = gate
        self.preferred = {gid: NODES[i % 3] if preferred else None for i, gid in enumerate(self.group_ids)}
        """Each group's preferred leader (leadership is handed back to it), with `preferred`."""
        self.gates: dict[str, CampaignGate | None] = {}
        self.hand_backs: dict[str, HandBackGate | None] = {}
        self.cores: dict[str, dict[str, RaftCore]] = {}
        self.liveness: dict[str, Liveness] = {}
        persisted = PersistedState(HardState(1, None, 1, False, True), entries=[LogEntry(1, b"")])
        for node in NODES:
            self._start(node, lambda gid: persisted, incarnation=1)
        self.inbox: dict[str, deque[Message]] = {node: deque() for node in NODES}
        self.debt = dict.fromkeys(NODES, 0.0)
        self.disks: dict[str, deque[tuple[str, Ready]]] = {node: deque() for node in NODES}
        self.busy: set[tuple[str, str]] = set()
        self.pending: dict[str, dict[str, None]] = {node: {} for node in NODES}
        """Groups whose driver was woken and has not handled its Ready yet (in order of waking)."""
        self.wire: list[Message] = []
        self.lasting: dict[tuple[str, str], HardState] = {}
        self.declared_dead: list[tuple[int, str, str]] = []
        """(tick, node, peer) each time a node declared a peer dead."""

    def _start(self, node: str, persisted: Callable[[str], PersistedState], incarnation: int) -> None:
        """A node process starting on what its disk holds: new cores, gate and liveness."""
        self.gates[node] = CampaignGate() if self.gate else None
        self.hand_backs[node] = HandBackGate() if self.gate else None
        self.cores[node] = {
            gid: RaftCore(
                node,
                NODES,
                persisted=persisted(gid),
                rng=random.Random(self.rng.getrandbits(32)),
                group=gid,
                quiesce=True,
                campaign_gate=self.gates[node],
                hand_back_gate=self.hand_backs[node],
                preferred_leader=self.preferred[gid],
            )
            for gid in self.group_ids
        }
        self.liveness[node] = Liveness(
            node,
            NODES,
            incarnation=incarnation,
            on_change=self._news(node),
            on_restart=self._restart_news(node),
            link_up=lambda peer: peer in self.live,
        )

    def _news(self, node: str) -> Callable[[str, bool], None]:
        def told(peer: str, alive: bool) -> None:
            if not alive:
                self.declared_dead.append((self.now, node, peer))
            for gid, core in self.cores[node].items():
                core.peer_up(peer) if alive else core.peer_down(peer)
                self.pending[node][gid] = None

        return told

    def _restart_news(self, node: str) -> Callable[[str], None]:
        def told(peer: str) -> None:
            for core in self.cores[node].values():
                core.peer_restarted(peer)

        return told

    def core(self, node: str, gid: str) -> RaftCore:
        return self.cores[node][gid]

    def step(self) -> None:
        self.now += 1
        for m in self.wire:
            if m.receiver in self.live:
                self.inbox[m.receiver].append(m)
        self.wire = []
        for node in sorted(self.live):
            self._run_node(node)

    def _run_node(self, node: str) -> None:
        budget = self.cpu - self.debt[node]
        cores, pending = self.cores[node], self.pending[node]
        self.wire.extend(self.liveness[node].tick())
        ask = self.now % ASK_EVERY_TICKS
        for gid, core in cores.items():
            if core.waiting_for_slot and ask != _bucket(gid):
                continue  # as the router: a group refused a campaign slot asks again every `ASK_EVERY_TICKS`
            if not core.quiesced:
                before = (core.role, core.leader_id, core.term)
                core.tick()
                budget -= self.tick_cost
                if not self.lean_ticks or core.has_ready() or (core.role, core.leader_id, core.term) != before:
                    pending[gid] = None  # as `RaftGroup.tick` wakes its driver
        gate = self.gates[node]
        if gate is not None:
            gate.tick()
        hand_backs = self.hand_backs[node]
        if hand_backs is not None:
            hand_backs.tick()
            for gid in hand_backs.due():  # as the router: wake the leaders refused a hand-back slot
                cores[gid].retry_hand_back()
                pending[gid] = None
        disk = self.disks[node]
        for _ in range(min(self.disk_rate, len(disk))):
            gid, ready = disk.popleft()
            self._done(node, gid, ready)
        inbox = self.inbox[node]
        while budget > 0 and (inbox or pending):
            if inbox:
                m = inbox.popleft()
                budget -= 1
                self.liveness[node].heard(m.sender)
                if isinstance(m, NodeHeartbeat):
                    self.liveness[node].heartbeat_from(m)
                    continue
                cores[m.group].step(m)
                pending[m.group] = None
            if pending and budget > 0:
                gid = next(iter(pending))
                del pending[gid]
                budget -= self.wake_cost
                if (node, gid) in self.busy:
                    continue
                ready = cores[gid].ready()
                if ready is None:
                    continue
                budget -= 1
                if self._needs_disk(node, gid, ready):
                    self.busy.add((node, gid))
                    disk.append((gid, ready))
                else:
                    self._done(node, gid, ready)
        self.debt[node] = max(0.0, -budget)

    def _needs_disk(self, node: str, gid: str, ready: Ready) -> bool:
        return needs_disk(self.lasting, (node, gid), ready)

    def _done(self, node: str, gid: str, ready: Ready) -> None:
        self.busy.discard((node, gid))
        self.wire.extend(ready.messages)
        core = self.core(node, gid)
        core.advance(ready)
        self.pending[node][gid] = None  # the driver loops while the core has more

    def run_until(self, predicate: Callable[[], bool], bound: int) -> int | None:
        for tick in range(bound):
            if predicate():
                return tick
            self.step()
        return None

    def settled(self, gid: str) -> bool:
        """A live leader that every live replica follows."""
        leaders = [n for n in self.live if self.core(n, gid).role == "leader"]
        return len(leaders) == 1 and all(self.core(n, gid).leader_id == leaders[0] for n in self.live)

    def kill(self, node: str) -> None:
        """SIGKILL: the node is gone; its links break, so the others' liveness declares it dead an election
        timeout later."""
        self.live.discard(node)
        self.inbox[node].clear()
        self.disks[node].clear()
        self.pending[node].clear()

    def restart(self, node: str) -> None:
        """Start a killed node again on its disk: each group's last written hard state and its log (everything
        a quiet group had appended was durable before it went quiet)."""
        old = self.cores[node]

        def persisted(gid: str) -> PersistedState:
            hs = self.lasting.get((node, gid), HardState(1, None, 1, False, True))
            log = old[gid].log
            return PersistedState(hs, entries=log.slice(log.first_index, log.last_index + 1))

        self._start(node, persisted, incarnation=self.now + 2)
        self.busy = {(n, gid) for n, gid in self.busy if n != node}
        self.live.add(node)
        for gid in self.group_ids:
            self.pending[node][gid] = None


def quiet_cpu_cluster(
    seed: int,
    groups: int,
    *,
    cpu: float,
    disk_rate: int,
    gate: bool = True,
    lean_ticks: bool = True,
    preferred: bool = False,
) -> CpuCluster:
    """The groups led by n1, n2 and n3 in turn (as preferred leaders spread them; with `preferred`, those are
    their preferred leaders too) and quiesced, on unbounded CPU and disk; then the bounds apply."""
    cluster = CpuCluster(seed, groups, cpu=1e9, disk_rate=10**9, gate=gate, lean_ticks=lean_ticks, preferred=preferred)
    for i, gid in enumerate(cluster.group_ids):
        cluster.core(NODES[i % 3], gid).stand_after(1)
    quiet = cluster.run_until(
        lambda: (
            all(c.quiesced for n in NODES for c in cluster.cores[n].values())
            and all(cluster.settled(gid) for gid in cluster.group_ids)
        ),
        400,
    )
    assert quiet is not None, "the groups did not elect their leaders and quiesce"
    cluster.cpu, cluster.disk_rate = cpu, disk_rate
    return cluster


def needs_disk(lasting: dict[tuple[str, str], HardState], key: tuple[str, str], ready: Ready) -> bool:
    """As `RaftGroup` decides: entries, a truncation, or a hard state that changed more than its commit (which is
    never written). `lasting` keeps each group's last written hard state, commit left out."""
    hs = ready.hard_state
    if hs is not None:
        written = msgspec.structs.replace(hs, commit=0)
        if written != lasting.get(key):
            lasting[key] = written
            return True
    return bool(ready.entries) or ready.truncate_after is not None
