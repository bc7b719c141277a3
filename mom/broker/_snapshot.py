"""The snapshot format: the canonical state of a Broker as one msgpack document.

Only canonical state goes in (records, cursors, counters); heaps and other caches are rebuilt on restore. The
live record dicts are encoded as they are, without copying, so a snapshot costs about one pass of msgspec's C
encoder over the data. Fields added after version 1 come last with defaults, so a snapshot written before them
still restores as a state without them; VERSION changes only when an older snapshot would be misread.
"""

from __future__ import annotations

import msgspec
from msgspec import Struct, field

from mom.broker._dead import OutboxState
from mom.broker.accounts import AccountsState
from mom.broker.members import MembersState
from mom.broker.queue import QueueState
from mom.broker.topic import TopicState
from mom.errors import StorageError

VERSION = 1


class BrokerState(Struct, array_like=True):
    version: int
    last_now_ms: int
    incarnations: int
    """How many queues and subscriptions were ever created; the next one's incarnation is this plus one."""
    queues: list[QueueState]
    topics: list[TopicState]
    accounts: AccountsState
    outbox: OutboxState = field(default_factory=lambda: OutboxState(0, []))
    """Last and defaulted, like every later addition, so that older snapshots still restore."""
    members: MembersState = field(default_factory=MembersState)
    """The cluster's members, explicit replica sets and moves (the metadata group's; empty elsewhere)."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BrokerState)


def encode(state: BrokerState) -> bytes:
    return _encoder.encode(state)


def decode(data: bytes) -> BrokerState:
    try:
        state = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise StorageError(f"broker snapshot is unreadable: {exc}") from None
    if state.version != VERSION:
        raise StorageError(f"broker snapshot has version {state.version}, this node reads version {VERSION}")
    return state
