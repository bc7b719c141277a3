"""The Raft state machine of one replication group, pure and driven from outside.

No I/O, no clock, no global randomness: time is `tick()`, the network is `step()` (in) and `Ready.messages`
(out), the disk is `Ready.hard_state` / `Ready.entries` / `Ready.snapshot`, and randomness is an injected
`random.Random`. That makes every schedule reproducible, which is how the simulation in `tests/sim` explores
thousands of them. The driver loops: `ready()`; persist the hard state, snapshot and entries; send the
messages; apply `committed`; `advance()`. Messages leave only after the state they depend on is durable, which
is what lets a follower's acknowledgement and a vote mean what they say after a crash.

Snapshots never pass through the core: it knows a snapshot only by its position (`SnapshotMeta`). A leader
says *that* a follower needs one and which (`Ready.send_snapshots`); the driver streams the snapshot file in
chunks (`InstallSnapshot` with offset/done, Raft §7), which the follower's core accepts or refuses by term and
hands to its driver (`Ready.snapshot_chunks`); once the driver holds the whole file, verified, it calls
`snapshot_received` and the core decides whether to install it (`Ready.snapshot`).

Beyond the paper: PreVote and CheckQuorum (a node cut off cannot disturb the cluster, a leader cut off stops
accepting writes), hint-based backtracking, pipelined replication with messages bounded in bytes and a window
bounded in messages and bytes per follower, a bound on the leader's uncommitted tail (proposals beyond it are
refused with `Overloaded`, like etcd's MaxUncommittedSize), snapshots for followers that fell behind the
compacted log, and leadership transfer (used to hand leadership back to a preferred node).

Membership (single-server changes with learners) and the recovery of replicas that lost data or start empty
live in `mom.replication._membership`, and quiescence (idle groups that stop ticking) in
`mom.replication._quiesce`: parts of the core split off for size.

"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from mom.errors import Overloaded
from mom.replication._elections import CHECK_QUORUM_PERIODS, CampaignGate, election_timeout, stands_before
from mom.replication._hand_backs import HandBackGate
from mom.replication._membership import Change, MembershipMixin, NotLeader, Role
from mom.replication._progress import FollowerView, Progress
from mom.replication._raftlog import HardState, PersistedState, RaftLog, Snapshot, SnapshotMeta
from mom.replication.membership import Membership
from mom.replication.messages import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    JoinProbe,
    JoinReply,
    LogEntry,
    Message,
    RequestVote,
    SnapshotChunkAck,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)

__all__ = [
    "Change",
    "FollowerView",
    "HardState",
    "NotLeader",
    "PersistedState",
    "RaftCore",
    "Ready",
    "Role",
    "Snapshot",
    "SnapshotMeta",
]


@dataclass(eq=False)
class Ready:
    """What the driver must do now, in this order: persist, send, apply; then call `advance(ready)`."""

    hard_state: HardState | None = None
    """To persist, when it changed."""
    snapshot: SnapshotMeta | None = None
    """To install: the snapshot the driver received (and passed to `snapshot_received`) becomes the state; reset
    the log to start after it."""
    truncate_after: int | None = None
    """Drop the persisted log after this index before appending `entries`."""
    entries_index: int = 0
    """The index of `entries[0]`."""
    entries: list[LogEntry] = field(default_factory=list)
    """To append durably."""
    messages: list[Message] = field(default_factory=list)
    """To send once everything above is durable."""
    committed_index: int = 0
    """The index of `committed[0]`."""
    committed: list[LogEntry] = field(default_factory=list)
    """To apply to the state machine, in order (after the snapshot, if any)."""
    send_snapshots: list[tuple[str, SnapshotMeta]] = field(default_factory=list)
    """(follower, snapshot): stream that snapshot to that follower, replacing whatever was streamed to it."""
    snapshot_chunks: list[InstallSnapshot] = field(default_factory=list)
    """Chunks of a leader's snapshot that this follower accepted: the driver stores and acknowledges them."""


class RaftCore(MembershipMixin):
    def __init__(
        self,
        node_id: str,
        voters: Sequence[str],
        *,
        learners: Sequence[str] = (),
        joining_as_learner: bool = False,
        persisted: PersistedState,
        rng: random.Random,
        election_ticks: int = 10,
        heartbeat_ticks: int = 2,
        preferred_leader: str | None = None,
        max_entries_per_message: int = 512,
        max_bytes_per_message: int = 1 << 20,
        max_inflight: int = 64,
        max_inflight_bytes: int = 8 << 20,
        max_uncommitted_bytes: int = 32 << 20,
        group: str = "",
        join_when_empty: bool = True,
        held_before: bool | None = None,
        quiesce: bool = False,
        first_term: bool = False,
        run: int = 0,
        campaign_gate: CampaignGate | None = None,
        greets_restarts: bool = False,
        hand_back_gate: HandBackGate | None = None,
    ) -> None:
        if node_id not in voters and node_id not in learners and not joining_as_learner:
            raise ValueError(f"{node_id!r} is neither a voter {list(voters)} nor a learner {list(learners)}")
        self.node_id = node_id
        self.group = group
        self.voters: tuple[str, ...] = ()
        """The voters of the latest configuration in the log (see `mom.replication.membership`)."""
        self._peers: tuple[str, ...] = ()
        """Every other member of that configuration, voters and learners: whom a leader replicates to."""
        self._quorum = 1
        self._rng = rng
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks
        self._preferred = preferred_leader
        self._max_entries = max_entries_per_message
        self._max_bytes = max_bytes_per_message
        self._max_inflight = max_inflight
        self._max_inflight_bytes = max_inflight_bytes
        self._max_uncommitted = max_uncommitted_bytes
        self._uncommitted = 0
        """Payload bytes proposed in this leadership and not yet committed."""

        hs = persisted.hard_state
        self.log = RaftLog(persisted.snapshot.meta, persisted.entries, Membership(tuple(voters), tuple(learners)))
        self._config: tuple[int, Membership] = (-1, Membership(()))
        """The configuration last put in force (its index and itself)."""
        self._departing: dict[str, int] = {}
        """Leading: followers a configuration at the given index removed; they hear of its commit, then go."""
        self.term = hs.term
        self.voted_for = hs.voted_for
        self.commit_index = max(persisted.snapshot.index, min(hs.commit, self.log.last_index))
        self.applied_index = persisted.snapshot.index
        self.role: Role = "follower"
        self.leader_id: str | None = None
        self.learner = hs.learner
        """Lost entries it may have acknowledged: replicates, but neither votes nor campaigns (see the module)."""
        self._was_member = not joining_as_learner or any(node_id in c for _, c in self.log.configs())
        """A member once (by its log, or by the configuration it was constructed with unless it joins): a
        committed configuration without it then means it was removed (`removed`)."""
        self._config_changed()
        self.joining = (
            join_when_empty
            and not joining_as_learner
            and persisted.empty
            and node_id in self.voters
            and len(self.voters) > 1
        )
        """Started with nothing: asking the others whether the group is new before taking part (see the module)."""
        self._held_before = held_before
        """Whether this replica's disk may have held the group before (see `_membership`): True, it is younger
        than the group (wiped, replaced); False, it is older and holds nothing of it, so it never did; None,
        unknown."""
        if persisted.empty and not self.joining and (joining_as_learner or node_id not in self.voters):
            # Started empty as a learner (to be added, or listed as one after losing its disk): like a replica
            # that lost data, it votes for no one until it has caught up with a leader, since a promotion it has
            # not seen may already count its acknowledgements (and a wiped one has forgotten them).
            self.learner = True
        self.incarnation = rng.getrandbits(62) + 1
        """This run of this replica, named in its responses."""
        self._join_answers: dict[str, bool] = {}
        self._fresh_empty: set[str] = set()
        """Voters that answered a probe of this run (its incarnation echoed) that they hold nothing."""
        self.run = run
        """Orders this replica's runs (the driver passes its start time): a later run has a larger number."""
        self._preferred_run = 0
        """The latest run of the preferred leader that probed this replica (see `_stale_first_term`)."""
        self._first_term = first_term and preferred_leader is not None and preferred_leader in self.voters
        self._first_leader = self._first_term and preferred_leader == node_id
        """A new group's first term without an election (see `_membership`): a replica that finds the group new
        starts in term 1 having voted for the preferred leader, which leads term 1 at once if every voter said
        it holds nothing."""
        self._stand_after: int | None = None
        """`stand_after` asked while joining: applied if the group turns out new."""
        self._persisted_hs = hs
        self._messages: list[Message] = []
        self._send_snapshots: list[tuple[str, SnapshotMeta]] = []
        self._snapshot_chunks: list[InstallSnapshot] = []
        self._incoming_snapshot: SnapshotMeta | None = None
        self._outstanding: Ready | None = None

        self._pre_vote = False
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = election_ticks
        self._quorum_missed = 0
        self._down: set[str] = set()
        """Peers whose node the liveness declared dead (`peer_down`) and not back since: a leader quiesces
        without them."""
        self._restarted: set[str] = set()
        """Peers whose node restarted (`peer_restarted`) and that have not sent this group anything since: a
        leader quiesces without them too (their groups ask when they need it)."""
        """CheckQuorum periods in a row in which this leader heard from too few followers."""
        self._failed_elections = 0
        """Real elections of ours that timed out in a row: each doubles the next timeout's range (`_elections`)."""
        self._transferee: str | None = None
        self._transfer_elapsed = 0
        self._preferred_ticks = 0
        self._quiesce = quiesce
        self._gate = campaign_gate
        """Shared by the node's groups: bounds how many campaign at once (`_elections.CampaignGate`)."""
        self._greets_restarts = greets_restarts
        """The metadata group, which a node's readiness waits for. Leading, it heartbeats a restarted peer at once
        instead of waiting for that replica to ask (`peer_restarted`); restarted itself, it asks for the leader at
        its first tick, not after an election timeout (a quiesced leader would not speak first)."""
        self._hand_backs = hand_back_gate
        """Shared by the node's data groups: bounds how many hand leadership back at once (`_hand_backs`)."""
        self._hand_back_refused = False
        """Due to hand leadership back and refused a slot: the leader may quiesce meanwhile, until the router wakes
        it (`retry_hand_back`) when a slot is free."""
        self.waiting_for_slot = False
        """Due to campaign and refused a slot by the gate at the last tick: the router ticks it less often."""
        self._heard_since_wake: set[str] = set()
        """Followers that answered this leader since it last woke: it quiesces only once all of them did (a
        follower that restarted answers only once its group runs again, so its leader heartbeats until then)."""
        self.lost_leader = False
        """The node liveness declared our leader's node dead, and no leader was heard from since: an election is
        due or under way (a replica that just started knows no leader either, but has not lost one)."""
        self.quiesced = False
        """Idle: no timer runs (the driver need not tick) until something wakes the group (see the module)."""
        self._reset_timer()
        if greets_restarts and not persisted.empty and len(self.voters) > 1:
            self.stand_after(1)  # restarted: ask for the leader at once (see `_greets_restarts`)
        if self.joining:
            self._probe()

    # --------------------------------------------------------------------------------------------------------
    # The driver's interface

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def voting(self) -> bool:
        """Neither joining nor recovering, and a voter of the configuration: it may stand for election.

        Also a voter of the previous configuration while the latest one, which removes it, is uncommitted: a
        leader that appended its own removal and lost leadership may hold the only complete log, and the others
        still count it as a voter (its own vote does not count, only theirs, by the latest configuration)."""
        if self.joining or self.learner:
            return False
        if self.node_id in self.voters:
            return True
        return self.log.config_index > self.commit_index and self.node_id in self.log.previous_config.voters

    @property
    def snapshot(self) -> SnapshotMeta:
        """The latest snapshot the log starts after (the driver's own, or one installed from the leader)."""
        return self.log.snapshot

    @property
    def uncommitted_bytes(self) -> int:
        """Payload bytes this leader proposed that are not committed yet (0 unless leading)."""
        return self._uncommitted

    def follower(self, peer: str) -> FollowerView | None:
        """What this leader knows of `peer`'s log, or None (not leading, or not a follower)."""
        progress = self._progress.get(peer)
        return progress.view() if progress is not None else None

    def followers(self) -> dict[str, FollowerView]:
        """A read-only copy of every follower's progress (empty unless leading)."""
        return {peer: progress.view() for peer, progress in self._progress.items()}

    def tick(self) -> None:
        if self.waiting_for_slot:
            self.waiting_for_slot = False
            if self._election_elapsed < self._timeout and self._gate is not None:
                self._gate.withdraw(self.group)  # a leader was heard from meanwhile: no longer due to campaign
        if self.quiesced:
            return
        if self.role == "leader":
            self._tick_leader()
            return
        if self.role == "candidate" and not self._pre_vote and self._persisted_hs.term != self.term:
            return  # our own vote is not durable yet, so no request has left: the election has not begun
        self._election_elapsed += 1
        if self.joining:
            if self._election_elapsed % self._heartbeat_ticks == 0 or self._first_leader:
                self._probe()  # the first leader asks every tick: it waits for every voter's answer
            self._decide_join()  # the first leader's wait for every voter's answer may be over
        elif self._election_elapsed >= self._timeout and self.voting:
            gate = self._gate
            if gate is not None:
                if self.role == "candidate":
                    gate.timed_out_round(self.group)  # the slot goes back: a group that cannot win blocks none
                if not gate.admit(self.group):
                    self.waiting_for_slot = True  # the router ticks it again after `ASK_EVERY_TICKS`
                    return  # too many of the node's groups campaign: wait for a slot
            if self.role == "candidate" and not self._pre_vote:
                self._failed_elections += 1
            self._campaign(pre_vote=True, transfer=False)

    def stand_after(self, ticks: int) -> None:
        """Time out after `ticks` instead of a random election timeout (once; the next timeouts are random
        again). A new group's preferred leader does this, so it usually wins the first election and no
        hand-over to it follows right after the group starts. A joining replica does it once it knows the group
        is new (a replica that turns out to have lost its data is a learner and never stands)."""
        if self.joining:
            self._stand_after = ticks
        elif self.role != "leader":
            self._election_elapsed = 0
            self._timeout = ticks

    def propose(self, payloads: Sequence[bytes]) -> tuple[int, int]:
        """Append commands; they commit once a majority persisted them. Returns their index range.

        Raises `Overloaded` while the uncommitted tail is over its budget (followers slower than the proposals,
        or too few of them to commit): the leader's memory stays bounded and the client backs off. A proposal is
        always admitted when nothing is uncommitted, however large, so one big command cannot be stuck forever.
        """
        if self.role != "leader":
            raise NotLeader(self.leader_id)
        if self._transferee is not None:
            raise NotLeader(self._transferee)
        self._wake()
        size = sum(len(p) for p in payloads)
        if self._uncommitted and self._uncommitted + size > self._max_uncommitted:
            raise Overloaded(
                f"group {self.group or '?'} has {self._uncommitted} bytes waiting for its replicas to persist them "
                f"(the limit is {self._max_uncommitted}); retry shortly"
            )
        self._uncommitted += size
        first = self.log.last_index + 1
        self.log.append([LogEntry(self.term, bytes(p)) for p in payloads])
        for peer in list(self._progress):
            self._send_append(peer)
        return first, self.log.last_index

    def has_ready(self) -> bool:
        """Whether `ready()` would return something now: what the driver asks after a tick, so that ticking
        a thousand awake groups wakes only the drivers with work (checked cheaply, without building a Ready)."""
        if self._messages or self._send_snapshots or self._snapshot_chunks or self._incoming_snapshot is not None:
            return True
        log = self.log
        if log.last_index != log.stable or log.disk_last > log.stable or self.commit_index > self.applied_index:
            return True
        hs = self._persisted_hs
        return (
            hs.term != self.term
            or hs.voted_for != self.voted_for
            or hs.commit != self.commit_index
            or hs.learner != self.learner
            or hs.member == self.joining
        )

    def ready(self) -> Ready | None:
        assert self._outstanding is None, "advance() the previous Ready before asking for another"
        hs = HardState(self.term, self.voted_for, self.commit_index, self.learner, not self.joining)
        first, entries, truncate = self.log.unstable()
        committed = self.log.slice(self.applied_index + 1, self.commit_index + 1)
        changed = hs != self._persisted_hs or self._incoming_snapshot is not None or truncate is not None
        streams = self._send_snapshots or self._snapshot_chunks
        if not (changed or entries or committed or self._messages or streams):
            return None
        ready = Ready(
            hard_state=hs if hs != self._persisted_hs else None,
            snapshot=self._incoming_snapshot,
            truncate_after=truncate,
            entries_index=first,
            entries=entries,
            messages=self._messages,
            committed_index=self.applied_index + 1,
            committed=committed,
            send_snapshots=self._send_snapshots,
            snapshot_chunks=self._snapshot_chunks,
        )
        self._messages = []
        self._send_snapshots = []
        self._snapshot_chunks = []
        self._outstanding = ready
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver persisted, sent and applied `ready`."""
        assert ready is self._outstanding, "advance() takes the Ready that ready() returned last"
        self._outstanding = None
        if ready.hard_state is not None:
            self._persisted_hs = ready.hard_state
        if ready.snapshot is not None and ready.snapshot is self._incoming_snapshot:
            self._incoming_snapshot = None
        self.log.persisted(ready.entries_index, ready.entries, ready.truncate_after is not None)
        if ready.committed:
            self.applied_index = max(self.applied_index, ready.committed_index + len(ready.committed) - 1)
        if self.role == "leader":
            self._maybe_commit()

    def compact(self, index: int) -> None:
        """The driver saved the state machine at `index` (<= applied): forget the entries up to it. Followers
        that still need them get this snapshot from now on."""
        if index > self.applied_index:
            raise ValueError(f"cannot compact at {index}: only {self.applied_index} is applied")
        if index > self.log.snapshot.index:
            self.log.compact(index)

    def snapshot_received(self, leader: str, snapshot: SnapshotMeta) -> bool:
        """The driver holds the whole of `leader`'s `snapshot`, verified: install it if it still adds anything.

        Returns True when the next Ready carries it in `snapshot` (the driver then makes it the state), False
        when it is not needed (any more): the log already holds it, or this node no longer follows. Either way
        the leader is told how far this log now matches. Installing is safe whatever happened meanwhile: a
        leader snapshots only committed state, which every later leader holds too.
        """
        if self.role != "follower":
            return False
        installed = False
        if snapshot.index > self.commit_index:
            if self.log.term_at(snapshot.index) != snapshot.term:
                self.log.restore(snapshot)
                self._config_changed()
                self._incoming_snapshot = snapshot
                self.applied_index = snapshot.index
                installed = True
            self.commit_index = snapshot.index
        self._snapshot_response(leader)
        return installed

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to `to` once it is caught up; proposals are refused until then (or the attempt
        expires)."""
        if self.role != "leader":
            raise NotLeader(self.leader_id)
        if to not in self._progress or to not in self.voters:
            raise ValueError(f"{to!r} is not a voting follower of this group")
        self._wake()
        if self._transferee == to:
            return
        self._transferee = to
        self._transfer_elapsed = 0
        if self._progress[to].match == self.log.last_index:
            self._send(TimeoutNow(self.group, self.term, self.node_id, to))
        else:
            self._send_append(to)

    # --------------------------------------------------------------------------------------------------------
    # Receiving

    def step(self, m: Message) -> None:
        self._restarted.discard(m.sender)
        if isinstance(m, JoinProbe):
            if self.role == "leader" and m.sender in self._progress:
                self._wake()  # an empty or recovering replica: our heartbeats bring it in once it has decided
            if m.sender == self._preferred:
                self._preferred_run = max(self._preferred_run, m.run)
            untouched = self._untouched_by(m.sender)
            self._send(
                JoinReply(self.group, self.term, self.node_id, m.sender, self._exists(), m.incarnation, untouched)
            )
            return
        if isinstance(m, JoinReply):
            self._on_join_reply(m)
            return
        if self.joining:
            return  # not a member yet: whoever sent this retries
        if self._stale_first_term(m):
            return
        if isinstance(m, RequestVote) and self.role == "leader" and m.sender not in self.log.config:
            self._reach_removed(m.sender)
        if isinstance(m, RequestVote) and m.sender == self.leader_id and self.role != "leader":
            self.leader_id = None  # our leader stands for election: it restarted, it leads no more
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if not m.transfer and self._in_lease():
                    if self.role == "leader":
                        self._wake()  # a node that lost touch (or restarted): our heartbeats bring it back
                    return  # a leader is alive: a node that lost touch must not depose it
                if not m.pre_vote:
                    self._become_follower(m.term, None)
            elif not (isinstance(m, VoteResponse) and m.pre_vote and m.granted):
                leader = m.sender if isinstance(m, AppendEntries | InstallSnapshot | TimeoutNow) else None
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, RequestVote) and self.role == "leader":
                self._wake()  # a replica that lost touch (restarted): our heartbeats bring it back
            if isinstance(m, AppendEntries | InstallSnapshot):
                self._respond(m.sender, False, 0, 0)
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(VoteResponse(self.group, self.term, self.node_id, m.sender, False, True))
            return
        if self.role == "leader" and m.sender in self._progress:
            self._progress[m.sender].recent_active = True
            self._heard_since_wake.add(m.sender)
        if self.quiesced and not self._keeps_quiet(m):
            self._wake()
        match m:
            case AppendEntries():
                self._on_append(m)
            case AppendResponse():
                self._on_append_response(m)
            case RequestVote():
                self._on_request_vote(m)
            case VoteResponse():
                self._on_vote_response(m)
            case InstallSnapshot():
                self._on_install_snapshot(m)
            case SnapshotResponse():
                self._on_snapshot_response(m)
            case SnapshotChunkAck():
                progress = self._progress.get(m.sender) if self.role == "leader" else None
                if progress is not None and progress.state == "snapshot":
                    progress.stalled_heartbeats = 0  # a long transfer is progress, not a stall
            case TimeoutNow():
                if self.role != "leader" and self.voting:
                    self._campaign(pre_vote=False, transfer=True)

    def _stale_first_term(self, m: Message) -> bool:
        """Entries of term 1 from a run of the preferred leader older than one that probed this replica since:
        that run's disk was wiped, and the new run may lead term 1 again with other entries (`_membership`)."""
        return (
            self._first_term
            and isinstance(m, AppendEntries)
            and m.term == 1
            and m.sender == self._preferred
            and m.run < self._preferred_run
        )

    def _follow(self, leader: str) -> None:
        """A message from the leader of our term: it is alive, and we are its follower."""
        self._failed_elections = 0
        self.lost_leader = False
        if self.role != "follower" or self.leader_id != leader:
            self._become_follower(self.term, leader)
        self._election_elapsed = 0

    def _on_append(self, m: AppendEntries) -> None:
        if self.role == "leader":
            return  # two leaders in one term cannot happen; the simulation checks it
        self._follow(m.sender)
        if self.learner and m.promote == self.incarnation:
            self.learner = False  # caught up with the leader after our restart: everything committed is here
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < self.commit_index:  # entries up to our commit match every leader's: skip them
            skip = self.commit_index - prev
            if skip >= len(entries):
                self._respond(m.sender, True, self.commit_index, 0)
                return
            prev, prev_term, entries = self.commit_index, entries[skip - 1].term, entries[skip:]
        if self.log.term_at(prev) != prev_term:
            self._respond(m.sender, False, m.prev_index, self._reject_hint(prev, prev_term))
            return
        for offset, entry in enumerate(entries):
            index = prev + 1 + offset
            term = self.log.term_at(index)
            if term != entry.term:
                if term is not None:
                    assert index > self.commit_index, "a leader asked to overwrite a committed entry"
                    self.log.truncate_after(index - 1)
                self.log.append(entries[offset:])
                break
        last_new = prev + len(entries)
        self._config_changed()
        self.commit_index = max(self.commit_index, min(m.commit, last_new))
        if m.quiesce and self._quiesce and self.commit_index == last_new == self.log.last_index:
            self.quiesced = True  # the leader stopped heartbeating: so does our election timer
        self._respond(m.sender, True, last_new, 0)

    def _respond(self, to: str, success: bool, match_index: int, reject_hint: int) -> None:
        self._send(
            AppendResponse(
                self.group,
                self.term,
                self.node_id,
                to,
                success,
                match_index,
                reject_hint,
                self.incarnation,
                self.learner,
            )
        )

    def _reject_hint(self, prev: int, prev_term: int) -> int:
        """The highest index that may still match: entries of terms above `prev_term` cannot be in the
        leader's log before `prev`, so a whole run of them is skipped in one round trip."""
        index = min(prev, self.log.last_index)
        while index > self.commit_index and (self.log.term_at(index) or 0) > prev_term:
            index -= 1
        return index

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        """A chunk of the leader's snapshot: the driver stores it, unless the log already holds what it stands
        for (then the leader hears so at once and stops streaming)."""
        if self.role == "leader":
            return
        self._follow(m.sender)
        if m.index <= self.commit_index or self.log.term_at(m.index) == m.snapshot_term:
            self.commit_index = max(self.commit_index, m.index)  # log matching: our entries up to it are its
            self._snapshot_response(m.sender)
            return
        self._snapshot_chunks.append(m)

    def _snapshot_response(self, to: str) -> None:
        self._send(
            SnapshotResponse(self.group, self.term, self.node_id, to, self.commit_index, self.incarnation, self.learner)
        )

    # --------------------------------------------------------------------------------------------------------
    # Elections

    def _reset_timer(self) -> None:
        self._election_elapsed = 0
        self._timeout = election_timeout(self._rng, self._election_ticks, self._failed_elections)

    def _in_lease(self) -> bool:
        """CheckQuorum's lease: we heard from a live leader less than an election timeout ago."""
        return self.leader_id is not None and self._election_elapsed < self._election_ticks

    def _become_follower(self, term: int, leader: str | None) -> None:
        if self.role == "candidate" and self._gate is not None:
            self._gate.release(self.group)
        if self.role == "leader" and self._hand_backs is not None:
            self._hand_backs.done(self.group)
        self._hand_back_refused = False
        if term != self.term:
            self.term = term
            self.voted_for = None
        self.role = "follower"
        self.leader_id = leader
        self.quiesced = False
        self._pre_vote = False
        self._transferee = None
        self._progress = {}
        self._uncommitted = 0
        self._reset_timer()

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        """Ask for votes; a pre-vote asks "would you vote for me?" without bumping anyone's term."""
        self.role = "candidate"
        self.leader_id = None
        self.quiesced = False
        self._pre_vote = pre_vote
        self._transferee = None
        self._progress = {}
        self._uncommitted = 0
        self._reset_timer()
        if not pre_vote:
            self.term += 1
            self.voted_for = self.node_id
        self._votes = {self.node_id: True}
        if self._granted() >= self._quorum:
            self._won()
            return
        term = self.term + 1 if pre_vote else self.term
        for peer in self.voters:
            if peer == self.node_id:
                continue
            self._send(
                RequestVote(
                    self.group,
                    term,
                    self.node_id,
                    peer,
                    self.log.last_index,
                    self.log.last_term,
                    pre_vote,
                    transfer,
                )
            )

    def _on_request_vote(self, m: RequestVote) -> None:
        can_vote = self._may_vote() and (
            self.voted_for == m.sender
            or (self.voted_for is None and self.leader_id is None)
            or (m.pre_vote and m.term > self.term)
        )
        if (
            m.pre_vote
            and self._outranks(m.sender)
            and (m.last_term, m.last_index) == (self.log.last_term, self.log.last_index)
        ):
            can_vote = False  # equal logs: either could win, the order picks one (a newer log than ours goes on)
        granted = can_vote and self.log.is_up_to_date(m.last_index, m.last_term)
        if granted and not m.pre_vote:
            self.voted_for = m.sender
            self._reset_timer()
        term = m.term if granted else self.term
        self._send(VoteResponse(self.group, term, self.node_id, m.sender, granted, m.pre_vote))

    def _outranks(self, other: str) -> bool:
        """Standing in a pre-vote ourselves, and before `other` in the group's order (`_elections.stands_before`):
        of two replicas with equal logs whose pre-votes cross, only one goes on to a real election, instead of
        both voting for themselves (a split vote that costs both a whole election timeout, and under a storm of
        elections many of them). Refusing a pre-vote is always safe; the refused one is told by our real vote
        request. Only between equal logs: one whose log is behind cannot win, and refusing the other would leave
        the group with no leader while a third voter is down."""
        return self.role == "candidate" and self._pre_vote and stands_before(self.group, self.node_id, other)

    def _may_vote(self) -> bool:
        """A member of its configuration that lost nothing. A learner of the configuration answers too: only a
        candidate that counts it as a voter asks, and a promotion that committed may not have reached it yet
        (refusing, it could leave the group without a quorum). A node the configuration does not list never
        votes: a removed node, or one started empty to be added (a wiped node added back under the same name
        would otherwise vote for a stale candidate, its memory of the entries it had acknowledged gone)."""
        return not self.learner and not self.joining and (self.node_id in self.log.config or self.voting)

    def _on_vote_response(self, m: VoteResponse) -> None:
        if self.role != "candidate" or m.pre_vote != self._pre_vote or m.sender not in self.voters:
            return
        if m.pre_vote and m.granted and m.term != self.term + 1:
            return
        self._votes[m.sender] = m.granted
        granted = self._granted()
        if granted >= self._quorum:
            self._won()
        elif sum(not vote for vote in self._votes.values()) >= self._quorum:
            self._become_follower(self.term, None)

    def _granted(self) -> int:
        """Votes granted by voters of the configuration (ours counts only if we are one)."""
        return sum(vote for voter, vote in self._votes.items() if voter in self.voters)

    def _won(self) -> None:
        if self._pre_vote:
            self._campaign(pre_vote=False, transfer=False)
            return
        if self._gate is not None:
            self._gate.release(self.group)
            self._gate.withdraw(self.group)  # won an election that timed out, while waiting for a new slot
        self.waiting_for_slot = False  # a leader is ticked every tick (the router skips waiting groups)
        self.role = "leader"
        self.leader_id = self.node_id
        self.lost_leader = False
        self._pre_vote = False
        self._failed_elections = self._quorum_missed = 0
        self._election_elapsed = self._heartbeat_elapsed = self._preferred_ticks = 0
        self._heard_since_wake.clear()
        self._uncommitted = 0
        self._departing = {}
        self._progress = {
            p: Progress(self.log.last_index + 1, self._max_inflight, self._max_inflight_bytes) for p in self._peers
        }
        for peer, granted in self._votes.items():
            if granted and peer in self._progress:
                self._progress[peer].recent_active = True  # it just voted: CheckQuorum counts it in the first period
        self.log.append([LogEntry(self.term, b"")])  # entries of earlier terms commit only under one of ours
        for peer in self._peers:
            self._send_append(peer)

    # --------------------------------------------------------------------------------------------------------
    # Leading

    def _tick_leader(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._election_ticks:
            self._election_elapsed = 0
            self._drop_silent_departing()
            voters = self.voters
            active = (self.node_id in voters) + sum(
                pr.recent_active for peer, pr in self._progress.items() if peer in voters
            )
            for pr in self._progress.values():
                pr.was_active, pr.recent_active = pr.recent_active, False
            self._quorum_missed = self._quorum_missed + 1 if active < self._quorum else 0
            if self._quorum_missed >= CHECK_QUORUM_PERIODS:
                self._become_follower(self.term, None)  # cut off from a majority: stop taking writes
                return
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self._election_ticks:
                self._transferee = None
                if self._hand_backs is not None:
                    self._hand_backs.done(self.group)
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self._heartbeat_ticks:
            self._heartbeat_elapsed = 0
            quiesce = self._quiesce and self._can_quiesce()
            for peer in list(self._progress):
                self._heartbeat(peer, quiesce=quiesce)
            if quiesce:
                self.quiesced = True
                return
        self._maybe_return_leadership()

    def _heartbeat(self, peer: str, *, quiesce: bool = False) -> None:
        """One message per follower per heartbeat, which also retries whatever got lost (`quiesce`: the last one
        before the group goes quiet; the follower is known to be caught up, so it is a plain heartbeat)."""
        pr = self._progress[peer]
        if pr.state != "probe" and pr.match < self.log.last_index:
            pr.stalled_heartbeats += 1
            if pr.stalled_heartbeats > 2:
                pr.become_probe(pr.match + 1)
        if pr.state == "probe":
            pr.probe_sent = False
            self._send_append(peer, allow_empty=True)
            return
        prev, prev_term = pr.match, self.log.term_at(pr.match)
        if prev_term is None:
            prev, prev_term = 0, 0  # below the follower's commit: it answers with what it has committed
        self._send_entries(peer, prev, prev_term, [], quiesce=quiesce)

    def _send_entries(
        self, peer: str, prev: int, prev_term: int, entries: list[LogEntry], *, quiesce: bool = False
    ) -> None:
        pr = self._progress[peer]
        promote = pr.incarnation if pr.learner and pr.match >= pr.catch_up_to else 0
        message = AppendEntries(
            self.group,
            self.term,
            self.node_id,
            peer,
            prev,
            prev_term,
            entries,
            self.commit_index,
            promote,
            quiesce,
            self.run,
        )
        self._send(message)

    def _send_append(self, peer: str, *, allow_empty: bool = False) -> None:
        """Send what the follower lacks: while it is caught up, several messages in a row (up to the inflight
        window); while probing, one; the snapshot (streamed by the driver) when its next entry was compacted."""
        pr = self._progress[peer]
        while pr.can_send():
            prev = pr.next - 1
            prev_term = self.log.term_at(prev)
            if prev_term is None:
                pr.become_snapshot()
                self._send_snapshots.append((peer, self.log.snapshot))
                return
            entries, size = self._batch(pr.next)
            if not entries and not allow_empty:
                return
            self._send_entries(peer, prev, prev_term, entries)
            pr.sent(prev + len(entries), size)
            if pr.state != "replicate" or not entries:
                return
            allow_empty = False

    def _batch(self, start: int) -> tuple[list[LogEntry], int]:
        """Entries from `start`, bounded in count and bytes (always at least one, if there is one), and their
        payload bytes."""
        entries = self.log.slice(start, min(self.log.last_index + 1, start + self._max_entries))
        size = 0
        for count, entry in enumerate(entries):
            if size + len(entry.payload) > self._max_bytes and count > 0:
                return entries[:count], size
            size += len(entry.payload)
        return entries, size

    def _on_append_response(self, m: AppendResponse) -> None:
        pr = self._progress.get(m.sender) if self.role == "leader" else None
        if pr is None:
            return
        self._heard_from(pr, m.incarnation, m.learner)
        if not m.success:
            if m.match_index <= pr.match or pr.state == "snapshot":
                return
            if pr.state == "probe" and m.match_index != pr.next - 1:
                return  # an answer to an older probe
            pr.become_probe(min(m.match_index, m.reject_hint + 1, self.log.last_index + 1))
            self._send_append(m.sender)
            return
        if pr.acknowledged(m.match_index):
            self._progressed(m.sender)
        self._maybe_let_go(m.sender)

    def _heard_from(self, pr: Progress, incarnation: int, learner: bool) -> None:
        """A follower's new incarnation may have lost what the previous one acknowledged: forget its `match` and
        probe from its real log. A learner must then catch up to our last index as of now (after its restart)."""
        if incarnation != pr.incarnation:
            if pr.incarnation:
                pr.restarted(self.log.last_index + 1)
            pr.incarnation = incarnation
            pr.catch_up_to = self.log.last_index
        pr.learner = learner

    def _on_snapshot_response(self, m: SnapshotResponse) -> None:
        pr = self._progress.get(m.sender) if self.role == "leader" else None
        if pr is None:
            return
        self._heard_from(pr, m.incarnation, m.learner)
        pr.acknowledged(m.index)
        if pr.state == "snapshot":
            pr.become_replicate()
        self._progressed(m.sender)

    def _progressed(self, peer: str) -> None:
        if not self._maybe_commit():
            pr = self._progress[peer]
            # A learner that just caught up (from entries or a snapshot) hears `promote` now, not a heartbeat later.
            self._send_append(peer, allow_empty=pr.learner and pr.match >= pr.catch_up_to)
        if self._transferee == peer and self._progress[peer].match == self.log.last_index:
            self._send(TimeoutNow(self.group, self.term, self.node_id, peer))

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a majority has durably, if that entry is of our term (Figure 8);
        tells every follower at once when it moved."""
        voters = self.voters
        matches = [pr.match for peer, pr in self._progress.items() if peer in voters]
        if self.node_id in voters:  # a leader a pending change removes leads on, without counting itself
            matches.append(self.log.stable)
        matches.sort(reverse=True)
        if len(matches) < self._quorum:
            return False
        candidate = matches[self._quorum - 1]
        if candidate <= self.commit_index or self.log.term_at(candidate) != self.term:
            return False
        committed = self.log.bytes_between(self.commit_index + 1, candidate)
        self._uncommitted = max(0, self._uncommitted - committed)
        self.commit_index = candidate
        for peer in list(self._progress):
            self._send_append(peer, allow_empty=True)
        self._step_down_if_removed()
        return True

    def prefer(self, node: str | None) -> None:
        """Make `node` the preferred leader (a replica moved in took the leaver's rank): leadership goes to it
        once it has kept up for an election timeout."""
        self._preferred = node
        self._preferred_ticks = 0

    def _maybe_return_leadership(self) -> None:
        """Hand leadership back to the preferred node once it has kept up for an election timeout."""
        pr = self._progress.get(self._preferred) if self._preferred is not None else None
        if pr is None or self._transferee is not None or pr.learner or self._preferred not in self.voters:
            return
        if pr.state == "replicate" and pr.match >= self.commit_index:
            self._preferred_ticks += 1
            if self._preferred_ticks >= self._election_ticks:
                if self._hand_backs is not None and not self._hand_backs.admit(self.group):
                    self._hand_back_refused = True  # quiesce meanwhile: the router wakes us for a free slot
                    return
                self._preferred_ticks = 0
                assert self._preferred is not None
                self.transfer_leadership(self._preferred)
        else:
            self._preferred_ticks = 0

    def retry_hand_back(self) -> None:
        """A hand-back slot is free (the router says so, `HandBackGate.due`): a leader that was refused one wakes
        and asks again at its next tick."""
        if self.role == "leader" and self._hand_back_refused:
            self._hand_back_refused = False
            self._wake()

    def _send(self, message: Message) -> None:
        self._messages.append(message)
