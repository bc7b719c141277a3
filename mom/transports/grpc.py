"""The gRPC transport: one long-lived client stream per peer and direction, one frame per batch.

Each node opens a `Push` stream to every peer and keeps it open (reopening it with capped backoff), so a
frame costs one HTTP/2 message, never an RPC. The first frame of a stream is a Hello that the receiving node
checks (same cluster, a known node, a protocol it speaks) before it accepts anything else; keepalive pings
notice a dead peer. The threads grpcio needs live in `_grpc_bridge`; this module is the trio side and the
policy: which options, which Hello, which refusals, and which mom error a grpc failure becomes.

With `GrpcCredentials` the streams run over mutual TLS, and a Hello is accepted only from the node that the
client's certificate names; each kind of failure (a peer on zmq, a failed TLS handshake, a refusal) is logged
once per peer, in words that say what to fix.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import grpc  # type: ignore[import-untyped]
import trio

from mom.config import WIRE_FRAME_LIMIT, Address
from mom.errors import Unavailable
from mom.transports._generated.replication_pb2 import Hello
from mom.transports._grpc_bridge import PeerLink, PushServer, Refusal
from mom.transports.base import PeerStatus, TransportSettings

if TYPE_CHECKING:
    from mom.security import NodeSecurity

log = logging.getLogger("mom.transports.grpc")

PROTOCOL_VERSION = 7
"""2: snapshots travel in chunks (InstallSnapshot with offset/done, SnapshotChunkAck). 3: replicas that lost data
rejoin as learners (JoinProbe/JoinReply, incarnations in responses, AppendEntries.promote). 4: leaders announce
themselves to every node (LeaderNews), which an older node could not decode: it would drop whole frames. 5: idle
groups quiesce (AppendEntries.quiesce) and nodes send NodeHeartbeat: an older node would drop the frames holding
them, and would keep campaigning against groups whose leaders went quiet."""
MAX_FRAME_BYTES = WIRE_FRAME_LIMIT
"""grpc's own default receive limit is 4 MiB; set explicitly on both ends, far above the router's frames."""
SPARE_PEERS = 8
"""Room in the server's stream threads for nodes added at run time beyond the configured ones."""
SHUTDOWN_GRACE_S = 0.5
"""How long open streams get to finish when the node stops, before they are cancelled."""

_COMMON_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_send_message_length", MAX_FRAME_BYTES),
    ("grpc.max_receive_message_length", MAX_FRAME_BYTES),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
CHANNEL_OPTIONS = [
    *_COMMON_OPTIONS,
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
]
"""grpc's own reconnect backoff defaults to minutes; capped at 1 s, a restarted peer is found again quickly."""
SERVER_OPTIONS = [
    *_COMMON_OPTIONS,
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.so_reuseport", 0),
]
"""SO_REUSEPORT off: a second node on the same port must fail to bind, not share the port silently."""
_NOT_GRPC = ("Failed parsing HTTP/2", "Expected SETTINGS frame")
"""What grpc says when the peer's first bytes are not HTTP/2: a ZeroMQ peer's ZMTP greeting, for one."""
_TLS_FAILED = "handshake"
_MAX_WARNINGS = 1024
"""Distinct once-only warnings remembered: node ids in refused Hellos are the sender's to choose."""


@dataclass(frozen=True)
class GrpcCredentials:
    """What `GrpcTransport` takes for mutual TLS (None: plaintext), built from the node's certificates.

    Both sides present a certificate signed by the cluster CA, and each checks that it names the node it
    expects: the client by verifying the server's certificate against the peer's node id (not its address),
    the server by comparing the client's certificate with the node id its Hello claims.
    """

    server: grpc.ServerCredentials
    channel: grpc.ChannelCredentials

    @classmethod
    def mutual_tls(cls, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> GrpcCredentials:
        return cls(
            server=grpc.ssl_server_credentials(
                [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
            ),
            channel=grpc.ssl_channel_credentials(
                root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
            ),
        )


def build(settings: TransportSettings, security: NodeSecurity | None) -> GrpcTransport:
    """The gRPC transport, over mutual TLS with the node's certificate when it has security material."""
    if security is None:
        return GrpcTransport(settings)
    return GrpcTransport(settings, GrpcCredentials.mutual_tls(security.ca_pem, security.cert_pem, security.key_pem))


def check_hello(
    hello: Hello, settings: TransportSettings, certified: str | None = None, *, tls: bool = False
) -> Refusal | None:
    """Why a stream opened with `hello` must be refused by the node of `settings`, or None to accept it.

    `certified` is the node id in the client's verified certificate: over TLS it must be the id the Hello
    claims, so a node with a valid certificate cannot speak for another node.
    """
    if tls and certified != hello.node_id:
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"a node with the certificate of {certified!r} claims to be {hello.node_id!r}",
        )
    if hello.cluster_id != settings.cluster_id:
        return Refusal(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"node {hello.node_id!r} belongs to cluster {hello.cluster_id!r}, this node to {settings.cluster_id!r}",
        )
    if hello.node_id not in settings.peers:
        return Refusal(
            grpc.StatusCode.PERMISSION_DENIED,
            f"node {hello.node_id!r} is not a peer of {settings.node_id!r} in cluster {settings.cluster_id!r}",
        )
    if hello.transport != "grpc" or hello.protocol_version != PROTOCOL_VERSION:
        return Refusal(
            grpc.StatusCode.FAILED_PRECONDITION,
            f"node {hello.node_id!r} speaks {hello.transport!r} protocol {hello.protocol_version}, "
            f"this node speaks 'grpc' protocol {PROTOCOL_VERSION}",
        )
    return None


def _target(address: Address) -> str:
    return f"[{address.host}]:{address.port}" if ":" in address.host else f"{address.host}:{address.port}"


class GrpcTransport:
    """`base.Transport` over gRPC. Frames queued before `run()` (or while a peer is down) wait in its queue."""

    def __init__(self, settings: TransportSettings, credentials: GrpcCredentials | None = None) -> None:
        self._settings = settings
        self._credentials = credentials
        self._links = {
            peer: PeerLink(
                peer, settings.send_queue_frames, settings.send_queue_bytes, partial(self._stream_failed, peer)
            )
            for peer in settings.peers
        }
        self._warned: set[str] = set()
        self._incoming_send, self._incoming = trio.open_memory_channel[tuple[str, bytes]](
            settings.send_queue_frames * max(1, len(settings.peers))
        )
        self._last_seen: dict[str, float] = {}
        self._dropped_in: Counter[str] = Counter()
        self._hello: Hello | None = None
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        settings = self._settings
        server = PushServer(
            node_id=settings.node_id,
            admit=self._admit,
            deliver=self._deliver,
            trio_token=trio.lowlevel.current_trio_token(),
            max_streams=2 * (len(settings.peers) + SPARE_PEERS) + 2,
            options=SERVER_OPTIONS,
        )
        hello = Hello(
            cluster_id=settings.cluster_id,
            node_id=settings.node_id,
            transport="grpc",
            protocol_version=PROTOCOL_VERSION,
        )
        try:
            try:
                port = server.start(
                    _target(settings.listen), None if self._credentials is None else self._credentials.server
                )
            except RuntimeError as exc:
                raise Unavailable(f"cannot listen for replication on {settings.listen}: {exc}") from exc
            self._hello = hello
            for peer, link in self._links.items():
                link.start(_target(settings.peers[peer]), hello, *self._channel(peer))
            task_status.started(Address(settings.listen.host, port))
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await trio.sleep_forever()
        finally:
            self._hello = self._nursery = None
            for link in self._links.values():
                link.close()
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(server.stop, SHUTDOWN_GRACE_S)
                for link in self._links.values():
                    await trio.to_thread.run_sync(link.join)

    def _channel(self, peer: str) -> tuple[list[tuple[str, Any]], grpc.ChannelCredentials | None]:
        """Options and credentials of the channel to `peer`: over TLS its certificate must name the peer's id."""
        if self._credentials is None:
            return CHANNEL_OPTIONS, None
        return [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", peer)], self._credentials.channel

    def _admit(self, hello: Hello, certified: str | None) -> Refusal | None:
        """Runs in a grpc thread for each new stream; a refusal is logged once per node and reason."""
        refusal = check_hello(hello, self._settings, certified, tls=self._credentials is not None)
        if refusal is not None:
            self._warn_once(
                f"refused:{hello.node_id}:{refusal.code.name}",
                "grpc: refused a replication stream from %r: %s",
                hello.node_id,
                refusal.detail,
            )
        return refusal

    def _stream_failed(self, peer: str, code: grpc.StatusCode, details: str) -> None:
        """Runs in a grpc thread when our stream to `peer` failed: say why once, in words an operator can act on."""
        address = self._settings.peers.get(peer, "(removed)")
        if code == grpc.StatusCode.UNAVAILABLE and any(mark in details for mark in _NOT_GRPC):
            self._warn_once(
                f"not-grpc:{peer}",
                "grpc: peer %s at %s does not speak grpc (it may run zmq): every node of a cluster must use the "
                "same transport, and this node uses grpc",
                peer,
                address,
            )
        elif code == grpc.StatusCode.UNAVAILABLE and self._credentials is not None and _TLS_FAILED in details:
            self._warn_once(
                f"tls:{peer}",
                "grpc: TLS with peer %s at %s failed (%s): each node needs a certificate from the cluster CA "
                "naming its node id, and every node must have security on (or off)",
                peer,
                address,
                details,
            )
        elif code == grpc.StatusCode.UNAVAILABLE:
            log.debug("grpc: stream to %s ended: %s %s", peer, code.name, details)
        else:
            self._warn_once(f"{code.name}:{peer}", "grpc: stream to %s ended: %s %s", peer, code.name, details)

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned and len(self._warned) < _MAX_WARNINGS:
            self._warned.add(key)
            log.warning(message, *args)

    def add_peer(self, peer: str, address: Address) -> None:
        """Accept and stream to a node added to the cluster at run time (a known peer moves to `address`)."""
        if peer == self._settings.node_id:
            return
        if peer in self._links:
            self.remove_peer(peer)
        settings = self._settings = dataclasses.replace(self._settings, peers={**self._settings.peers, peer: address})
        link = self._links[peer] = PeerLink(
            peer, settings.send_queue_frames, settings.send_queue_bytes, partial(self._stream_failed, peer)
        )
        if self._hello is not None:
            link.start(_target(address), self._hello, *self._channel(peer))

    def remove_peer(self, peer: str) -> None:
        """Forget a node removed from the cluster: close our stream to it, refuse its streams from now on."""
        self._settings = dataclasses.replace(
            self._settings, peers={p: a for p, a in self._settings.peers.items() if p != peer}
        )
        link = self._links.pop(peer, None)
        if link is not None:
            link.close()
            if self._nursery is not None:
                self._nursery.start_soon(partial(trio.to_thread.run_sync, link.join))

    def send(self, peer: str, frame: bytes) -> bool:
        link = self._links.get(peer)
        return link is not None and link.offer(frame)

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        return self._incoming

    def status(self, peer: str) -> PeerStatus:
        """`connected`: our stream to the peer is open and the peer accepted our Hello."""
        link = self._links.get(peer)
        return PeerStatus(
            connected=link is not None and link.connected,
            last_seen=self._last_seen.get(peer),
            dropped_frames=(link.dropped if link is not None else 0) + self._dropped_in[peer],
            queued_bytes=link.queued_bytes if link is not None else 0,
        )

    def _deliver(self, peer: str, batch: bytes) -> None:
        """Runs on trio's thread, called from a grpc thread: never blocks; a frame that does not fit is dropped."""
        self._last_seen[peer] = trio.current_time()
        try:
            self._incoming_send.send_nowait((peer, batch))
        except trio.WouldBlock:
            self._dropped_in[peer] += 1
