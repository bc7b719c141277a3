"""The Raft state machine of one replication group, pure and driven from outside.

No I/O, no clock, no global randomness: time is `tick()`, the network is `step()` (in) and `Ready.messages`
(out), the disk is `Ready.hard_state` / `Ready.entries` / `Ready.snapshot`, and randomness is an injected
`random.Random`. That makes every schedule reproducible, which is how the simulation in `tests/sim` explores
thousands of them. The driver loops: `ready()`; persist the hard state, snapshot and entries; send the
messages; apply `committed`; `advance()`. Messages leave only after the state they depend on is durable, which
is what lets a follower's acknowledgement and a vote mean what they say after a crash.

Beyond the paper: PreVote and CheckQuorum (a node cut off cannot disturb the cluster, a leader cut off stops
accepting writes), hint-based backtracking, pipelined replication with bounded messages, snapshots for
followers that fell behind the compacted log, and leadership transfer (used to hand leadership back to a
preferred node).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mom.errors import Unavailable
from mom.replication._progress import Progress
from mom.replication._raftlog import HardState, PersistedState, RaftLog, Snapshot
from mom.replication.messages import (
    AppendEntries,
    AppendResponse,
    InstallSnapshot,
    LogEntry,
    Message,
    RequestVote,
    SnapshotResponse,
    TimeoutNow,
    VoteResponse,
)

__all__ = ["HardState", "NotLeader", "PersistedState", "RaftCore", "Ready", "Role", "Snapshot"]

Role = Literal["follower", "candidate", "leader"]


class NotLeader(Unavailable):
    """This node cannot accept writes for the group; `leader_id` is where to go instead, when known."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not the leader; try {leader_id}" if leader_id else "no leader is known right now")
        self.leader_id = leader_id


@dataclass(eq=False)
class Ready:
    """What the driver must do now, in this order: persist, send, apply; then call `advance(ready)`."""

    hard_state: HardState | None = None
    """To persist, when it changed."""
    snapshot: Snapshot | None = None
    """To install from the leader: reset the log to it and the state machine to its data."""
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


class RaftCore:
    def __init__(
        self,
        node_id: str,
        voters: Sequence[str],
        *,
        persisted: PersistedState,
        rng: random.Random,
        election_ticks: int = 10,
        heartbeat_ticks: int = 2,
        preferred_leader: str | None = None,
        max_entries_per_message: int = 512,
        max_bytes_per_message: int = 1 << 20,
        max_inflight: int = 64,
        group: str = "",
    ) -> None:
        if node_id not in voters:
            raise ValueError(f"{node_id!r} is not one of the voters {list(voters)}")
        self.node_id = node_id
        self.group = group
        self.voters = tuple(voters)
        self._peers = tuple(v for v in self.voters if v != node_id)
        self._quorum = len(self.voters) // 2 + 1
        self._rng = rng
        self._election_ticks = election_ticks
        self._heartbeat_ticks = heartbeat_ticks
        self._preferred = preferred_leader
        self._max_entries = max_entries_per_message
        self._max_bytes = max_bytes_per_message
        self._max_inflight = max_inflight

        hs = persisted.hard_state
        self.log = RaftLog(persisted.snapshot, persisted.entries)
        self.term = hs.term
        self.voted_for = hs.voted_for
        self.commit_index = max(persisted.snapshot.index, min(hs.commit, self.log.last_index))
        self.applied_index = persisted.snapshot.index
        self.role: Role = "follower"
        self.leader_id: str | None = None
        self._persisted_hs = hs
        self._messages: list[Message] = []
        self._incoming_snapshot: Snapshot | None = None
        self._outstanding: Ready | None = None

        self._pre_vote = False
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._timeout = election_ticks
        self._transferee: str | None = None
        self._transfer_elapsed = 0
        self._preferred_ticks = 0
        self._reset_timer()

    # --------------------------------------------------------------------------------------------------------
    # The driver's interface

    @property
    def last_index(self) -> int:
        return self.log.last_index

    @property
    def snapshot(self) -> Snapshot:
        """The latest snapshot the log starts after (the driver's own, or one installed from the leader)."""
        return self.log.snapshot

    def tick(self) -> None:
        if self.role == "leader":
            self._tick_leader()
            return
        self._election_elapsed += 1
        if self._election_elapsed >= self._timeout:
            self._campaign(pre_vote=True, transfer=False)

    def stand_after(self, ticks: int) -> None:
        """Time out after `ticks` instead of a random election timeout (once; the next timeouts are random
        again). A new group's preferred leader does this, so it usually wins the first election and no
        hand-over to it follows right after the group starts."""
        if self.role != "leader":
            self._election_elapsed = 0
            self._timeout = ticks

    def propose(self, payloads: Sequence[bytes]) -> tuple[int, int]:
        """Append commands; they commit once a majority persisted them. Returns their index range."""
        if self.role != "leader":
            raise NotLeader(self.leader_id)
        if self._transferee is not None:
            raise NotLeader(self._transferee)
        first = self.log.last_index + 1
        self.log.append([LogEntry(self.term, bytes(p)) for p in payloads])
        for peer in self._peers:
            self._send_append(peer)
        return first, self.log.last_index

    def ready(self) -> Ready | None:
        assert self._outstanding is None, "advance() the previous Ready before asking for another"
        hs = HardState(self.term, self.voted_for, self.commit_index)
        first, entries, truncate = self.log.unstable()
        committed = self.log.slice(self.applied_index + 1, self.commit_index + 1)
        changed = hs != self._persisted_hs or self._incoming_snapshot is not None or truncate is not None
        if not (changed or entries or committed or self._messages):
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
        )
        self._messages = []
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

    def compact(self, index: int, snapshot_data: bytes) -> None:
        """The state machine saved itself at `index` (<= applied): forget the entries up to it."""
        if index > self.applied_index:
            raise ValueError(f"cannot compact at {index}: only {self.applied_index} is applied")
        if index > self.log.snapshot.index:
            self.log.compact(index, snapshot_data)

    def transfer_leadership(self, to: str) -> None:
        """Hand leadership to `to` once it is caught up; proposals are refused until then (or the attempt
        expires)."""
        if self.role != "leader":
            raise NotLeader(self.leader_id)
        if to not in self._progress:
            raise ValueError(f"{to!r} is not a follower of this group")
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
        if m.term > self.term:
            if isinstance(m, RequestVote):
                if not m.transfer and self._in_lease():
                    return  # a leader is alive: a node that lost touch must not depose it
                if not m.pre_vote:
                    self._become_follower(m.term, None)
            elif not (isinstance(m, VoteResponse) and m.pre_vote and m.granted):
                leader = m.sender if isinstance(m, AppendEntries | InstallSnapshot | TimeoutNow) else None
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | InstallSnapshot):
                self._send(AppendResponse(self.group, self.term, self.node_id, m.sender, False, 0, 0))
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(VoteResponse(self.group, self.term, self.node_id, m.sender, False, True))
            return
        if self.role == "leader" and m.sender in self._progress:
            self._progress[m.sender].recent_active = True
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
            case TimeoutNow():
                if self.role != "leader":
                    self._campaign(pre_vote=False, transfer=True)

    def _follow(self, leader: str) -> None:
        """A message from the leader of our term: it is alive, and we are its follower."""
        if self.role != "follower" or self.leader_id != leader:
            self._become_follower(self.term, leader)
        self._election_elapsed = 0

    def _on_append(self, m: AppendEntries) -> None:
        if self.role == "leader":
            return  # two leaders in one term cannot happen; the simulation checks it
        self._follow(m.sender)
        prev, prev_term, entries = m.prev_index, m.prev_term, m.entries
        if prev < self.commit_index:  # entries up to our commit match every leader's: skip them
            skip = self.commit_index - prev
            if skip >= len(entries):
                self._send(AppendResponse(self.group, self.term, self.node_id, m.sender, True, self.commit_index, 0))
                return
            prev, prev_term, entries = self.commit_index, entries[skip - 1].term, entries[skip:]
        if self.log.term_at(prev) != prev_term:
            hint = self._reject_hint(prev, prev_term)
            self._send(AppendResponse(self.group, self.term, self.node_id, m.sender, False, m.prev_index, hint))
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
        self.commit_index = max(self.commit_index, min(m.commit, last_new))
        self._send(AppendResponse(self.group, self.term, self.node_id, m.sender, True, last_new, 0))

    def _reject_hint(self, prev: int, prev_term: int) -> int:
        """The highest index that may still match: entries of terms above `prev_term` cannot be in the
        leader's log before `prev`, so a whole run of them is skipped in one round trip."""
        index = min(prev, self.log.last_index)
        while index > self.commit_index and (self.log.term_at(index) or 0) > prev_term:
            index -= 1
        return index

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        if self.role == "leader":
            return
        self._follow(m.sender)
        if m.index > self.commit_index:
            if self.log.term_at(m.index) != m.snapshot_term:
                snapshot = Snapshot(m.index, m.snapshot_term, m.data)
                self.log.restore(snapshot)
                self._incoming_snapshot = snapshot
                self.applied_index = m.index
            self.commit_index = m.index
        self._send(SnapshotResponse(self.group, self.term, self.node_id, m.sender, self.commit_index))

    # --------------------------------------------------------------------------------------------------------
    # Elections

    def _reset_timer(self) -> None:
        self._election_elapsed = 0
        self._timeout = self._rng.randrange(self._election_ticks, 2 * self._election_ticks)

    def _in_lease(self) -> bool:
        """CheckQuorum's lease: we heard from a live leader less than an election timeout ago."""
        return self.leader_id is not None and self._election_elapsed < self._election_ticks

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term != self.term:
            self.term = term
            self.voted_for = None
        self.role = "follower"
        self.leader_id = leader
        self._pre_vote = False
        self._transferee = None
        self._progress = {}
        self._reset_timer()

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        """Ask for votes; a pre-vote asks "would you vote for me?" without bumping anyone's term."""
        self.role = "candidate"
        self.leader_id = None
        self._pre_vote = pre_vote
        self._transferee = None
        self._progress = {}
        self._reset_timer()
        if not pre_vote:
            self.term += 1
            self.voted_for = self.node_id
        self._votes = {self.node_id: True}
        if self._quorum == 1:
            self._won()
            return
        term = self.term + 1 if pre_vote else self.term
        for peer in self._peers:
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
        can_vote = (
            self.voted_for == m.sender
            or (self.voted_for is None and self.leader_id is None)
            or (m.pre_vote and m.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(m.last_index, m.last_term)
        if granted and not m.pre_vote:
            self.voted_for = m.sender
            self._reset_timer()
        term = m.term if granted else self.term
        self._send(VoteResponse(self.group, term, self.node_id, m.sender, granted, m.pre_vote))

    def _on_vote_response(self, m: VoteResponse) -> None:
        if self.role != "candidate" or m.pre_vote != self._pre_vote:
            return
        if m.pre_vote and m.granted and m.term != self.term + 1:
            return
        self._votes[m.sender] = m.granted
        granted = sum(self._votes.values())
        if granted >= self._quorum:
            self._won()
        elif len(self._votes) - granted >= self._quorum:
            self._become_follower(self.term, None)

    def _won(self) -> None:
        if self._pre_vote:
            self._campaign(pre_vote=False, transfer=False)
            return
        self.role = "leader"
        self.leader_id = self.node_id
        self._pre_vote = False
        self._election_elapsed = self._heartbeat_elapsed = self._preferred_ticks = 0
        self._progress = {p: Progress(self.log.last_index + 1, self._max_inflight) for p in self._peers}
        self.log.append([LogEntry(self.term, b"")])  # entries of earlier terms commit only under one of ours
        for peer in self._peers:
            self._send_append(peer)

    # --------------------------------------------------------------------------------------------------------
    # Leading

    def _tick_leader(self) -> None:
        self._election_elapsed += 1
        if self._election_elapsed >= self._election_ticks:
            self._election_elapsed = 0
            active = 1 + sum(pr.recent_active for pr in self._progress.values())
            for pr in self._progress.values():
                pr.recent_active = False
            if active < self._quorum:
                self._become_follower(self.term, None)  # cut off from a majority: stop taking writes
                return
        if self._transferee is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self._election_ticks:
                self._transferee = None
        self._heartbeat_elapsed += 1
        if self._heartbeat_elapsed >= self._heartbeat_ticks:
            self._heartbeat_elapsed = 0
            for peer in self._peers:
                self._heartbeat(peer)
        self._maybe_return_leadership()

    def _heartbeat(self, peer: str) -> None:
        """One message per follower per heartbeat, which also retries whatever got lost."""
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
        self._send(AppendEntries(self.group, self.term, self.node_id, peer, prev, prev_term, [], self.commit_index))

    def _send_append(self, peer: str, *, allow_empty: bool = False) -> None:
        """Send what the follower lacks: while it is caught up, several messages in a row (up to the inflight
        window); while probing, one; an InstallSnapshot when its next entry was compacted away."""
        pr = self._progress[peer]
        while pr.can_send():
            prev = pr.next - 1
            prev_term = self.log.term_at(prev)
            if prev_term is None:
                pr.become_snapshot()
                snap = self.log.snapshot
                self._send(InstallSnapshot(self.group, self.term, self.node_id, peer, snap.index, snap.term, snap.data))
                return
            entries = self._batch(pr.next)
            if not entries and not allow_empty:
                return
            self._send(
                AppendEntries(self.group, self.term, self.node_id, peer, prev, prev_term, entries, self.commit_index)
            )
            pr.sent(prev + len(entries))
            if pr.state != "replicate" or not entries:
                return
            allow_empty = False

    def _batch(self, start: int) -> list[LogEntry]:
        """Entries from `start`, bounded in count and bytes (always at least one, if there is one)."""
        entries = self.log.slice(start, min(self.log.last_index + 1, start + self._max_entries))
        size = 0
        for count, entry in enumerate(entries):
            size += len(entry.payload)
            if size > self._max_bytes and count > 0:
                return entries[:count]
        return entries

    def _on_append_response(self, m: AppendResponse) -> None:
        pr = self._progress.get(m.sender) if self.role == "leader" else None
        if pr is None:
            return
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

    def _on_snapshot_response(self, m: SnapshotResponse) -> None:
        pr = self._progress.get(m.sender) if self.role == "leader" else None
        if pr is None:
            return
        pr.acknowledged(m.index)
        if pr.state == "snapshot":
            pr.become_replicate()
        self._progressed(m.sender)

    def _progressed(self, peer: str) -> None:
        if not self._maybe_commit():
            self._send_append(peer)
        if self._transferee == peer and self._progress[peer].match == self.log.last_index:
            self._send(TimeoutNow(self.group, self.term, self.node_id, peer))

    def _maybe_commit(self) -> bool:
        """Advance the commit index to what a majority has durably, if that entry is of our term (Figure 8);
        tells every follower at once when it moved."""
        matches = sorted([self.log.stable, *(pr.match for pr in self._progress.values())], reverse=True)
        candidate = matches[self._quorum - 1]
        if candidate <= self.commit_index or self.log.term_at(candidate) != self.term:
            return False
        self.commit_index = candidate
        for peer in self._peers:
            self._send_append(peer, allow_empty=True)
        return True

    def _maybe_return_leadership(self) -> None:
        """Hand leadership back to the preferred node once it has kept up for an election timeout."""
        pr = self._progress.get(self._preferred) if self._preferred is not None else None
        if pr is None or self._transferee is not None:
            return
        if pr.state == "replicate" and pr.match >= self.commit_index:
            self._preferred_ticks += 1
            if self._preferred_ticks >= self._election_ticks:
                self._preferred_ticks = 0
                assert self._preferred is not None
                self.transfer_leadership(self._preferred)
        else:
            self._preferred_ticks = 0

    def _send(self, message: Message) -> None:
        self._messages.append(message)
