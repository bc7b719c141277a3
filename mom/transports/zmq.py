"""The ZeroMQ transport: a ROUTER socket receives from every peer, one DEALER per peer sends to it.

Hello: ZeroMQ reconnects silently, so the hello rides on the one thing that is redone on every (re)connection,
the ZMTP handshake. In clear text each DEALER presents PLAIN credentials, username = its node id and
password = its JSON `Hello` (cluster, node id, transport, protocol version); the ROUTER's ZAP handler
(ZeroMQ's authentication hook, RFC 27, served here by a trio task) admits the connection only if the hello
names this cluster and one of its peers, and logs each refusal once. A refused sender sees the handshake fail,
so its `status().connected` stays False and its frames stay queued and are dropped, never delivered.

Security (`CurveKeys`, which `build` reads from the node's key files): every ROUTER is a CURVE server with the
node's secret key, every DEALER a CURVE client with the node's key pair and the peer's public key, so the link
is encrypted and each end proves its key. The ZAP handler then admits only the public keys of the peers and maps
the key to the node id: the identity is the key, not a claim (membership of the cluster is having a key in its
certificates folder). Unknown keys are refused and logged once.

Wire: after the handshake, one ZeroMQ frame per batch, nothing added. The ROUTER hands each batch over with
the sender's routing identity (its node id) and the `User-Id` its ZAP handler gave the connection; a batch is
delivered only if both name the same peer, so a connection cannot send under another node's identity.

Bounds: `send` never blocks: it puts the frame in the peer's queue, bounded in bytes (`send_queue_bytes`) and
frames (`send_queue_frames`), or drops it and counts it when the queue is full. The DEALER's own high-water
mark is small (`PIPE_FRAMES`): ZeroMQ counts messages, not bytes, so the byte bound has to live on our side.
While ZeroMQ's pipe has room and nothing waits in our queue, `send` hands the frame to ZeroMQ directly;
otherwise it queues it, and a trio task per peer moves queued frames into the DEALER in order as ZeroMQ
takes them. A peer that is slow or down costs at most the queue's bytes plus `PIPE_FRAMES` frames. ZeroMQ
reconnects on its own (100 ms, backing off to 1 s). Incoming frames go to a bounded channel; while it is full
the ROUTER is not read, so its small receive pipes fill, then TCP, then the senders' queues, and they drop:
back-pressure, not unbounded buffering. The ROUTER refuses messages above `WIRE_FRAME_LIMIT` (ZeroMQ's MAXMSGSIZE).

`status().connected` follows a socket monitor on the peer's DEALER: up once the handshake succeeded, down on
disconnect. A peer that accepts TCP but never completes the handshake (a node on the grpc transport, say) is
logged once by name; the listener's monitor logs clients that fail the handshake the other way round.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import msgspec
import trio
import zmq
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from mom.config import WIRE_FRAME_LIMIT, Address
from mom.errors import InvalidInput, Unavailable
from mom.transports._sendqueue import SendQueue
from mom.transports._zmq_trio import TrioSocket
from mom.transports.base import PeerStatus, TransportSettings

if TYPE_CHECKING:
    from mom.security import NodeSecurity

log = logging.getLogger("mom.transports.zmq")

PROTOCOL_VERSION: Final = 7
"""2: snapshots travel in chunks (InstallSnapshot with offset/done, SnapshotChunkAck). 3: replicas that lost data
rejoin as learners (JoinProbe/JoinReply, incarnations in responses, AppendEntries.promote). 4: leaders announce
themselves to every node (LeaderNews), which an older node could not decode: it would drop whole frames. 5: idle
groups quiesce (AppendEntries.quiesce) and nodes send NodeHeartbeat: an older node would drop the frames holding
them, and would keep campaigning against groups whose leaders went quiet."""
PIPE_FRAMES: Final = 4
"""Frames a DEALER holds beyond our byte-bounded queue (its SNDHWM): enough to keep the wire busy."""
RECEIVE_PIPE_FRAMES: Final = 16
"""The ROUTER's receive high-water mark per peer: what waits there while the node reads slower than peers send."""
RECONNECT_IVL_MS: Final = 100
RECONNECT_IVL_MAX_MS: Final = 1000
KEEPALIVE_IDLE_S: Final = 1
"""TCP keepalive (probes after 1 s idle, every 1 s, 3 unanswered: about 4 s) notices a peer that vanished without
closing TCP (power loss, partition). Not ZMTP heartbeats: libzmq 4.3.5 aborts the receiving node (`Assertion
failed: !_io_error (src/stream_engine_base.cpp:310)`) when it answers a PING it had buffered on a connection
whose input it had stopped (receive pipe full) and that then hung up, which full `RECEIVE_PIPE_FRAMES` pipes and
killed peers make common (docs/reliability.md). A DEALER that sends no PING never gets a ROUTER there."""
KEEPALIVE_INTVL_S: Final = 1
KEEPALIVE_CNT: Final = 3
RECEIVE_BATCH: Final = 64
"""Messages taken from the ROUTER per trip through trio's scheduler."""
ZAP_ENDPOINT: Final = "inproc://zeromq.zap.01"
"""Where libzmq sends a context's authentication requests (fixed by RFC 27)."""
_MAX_WARNINGS: Final = 1024
"""Distinct once-only warnings remembered, so a flood of bogus senders cannot grow memory without bound."""
_NOT_ZMTP: Final = zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
_EVENTS: Final = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | _NOT_ZMTP
)


_MECHANISM_MISMATCH: Final = (
    "zmq: %s uses another ZeroMQ security mechanism than this node's %s: every node of a cluster must have "
    "security on (certs_dir set) or every node off"
)


class Hello(msgspec.Struct, frozen=True):
    """Who is connecting; checked by the receiver's ZAP handler at every (re)connection."""

    cluster_id: str
    node_id: str
    transport: str
    protocol_version: int


@dataclass(frozen=True)
class CurveKeys:
    """What `ZmqTransport` takes for CURVE (Z85 keys); None there means clear text."""

    secret: bytes
    public: bytes
    peers: Mapping[str, bytes]
    """The public key of every peer by node id: the only keys this node's ROUTER admits."""

    @classmethod
    def of_node(cls, security: NodeSecurity, peers: Iterable[str]) -> CurveKeys:
        """The node's key pair and its peers' public keys, from its key files; InvalidInput if one is bad."""
        secret, public_keys = security.curve_keys(peers)
        try:
            public = zmq.curve_public(secret)
        except (ValueError, zmq.ZMQError):
            raise InvalidInput(f"{security.curve_secret_file} does not hold a valid Z85 CURVE key") from None
        return cls(secret=secret, public=public, peers=public_keys)


def build(settings: TransportSettings, security: NodeSecurity | None) -> ZmqTransport:
    """The ZeroMQ transport, with CURVE from the node's key files when it has security material."""
    curve = None if security is None else CurveKeys.of_node(security, settings.peers)
    return ZmqTransport(settings, curve)


class _Sockets:
    """One run's zmq.Context and every socket opened in it, all closed together without lingering."""

    def __init__(self) -> None:
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._sockets: list[zmq.Socket[bytes]] = []

    def open(self, kind: int, address: Address | None = None) -> zmq.Socket[bytes]:
        socket = self._context.socket(kind)
        self._sockets.append(socket)
        socket.setsockopt(zmq.LINGER, 0)
        if address is not None and ":" in address.host:
            socket.setsockopt(zmq.IPV6, 1)
        return socket

    def monitor(self, socket: zmq.Socket[bytes]) -> zmq.Socket[bytes]:
        """The PAIR socket on which `socket` reports connections and handshakes."""
        monitor = socket.get_monitor_socket(_EVENTS)
        self._sockets.append(monitor)
        monitor.setsockopt(zmq.LINGER, 0)
        return monitor

    def discard(self, socket: zmq.Socket[bytes]) -> None:
        """Close one socket now (a removed peer's), trio told first."""
        if socket in self._sockets:
            self._sockets.remove(socket)
            trio.lowlevel.notify_closing(int(socket.getsockopt(zmq.FD)))
            socket.close(linger=0)

    def close(self) -> None:
        """Close everything now; trio is told first, since its I/O manager may still hold the descriptors."""
        for socket in self._sockets:
            trio.lowlevel.notify_closing(int(socket.getsockopt(zmq.FD)))
        self._context.destroy(linger=0)


class ZmqTransport:
    """`base.Transport` over ZeroMQ; one `zmq.Context` per run, destroyed when the run ends."""

    def __init__(self, settings: TransportSettings, curve: CurveKeys | None = None) -> None:
        self._settings = settings
        self._hello = msgspec.json.encode(Hello(settings.cluster_id, settings.node_id, "zmq", PROTOCOL_VERSION))
        if len(self._hello) > 255:
            raise InvalidInput("zmq transport: cluster id and node id must be short (255 bytes together)")
        self._curve = curve
        self._key_owners = {} if self._curve is None else {key: peer for peer, key in self._curve.peers.items()}
        self._peer_ids = {peer.encode(): peer for peer in settings.peers}
        self._incoming_send, self._incoming = trio.open_memory_channel[tuple[str, bytes]](
            settings.send_queue_frames * max(1, len(settings.peers))
        )
        self._queues = {
            peer: SendQueue(settings.send_queue_frames, settings.send_queue_bytes) for peer in settings.peers
        }
        self._dealers: dict[str, zmq.Socket[bytes]] = {}
        self._links: dict[str, trio.CancelScope] = {}
        self._refused_by: set[str] = set()
        """Peers that refused our hello (we were not their peer yet): relinked once they speak to us, since a
        node added to the cluster at run time is refused until the others learn of it, and libzmq does not
        try again after a refused handshake."""
        self._run: tuple[_Sockets, trio.Nursery] | None = None
        self._connected: set[str] = set()
        self._last_seen: dict[str, float] = {}
        self._dropped: Counter[str] = Counter()
        self._warned: set[str] = set()

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        sockets = _Sockets()
        try:
            zap = sockets.open(zmq.REP)
            zap.bind(ZAP_ENDPOINT)
            router, listener_monitor, bound = self._listen(sockets)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._authenticate, TrioSocket(zap))
                nursery.start_soon(self._receive, TrioSocket(router))
                nursery.start_soon(self._watch_listener, TrioSocket(listener_monitor))
                self._run = (sockets, nursery)
                for peer, address in self._settings.peers.items():
                    self._link(peer, address)
                task_status.started(bound)
        finally:
            self._run = None
            self._links.clear()
            self._dealers.clear()
            self._connected.clear()
            sockets.close()

    def _link(self, peer: str, address: Address) -> None:
        assert self._run is not None
        sockets, nursery = self._run
        dealer, monitor = self._connect(sockets, peer, address)
        scope = self._links[peer] = trio.CancelScope()
        nursery.start_soon(self._linked, scope, peer, address, dealer, monitor)
        self._dealers[peer] = dealer

    async def _linked(
        self,
        scope: trio.CancelScope,
        peer: str,
        address: Address,
        dealer: zmq.Socket[bytes],
        monitor: zmq.Socket[bytes],
    ) -> None:
        """Watch and feed one peer's link until it is removed (then close its sockets) or the run ends."""
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_peer, peer, address, TrioSocket(monitor))
                nursery.start_soon(self._pump, self._queues[peer], TrioSocket(dealer))
        if scope.cancelled_caught and self._run is not None:
            for socket in (monitor, dealer):
                self._run[0].discard(socket)

    def add_peer(self, peer: str, address: Address) -> None:
        """Accept and connect to a node added to the cluster at run time (a known peer moves to `address`)."""
        if peer == self._settings.node_id:
            return
        if peer in self._links:
            self.remove_peer(peer)
        if self._curve is not None and peer not in self._curve.peers:
            log.error(
                "zmq: no CURVE public key for new node %s: put its %s.curve.pub in every node's certificates "
                "folder and restart them",
                peer,
                peer,
            )
            return
        self._settings = dataclasses.replace(self._settings, peers={**self._settings.peers, peer: address})
        self._peer_ids[peer.encode()] = peer
        self._queues.setdefault(peer, SendQueue(self._settings.send_queue_frames, self._settings.send_queue_bytes))
        if self._run is not None:
            self._link(peer, address)

    def remove_peer(self, peer: str) -> None:
        """Forget a node removed from the cluster: close the link, refuse its connections from now on."""
        self._settings = dataclasses.replace(
            self._settings, peers={p: a for p, a in self._settings.peers.items() if p != peer}
        )
        self._peer_ids.pop(peer.encode(), None)
        self._queues.pop(peer, None)
        self._dealers.pop(peer, None)
        self._connected.discard(peer)
        scope = self._links.pop(peer, None)
        if scope is not None:
            scope.cancel()

    def send(self, peer: str, frame: bytes) -> bool:
        queue = self._queues.get(peer)
        if queue is None:
            return False
        dealer = self._dealers.get(peer)
        if dealer is not None and not len(queue):
            try:
                dealer.send(frame, zmq.NOBLOCK)  # the usual case: ZeroMQ's pipe has room, no task involved
            except zmq.Again:
                pass
            else:
                return True
        if not queue.offer(frame):
            self._dropped[peer] += 1
            return False
        return True

    async def _pump(self, queue: SendQueue, dealer: TrioSocket) -> None:
        """Hand the peer's frames to its DEALER in order, waiting while ZeroMQ holds `PIPE_FRAMES` already."""
        while True:
            await dealer.send_many(queue)

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        return self._incoming

    def status(self, peer: str) -> PeerStatus:
        return PeerStatus(
            connected=peer in self._connected,
            last_seen=self._last_seen.get(peer),
            dropped_frames=self._dropped[peer],
            queued_bytes=self._queues[peer].queued_bytes if peer in self._queues else 0,
        )

    def _listen(self, sockets: _Sockets) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes], Address]:
        """The bound ROUTER, its monitor (attached before binding, so no event is missed), and its address."""
        listen = self._settings.listen
        router = sockets.open(zmq.ROUTER, listen)
        if self._curve is None:
            router.setsockopt(zmq.PLAIN_SERVER, 1)
        else:
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_SECRETKEY, self._curve.secret)
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a restarted peer's new connection replaces its stale one
        router.setsockopt(zmq.RCVHWM, RECEIVE_PIPE_FRAMES)
        router.setsockopt(zmq.MAXMSGSIZE, WIRE_FRAME_LIMIT)
        _keepalive(router)
        monitor = sockets.monitor(router)
        try:
            router.bind(f"tcp://{listen}")
        except zmq.ZMQError as exc:
            raise Unavailable(f"zmq transport cannot listen on {listen}: {exc}") from exc
        endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        return router, monitor, Address(listen.host, int(endpoint.rsplit(":", 1)[1]))

    def _connect(self, sockets: _Sockets, peer: str, address: Address) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        """The DEALER to `peer` and its monitor (attached before connecting, so no event is missed)."""
        dealer = sockets.open(zmq.DEALER, address)
        dealer.setsockopt(zmq.IDENTITY, self._settings.node_id.encode())
        if self._curve is None:
            dealer.setsockopt(zmq.PLAIN_USERNAME, self._settings.node_id.encode())
            dealer.setsockopt(zmq.PLAIN_PASSWORD, self._hello)
        elif peer not in self._curve.peers:
            raise InvalidInput(f"zmq transport: no CURVE public key for peer {peer}")
        else:
            dealer.setsockopt(zmq.CURVE_SERVERKEY, self._curve.peers[peer])
            dealer.setsockopt(zmq.CURVE_PUBLICKEY, self._curve.public)
            dealer.setsockopt(zmq.CURVE_SECRETKEY, self._curve.secret)
        dealer.setsockopt(zmq.SNDHWM, PIPE_FRAMES)
        dealer.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        dealer.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        _keepalive(dealer)
        monitor = sockets.monitor(dealer)
        try:
            dealer.connect(f"tcp://{address}")
        except zmq.ZMQError as exc:
            raise InvalidInput(f"zmq transport cannot connect to peer {peer} at {address}: {exc}") from exc
        return dealer, monitor

    async def _authenticate(self, zap: TrioSocket) -> None:
        """Answer libzmq's authentication requests (ZAP): admit a connection only if its hello is welcome."""
        while True:
            version, request_id, _domain, address, _identity, mechanism, *credentials = await zap.recv_multipart()
            node_id = self._welcome(address.decode(errors="replace"), mechanism, credentials)
            status, text = (b"200", b"OK") if node_id else (b"400", b"hello refused")
            zap.socket.send_multipart([version, request_id, status, text, node_id.encode(), b""], zmq.NOBLOCK)

    def _welcome(self, address: str, mechanism: bytes, credentials: list[bytes]) -> str:
        """The connecting node's id if its hello (or CURVE key) belongs to this cluster's peers, else ""."""
        if self._curve is not None:
            return self._welcome_key(address, mechanism, credentials)
        try:
            if mechanism != b"PLAIN" or len(credentials) != 2:
                raise msgspec.DecodeError
            hello = msgspec.json.decode(credentials[1], type=Hello)
        except msgspec.DecodeError:
            self._warn_once(f"garbled:{address}", "zmq: refused a connection from %s: no mom hello", address)
            return ""
        if hello.transport != "zmq" or hello.protocol_version != PROTOCOL_VERSION:
            self._warn_once(
                f"version:{hello.transport}:{hello.protocol_version}",
                "zmq: refused node %r at %s: it speaks %s protocol %d, this node zmq protocol %d",
                hello.node_id,
                address,
                hello.transport,
                hello.protocol_version,
                PROTOCOL_VERSION,
            )
        elif hello.cluster_id != self._settings.cluster_id:
            self._warn_once(
                f"cluster:{hello.cluster_id}:{hello.node_id}",
                "zmq: refused node %r at %s: it belongs to cluster %r, this node to cluster %r",
                hello.node_id,
                address,
                hello.cluster_id,
                self._settings.cluster_id,
            )
        elif hello.node_id not in self._settings.peers:
            self._warn_once(
                f"unknown:{hello.node_id}",
                "zmq: refused unknown node %r at %s: this node's peers are %s",
                hello.node_id,
                address,
                ", ".join(sorted(self._settings.peers)),
            )
        else:
            return hello.node_id
        return ""

    def _welcome_key(self, address: str, mechanism: bytes, credentials: list[bytes]) -> str:
        """The node whose CURVE public key connects, if it is a peer's; else "" (and a warning once per key)."""
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            self._warn_once(f"mechanism:{address}", "zmq: refused a connection from %s: not CURVE", address)
            return ""
        key = z85.encode(credentials[0])
        peer = self._key_owners.get(key)
        if peer is None:
            self._warn_once(
                f"key:{key!r}",
                "zmq: refused a connection from %s: its CURVE key %s is not the .curve.pub of any peer (%s)",
                address,
                key.decode(),
                ", ".join(sorted(self._settings.peers)),
            )
            return ""
        return peer

    async def _receive(self, router: TrioSocket) -> None:
        """Deliver frames in arrival order; waiting on a full channel is the back-pressure."""
        while True:
            for parts in await router.recv_frames(RECEIVE_BATCH):
                identity = parts[0].bytes
                sender = self._peer_ids.get(identity)
                if sender is None or len(parts) != 2:
                    self._warn_once(
                        f"identity:{identity!r}",
                        "zmq: dropping a message of %d frames from routing identity %r: want 1 frame from a peer",
                        len(parts) - 1,
                        identity,
                    )
                    continue
                if sender in self._refused_by:
                    self._refused_by.discard(sender)
                    log.info("zmq: peer %s speaks to this node now: connecting to it again", sender)
                    self.add_peer(sender, self._settings.peers[sender])
                admitted_as = parts[1].get("User-Id")
                if admitted_as != sender:
                    self._warn_once(
                        f"impostor:{admitted_as}:{sender}",
                        "zmq: dropping messages of node %r sent under the identity of %r",
                        admitted_as,
                        sender,
                    )
                    continue
                self._last_seen[sender] = trio.current_time()
                frame = (sender, parts[1].bytes)
                try:
                    self._incoming_send.send_nowait(frame)
                except trio.WouldBlock:
                    await self._incoming_send.send(frame)

    async def _watch_peer(self, peer: str, address: Address, monitor: TrioSocket) -> None:
        """Track whether the link to `peer` is up, and name the likely cause when it never comes up."""
        tcp_up = False
        while True:
            message = parse_monitor_message(await monitor.recv_multipart())
            event, value = message["event"], message["value"]
            if event == zmq.EVENT_CONNECTED:
                tcp_up = True
                continue
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._connected.add(peer)
            else:
                self._connected.discard(peer)
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._refused_by.add(peer)
            if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH and self._curve is not None:
                self._warn_once(
                    f"refused:{peer}",
                    "zmq: peer %s at %s refused this node's CURVE key: does its certificates folder hold this "
                    "node's %s.curve.pub? The peer's log says why",
                    peer,
                    address,
                    self._settings.node_id,
                )
            elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                self._warn_once(
                    f"refused:{peer}",
                    "zmq: peer %s at %s refused this node's hello (cluster %r, node %r): check the cluster id and "
                    "the peer lists; the peer's log says why",
                    peer,
                    address,
                    self._settings.cluster_id,
                    self._settings.node_id,
                )
            elif event & _NOT_ZMTP and value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                self._warn_once(f"mechanism:{peer}", _MECHANISM_MISMATCH, f"peer {peer} at {address}", self._mode)
            elif event & _NOT_ZMTP and value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
                self._warn_once(
                    f"curve:{peer}",
                    "zmq: the CURVE handshake with peer %s at %s failed: it does not hold the secret key that "
                    "matches %s.curve.pub in this node's certificates folder",
                    peer,
                    address,
                    peer,
                )
            elif event & _NOT_ZMTP or (event == zmq.EVENT_DISCONNECTED and tcp_up):
                self._warn_once(
                    f"not-zmtp:{peer}",
                    "zmq: peer %s at %s accepted TCP but failed the ZeroMQ (ZMTP) handshake: does it run "
                    "another transport (grpc)? This node uses zmq; a cluster must use one transport",
                    peer,
                    address,
                )
            tcp_up = False

    async def _watch_listener(self, monitor: TrioSocket) -> None:
        while True:
            message = parse_monitor_message(await monitor.recv_multipart())
            if not message["event"] & _NOT_ZMTP:
                continue
            if message["value"] == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                subject = f"a client connected to {self._settings.listen}"
                self._warn_once("mechanism:listener", _MECHANISM_MISMATCH, subject, self._mode)
            elif message["value"] == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
                self._warn_once(
                    "curve:listener",
                    "zmq: a client failed the CURVE handshake with %s: it does not know this node's public key",
                    self._settings.listen,
                )
            else:
                self._warn_once(
                    "not-zmtp:listener",
                    "zmq: a client connected to %s but failed the ZeroMQ (ZMTP) handshake: not a mom zmq node "
                    "(one on the grpc transport?); a cluster must use one transport",
                    self._settings.listen,
                )

    @property
    def _mode(self) -> str:
        return "CURVE (security on)" if self._curve is not None else "PLAIN (clear text)"

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned and len(self._warned) < _MAX_WARNINGS:
            self._warned.add(key)
            log.warning(message, *args)


def _keepalive(socket: zmq.Socket[bytes]) -> None:
    """TCP keepalive on every connection of `socket` (see `KEEPALIVE_IDLE_S`: why not ZMTP heartbeats)."""
    socket.setsockopt(zmq.TCP_KEEPALIVE, 1)
    socket.setsockopt(zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE_IDLE_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE_INTVL_S)
    socket.setsockopt(zmq.TCP_KEEPALIVE_CNT, KEEPALIVE_CNT)
