"""A simulated cluster of RaftCore nodes with disks that survive crashes, and the checker of Raft's
guarantees.

Each node is driven the way a real driver must drive it: for every Ready, write the hard state, snapshot and
entries to the node's disk, then send the messages, then apply the committed entries. A crash throws the node
object away; a restart builds a new RaftCore from the disk alone, so anything a node relied on without
persisting is lost. The state machine is the list of applied payloads; it snapshots itself (and the log is
compacted) every few entries, so followers that fall behind need a snapshot. The driver streams it as the
real one does, reduced to one chunk (offset 0, done): the network here reorders, and the chunking itself is
tested over ordered transports (tests/unit/test_snapshot_transfer.py, tests/sim/test_cluster_sim.py).

Disks can also lose what they held, between a crash and the restart: a log cut in its middle (what storage
recovery does with a damaged log, marking the replica a learner) or a wiped disk (the replica then starts
empty, and must find out that the group exists). One replica at a time: more is beyond what any replicated
system survives, and the checker would rightly fail.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import msgspec

from mom.errors import MembershipChangeRefused
from mom.replication._elections import CampaignGate
from mom.replication.membership import Membership, decode_config, is_config
from mom.replication.messages import AppendEntries, InstallSnapshot, LogEntry, SnapshotChunkAck, VoteResponse
from mom.replication.raft import Change, HardState, NotLeader, PersistedState, RaftCore, Ready, Snapshot
from tests.sim.network import Faults, SimNetwork


class SafetyViolation(AssertionError):
    pass


@dataclass
class SimConfig:
    nodes: int = 3
    election_ticks: int = 10
    heartbeat_ticks: int = 2
    compact_every: int = 6
    """Snapshot the state machine and compact the log once this many entries were applied since the last time.
    """
    max_entries_per_message: int = 4
    preferred_leader: str | None = None
    tick_probability: float = 0.5
    propose_probability: float = 0.3
    disk_delay: int = 2
    """A Ready is durable 0..disk_delay steps after it was taken; the node keeps stepping meanwhile."""
    fault_probability: float = 0.03
    faults: Faults = field(default_factory=lambda: Faults(drop=0.05, duplicate=0.05, max_delay=3))
    data_loss: bool = True
    """Let faults include restarts after a damaged log or a wiped disk (see the module docstring)."""
    quiesce: bool = False
    """Idle groups quiesce (`RaftCore(quiesce=True)`); the cluster then plays the node liveness: each node hears
    at once when a peer crashes, restarts, or is cut off or reachable again (`peer_down`, `peer_up`)."""
    false_suspicion: float = 0.0
    """With quiesce: the chance per step that some node wrongly hears a live peer declared dead."""
    first_term: bool = False
    """A new group's first term without an election (`RaftCore(first_term=True)`; set `preferred_leader`)."""
    spares: int = 0
    """Nodes outside the initial configuration, which membership changes may add (then remove again)."""
    membership_probability: float = 0.0
    """The chance per step that a leader is asked for a random membership change (add a spare as a learner,
    promote a learner, remove a member)."""
    min_voters: int = 3
    """Random changes remove no voter from a configuration with this many voters or fewer."""


@dataclass
class SimDisk:
    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot = field(default_factory=Snapshot)
    entries: list[LogEntry] = field(default_factory=list)
    wiped: bool = False
    """A disk younger than the group (a wiped or replaced one): it may have held the group before
    (`RaftCore(held_before=True)`); the initial disks are as old as the group and never held it before."""

    def load(self) -> PersistedState:
        return PersistedState(self.hard_state, self.snapshot, list(self.entries))

    def write(self, ready: Ready, installed: Snapshot | None) -> None:
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state
        if installed is not None:
            self.snapshot, self.entries = installed, []
        if ready.truncate_after is not None:
            del self.entries[ready.truncate_after - self.snapshot.index :]
        if ready.entries:
            if ready.entries_index != self.snapshot.index + len(self.entries) + 1:
                raise SafetyViolation(f"entries at {ready.entries_index} leave a hole in the disk log")
            self.entries.extend(ready.entries)

    def save_snapshot(self, snapshot: Snapshot) -> None:
        del self.entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot

    def damage(self, keep: int) -> None:
        """A log damaged in its middle, as storage recovery leaves it: the entries after the first `keep` are
        gone, and the replica is a learner (persisted before the cut)."""
        del self.entries[keep:]
        self.hard_state = msgspec.structs.replace(self.hard_state, learner=True)


class SimNode:
    def __init__(
        self,
        node_id: str,
        voters: list[str],
        disk: SimDisk,
        seed: int,
        config: SimConfig,
        *,
        learners: tuple[str, ...] = (),
        joining_as_learner: bool = False,
        run: int = 0,
    ) -> None:
        self.node_id = node_id
        self.disk = disk
        self.core = RaftCore(
            node_id,
            voters,
            learners=learners,
            joining_as_learner=joining_as_learner,
            persisted=disk.load(),
            rng=random.Random(seed),
            election_ticks=config.election_ticks,
            heartbeat_ticks=config.heartbeat_ticks,
            preferred_leader=config.preferred_leader,
            max_entries_per_message=config.max_entries_per_message,
            max_inflight=4,
            quiesce=config.quiesce,
            first_term=config.first_term,
            held_before=disk.wiped,
            run=run,
            campaign_gate=CampaignGate(limit=1, low=1, high=1, expire_ticks=50),
        )
        self.views: dict[str, bool] = {}
        """With quiesce: whether this node believes each peer's node alive (its liveness)."""
        self.applied: list[bytes] = _decode_state(disk.snapshot)
        self.writing: Ready | None = None
        self.durable_at = 0
        self.received: dict[int, bytes] = {}
        """Snapshots received whole and accepted by the core, by index, until a Ready installs them."""


def _decode_state(snapshot: Snapshot) -> list[bytes]:
    return msgspec.msgpack.decode(snapshot.data, type=list[bytes]) if snapshot.index else []


class SimCluster:
    """Everything chosen from one seed: the same seed replays the same run, step for step."""

    def __init__(self, seed: int, config: SimConfig | None = None) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.rng = random.Random(seed)
        self.ids = [f"n{i + 1}" for i in range(self.config.nodes)]
        """The initial configuration's voters."""
        self.all_ids = [f"n{i + 1}" for i in range(self.config.nodes + self.config.spares)]
        self.net = SimNetwork(random.Random(self.rng.random()), faults=self.config.faults)
        self.disks = {node_id: SimDisk() for node_id in self.all_ids}
        self.nodes: dict[str, SimNode | None] = {}
        """The nodes that run (None: crashed); a spare is absent until added, and again once removed."""
        self.checker = SafetyChecker(Membership(tuple(self.ids)))
        self.changes: list[str] = []
        """The membership changes leaders accepted, for the failure report."""
        self.proposed = 0
        self.recovering: set[str] = set()
        """Nodes that lost data and have not voted since (no more data loss until they do)."""
        self.data_lost: list[str] = []
        """The data-loss faults injected, for the failure report."""
        self.runs = 0
        """Node starts so far: each start's `RaftCore.run` (a real node passes its start time)."""
        for node_id in self.ids:
            self.start(node_id)

    # -- nodes

    def start(self, node_id: str) -> None:
        """Start (or restart) a node from its disk, constructed as a real node's manager would: with the
        cluster's record of the group's configuration (the latest committed one), joining as a learner when
        the record does not list it."""
        seed = self.rng.getrandbits(32)
        record = self.checker.record
        self.nodes[node_id] = SimNode(
            node_id,
            list(record.voters),
            self.disks[node_id],
            seed,
            self.config,
            learners=record.learners,
            joining_as_learner=node_id not in record,
            run=self.runs + 1,
        )
        self.runs += 1
        self.net.down.discard(node_id)

    def evict(self) -> None:
        """Stop and erase the nodes a committed configuration removed (what the real manager does): they may be
        added again later, as fresh nodes."""
        for node_id in self.checker.evicted:
            if node_id in self.nodes:
                del self.nodes[node_id]
                self.net.down.add(node_id)
            self.disks[node_id] = SimDisk(wiped=True)
            self.recovering.discard(node_id)
        self.checker.evicted.clear()

    def crash(self, node_id: str) -> None:
        self.nodes[node_id] = None
        self.net.down.add(node_id)
        self.checker.forget_vanished(self)  # what only its memory held is gone, as if never made

    def live(self) -> list[SimNode]:
        return [node for node in self.nodes.values() if node is not None]

    def leaders(self) -> list[SimNode]:
        return [node for node in self.live() if node.core.role == "leader"]

    def process(self, node: SimNode) -> None:
        """Take the node's next Ready and start writing it; finish every write that is due, and go on."""
        core = node.core
        while True:
            if node.writing is None:
                node.writing = core.ready()
                node.durable_at = self.net.now + self.rng.randint(0, self.config.disk_delay)
            if node.writing is None or node.durable_at > self.net.now:
                return
            ready, node.writing = node.writing, None
            self._complete(node, ready)

    def _complete(self, node: SimNode, ready: Ready) -> None:
        """The Ready is durable now: write it to the disk, then send its messages, then apply its entries."""
        core = node.core
        installed = None
        if ready.snapshot is not None:
            meta = ready.snapshot
            installed = Snapshot(meta.index, meta.term, node.received.pop(meta.index), meta.membership)
        node.disk.write(ready, installed)
        if installed is not None:
            node.applied = _decode_state(installed)
            self.checker.installed(node.node_id, node.applied)
        for message in ready.messages:
            # A voter whose removal is not committed yet may still vote (`voting`); no other non-member.
            granted = isinstance(message, VoteResponse) and message.granted
            if granted and node.node_id not in core.membership and not core.voting:
                raise SafetyViolation(f"{node.node_id} votes although {core.membership} does not list it")
        self.net.send(ready.messages)
        self._stream_snapshots(node, ready)
        for offset, entry in enumerate(ready.committed):
            index = ready.committed_index + offset
            if index != len(node.applied) + 1:
                raise SafetyViolation(f"{node.node_id} applies {index} after {len(node.applied)}")
            node.applied.append(entry.payload)
            self.checker.applied(node.node_id, index, entry, core.term)
        core.advance(ready)
        if (
            len(node.applied) == core.applied_index
            and core.applied_index <= core.log.stable  # as the real driver: only what is durable here
            and core.applied_index - core.snapshot.index >= self.config.compact_every
        ):
            data = msgspec.msgpack.encode(node.applied[: core.applied_index])
            core.compact(core.applied_index)
            meta = core.snapshot
            node.disk.save_snapshot(Snapshot(meta.index, meta.term, data, meta.membership))

    def _stream_snapshots(self, node: SimNode, ready: Ready) -> None:
        """The driver's part of snapshots: send the one asked for from disk; take in whole ones received."""
        core = node.core
        for peer, meta in ready.send_snapshots:
            stored = node.disk.snapshot  # a newer one than asked for (compacted since) replaces it, as for real
            if stored.index < meta.index:
                raise SafetyViolation(
                    f"{node.node_id} was asked to send snapshot {meta}, its disk holds {stored.index}"
                )
            chunk = InstallSnapshot(
                "", core.term, node.node_id, peer, stored.index, stored.term, 0, stored.data, True, stored.membership
            )
            self.net.send([chunk])
        for chunk in ready.snapshot_chunks:
            if chunk.offset != 0 or not chunk.done:
                raise SafetyViolation(f"{node.node_id} got a chunk this driver never sends: {chunk}")
            self.net.send([SnapshotChunkAck("", chunk.term, node.node_id, chunk.sender, chunk.index, len(chunk.data))])
            meta = Snapshot(chunk.index, chunk.snapshot_term, membership=chunk.membership).meta
            if core.snapshot_received(chunk.sender, meta):
                node.received[chunk.index] = chunk.data

    # -- driving

    def step(self, *, chaos: bool = True, propose: bool = True) -> None:
        """One unit of time: deliver what is due, tick some nodes, maybe propose, maybe break something."""
        for message in self.net.advance():
            node = self.nodes.get(message.receiver)
            if node is not None:
                node.core.step(message)
                self.process(node)
        for node in self.live():
            if self.rng.random() < self.config.tick_probability:
                node.core.tick()
            self.process(node)
        if propose and self.rng.random() < self.config.propose_probability:
            self.propose_random()
        if chaos and self.rng.random() < self.config.membership_probability:
            self.change_membership_random()
        if self.checker.evicted:
            self.evict()
        if chaos and self.rng.random() < self.config.fault_probability:
            self.inject_fault()
        if self.config.quiesce:
            self._liveness(chaos)
        self.checker.check(self)

    def _liveness(self, chaos: bool) -> None:
        """The node liveness as every node sees it: a crashed or cut-off peer is down, a reachable one up (and,
        with chaos, now and then a live peer wrongly suspected)."""
        for node in self.live():
            for peer in self.all_ids:
                if peer == node.node_id:
                    continue
                alive = self.nodes.get(peer) is not None and self.net.connected(node.node_id, peer)
                if node.views.get(peer, True) != alive:
                    node.views[peer] = alive
                    if alive:
                        node.core.peer_up(peer)
                    else:
                        node.core.peer_down(peer)
                    self.process(node)
        if chaos and self.config.false_suspicion and self.rng.random() < self.config.false_suspicion:
            live = self.live()
            if live:
                node = self.rng.choice(live)
                node.core.peer_down(self.rng.choice([p for p in self.all_ids if p != node.node_id]))
                self.process(node)

    def quiesced(self) -> list[str]:
        return [node.node_id for node in self.live() if node.core.quiesced]

    def propose_random(self) -> None:
        """A client writes to whichever node believes it leads (a stale leader too: its writes must not
        commit)."""
        leaders = self.leaders()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        payloads = [self.new_payload() for _ in range(self.rng.randint(1, 3))]
        try:
            node.core.propose(payloads)
        except NotLeader:
            return
        self.process(node)

    def change_membership_random(self) -> None:
        """Ask a node that believes it leads (a stale leader too) for a random single-server change."""
        leaders = self.leaders()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        config = node.core.membership
        spares = [n for n in self.all_ids if n not in config and self.nodes.get(n, None) is None]
        options: list[tuple[Change, str]] = [("add_learner", n) for n in spares if n not in self.nodes]
        options += [("promote", n) for n in config.learners]
        options += [("remove", n) for n in config.learners]
        if len(config.voters) > self.config.min_voters:
            options += [("remove", n) for n in config.voters]
        if options:
            self.change(node, *self.rng.choice(options))

    def change(self, node: SimNode, change: Change, member: str) -> int | None:
        """Ask `node` for a membership change; a node added is started first (empty, joining as a learner).
        Returns the index of its configuration entry, or None when refused."""
        if change == "add_learner" and member not in self.nodes:
            self.start(member)
        try:
            index = node.core.change_membership(change, member)
        except (NotLeader, MembershipChangeRefused):
            return None
        self.changes.append(f"step {self.net.now}: {node.node_id} t{node.core.term} {change} {member} at {index}")
        self.process(node)
        return index

    def new_payload(self) -> bytes:
        self.proposed += 1
        return f"s{self.seed}-p{self.proposed}".encode()

    def inject_fault(self) -> None:
        kinds = ["crash", "restart", "partition", "heal", "isolate_leader"]
        kind = self.rng.choice([*kinds, "lose_data"] if self.config.data_loss else kinds)
        crashed = [node_id for node_id, node in self.nodes.items() if node is None]
        if kind == "lose_data":
            # Not while another member is down with an empty disk (it crashed before its first write) or as a
            # recovering learner: it comes back not voting, and two of three non-voting replicas block the group
            # for good. Safety would hold; the checks after healing (tests/sim/test_membership.py) would fail.
            record = self.checker.record
            weak = [n for n in record.members if self.disks[n].load().empty or self.disks[n].hard_state.learner]
            crashed = [n for n in crashed if n in record and not [w for w in weak if w != n]]
        if kind == "lose_data" and crashed and self.no_one_recovering():
            self.restart_after_data_loss(self.rng.choice(crashed))
        elif kind == "crash":
            live = [node.node_id for node in self.live()]
            if live:
                self.crash(self.rng.choice(live))
        elif kind == "restart" and crashed:
            self.start(self.rng.choice(crashed))
        elif kind == "partition":
            shuffled = self.all_ids[:]
            self.rng.shuffle(shuffled)
            cut = self.rng.randint(1, len(shuffled) - 1)
            self.net.partition(shuffled[:cut], shuffled[cut:])
        elif kind == "isolate_leader" and self.leaders():
            leader = self.rng.choice(self.leaders()).node_id
            self.net.partition([n for n in self.all_ids if n != leader], [leader])
        elif kind == "heal":
            self.net.heal()

    def no_one_recovering(self) -> bool:
        """Every replica that is up votes, and none that lost data is still down or catching up."""
        for node_id in list(self.recovering):
            node = self.nodes[node_id]
            if node is not None and node.core.voting:
                self.recovering.discard(node_id)
        return not self.recovering and all(
            n.core.voting for n in self.live() if n.node_id in n.core.voters or n.node_id in self.checker.record
        )

    def restart_after_data_loss(self, node_id: str) -> None:
        """Damage or wipe a crashed node's disk, then restart it."""
        self.recovering.add(node_id)
        disk = self.disks[node_id]
        if disk.entries and self.rng.random() < 0.6:
            keep = self.rng.randrange(len(disk.entries))
            self.data_lost.append(f"step {self.net.now}: {node_id} lost its entries after {disk.snapshot.index + keep}")
            disk.damage(keep)
        else:
            self.data_lost.append(f"step {self.net.now}: {node_id} wiped")
            self.disks[node_id] = SimDisk(wiped=True)
            self.checker.forget_vanished(self)
        self.start(node_id)

    def stabilize(self) -> None:
        """Stop all faults: heal the network, restart crashed nodes, no more loss or duplication."""
        self.net.heal()
        self.net.faults = Faults(max_delay=2)
        for node_id, node in list(self.nodes.items()):
            if node is None:
                self.start(node_id)

    def run(self, steps: int, **options: bool) -> None:
        for _ in range(steps):
            self.step(**options)

    def run_until(self, condition: str, predicate: object, limit: int, **options: bool) -> int:
        """Step until `predicate()` holds; fail after `limit` steps. Returns the steps taken."""
        assert callable(predicate)
        for taken in range(limit):
            if predicate():
                return taken
            self.step(**options)
        if predicate():
            return limit
        raise AssertionError(f"{condition}: not reached within {limit} steps ({self.describe()})")

    def stable_leader(self) -> SimNode | None:
        """The leader every live node follows, if there is one."""
        leaders = self.leaders()
        if len(leaders) != 1:
            return None
        leader = leaders[0]
        config = leader.core.membership
        agree = all(
            n.core.leader_id == leader.node_id and n.core.term == leader.core.term
            for n in self.live()
            if n.node_id in config
        )
        return leader if agree else None

    def commit_through_leader(self, payload: bytes, limit: int, among: list[str] | None = None) -> int:
        """Propose `payload` to the newest leader (again after each election) until the nodes `among`
        (default: all live ones) applied it; returns the steps it took."""
        steps = 0
        proposed_to: tuple[str, int] | None = None
        while steps < limit:
            waiting = [n for n in self.live() if among is None or n.node_id in among]
            if all(payload in node.applied for node in waiting):
                return steps
            leaders = sorted(self.leaders(), key=lambda n: n.core.term)
            leader = leaders[-1] if leaders else None
            if leader is not None and proposed_to != (leader.node_id, leader.core.term):
                leader.core.propose([payload])
                proposed_to = (leader.node_id, leader.core.term)
                self.process(leader)
            self.step(chaos=False, propose=False)
            steps += 1
        raise AssertionError(f"{payload!r} not applied everywhere within {limit} steps ({self.describe()})")

    def describe(self) -> str:
        parts = []
        for node_id, node in self.nodes.items():
            if node is None:
                parts.append(f"{node_id}: down")
            else:
                c = node.core
                config = c.membership
                parts.append(
                    f"{node_id}: {c.role} t{c.term} lead={c.leader_id} last={c.last_index} "
                    f"commit={c.commit_index} applied={c.applied_index} voters={','.join(config.voters)} "
                    f"learners={','.join(config.learners)}"
                )
        return "; ".join(parts) + f"; record {self.checker.record}"


class SafetyChecker:
    """Raft's safety properties, checked against everything every node holds after every step."""

    def __init__(self, initial: Membership) -> None:
        self.record = initial
        """The latest committed configuration (what the cluster's membership record holds)."""
        self.evicted: set[str] = set()
        """Members a newly committed configuration removed, for the cluster to stop and erase."""
        self.leader_of_term: dict[int, str] = {}
        self.entries: dict[tuple[int, int], tuple[bytes, int]] = {}
        """(index, term) -> (payload, term of the previous entry): Log Matching, by induction on the index."""
        self.committed: list[LogEntry] = []
        self.commit_term: list[int] = []
        """An upper bound of the term in which each committed entry was committed."""
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._completeness_checked: dict[tuple[str, int], int] = {}

    def applied(self, node_id: str, index: int, entry: LogEntry, term: int) -> None:
        """State Machine Safety: whatever any node applies at an index, every node applies there."""
        if index <= len(self.committed):
            if self.committed[index - 1] != entry:
                raise SafetyViolation(
                    f"{node_id} applied {entry} at {index}, but {self.committed[index - 1]} was applied there"
                )
        elif index == len(self.committed) + 1:
            self.committed.append(entry)
            self.commit_term.append(term)
            if is_config(entry):
                config = decode_config(entry)
                self.evicted |= {n for n in self.record.members if n not in config}
                self.evicted -= set(config.members)
                self.record = config
        else:
            raise SafetyViolation(f"{node_id} applied {index} before anyone applied {len(self.committed) + 1}")

    def installed(self, node_id: str, state: list[bytes]) -> None:
        if [e.payload for e in self.committed[: len(state)]] != state or len(state) > len(self.committed):
            raise SafetyViolation(f"{node_id} installed a snapshot that is not a prefix of the applied history")

    def check(self, cluster: SimCluster) -> None:
        for node in cluster.live():
            core = node.core
            if core.role != "follower" and node.node_id not in core.voters:
                # Only a voter stands, or one whose removal is not committed yet; a leader whose removal commits
                # steps down at once.
                leaving = core.commit_index < core.log.config_index and node.node_id in core.log.previous_config.voters
                if not leaving:
                    raise SafetyViolation(f"{node.node_id} is {core.role} but no voter of {core.membership}")
            if core.role == "leader":
                holder = self.leader_of_term.setdefault(core.term, node.node_id)
                if holder != node.node_id:
                    raise SafetyViolation(f"two leaders in term {core.term}: {holder} and {node.node_id}")
                self._check_completeness(node)
            key = (id(core), core.log.version, core.commit_index)
            if self._seen.get(node.node_id) != key:
                self._seen[node.node_id] = key
                self._check_log(node)

    def forget_vanished(self, cluster: SimCluster) -> None:
        """A wiped disk: entries that now exist nowhere (no log, no disk, no message on the way) never reached
        anyone, and may be made again at the same index and term (a new group's first leader, wiped before it
        sent them, leads its first term again). Committed entries are checked apart and never forgotten."""
        alive: set[tuple[int, int]] = set()
        for node_id, disk in cluster.disks.items():
            start = disk.snapshot.index + 1
            alive.update((start + i, entry.term) for i, entry in enumerate(disk.entries))
            node = cluster.nodes.get(node_id)
            if node is not None:
                log = node.core.log
                alive.update((index, log.entry(index).term) for index in range(log.first_index, log.last_index + 1))
        for _, message in cluster.net.messages_on_the_way():
            if isinstance(message, AppendEntries):
                alive.update((message.prev_index + 1 + i, e.term) for i, e in enumerate(message.entries))
        for key in [key for key in self.entries if key not in alive and key[0] > len(self.committed)]:
            del self.entries[key]

    def _check_log(self, node: SimNode) -> None:
        log = node.core.log
        prev_term = log.snapshot.term
        for index in range(log.first_index, log.last_index + 1):
            entry = log.entry(index)
            known = self.entries.setdefault((index, entry.term), (entry.payload, prev_term))
            if known != (entry.payload, prev_term):
                raise SafetyViolation(f"Log Matching: {node.node_id} has {entry} at {index} after term {prev_term}")
            committed = index <= node.core.commit_index and index <= len(self.committed)
            if committed and self.committed[index - 1] != entry:
                raise SafetyViolation(f"{node.node_id} lost committed entry {index}")
            prev_term = entry.term

    def _check_completeness(self, leader: SimNode) -> None:
        """Leader Completeness: a leader of term T holds every entry committed in a term up to T."""
        core = leader.core
        key = (leader.node_id, core.term)
        start = self._completeness_checked.get(key, core.snapshot.index) + 1
        for index in range(start, len(self.committed) + 1):
            binding = self.commit_term[index - 1] <= core.term and index > core.snapshot.index
            if binding and core.log.term_at(index) != self.committed[index - 1].term:
                raise SafetyViolation(f"Leader Completeness: {leader.node_id} lacks committed entry {index}")
        self._completeness_checked[key] = len(self.committed)
