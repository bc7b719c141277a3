"""All the Raft groups of one node over one transport: frames in, ticks, and batched frames out.

The cost of the wire is per frame, so the router never sends one frame per Raft message: groups hand it their
messages as they produce them, it buffers them per receiving node, and once the burst of work that produced
them is over (every task that was ready to run has run) it sends each peer ONE frame with the messages of all
groups. Flushing follows the work, not a timer, so batching adds no latency of its own.

Time reaches the groups only through `tick`, every `tick_interval_s` of trio time, so under
`trio.testing.MockClock` a whole cluster runs in virtual time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec
import trio

from mom.replication.messages import LeaderNews, Message, decode_messages, encode_messages
from mom.transports.base import Transport

if TYPE_CHECKING:
    from mom.replication.group import RaftGroup

log = logging.getLogger("mom.replication")


class Router:
    def __init__(self, node_id: str, transport: Transport, *, tick_interval_s: float = 0.05) -> None:
        self.node_id = node_id
        self._transport = transport
        self._tick_interval_s = tick_interval_s
        self._groups: dict[str, RaftGroup] = {}
        self._outbox: dict[str, list[Message]] = {}
        self._queued = trio.Event()
        self.frames_sent = 0
        self.frames_dropped = 0
        """Frames the transport refused (queue full, unknown peer): Raft retransmits what matters."""
        self.unknown_group_messages = 0
        """Messages for a group this node does not run (not yet created, or deleted): dropped."""
        self.malformed_frames = 0
        self._news_listeners: list[Callable[[LeaderNews], None]] = []

    @property
    def groups(self) -> dict[str, RaftGroup]:
        return self._groups

    def add_group(self, group: RaftGroup) -> None:
        if group.group_id in self._groups:
            raise ValueError(f"group {group.group_id!r} is already routed on {self.node_id}")
        self._groups[group.group_id] = group

    def remove_group(self, group_id: str) -> None:
        self._groups.pop(group_id, None)

    def add_news_listener(self, listener: Callable[[LeaderNews], None]) -> None:
        """Told every `LeaderNews` that arrives (they concern routing, not any group's Raft state)."""
        self._news_listeners.append(listener)

    def send(self, messages: Sequence[Message]) -> None:
        """Buffer `messages` for their receivers; they leave with the next flush, batched per peer."""
        for message in messages:
            self._outbox.setdefault(message.receiver, []).append(message)
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
        try:
            messages = decode_messages(frame)
        except msgspec.DecodeError:
            self.malformed_frames += 1
            log.warning("dropped a malformed frame from %s", sender)
            return
        for message in messages:
            if isinstance(message, LeaderNews):
                for listener in self._news_listeners:
                    listener(message)
                continue
            group = self._groups.get(message.group)
            if group is None:
                self.unknown_group_messages += 1
                continue
            group.step(message)

    async def _tick(self) -> None:
        deadline = trio.current_time()
        while True:
            deadline += self._tick_interval_s
            await trio.sleep_until(deadline)
            for group in list(self._groups.values()):
                group.tick()

    async def _flush_loop(self) -> None:
        while True:
            await self._queued.wait()
            # Let every task that is runnable now (the other groups' drivers woken by the same tick or frame)
            # add its messages first: the burst leaves as one frame per peer.
            await trio.lowlevel.checkpoint()
            self._queued = trio.Event()
            self.flush()

    def flush(self) -> None:
        """Send everything buffered now: one frame per peer."""
        outbox, self._outbox = self._outbox, {}
        for peer, messages in outbox.items():
            if self._transport.send(peer, encode_messages(messages)):
                self.frames_sent += 1
            else:
                self.frames_dropped += 1
