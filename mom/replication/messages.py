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


class AppendEntries(Struct, frozen=True, array_like=True, tag="ae"):
    """Entries after (prev_index, prev_term); no entries is a heartbeat. `commit` is the leader's."""

    group: str
    term: int
    sender: str
    receiver: str
    prev_index: int
    prev_term: int
    entries: list[LogEntry]
    commit: int


class AppendResponse(Struct, frozen=True, array_like=True, tag="ar"):
    """On success `match_index` is the last index known to match the leader's log (and durable here).

    On rejection `match_index` echoes the rejected `prev_index` (so the leader can ignore stale rejections)
    and `reject_hint` is the highest index at which the logs may still match.
    """

    group: str
    term: int
    sender: str
    receiver: str
    success: bool
    match_index: int
    reject_hint: int


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
    """The leader's whole state machine at `index` (whose entry had `snapshot_term`), for a follower too far
    behind."""

    group: str
    term: int
    sender: str
    receiver: str
    index: int
    snapshot_term: int
    data: bytes


class SnapshotResponse(Struct, frozen=True, array_like=True, tag="sr"):
    """The follower's log now matches the leader's up to `index`."""

    group: str
    term: int
    sender: str
    receiver: str
    index: int


class TimeoutNow(Struct, frozen=True, array_like=True, tag="tn"):
    """The leader hands over: the receiver starts an election at once, without a pre-vote."""

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


Message = (
    AppendEntries
    | AppendResponse
    | RequestVote
    | VoteResponse
    | InstallSnapshot
    | SnapshotResponse
    | TimeoutNow
    | LeaderNews
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[Message])


def encode_messages(messages: list[Message]) -> bytes:
    """One frame holding `messages` (of any groups), in order."""
    return _encoder.encode(messages)


def decode_messages(frame: bytes) -> list[Message]:
    """The messages of a frame; raises msgspec.DecodeError on a malformed one."""
    return _decoder.decode(frame)
