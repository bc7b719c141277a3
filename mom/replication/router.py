"""All the Raft groups of one node over one transport: frames in, ticks, and batched frames out.

The cost of the wire is per frame, so the router never sends one frame per Raft message: groups hand it their
messages as they produce them, it buffers them per receiving node, and once the burst of work that produced
them is over (every task that was ready to run has run) it sends each peer the messages of all groups in as few
frames as fit `max_frame_bytes` each (a single larger message travels alone; one above the transports' limit
is dropped and logged, since no transport would carry it). Flushing follows the work, not a timer, so batching
adds no latency of its own.

Time reaches the groups only through `tick`, every `tick_interval_s` of trio time, so under
`trio.testing.MockClock` a whole cluster runs in virtual time. Ticks keep to their grid but never catch up:
after a stall (a blocked event loop, a paused process) the groups get one tick, not one per missed interval,
since a burst of ticks would expire every election timer at once. How late each tick woke is the event loop's
lag, reported to `on_tick_lag`.

The router knows groups only as `Routed` (a group id, `step`, `tick`); whoever owns the groups registers them.

Only awake groups are ticked: a quiesced group (idle, see `mom.replication.raft`) costs nothing per tick. A group
is awake again as soon as it sends or is sent a message that wakes it, or when the node liveness
(`mom.replication.liveness`, ticked here, fed by every frame) reports a peer's node down or up, which every group
hears. A group refused a campaign slot is *parked*: kept aside in one of `ASK_EVERY_TICKS` buckets (by a hash of
its name) and ticked only when its bucket is due, so that the thousands of groups waiting for a slot after a node's
death cost nothing in the ticks between (looking at each of them every tick to skip it was 41 % of a survivor's
CPU at 10,000 destinations, docs/cluster.md).
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import msgspec
import trio

from mom.config import WIRE_FRAME_LIMIT
from mom.replication._elections import ASK_EVERY_TICKS, CampaignGate
from mom.replication._hand_backs import HandBackGate
from mom.replication.liveness import Liveness
from mom.replication.messages import (
    FRAME_HEADER_BYTES,
    LeaderNews,
    Message,
    NodeHeartbeat,
    decode_messages,
    encode_message,
    frame_of,
)
from mom.transports.base import Transport

log = logging.getLogger("mom.replication")

DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024


class Routed(Protocol):
    """What the router needs of a group: where its messages go, and its clock."""

    @property
    def group_id(self) -> str: ...

    def step(self, message: Message) -> None: ...

    def tick(self) -> None: ...

    @property
    def waiting_for_slot(self) -> bool:
        """Due to campaign but refused a slot: ticked only every `ASK_EVERY_TICKS`."""
        ...

    @property
    def quiesced(self) -> bool:
        """Idle: needs no tick until a message or news of a peer wakes it."""
        ...

    def peer_down(self, peer: str) -> None: ...

    def peer_up(self, peer: str) -> None: ...

    def peer_restarted(self, peer: str) -> None: ...

    def retry_hand_back(self) -> None: ...


TickLagObserver = Callable[[float, int], None]
"""Told (seconds the tick woke late, ticks skipped) at every tick."""


@dataclass
class PeerTraffic:
    """Frames and bytes exchanged with one peer since this node started (what /metrics shows per peer)."""

    sent_frames: int = 0
    sent_bytes: int = 0
    received_frames: int = 0
    received_bytes: int = 0
    dropped_frames: int = 0


class Router:
    def __init__(
        self,
        node_id: str,
        transport: Transport,
        *,
        tick_interval_s: float = 0.05,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        on_tick_lag: TickLagObserver | None = None,
        peers: Sequence[str] = (),
        incarnation: int = 0,
    ) -> None:
        self.node_id = node_id
        self._transport = transport
        self._tick_interval_s = tick_interval_s
        self._max_frame_bytes = max_frame_bytes
        self._on_tick_lag = on_tick_lag
        self._groups: dict[str, Routed] = {}
        self._awake: dict[str, Routed] = {}
        """The groups ticked every tick: all but the quiesced and the parked ones."""
        self._parked: list[dict[str, Routed]] = [{} for _ in range(ASK_EVERY_TICKS)]
        """Groups waiting for a campaign slot, by the tick (modulo `ASK_EVERY_TICKS`) they are ticked at. A
        message to a parked group also puts it in `_awake` (the tick after sees whether it still waits)."""
        self._ticks = 0
        self._fell_quiet: dict[str, Routed] = {}
        """Groups that went quiet since `changing_groups` last looked."""
        self.liveness = Liveness(
            node_id,
            peers,
            incarnation=incarnation,
            on_change=self._peer_changed,
            on_restart=self._peer_restarted,
            link_up=lambda peer: transport.status(peer).connected,
        )
        self.campaigns = CampaignGate()
        """How many of this node's data groups campaign at once (ticked here; the manager hands it to them)."""
        self.hand_backs = HandBackGate()
        """How many of this node's data groups hand leadership back at once (the manager hands it to them)."""
        self._seen: dict[str, float] = {}
        """When the transport last received a frame from each peer, as of the last tick (`_arrived`)."""
        self._outbox: dict[str, list[Message]] = {}
        self._queued = trio.Event()
        self.frames_sent = 0
        self.frames_dropped = 0
        """Frames the transport refused (queue full, unknown peer): Raft retransmits what matters."""
        self.oversized_messages = 0
        """Messages above the transports' frame limit: no transport carries them (the limits prevent them)."""
        self.unknown_group_messages = 0
        """Messages for a group this node does not run (not yet created, or deleted, or not yet recovered): dropped."""
        self.on_unknown_group: Callable[[str], None] | None = None
        """Told the group of each such message (the manager recovers a dormant group sooner)."""
        self.malformed_frames = 0
        self.ticks_skipped = 0
        """Ticks not delivered because the loop woke too late for them (see the module docstring)."""
        self.traffic: dict[str, PeerTraffic] = {}
        self._news_listeners: list[Callable[[LeaderNews], None]] = []

    def _traffic(self, peer: str) -> PeerTraffic:
        traffic = self.traffic.get(peer)
        if traffic is None:
            traffic = self.traffic[peer] = PeerTraffic()
        return traffic

    @property
    def groups(self) -> dict[str, Routed]:
        return self._groups

    def add_group(self, group: Routed) -> None:
        if group.group_id in self._groups:
            raise ValueError(f"group {group.group_id!r} is already routed on {self.node_id}")
        self._groups[group.group_id] = group
        self._awake[group.group_id] = group

    def remove_group(self, group_id: str) -> None:
        self._groups.pop(group_id, None)
        self._awake.pop(group_id, None)
        self._parked[_bucket(group_id)].pop(group_id, None)

    @property
    def awake(self) -> int:
        """How many groups are not quiesced (ticked every tick, or parked waiting for a campaign slot)."""
        parked = sum(gid not in self._awake for bucket in self._parked for gid in bucket)
        return len(self._awake) + parked

    def changing_groups(self) -> list[Routed]:
        """The groups whose state may have changed since the last call: the awake ones, and those that fell
        quiet meanwhile (a quiesced group changes nothing until it wakes)."""
        fell, self._fell_quiet = self._fell_quiet, {}
        return [*self._awake.values(), *(g for gid, g in fell.items() if gid not in self._awake)]

    def add_peer(self, peer: str) -> None:
        """A node added to the cluster: its liveness is followed (and it gets node heartbeats) from now on."""
        self.liveness.add_peer(peer)

    def remove_peer(self, peer: str) -> None:
        self.liveness.remove_peer(peer)
        self._outbox.pop(peer, None)

    def _peer_changed(self, peer: str, alive: bool) -> None:
        log.info("node %s is %s", peer, "up" if alive else "down (no word from it)")
        for gid, group in self._groups.items():
            if alive:
                group.peer_up(peer)
            else:
                group.peer_down(peer)
            if not group.quiesced:
                self._awake[gid] = group

    def _peer_restarted(self, peer: str) -> None:
        log.info("node %s restarted", peer)
        for group in self._groups.values():
            group.peer_restarted(peer)

    def add_news_listener(self, listener: Callable[[LeaderNews], None]) -> None:
        """Told every `LeaderNews` that arrives (they concern routing, not any group's Raft state)."""
        self._news_listeners.append(listener)

    def send(self, messages: Sequence[Message]) -> None:
        """Buffer `messages` for their receivers; they leave with the next flush, batched per peer."""
        groups, awake = self._groups, self._awake
        for message in messages:
            self._outbox.setdefault(message.receiver, []).append(message)
            group = groups.get(message.group)
            if group is not None:
                awake[message.group] = group  # ticked at least once more: quiesced then, it drops out
        if messages:
            self._queued.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver incoming frames, tick the groups and flush the outbox until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive)
            nursery.start_soon(self._tick)
            nursery.start_soon(self._flush_loop)
            task_status.started()

    async def _receive(self) -> None:
        incoming = self._transport.incoming
        async for sender, frame in incoming:
            self._deliver(sender, frame)
            while True:  # whatever else already arrived belongs to the same burst
                try:
                    sender, frame = incoming.receive_nowait()
                except trio.WouldBlock:
                    break
                self._deliver(sender, frame)

    def _deliver(self, sender: str, frame: bytes) -> None:
        traffic = self._traffic(sender)
        traffic.received_frames += 1
        traffic.received_bytes += len(frame)
        try:
            messages = decode_messages(frame)
        except msgspec.DecodeError:
            self.malformed_frames += 1
            log.warning("dropped a malformed frame from %s", sender)
            return
        self.liveness.heard(sender)
        for message in messages:
            if isinstance(message, NodeHeartbeat):
                self.liveness.heartbeat_from(message)
                continue
            if isinstance(message, LeaderNews):
                for listener in self._news_listeners:
                    listener(message)
                continue
            group = self._groups.get(message.group)
            if group is None:
                self.unknown_group_messages += 1
                if self.on_unknown_group is not None:
                    self.on_unknown_group(message.group)
                continue
            group.step(message)
            if not group.quiesced:
                self._awake[message.group] = group

    async def _tick(self) -> None:
        interval = self._tick_interval_s
        deadline = trio.current_time()
        while True:
            deadline += interval
            await trio.sleep_until(deadline)
            lag = trio.current_time() - deadline
            skipped = math.floor(lag / interval) if lag >= interval else 0
            deadline += skipped * interval  # back on the grid, at the latest point already passed
            self.ticks_skipped += skipped
            if self._on_tick_lag is not None:
                self._on_tick_lag(lag, skipped)
            self._arrived()
            self.send(self.liveness.tick())
            self.campaigns.tick()
            self.hand_backs.tick()
            self._tick_groups()
            self._wake_hand_backs()

    def _tick_groups(self) -> None:
        """Tick the awake groups and the parked ones whose bucket is due; park those refused a slot."""
        awake, parked = self._awake, self._parked
        self._ticks += 1
        due_at = self._ticks % ASK_EVERY_TICKS
        due, parked[due_at] = parked[due_at], {}
        for gid, group in list(awake.items()):
            if due.pop(gid, None) is None and group.waiting_for_slot:
                del awake[gid]  # refused a campaign slot: it asks again when its bucket is due
                parked[_bucket(gid)][gid] = group
                continue
            self._ticked(gid, group)
        for gid, group in due.items():
            if self._groups.get(gid) is group:
                self._ticked(gid, group)

    def _wake_hand_backs(self) -> None:
        """Wake the leaders that were refused a hand-back slot, as many as slots are free (`HandBackGate.due`)."""
        for gid in self.hand_backs.due():
            group = self._groups.get(gid)
            if group is not None:
                group.retry_hand_back()
                if not group.quiesced:
                    self._awake[gid] = group

    def _ticked(self, gid: str, group: Routed) -> None:
        """Tick `group` and file it by what it is now: awake, parked, or quiet."""
        group.tick()
        if group.quiesced:
            self._awake.pop(gid, None)
            self._fell_quiet[gid] = group
        elif group.waiting_for_slot:
            self._awake.pop(gid, None)
            self._parked[_bucket(gid)][gid] = group
        else:
            self._awake[gid] = group

    def _arrived(self) -> None:
        """A frame that reached this process counts as a sign of life before the router handles it: a node whose
        loop is starved (thousands of groups electing or catching up) may hold seconds of frames in its queue,
        and declaring the peers that sent them dead would start a storm of elections of its own."""
        status, seen = self._transport.status, self._seen
        for peer in self.liveness.peers:
            last = status(peer).last_seen
            if last is not None and last != seen.get(peer):
                seen[peer] = last
                self.liveness.heard(peer)

    async def _flush_loop(self) -> None:
        while True:
            await self._queued.wait()
            # Let every task that is runnable now (the other groups' drivers woken by the same tick or frame)
            # add its messages first: the burst leaves as one frame per peer.
            await trio.lowlevel.checkpoint()
            self._queued = trio.Event()
            self.flush()

    def flush(self) -> None:
        """Send everything buffered now: per peer, as few frames as fit the frame budget."""
        outbox, self._outbox = self._outbox, {}
        for peer, messages in outbox.items():
            traffic = self._traffic(peer)
            for frame in self._frames(peer, messages):
                if self._transport.send(peer, frame):
                    self.frames_sent += 1
                    traffic.sent_frames += 1
                    traffic.sent_bytes += len(frame)
                else:
                    self.frames_dropped += 1
                    traffic.dropped_frames += 1

    def _frames(self, peer: str, messages: list[Message]) -> list[bytes]:
        """`messages` in order, cut into frames of at most `max_frame_bytes` (one larger message alone)."""
        frames: list[bytes] = []
        parts: list[bytes] = []
        size = FRAME_HEADER_BYTES
        for message in messages:
            part = encode_message(message)
            if len(part) + FRAME_HEADER_BYTES > WIRE_FRAME_LIMIT:
                self.oversized_messages += 1
                log.error(
                    "dropped a %s of %d bytes for %s in group %s: above the transports' frame limit of %d bytes",
                    type(message).__name__,
                    len(part),
                    peer,
                    message.group,
                    WIRE_FRAME_LIMIT,
                )
                continue
            if parts and size + len(part) > self._max_frame_bytes:
                frames.append(frame_of(parts))
                parts, size = [], FRAME_HEADER_BYTES
            parts.append(part)
            size += len(part)
        if parts:
            frames.append(frame_of(parts))
        return frames


def _bucket(group_id: str) -> int:
    """Which of the `ASK_EVERY_TICKS` ticks (modulo) a parked group is ticked at, so they do not all ask at once."""
    return zlib.crc32(group_id.encode()) % ASK_EVERY_TICKS
