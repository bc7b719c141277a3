"""The in-process transport: nodes of one process joined by a `MemoryHub`, with faults injected on purpose.

It is a full implementation of `base.Transport`, not a mock: the deterministic cluster simulation runs the
real replication code over it. Every random choice (loss, duplication, delay) comes from the hub's seeded rng
and every delay is trio time, so under `trio.testing.MockClock` a schedule replays exactly from its seed.

What the hub models, and how a real network would show it:
- a node whose transport is not running (never started, cancelled, or `crash()`-ed) receives nothing: frames
  sent to it are dropped and counted by the sender, as a real sender's full queue would drop them;
- `partition()` cuts links and `set_faults()` loses, duplicates and delays frames; those losses are invisible
  to both ends (nobody counts them), as on a real network;
- frames of one sender to one receiver are delivered in the order they were sent (a duplicate arrives right
  after its original), whatever the delays.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import Counter
from collections.abc import Iterable

import trio

from mom.config import Address
from mom.errors import InvalidInput
from mom.transports._sendqueue import SendQueue
from mom.transports.base import PeerStatus, TransportSettings

_InFlight = tuple[float, bytes]
"""(trio time at which to deliver, frame)."""


class MemoryHub:
    """The network between the `MemoryTransport`s of one process: partitions, crashes and random faults."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()
        self._running: dict[str, MemoryTransport] = {}
        self._down: set[str] = set()
        self._side: dict[str, int] = {}
        self._loss = 0.0
        self._duplicate = 0.0
        self._delay = (0.0, 0.0)

    def partition(self, *sides: Iterable[str]) -> None:
        """Cut the network into `sides`: frames between sides are lost. Unnamed nodes join the first side."""
        self._side = {node: number for number, side in enumerate(sides) for node in side}

    def heal(self) -> None:
        self._side = {}

    def set_faults(self, loss: float = 0.0, duplicate: float = 0.0, delay: tuple[float, float] = (0.0, 0.0)) -> None:
        """Lose each frame with probability `loss`, deliver it twice with probability `duplicate`, and delay
        it by a uniform random number of seconds in `delay`; calling it again replaces all three."""
        if not (0.0 <= loss <= 1.0 and 0.0 <= duplicate <= 1.0):
            raise InvalidInput("loss and duplicate are probabilities between 0 and 1")
        if not 0.0 <= delay[0] <= delay[1]:
            raise InvalidInput("delay must be (low, high) seconds with 0 <= low <= high")
        self._loss, self._duplicate, self._delay = loss, duplicate, delay

    def crash(self, node_id: str) -> None:
        """Take `node_id` off the network (it neither sends nor receives) until its transport runs again."""
        self._down.add(node_id)

    def connected(self, a: str, b: str) -> bool:
        """Whether a frame from `a` would reach `b` now, faults aside.

        Like a real receiver checking a Hello, `b` accepts frames only from its own peers in its own cluster.
        """
        sender, receiver = self._running.get(a), self._running.get(b)
        return (
            sender is not None
            and receiver is not None
            and not {a, b} & self._down
            and self._side.get(a, 0) == self._side.get(b, 0)
            and sender._settings.cluster_id == receiver._settings.cluster_id
            and a in receiver._settings.peers
        )

    def _join(self, transport: MemoryTransport) -> None:
        node_id = transport.node_id
        self._running[node_id] = transport
        self._down.discard(node_id)

    def _leave(self, transport: MemoryTransport) -> None:
        if self._running.get(transport.node_id) is transport:
            del self._running[transport.node_id]

    def _delays(self) -> list[float]:
        """One delay per copy of a frame about to be sent: none if it is lost, two if it is duplicated."""
        if self._loss and self._rng.random() < self._loss:
            return []
        copies = 2 if self._duplicate and self._rng.random() < self._duplicate else 1
        low, high = self._delay
        return [self._rng.uniform(low, high) if high else 0.0 for _ in range(copies)]

    def _deliver(self, sender: MemoryTransport, receiver_id: str, frame: bytes) -> None:
        receiver = self._running.get(receiver_id)
        if receiver is None or receiver_id in self._down:
            sender._count_drop(receiver_id)
        elif self.connected(sender.node_id, receiver_id):
            receiver._receive(sender.node_id, frame)


class MemoryTransport:
    """One node's end of a `MemoryHub`; behaves like the socket transports, queue bounds and counters too."""

    def __init__(self, settings: TransportSettings, hub: MemoryHub) -> None:
        self._settings = settings
        self._hub = hub
        self._queues = {
            peer: SendQueue(settings.send_queue_frames, settings.send_queue_bytes) for peer in settings.peers
        }
        self._incoming_send, self._incoming = trio.open_memory_channel[tuple[str, bytes]](
            settings.send_queue_frames * max(1, len(settings.peers))
        )
        self._last_seen: dict[str, float] = {}
        self._dropped: Counter[str] = Counter()
        self._pumps: dict[str, trio.CancelScope] = {}
        self._nursery: trio.Nursery | None = None

    @property
    def node_id(self) -> str:
        return self._settings.node_id

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        self._hub._join(self)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for peer in self._settings.peers:
                    self._start_pump(peer)
                task_status.started(self._settings.listen)
        finally:
            self._nursery = None
            self._hub._leave(self)

    def _start_pump(self, peer: str) -> None:
        assert self._nursery is not None
        scope = self._pumps[peer] = trio.CancelScope()

        async def pump() -> None:
            with scope:
                await self._pump(peer)

        self._nursery.start_soon(pump)

    def add_peer(self, peer: str, address: Address) -> None:
        """A node added at run time: frames to it and from it flow from now on."""
        if peer == self.node_id or peer in self._queues:
            return
        self._settings = dataclasses.replace(self._settings, peers={**self._settings.peers, peer: address})
        self._queues[peer] = SendQueue(self._settings.send_queue_frames, self._settings.send_queue_bytes)
        if self._nursery is not None:
            self._start_pump(peer)

    def remove_peer(self, peer: str) -> None:
        """A node removed: nothing more is sent to it or accepted from it."""
        self._settings = dataclasses.replace(
            self._settings, peers={p: a for p, a in self._settings.peers.items() if p != peer}
        )
        self._queues.pop(peer, None)
        scope = self._pumps.pop(peer, None)
        if scope is not None:
            scope.cancel()

    def send(self, peer: str, frame: bytes) -> bool:
        queue = self._queues.get(peer)
        if queue is None:
            return False
        if not queue.offer(frame):
            self._dropped[peer] += 1
            return False
        return True

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        return self._incoming

    def status(self, peer: str) -> PeerStatus:
        return PeerStatus(
            connected=self._hub.connected(self.node_id, peer),
            last_seen=self._last_seen.get(peer),
            dropped_frames=self._dropped[peer],
            queued_bytes=self._queues[peer].queued_bytes if peer in self._queues else 0,
        )

    async def _pump(self, peer: str) -> None:
        """Move frames from the peer's send queue onto the wire, stamping each with its delivery time.

        Delivery times never go backwards on one link: that keeps per-sender order under random delays.
        """
        wire_send, wire_receive = trio.open_memory_channel[_InFlight](math.inf)
        last = -math.inf
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._wire, peer, wire_receive)
            queue = self._queues[peer]
            while True:
                frame = await queue.get()
                if self.node_id in self._hub._down:
                    continue
                for delay in self._hub._delays():
                    last = max(last, trio.current_time() + delay)
                    wire_send.send_nowait((last, frame))

    async def _wire(self, peer: str, wire: trio.MemoryReceiveChannel[_InFlight]) -> None:
        async for deliver_at, frame in wire:
            await trio.sleep_until(deliver_at)
            self._hub._deliver(self, peer, frame)

    def _receive(self, sender: str, frame: bytes) -> None:
        self._last_seen[sender] = trio.current_time()
        try:
            self._incoming_send.send_nowait((sender, frame))
        except trio.WouldBlock:
            self._dropped[sender] += 1

    def _count_drop(self, peer: str) -> None:
        self._dropped[peer] += 1
