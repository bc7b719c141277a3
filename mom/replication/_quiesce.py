"""Quiescence, the part of the Raft core (`mom.replication.raft.RaftCore`) that lets idle groups stop ticking.
Split off `raft.py` for size; it shares the core's state.

Quiescence (`quiesce=True`), for thousands of idle groups on a node: a leader whose group has nothing left to do
(every entry committed and acknowledged by every follower, all of them heard from lately, no transfer, no
snapshot, no hand-back to a preferred leader pending) sends one last heartbeat marked `quiesce` and stops
ticking; a follower that gets it with its log matching whole stops its election timer too. A quiesced group
does nothing until something happens to it: a proposal or a leadership transfer (the leader wakes and
replicates), any Raft message other than that heartbeat and its answers, or the driver's news about a node
(`peer_down`: the node-level liveness, one heartbeat per pair of nodes for all groups, declared the leader's
node dead, so the followers campaign; or a follower's node dead or back, so the leader heartbeats again). Timers
only ever decide *when* to campaign or step down, never what is committed, so quiescence cannot break safety;
the simulation runs with it on, with false suspicions of live nodes too.
"""

from __future__ import annotations

from typing import Literal

from mom.replication._elections import failover_rank
from mom.replication._progress import Progress
from mom.replication._raftlog import RaftLog
from mom.replication.messages import AppendEntries, AppendResponse, Message, RequestVote, VoteResponse


class QuiesceMixin:
    """Waking and quiescing, for `RaftCore` (which defines the state declared here)."""

    group: str
    node_id: str
    role: Literal["follower", "candidate", "leader"]
    leader_id: str | None
    commit_index: int
    log: RaftLog
    voters: tuple[str, ...]
    quiesced: bool
    lost_leader: bool
    _progress: dict[str, Progress]
    _transferee: str | None
    _preferred: str | None
    _departing: dict[str, int]
    _heard_since_wake: set[str]
    _down: set[str]
    _restarted: set[str]
    _greets_restarts: bool
    _hand_back_refused: bool
    _quorum: int
    _election_elapsed: int
    _election_ticks: int
    _heartbeat_elapsed: int
    _heartbeat_ticks: int

    def peer_down(self, peer: str) -> None:
        """The node liveness declared `peer`'s node dead. A follower of it stops trusting its lease; the first
        of the live voters in the group's failover order campaigns after a random part of an election timeout,
        the next 1.5 timeouts later, and so on (`_elections.failover_rank`: many groups failing over at once
        must not split their votes); a leader wakes to heartbeat (and to step down under CheckQuorum if too few
        are left; a quiesced one whose live voters are still a majority stays quiet). Wrong news is harmless:
        timers decide when elections happen, never what commits."""
        self._down.add(peer)
        if self.role == "leader":
            if peer in self._progress and not (self.quiesced and self._live_quorum()):
                self._wake()
        elif self.leader_id == peer:
            self._wake()
            self.leader_id = None
            self.lost_leader = True
            rank = failover_rank(self.group, self.voters, peer, self.node_id)
            self._election_elapsed = self._election_ticks if rank == 0 else -rank * self._election_ticks // 2

    def _live_quorum(self) -> bool:
        """A majority of the voters (this leader counted) on nodes not declared dead. A quiesced leader that
        loses a follower stays quiet while this holds: everything was acknowledged by every follower before it
        quiesced, so the others are caught up, and waking would only heartbeat them for nothing (a dead node
        that led a thousand groups followed a thousand more, and waking those on the survivors doubled the
        work of the failover). The dead node's return (`peer_up`) wakes it to catch that node up."""
        live = sum(voter == self.node_id or voter not in self._down for voter in self.voters)
        return self.node_id in self.voters and live >= self._quorum

    def peer_up(self, peer: str) -> None:
        """`peer`'s node is back (restarted, or reachable again). A quiesced leader with a live quorum without it,
        which had acknowledged every entry, stays quiet: the returning replica asks (its pre-vote, of whatever
        term, wakes the leader, whose heartbeats then bring it back), and the returning node's `CampaignGate`
        paces those asks. Waking every such leader at once (at 10,000 destinations every group has a replica on
        the returning node: 5,000 leaders per survivor, each heartbeating until the returning node answered,
        which it could not under that load) left the cluster unable to serve for minutes (issue 10). Otherwise
        the leader heartbeats at once: a follower that lags may be a quiesced one that never lost touch with us
        (an asymmetric partition), which would never ask."""
        progress = self._progress.get(peer)
        caught_up = progress is not None and progress.match == self.log.last_index
        quiet = caught_up and self.quiesced and peer in self._down and self._live_quorum()
        self._down.discard(peer)
        if self.role == "leader" and peer in self._progress and not quiet:
            self._wake()

    def peer_restarted(self, peer: str) -> None:
        """`peer`'s node is a new process (the node liveness saw a new incarnation): its groups lost whom they
        followed and ask for their leaders once they have recovered, paced by that node's `CampaignGate`. So a
        leader does not wait for it to quiesce (`peer_up` may have just woken it for a follower that lagged):
        the hundreds of groups that failed over while it was dead all lag it by their new term, and each woken
        leader heartbeated the returning node until it had recovered that group, which starved every node
        (issue 10). Anything the group hears from `peer` ends this.

        The metadata group (`greets_restarts`) does the opposite: its leader wakes and heartbeats until the
        restarted replica answers. That node is not ready before its replica knows the leader, and asking costs it
        an election timeout of ticks that run late while it recovers thousands of groups (2 to 3 s at 10,000)."""
        if peer not in self._progress:
            return
        if self._greets_restarts:
            if self.role == "leader":
                self._wake()
            return
        self._restarted.add(peer)

    def _wake(self) -> None:
        if not self.quiesced:
            return
        self.quiesced = False
        self._election_elapsed = 0
        self._heard_since_wake.clear()
        if self.role == "leader":
            self._heartbeat_elapsed = self._heartbeat_ticks - 1  # heartbeat at the next tick
            for pr in self._progress.values():
                pr.recent_active = True  # heard from before quiescing; CheckQuorum judges from the next period on

    def _can_quiesce(self) -> bool:
        """Leading a group with nothing to do: every entry committed and acknowledged by every follower, all of
        them heard from in this CheckQuorum period, nothing streaming, no transfer, and no hand-back pending
        (a leader that is not the preferred one keeps heartbeating until it has handed leadership back, unless the
        node's `HandBackGate` refused it a slot: it waits for one quiet).

        Followers on nodes the liveness declared dead do not count (a majority of voters must still be live and
        caught up): otherwise every group with a replica on a dead node, thousands of them, would heartbeat until it
        came back, and the load of that on the survivors is what turned one node's death into an election storm.
        The dead node's return (`peer_up`) wakes the leader, which then catches it up. A restarted node's
        followers do not count either until they have spoken (`peer_restarted`)."""
        last = self.log.last_index
        if self._transferee is not None or self.commit_index != last or self.log.stable != last:
            return False
        live = {peer: pr for peer, pr in self._progress.items() if peer not in self._down}
        waited = {peer: pr for peer, pr in live.items() if peer not in self._restarted}
        if sum(peer in self.voters for peer in waited) + 1 < self._quorum:
            return False
        if (
            self._preferred is not None
            and self._preferred in waited
            and self._preferred in self.voters
            and not self._hand_back_refused
        ):
            return False
        if self._departing or any(peer not in self._heard_since_wake for peer in waited):
            return False
        return all(
            pr.state == "replicate" and pr.match == last and pr.recent_active and not pr.learner
            for pr in waited.values()
        )

    def _keeps_quiet(self, m: Message) -> bool:
        """Whether a quiesced group stays so on `m` (of our term): a follower on its leader's quiesce heartbeat,
        or on a vote request its lease refuses anyway; a leader on the followers' answers to its heartbeats. A
        candidate that missed the quiesce heartbeat (lost, or it restarted) wakes the leader, whose heartbeats
        then bring it back."""
        if self.role == "leader":
            return isinstance(m, AppendResponse) and m.success
        if isinstance(m, AppendEntries):
            return m.quiesce and m.sender == self.leader_id
        if isinstance(m, RequestVote):
            return not m.transfer
        return isinstance(m, VoteResponse)
