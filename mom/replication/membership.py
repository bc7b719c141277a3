"""A group's configuration (who votes, who only learns) and its configuration log entries.

Raft's single-server membership changes (dissertation §4.1), with non-voting learners as etcd and raft-rs have
them: a configuration lives in the log as a *configuration entry*, and every replica uses the latest one its log
holds, appended or committed alike (a configuration that only took effect once committed could let two
majorities of different configurations elect two leaders in one term). A snapshot carries the configuration at
its index; a replica whose log and snapshot hold none uses the configuration it was constructed with (the
placement's voters), so groups created before membership changes keep working unchanged.

A configuration entry is a log entry whose payload starts with the byte 0xC1, which msgpack never uses: no
command (a msgpack-encoded `Entry`) and no no-op (empty) can start with it, so the kind needs no new field in
`LogEntry` and old logs read the same. The rest of the payload is the msgpack encoding of `Membership`.

Changes go one server at a time: any two consecutive configurations then share a majority, so an election or a
commit under either is seen by the other. A leader proposes the next one only once the previous one committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from mom.errors import MembershipChangeRefused
from mom.replication.messages import LogEntry, Membership

__all__ = [
    "CONFIG_MARKER",
    "Membership",
    "MembershipChangeRefused",
    "config_entry",
    "decode_config",
    "is_config",
]

CONFIG_MARKER = b"\xc1"
"""The first byte of a configuration entry's payload (a byte msgpack never uses)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Membership)


def config_entry(term: int, membership: Membership) -> LogEntry:
    """The log entry that makes `membership` the group's configuration."""
    return LogEntry(term, CONFIG_MARKER + _encoder.encode(membership))


def is_config(entry: LogEntry) -> bool:
    return entry.payload[:1] == CONFIG_MARKER


def decode_config(entry: LogEntry) -> Membership:
    return _decoder.decode(memoryview(entry.payload)[1:])


def membership_of(voters: Sequence[str], learners: Sequence[str] = ()) -> Membership:
    return Membership(tuple(voters), tuple(learners))


def planned(config: Membership, change: str, node: str) -> Membership | None:
    """The configuration `change` ("add_learner", "promote", "remove") of `node` makes of `config`, or None when
    it is in effect already. Raises MembershipChangeRefused for a change that cannot be made at all."""
    if change == "add_learner":
        return None if node in config else config.with_learner(node)
    if change == "promote":
        if node in config.voters:
            return None
        if node not in config.learners:
            raise MembershipChangeRefused(f"{node!r} is not a learner of the group: add it as a learner first")
        return config.promoted(node)
    if change == "remove":
        if node not in config:
            return None
        if config.voters == (node,):
            raise MembershipChangeRefused(f"{node!r} is the group's last voter: it cannot be removed")
        return config.without(node)
    raise ValueError(f"unknown membership change {change!r}")
