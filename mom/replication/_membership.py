"""The membership part of the Raft core (`mom.replication.raft.RaftCore`): configuration changes, and replicas
that lost their data or start with none. Split off `raft.py` for size; it shares the core's state.

Membership changes go one server at a time, with non-voting learners (Raft dissertation §4.1, as etcd and raft-rs
do them): see `mom.replication.membership` for the configuration entries. Every replica uses the latest
configuration in its log, appended or committed. A learner replicates and acknowledges but counts in no quorum
and never stands for election; a node the configuration does not list never stands either, so a removed node
cannot disrupt the group (PreVote and CheckQuorum's lease keep even a stale one quiet). A leader keeps leading
while its own removal is uncommitted, without counting itself, and steps down once it commits, handing over to
its most up-to-date voter. Until then a voter whose removal is not committed may also stand: it may hold the
only complete log, and the others still count it as a voter.

Two kinds of learner must not be confused: the configuration's learners above (new replicas, catching up before
a promotion), and *recovering* replicas (`HardState.learner`), voters that lost data, below.

Raft assumes a node never forgets what it persisted. When it does (a damaged log cut short, a replaced disk),
its vote could elect a leader that lacks entries it had acknowledged, and a committed write would be lost. So:

- A replica whose storage lost entries starts as a *learner* (`HardState.learner`, persisted): it replicates
  and acknowledges like any follower, but never votes or stands for election.
- A replica that starts with nothing at all is *joining*: it cannot tell a brand-new group from a wiped disk,
  so it asks the other replicas (`JoinProbe`) whether they hold anything durable of the group, a persisted
  membership included (`HardState.member`, written as soon as a replica has decided). If a majority of the group
  (itself included) is empty too, the group is new and it starts as a voter; if so many hold state that no
  majority can be empty, it becomes a learner. Until then it takes part in nothing. In a new group the first
  replicas to decide, a majority of them, are voters: each saw a majority empty.
- Only a replica that never held anything of the group may count as empty (`held_before`, from the age of the
  node's data directory against the group's declaration, see `mom.replication._disk_age`). A wiped replica
  (a replaced disk, younger than the group) answers that it holds state and never counts itself as empty: with
  a replica that never started the group (its node's catalog is behind) it would otherwise make an "empty
  majority" and elect a leader without the entries only the third replica holds. It becomes a learner once the
  group is known to exist. A replica known never to have held anything becomes a voter then instead: it never
  acknowledged an entry, so its vote cannot help lose one (only the wiped, who may have, must not vote), and a
  group of one holder, one wiped and one such replica can still elect the holder. Unknown (`None`, the
  metadata group, whose birth no declaration dates): counted as empty, a learner if the group exists.
- A new destination's group skips its first election (`first_term`, as a multi-Raft system creates a range with
  its leader in place): a replica that finds the group new starts in term 1 having voted for the preferred
  leader, so no one else can win term 1; the preferred leader waits (up to an election timeout) for every voter's
  answer to *this run's* probes (`JoinReply.incarnation` echoes it) and, if each holds nothing but possibly that
  term-1 vote (`untouched`), leads term 1 at once; otherwise it stands for election from term 2 as before. A run
  of it whose disk was wiped after it led term 1 left nothing on any voter (or one would not be untouched), but
  its term-1 entries may still be on the way: `run` (its start time) orders runs, and a follower refuses term-1
  entries from a run older than one that probed it since. Checked in the simulation (`first_term`, with crashes
  and wiped disks during creation) and in tests/unit/test_first_term.py.
- Every response names the follower's *incarnation* (random, new at each start). A leader that sees a new one
  forgets what the previous one acknowledged (its `match`: the follower may have lost those entries) and probes
  again from the follower's real log; for a learner it notes its own last index at that moment, after the
  restart, as the catch-up target. Once the learner's log matches up to it, which covers every entry committed
  before then (and any a stale `match` helped commit), the leader's AppendEntries say `promote`, and the
  learner votes again (after persisting that).
"""

from __future__ import annotations

from typing import Literal

from mom.errors import MembershipChangeRefused, Unavailable
from mom.replication._progress import Progress
from mom.replication._quiesce import QuiesceMixin
from mom.replication._raftlog import HardState
from mom.replication.membership import Membership, config_entry, planned
from mom.replication.messages import JoinProbe, JoinReply, LogEntry, Message, TimeoutNow

Change = Literal["add_learner", "promote", "remove"]
Role = Literal["follower", "candidate", "leader"]


class NotLeader(Unavailable):
    """This node cannot accept writes for the group; `leader_id` is where to go instead, when known."""

    def __init__(self, leader_id: str | None) -> None:
        super().__init__(f"not the leader; try {leader_id}" if leader_id else "no leader is known right now")
        self.leader_id = leader_id


class MembershipMixin(QuiesceMixin):
    """Configuration changes and joining, for `RaftCore` (which defines the state and the methods declared here)."""

    node_id: str
    group: str
    term: int
    learner: bool
    joining: bool
    _peers: tuple[str, ...]
    _quorum: int
    _config: tuple[int, Membership]
    _was_member: bool
    _join_answers: dict[str, bool]
    _held_before: bool | None
    _fresh_empty: set[str]
    _first_term: bool
    _preferred: str | None
    voted_for: str | None
    role: Role
    incarnation: int
    _pre_vote: bool
    _votes: dict[str, bool]
    _election_elapsed: int
    _election_ticks: int
    run: int
    _stand_after: int | None
    _persisted_hs: HardState
    _max_inflight: int
    _max_inflight_bytes: int

    @property
    def membership(self) -> Membership:
        """The latest configuration in this replica's log (appended or committed), which is the one in force."""
        return self.log.config

    @property
    def removed(self) -> bool:
        """This replica was a member and a committed configuration no longer lists it: it takes no part any
        more (the driver stops the group and erases its data)."""
        return self._was_member and self.node_id not in self.log.config and self.commit_index >= self.log.config_index

    def caught_up(self, node: str) -> bool:
        """Leading: `node`'s log matches ours up to our commit index (a learner may then be promoted)."""
        pr = self._progress.get(node) if self.role == "leader" else None
        return pr is not None and pr.incarnation != 0 and not pr.learner and pr.match >= self.commit_index

    def change_membership(self, change: Change, node: str) -> int:
        """Propose a configuration entry that adds `node` as a learner, promotes it to voter, or removes it.

        Returns the index of the entry that puts the change in effect (an earlier one when it is in effect
        already: the caller waits for that index to commit). Raises NotLeader, or MembershipChangeRefused when
        the change cannot be made now: another is not committed yet (one at a time keeps any two consecutive
        configurations sharing a majority), this leader has not committed an entry of its own term yet (the
        previous leader may have left a change this one's log lacks), or the learner has not caught up.
        """
        if self.role != "leader":
            raise NotLeader(self.leader_id)
        if self._transferee is not None:
            raise NotLeader(self._transferee)
        config = planned(self.log.config, change, node)
        if config is None:
            return self.log.config_index
        if self.log.config_index > self.commit_index:
            raise MembershipChangeRefused(
                f"group {self.group or '?'} is still committing its previous membership change; retry once it is done"
            )
        if self.log.term_at(self.commit_index) != self.term:
            raise MembershipChangeRefused(
                f"group {self.group or '?'} has a new leader that has not committed its first entry; retry shortly"
            )
        if change == "promote" and not self.caught_up(node):
            raise MembershipChangeRefused(
                f"the learner {node!r} of group {self.group or '?'} has not caught up with the leader yet; retry later"
            )
        healthy = [v for v in config.voters if self._healthy(v)]
        if len(healthy) < len(config.voters) // 2 + 1:
            raise MembershipChangeRefused(
                f"group {self.group or '?'} would be left with {len(healthy)} of {len(config.voters)} voters up "
                f"and voting ({', '.join(healthy)}), too few to elect a leader; retry once the others are back"
            )
        self._wake()
        self.log.append([config_entry(self.term, config)])
        self._config_changed()
        for peer in list(self._progress):
            self._send_append(peer)
        return self.log.last_index

    def _healthy(self, voter: str) -> bool:
        """Leading: `voter` is this node, or was heard from lately and is not a recovering replica."""
        if voter == self.node_id:
            return True
        pr = self._progress.get(voter)
        return pr is not None and (pr.recent_active or pr.was_active) and pr.incarnation != 0 and not pr.learner

    def _config_changed(self) -> None:
        """Put the log's latest configuration in force (it changed when an entry appended, a conflict truncated,
        or a snapshot installed one): who votes, who counts in a quorum, whom a leader replicates to."""
        current = (self.log.config_index, self.log.config)
        if current == self._config:
            return
        self._config = current
        config = current[1]
        self.voters = config.voters
        self._peers = tuple(p for p in config.members if p != self.node_id)
        self._quorum = len(config.voters) // 2 + 1
        if self.node_id in config and self.log.config_is_explicit:
            self._was_member = True
        if self.role != "leader":
            return
        for peer in self._peers:
            self._departing.pop(peer, None)
            if peer not in self._progress:
                self._progress[peer] = Progress(self.log.last_index + 1, self._max_inflight, self._max_inflight_bytes)
        for peer in self._progress:
            if peer not in config:
                self._departing.setdefault(peer, current[0])
        self._maybe_commit()  # a smaller quorum may commit at once

    def _maybe_let_go(self, peer: str) -> None:
        """A follower a committed configuration removed has it now: tell it the commit, then stop replicating."""
        index = self._departing.get(peer)
        pr = self._progress.get(peer)
        if index is None or pr is None or self.commit_index < index or pr.match < index:
            return
        self._send_entries(peer, pr.match, self.log.term_at(pr.match) or 0, [])
        del self._departing[peer], self._progress[peer]
        self._heard_since_wake.discard(peer)

    def _reach_removed(self, peer: str) -> None:
        """A node our committed configuration removed asks for votes (its removal is not committed in its log,
        or not there at all after a conflict, so it may stand): replicate to it again until its log holds the
        removal and it knows that committed; it stands no more and knows it is `removed`. Its leader's last
        message may have been lost, or it restarted since. A departing node that goes silent is dropped at the
        next CheckQuorum period."""
        index = self.log.config_index
        if peer in self._progress or self.commit_index < index:
            return
        self._progress[peer] = Progress(self.log.last_index + 1, self._max_inflight, self._max_inflight_bytes)
        self._progress[peer].recent_active = True
        self._departing[peer] = index
        self._send_append(peer, allow_empty=True)

    def _drop_silent_departing(self) -> None:
        """Stop replicating to removed nodes not heard from in a CheckQuorum period (stopped, or cut off)."""
        for peer in [p for p in self._departing if not self._progress[p].recent_active]:
            del self._departing[peer], self._progress[peer]
            self._heard_since_wake.discard(peer)

    def _step_down_if_removed(self) -> None:
        """A leader a committed configuration removed hands over to its most up-to-date voter, and steps down."""
        if self.role != "leader" or self.node_id in self.voters or self.commit_index < self.log.config_index:
            return
        voters = [p for p in self.voters if p in self._progress]
        best = max(voters, key=lambda p: self._progress[p].match, default=None)
        if best is not None and self._progress[best].match == self.log.last_index:
            self._send(TimeoutNow(self.group, self.term, self.node_id, best))
        self._become_follower(self.term, None)

    # --------------------------------------------------------------------------------------------------------
    # Joining: a replica with an empty disk finds out whether the group is new

    def _probe(self) -> None:
        for peer in self.voters:
            if peer == self.node_id:
                continue
            if peer not in self._join_answers:
                self._send(JoinProbe(self.group, self.term, self.node_id, peer, self.incarnation, self.run))

    def _exists(self) -> bool:
        """Whether this replica's disk holds state of the group (what a joining replica asks). Only what is
        durable counts: a replica that crashes before persisting its membership comes back empty, and must then
        have been counted as empty."""
        return self._held_before is True or self._persisted_hs != HardState() or self.log.stable > 0

    def _untouched_by(self, prober: str) -> bool:
        """No entry here (durable or not), no term above 1, no vote but for `prober` (see `JoinReply`), and no
        earlier disk that may have held any."""
        return (
            self.log.last_index == 0
            and self.term <= 1
            and self.voted_for in (None, prober)
            and not self.learner
            and self._held_before is not True
        )

    def _on_join_reply(self, m: JoinReply) -> None:
        if not self.joining or m.sender not in self.voters or m.sender == self.node_id:
            return
        self._join_answers[m.sender] = m.exists
        if m.incarnation == self.incarnation and (not m.exists or m.untouched):
            self._fresh_empty.add(m.sender)
        self._decide_join()

    def _decide_join(self) -> None:
        """Decide, from the answers so far, whether the group is new (vote) or existed (learner), or wait."""
        first_leader = self._first_term and self._preferred == self.node_id
        if first_leader and all(p in self._fresh_empty for p in self.voters if p != self.node_id):
            self.joining = False  # every voter, asked now, holds nothing: a brand-new group
            self._reset_timer()
            self._stand_after = None
            self._begin_first_term()
            return
        held = self._held_before is True  # this disk may have lost what it held: it never counts as empty
        holding = sum(self._join_answers.values()) + held
        empty = len(self._join_answers) + 1 - holding
        if first_leader and empty >= self._quorum and self._election_elapsed < self._election_ticks:
            return  # the first leader waits a little for every voter's answer: it may then lead without a vote
        if empty >= self._quorum:
            self.joining = False  # a new group: a majority never held anything, so nothing can be lost
            self._reset_timer()
            if self._first_term:
                self._begin_first_term()
            if self._stand_after is not None:
                self.stand_after(self._stand_after)
        elif holding > len(self.voters) - self._quorum:
            self.joining = False  # the group exists: whatever this disk held before is gone
            self.learner = self._held_before is not False  # known never to have held anything: it may vote
            self._reset_timer()
        if not self.joining:
            self._stand_after = None

    def _begin_first_term(self) -> bool:
        """A new group's first term without an election: vote for the preferred leader in term 1 (every replica
        that finds the group new does, so no other node can win term 1), and if this is that leader and every
        other voter answered this run's probes that it holds nothing, lead term 1 now. True if it leads.

        Why it is safe: a leader of term 1 needs a majority of term-1 votes, and every term-1 vote goes to the
        preferred leader, so nobody else leads term 1. The preferred leader leads it without votes only when all
        voters, asked after this run started, hold nothing of the group: nothing any earlier run of it did in
        term 1 (a run whose disk was then wiped) was kept by anyone, so its term-1 entries cannot meet different
        ones at the same index and term. Otherwise (some voter holds state, or never answered) it stands for
        election in the usual way, from term 2."""
        if self.term != 0 or self.voted_for is not None or self._preferred is None:
            return False
        self.term, self.voted_for = 1, self._preferred
        if self._preferred != self.node_id:
            return False
        if any(peer not in self._fresh_empty for peer in self.voters if peer != self.node_id):
            return False
        self.role = "candidate"
        self._pre_vote = False
        self._votes = dict.fromkeys(self.voters, True)  # they all answered just now: CheckQuorum counts them
        self._won()
        return True

    # --------------------------------------------------------------------------------------------------------
    # Defined by RaftCore

    def _send(self, message: Message) -> None:
        raise NotImplementedError

    def _send_append(self, peer: str, *, allow_empty: bool = False) -> None:
        raise NotImplementedError

    def _send_entries(
        self, peer: str, prev: int, prev_term: int, entries: list[LogEntry], *, quiesce: bool = False
    ) -> None:
        raise NotImplementedError

    def _maybe_commit(self) -> bool:
        raise NotImplementedError

    def _become_follower(self, term: int, leader: str | None) -> None:
        raise NotImplementedError

    def _reset_timer(self) -> None:
        raise NotImplementedError

    def stand_after(self, ticks: int) -> None:
        raise NotImplementedError

    def _won(self) -> None:
        raise NotImplementedError
