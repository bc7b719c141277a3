"""The messages Raft groups exchange between nodes, and their wire encoding.

Every message names its group, so one transport frame can carry the traffic of many groups between two nodes:
the transports batch whatever the groups produced and send one frame per batch. Structs are encoded as arrays
(field order is the wire format) with a short tag, which keeps per-message overhead to a few bytes.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct


class LogEntry(Struct, frozen=True, array_like=True):
    """One log entry: the term of the leader that created it, and the command (b"" is a no-op)."""

    term: int
    payload: bytes


class Membership(Struct, frozen=True):
    """One configuration of a group: its voters (who elect and commit) and learners (who only replicate)."""

    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()

    @property
    def members(self) -> tuple[str, ...]:
        """Every replica of the group: the voters, then the learners."""
        return self.voters + self.learners

    def __contains__(self, node: object) -> bool:
        return node in self.voters or node in self.learners

    def with_learner(self, node: str) -> Membership:
        return Membership(self.voters, (*self.learners, node))

    def promoted(self, node: str) -> Membership:
        return Membership((*self.voters, node), tuple(n for n in self.learners if n != node))

    def without(self, node: str) -> Membership:
        return Membership(tuple(n for n in self.voters if n != node), tuple(n for n in self.learners if n != node))


class AppendEntries(Struct, frozen=True, array_like=True, tag="ae"):
    """Entries after (prev_index, prev_term); no entries is a heartbeat. `commit` is the leader's.

    `promote` is the incarnation of a recovering receiver (a learner) that the leader found caught up: that
    incarnation may vote again (0: nothing to say). `quiesce`: the leader's last heartbeat of an idle group; a
    follower whose log it matches whole stops its election timer (see `mom.replication.raft`)."""

    group: str
    term: int
    sender: str
    receiver: str
    prev_index: int
    prev_term: int
    entries: list[LogEntry]
    commit: int
    promote: int = 0
    quiesce: bool = False
    run: int = 0
    """The sender's `RaftCore.run`: a follower of a new group's first term refuses term-1 entries from an earlier
    run of its leader than one that probed it since (a wiped leader's entries still on the way)."""


class AppendResponse(Struct, frozen=True, array_like=True, tag="ar"):
    """On success `match_index` is the last index known to match the leader's log (and durable here).

    On rejection `match_index` echoes the rejected `prev_index` (so the leader can ignore stale rejections)
    and `reject_hint` is the highest index at which the logs may still match.

    `incarnation` names the sender's current run (random, new at every start): a leader that sees a new one
    forgets what the previous run acknowledged. `learner`: the sender lost data and does not vote until caught up.
    """

    group: str
    term: int
    sender: str
    receiver: str
    success: bool
    match_index: int
    reject_hint: int
    incarnation: int = 0
    learner: bool = False


class RequestVote(Struct, frozen=True, array_like=True, tag="rv"):
    """A (pre-)vote request; `transfer` marks an election the leader asked for, which overrides leases."""

    group: str
    term: int
    sender: str
    receiver: str
    last_index: int
    last_term: int
    pre_vote: bool
    transfer: bool


class VoteResponse(Struct, frozen=True, array_like=True, tag="vr"):
    group: str
    term: int
    sender: str
    receiver: str
    granted: bool
    pre_vote: bool


class InstallSnapshot(Struct, frozen=True, array_like=True, tag="is"):
    """One chunk of the leader's snapshot at `index` (whose entry had `snapshot_term`), for a follower too far
    behind (Raft §7): the bytes of the snapshot file from `offset`; `done` marks the last chunk.

    The core only decides that a follower needs a snapshot and which one; the drivers stream the file in chunks
    (`mom.replication._snapshot_transfer`), so no message carries a whole state machine.
    """

    group: str
    term: int
    sender: str
    receiver: str
    index: int
    snapshot_term: int
    offset: int
    data: bytes
    done: bool
    membership: Membership | None = None
    """The group's configuration at `index` (as the snapshot file records it): the follower's core puts it in
    force when it installs the snapshot, before the driver has decoded the file."""


class SnapshotResponse(Struct, frozen=True, array_like=True, tag="sr"):
    """The follower's log now matches the leader's up to `index` (`incarnation`, `learner`: as in
    AppendResponse)."""

    group: str
    term: int
    sender: str
    receiver: str
    index: int
    incarnation: int = 0
    learner: bool = False


class SnapshotChunkAck(Struct, frozen=True, array_like=True, tag="sa"):
    """The follower holds the first `offset` bytes of snapshot `index` (0: start again): paces the leader's
    chunks and tells it the follower is alive while a long transfer runs."""

    group: str
    term: int
    sender: str
    receiver: str
    index: int
    offset: int


class TimeoutNow(Struct, frozen=True, array_like=True, tag="tn"):
    """The leader hands over: the receiver starts an election at once, without a pre-vote."""

    group: str
    term: int
    sender: str
    receiver: str


class NodeHeartbeat(Struct, frozen=True, array_like=True, tag="nh"):
    """Node liveness, not Raft: "this node is up", sent to every peer every other tick. One per
    pair of nodes for all their groups (`mom.replication.liveness`); `group` is empty."""

    group: str
    term: int
    sender: str
    receiver: str


class LeaderNews(Struct, frozen=True, array_like=True, tag="ln"):
    """`sender` leads `group` in `term` and serves its destination: not Raft, but news for the nodes that route
    requests to the group without replicating it. A hint only (see `mom.service.leaders`)."""

    group: str
    term: int
    sender: str
    receiver: str


class JoinProbe(Struct, frozen=True, array_like=True, tag="jp"):
    """From a replica that starts with nothing on disk: "do you hold anything of this group?" (a fresh group,
    or a replaced disk?). `incarnation` names the prober's run; the reply echoes it (0: an older node)."""

    group: str
    term: int
    sender: str
    receiver: str
    incarnation: int = 0
    run: int = 0


class JoinReply(Struct, frozen=True, array_like=True, tag="jr"):
    """`exists`: the sender holds state of the group (a term, entries, or it is a learner). `incarnation`: the
    probe's, echoed, so a prober tells answers to this run of it from late answers to an earlier run's probes."""

    group: str
    term: int
    sender: str
    receiver: str
    exists: bool
    incarnation: int = 0
    untouched: bool = False
    """The sender has no entry of the group, no term above 1 and no vote but for the prober's: whatever the
    prober did before (a run whose disk was wiped since) left nothing here (a new group's first term)."""


Message = (
    AppendEntries
    | AppendResponse
    | RequestVote
    | VoteResponse
    | InstallSnapshot
    | SnapshotChunkAck
    | SnapshotResponse
    | TimeoutNow
    | JoinProbe
    | JoinReply
    | NodeHeartbeat
    | LeaderNews
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Message])


def encode_messages(messages: list[Message]) -> bytes:
    """One frame holding `messages` (of any groups), in order."""
    return _encoder.encode(messages)


def encode_message(message: Message) -> bytes:
    """One message on its own; `frame_of` joins such parts into a frame."""
    return _encoder.encode(message)


def frame_of(parts: list[bytes]) -> bytes:
    """The frame holding the encoded messages `parts`, in order: the same bytes as `encode_messages` of them (a
    msgpack array is its header followed by its elements), so a frame is cut to size without encoding twice."""
    count = len(parts)
    if count < 16:
        header = bytes([0x90 | count])
    elif count < 1 << 16:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(parts)


FRAME_HEADER_BYTES = 5
"""The most a frame adds to its messages (the array header)."""


def decode_messages(frame: bytes) -> list[Message]:
    """The messages of a frame; raises msgspec.DecodeError on a malformed one."""
    return _decoder.decode(frame)
