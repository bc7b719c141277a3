"""The node-to-node wire, as replication sees it: frames of bytes to and from named peers.

A frame is one batch (the encoded Raft messages of many groups for one peer), so the cost of the wire is per
batch, not per message. Sending never blocks: each peer has a queue bounded in bytes (`send_queue_bytes`) and in
frames (`send_queue_frames`), and a frame that does not fit is dropped and counted. That is safe because Raft
retransmits what was not acknowledged, and it is what keeps a node's memory bounded while a peer is slow or
down (the leader catches the peer up from its log, or with a snapshot, once it is back). Frames from one peer
arrive in the order they were sent, or not at all. No transport carries a frame above `WIRE_FRAME_LIMIT`
(mom.config); the router keeps its frames far below it.

Implementations live side by side (memory.py, grpc.py, zmq.py) and are chosen by name in `open_transport`,
which imports only the chosen one, so an unused transport's library is never loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import trio

from mom.config import Address, ReplicationSection

if TYPE_CHECKING:
    from mom.security import NodeSecurity

TransportName = Literal["memory", "grpc", "zmq"]

SEND_QUEUE_FRAMES = 256
"""Frames queued per peer before new ones are dropped (the high-water mark in frames)."""
SEND_QUEUE_BYTES = ReplicationSection().send_queue_bytes
"""Bytes queued per peer before new frames are dropped (a frame larger than this goes alone)."""


@dataclass(frozen=True)
class PeerStatus:
    """What /v1/cluster shows of a peer: is the link up, and when did a frame last arrive from it."""

    connected: bool
    last_seen: float | None
    """`trio.current_time()` of the last frame received from the peer, or None."""
    dropped_frames: int = 0
    queued_bytes: int = 0
    """Bytes waiting in the send queue to the peer (at most `send_queue_bytes`, or one larger frame)."""


@dataclass(frozen=True)
class TransportSettings:
    node_id: str
    listen: Address
    peers: Mapping[str, Address]
    """Every other node of the cluster by id."""
    cluster_id: str = "mom"
    send_queue_frames: int = SEND_QUEUE_FRAMES
    send_queue_bytes: int = SEND_QUEUE_BYTES


class Transport(Protocol):
    """Carries frames between this node and its peers. Start it with `await nursery.start(transport.run)`."""

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and keep links to the peers until cancelled; `started()` gets the bound address."""
        ...

    def send(self, peer: str, frame: bytes) -> bool:
        """Queue `frame` for `peer` without blocking; False if it was dropped (queue full or unknown peer)."""
        ...

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        """(sender id, frame) for every frame received, in per-sender order."""
        ...

    def status(self, peer: str) -> PeerStatus: ...

    def add_peer(self, peer: str, address: Address) -> None:
        """Accept and connect to a node added to the cluster at run time (or a peer's new address)."""
        ...

    def remove_peer(self, peer: str) -> None:
        """Forget a node removed from the cluster: close the link to it and refuse it from now on."""
        ...


class TransportFactory(Protocol):
    """How each wire module (grpc.py, zmq.py) builds its transport: with the credentials it derives itself
    from the node's security material (mutual TLS, CURVE keys), or in clear text when there is none."""

    def __call__(self, settings: TransportSettings, security: NodeSecurity | None) -> Transport: ...
