"""Snapshots streamed between a group's replicas in chunks (Raft §7), read from and written to disk.

The Raft core decides *that* a follower needs a snapshot and which one (`Ready.send_snapshots`); this module
moves the bytes, so that no message and no buffer ever holds a whole state machine:

- The leader's `SnapshotSender` reads the snapshot file at `chunk_bytes` a time, by offset, and sends
  `InstallSnapshot(offset, data, done)` chunks, at most `window` chunks ahead of the follower's
  acknowledgements (`SnapshotChunkAck`): a transfer costs the leader `window * chunk_bytes` in send queues,
  whatever the snapshot's size. Chunks not acknowledged for `RESEND_TICKS` are sent again (go-back-N: a chunk
  lost with a dropped frame costs one timeout, not the transfer), backing off up to `MAX_RESEND_TICKS` while
  the follower stays silent (it may be down). A newer snapshot restarts the transfers of older ones (the
  follower would need the newer one anyway); the file being sent stays open, so the compaction that deletes it
  does not cut a transfer off. Files are opened, read and closed by the one task that streams them, so a
  transfer abandoned mid-read never closes a file under a read.
- The follower's `SnapshotReceiver` appends the chunks its core accepted (same leader, term and snapshot, in
  order) to a `.part` file, acknowledges each, and once the last one is in and the file's own checksum holds,
  offers it to the core (`snapshot_received`). The core decides; the driver installs it in the next Ready.

Restarts: a follower that restarts has lost its `.part`; it answers the next chunk with offset 0 and the leader
starts again. The leader's core notices the restart too (a new incarnation in the follower's responses), probes
the follower's log again and asks for the snapshot anew, which sends it from offset 0 at once. A leader that
restarts (or loses its term) forgets its transfers; the new leader asks for a snapshot again and sends it from
offset 0, which makes the follower drop its partial file.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import trio

from mom.errors import StorageError
from mom.log.snapshot import IncomingSnapshot, SnapshotReader
from mom.replication._raftlog import Snapshot, SnapshotMeta
from mom.replication.messages import InstallSnapshot, Message, SnapshotChunkAck

log = logging.getLogger("mom.replication")
T = TypeVar("T")

RESEND_TICKS = 4
"""Ticks without a new acknowledgement before the chunks not acknowledged are sent again ..."""
MAX_RESEND_TICKS = 40
"""... doubling after each silent resend, up to this (2 s at the router's 50 ms ticks)."""

Send = Callable[[Sequence[Message]], None]


class RunBlocking(Protocol):
    """Runs a call that may block on the disk (in a worker thread, or inline where determinism matters)."""

    def __call__(self, fn: Callable[[], T], /) -> Awaitable[T]: ...


@dataclass(eq=False)
class _Outgoing:
    peer: str
    term: int
    snapshot: SnapshotMeta
    reader: SnapshotReader | None = None
    size: int = -1
    """The file's size, once it is open."""
    acked: int = 0
    sent: int = 0
    idle_ticks: int = 0
    resend_after: int = RESEND_TICKS

    @property
    def complete(self) -> bool:
        return self.acked == self.size


class SnapshotSender:
    """The leader's side: at most one transfer per follower, streamed by `run` until the follower has it."""

    def __init__(
        self,
        group: str,
        node_id: str,
        *,
        open_snapshot: Callable[[int], SnapshotReader],
        send: Send,
        wanted: Callable[[str, int], bool],
        run_blocking: RunBlocking,
        chunk_bytes: int,
        window: int,
    ) -> None:
        self._group = group
        self._node_id = node_id
        self._open = open_snapshot
        self._send = send
        self._wanted = wanted
        """(peer, term): does the core still want a snapshot sent to `peer` by this leadership?"""
        self._run_blocking = run_blocking
        self._chunk = chunk_bytes
        self._window = window
        self._transfers: dict[str, _Outgoing] = {}
        self._retired: list[SnapshotReader] = []
        """Readers of abandoned transfers, closed by `run` (which may be reading one of them right now)."""
        self._work = trio.Event()
        self.chunks_sent = 0

    def transfers(self) -> dict[str, tuple[int, int, int]]:
        """peer -> (snapshot index, bytes acknowledged, size or -1): what is being streamed now."""
        return {peer: (t.snapshot.index, t.acked, t.size) for peer, t in self._transfers.items()}

    def start(self, peer: str, snapshot: SnapshotMeta, term: int) -> None:
        """The core wants `snapshot` sent to `peer`: start, go on with, or restart the transfer to it."""
        current = self._transfers.get(peer)
        if current is not None and (current.snapshot, current.term) == (snapshot, term):
            # Asked again: the follower went silent, or restarted (a new incarnation: its partial file is gone),
            # or lost the whole file before installing it. Start over at once rather than after a backed-off
            # resend; a follower that still holds a prefix answers the first chunk with how far it got, so
            # that costs a window of chunks, not the transfer.
            current.acked = current.sent = 0
            current.idle_ticks = 0
            current.resend_after = RESEND_TICKS
        else:
            self._replace(peer, _Outgoing(peer, term, snapshot))
        self._work.set()

    def newer_snapshot(self, snapshot: SnapshotMeta) -> None:
        """This leader took `snapshot`: transfers of older ones start again with it."""
        for peer, current in list(self._transfers.items()):
            if current.snapshot.index < snapshot.index:
                self._replace(peer, _Outgoing(peer, current.term, snapshot))
                self._work.set()

    def acknowledged(self, ack: SnapshotChunkAck) -> None:
        current = self._transfers.get(ack.sender)
        if current is None or (current.term, current.snapshot.index) != (ack.term, ack.index):
            return
        if ack.offset < current.acked or ack.offset > current.sent:
            current.sent = ack.offset  # the follower starts over (it restarted), or asks for a resend
        current.acked = ack.offset
        current.idle_ticks = 0
        current.resend_after = RESEND_TICKS
        self._work.set()

    def tick(self) -> None:
        """Forget transfers the core no longer wants; resend what stays unacknowledged too long."""
        if not self._transfers:
            return
        for peer, current in list(self._transfers.items()):
            if not self._wanted(peer, current.term):
                self._replace(peer, None)
                continue
            current.idle_ticks += 1
            if current.idle_ticks >= current.resend_after and current.sent > current.acked:
                current.sent = current.acked
                current.idle_ticks = 0
                current.resend_after = min(2 * current.resend_after, MAX_RESEND_TICKS)
                self._work.set()

    def _replace(self, peer: str, transfer: _Outgoing | None) -> None:
        current = self._transfers.pop(peer, None)
        if current is not None and current.reader is not None:
            self._retired.append(current.reader)
            current.reader = None
            self._work.set()
        if transfer is not None:
            self._transfers[peer] = transfer

    def _close_retired(self) -> None:
        for reader in self._retired:
            reader.close()
        self._retired.clear()

    async def run(self) -> None:
        """Send chunks while some transfer has room in its window; sleep otherwise."""
        try:
            while True:
                await self._work.wait()
                self._work = trio.Event()
                self._close_retired()
                while (due := self._due()) is not None:
                    await self._send_chunk(due)
                    self._close_retired()
        finally:
            for peer in list(self._transfers):
                self._replace(peer, None)
            self._close_retired()

    def _due(self) -> _Outgoing | None:
        for current in self._transfers.values():
            if current.reader is None:
                return current
            room = current.sent < current.size and current.sent - current.acked < self._window * self._chunk
            if room and self._wanted(current.peer, current.term):
                return current
        return None

    async def _send_chunk(self, current: _Outgoing) -> None:
        if current.reader is None:
            try:
                reader = await self._run_blocking(lambda: self._open(current.snapshot.index))
            except StorageError as exc:
                log.warning("group %s: cannot stream snapshot %d: %s", self._group, current.snapshot.index, exc)
                self._transfers.pop(current.peer, None)  # the core asks again after its stall timeout
                return
            if self._transfers.get(current.peer) is not current:
                self._retired.append(reader)
                return
            current.reader, current.size = reader, reader.size
            return
        reader, offset = current.reader, current.sent
        current.sent = min(offset + self._chunk, current.size)
        data = await self._run_blocking(lambda: reader.read(offset, self._chunk))
        if self._transfers.get(current.peer) is not current or current.reader is not reader:
            return  # restarted or abandoned while reading
        done = offset + len(data) >= current.size
        meta = current.snapshot
        self._send(
            [
                InstallSnapshot(
                    self._group,
                    current.term,
                    self._node_id,
                    current.peer,
                    meta.index,
                    meta.term,
                    offset,
                    data,
                    done,
                    meta.membership,
                )
            ]
        )
        self.chunks_sent += 1


@dataclass(eq=False)
class _Incoming:
    leader: str
    term: int
    snapshot: SnapshotMeta
    file: IncomingSnapshot


class SnapshotReceiver:
    """The follower's side: one transfer at a time, into a `.part` file, offered to the core when whole."""

    def __init__(
        self,
        group: str,
        node_id: str,
        *,
        receive_snapshot: Callable[[int], IncomingSnapshot],
        load_snapshot: Callable[[int], Snapshot],
        send: Send,
        run_blocking: RunBlocking,
    ) -> None:
        self._group = group
        self._node_id = node_id
        self._receive = receive_snapshot
        self._load = load_snapshot
        self._send = send
        self._run_blocking = run_blocking
        self._current: _Incoming | None = None
        self._complete: _Incoming | None = None
        """Received whole and accepted by the core: installed with the next Ready."""

    async def store(self, chunk: InstallSnapshot, offer: Callable[[str, SnapshotMeta], bool]) -> None:
        """Store a chunk the core accepted and acknowledge it; offer the snapshot to the core (`offer`, its
        `snapshot_received`) once the last chunk is in and the file checks out."""
        snapshot = SnapshotMeta(chunk.index, chunk.snapshot_term, chunk.membership)
        current = self._current
        same = current is not None and (current.leader, current.term, current.snapshot) == (
            chunk.sender,
            chunk.term,
            snapshot,
        )
        if current is not None and same:
            if chunk.offset != current.file.received:
                self._ack(chunk, current.file.received)
                return  # a gap (a chunk lost) or a chunk sent again: say where we are
        elif chunk.offset == 0:  # a new transfer (another leader, term or snapshot) replaces any other
            if current is not None:
                await self._run_blocking(current.file.abort)
            file = await self._run_blocking(lambda: self._receive(chunk.index))
            current = self._current = _Incoming(chunk.sender, chunk.term, snapshot, file)
        else:
            self._ack(chunk, 0)
            return  # a transfer this node does not know (it restarted since): start over
        incoming = current
        await self._run_blocking(lambda: incoming.file.write(chunk.data))
        if not chunk.done:
            self._ack(chunk, incoming.file.received)
            return
        self._current = None
        problem = incoming.file.finish()
        if problem is not None:
            log.warning(
                "group %s: the snapshot %d from %s is unusable (%s)", self._group, chunk.index, chunk.sender, problem
            )
            await self._run_blocking(incoming.file.abort)
            self._ack(chunk, 0)
            return
        self._ack(chunk, incoming.file.received)
        if offer(chunk.sender, snapshot):
            if self._complete is not None:
                await self._run_blocking(self._complete.file.abort)
            self._complete = incoming
        else:
            await self._run_blocking(incoming.file.abort)

    async def install(self, snapshot: SnapshotMeta) -> Snapshot:
        """The received snapshot the core installs now: durable in place, then read back for the state machine."""
        complete, self._complete = self._complete, None
        if complete is None or complete.snapshot != snapshot:
            raise StorageError(
                f"group {self._group}: snapshot {snapshot.index} is to be installed but was not received"
            )
        await self._run_blocking(complete.file.commit)
        return await self._run_blocking(lambda: self._load(snapshot.index))

    async def close(self) -> None:
        for pending in (self._current, self._complete):
            if pending is not None:
                await self._run_blocking(pending.file.abort)
        self._current = self._complete = None

    def _ack(self, chunk: InstallSnapshot, offset: int) -> None:
        self._send([SnapshotChunkAck(self._group, chunk.term, self._node_id, chunk.sender, chunk.index, offset)])
