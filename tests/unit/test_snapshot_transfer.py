"""Snapshots streamed in chunks from the leader's snapshot file to a follower's, over real snapshot stores.

The sender and the receiver are wired back to back through a `Wire` that can lose or corrupt chunks; the leader
and follower may restart (a new sender, a new receiver over the same directories) and the leader may take a
newer snapshot in the middle of a transfer.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import trio
import trio.testing

from mom.config import StorageSection
from mom.log.snapshot import IncomingSnapshot
from mom.replication._snapshot_transfer import RESEND_TICKS, SnapshotReceiver, SnapshotSender
from mom.replication._storage import RaftStorage
from mom.replication.messages import InstallSnapshot, Message, SnapshotChunkAck
from mom.replication.raft import Snapshot, SnapshotMeta

CHUNK = 4096
WINDOW = 3
T = TypeVar("T")


async def inline(fn: Callable[[], T]) -> T:
    return fn()


def storage(directory: Path) -> RaftStorage:
    store = RaftStorage(directory, StorageSection(fsync="never"))
    store.load()
    return store


def state(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@dataclass
class Wire:
    """Chunks towards the follower, acknowledgements towards the leader; `mangle` may drop (None) or alter."""

    to_follower: list[InstallSnapshot] = field(default_factory=list)
    to_leader: list[SnapshotChunkAck] = field(default_factory=list)
    mangle: Callable[[InstallSnapshot], InstallSnapshot | None] = lambda chunk: chunk
    chunks: list[InstallSnapshot] = field(default_factory=list)
    """Every chunk that left the leader."""

    def send(self, messages: Sequence[Message]) -> None:
        for message in messages:
            if isinstance(message, InstallSnapshot):
                self.chunks.append(message)
                mangled = self.mangle(message)
                if mangled is not None:
                    self.to_follower.append(mangled)
            else:
                assert isinstance(message, SnapshotChunkAck)
                self.to_leader.append(message)


@dataclass
class Pair:
    """A leader's sender and a follower's receiver for group `g`, and what the follower was offered."""

    wire: Wire
    leader_dir: Path
    follower_dir: Path
    sender: SnapshotSender
    receiver: SnapshotReceiver
    offered: list[SnapshotMeta] = field(default_factory=list)
    max_unacknowledged: int = 0

    def offer(self, leader: str, snapshot: SnapshotMeta) -> bool:
        assert leader == "n1"
        self.offered.append(snapshot)
        return True

    async def exchange(self, *, until: Callable[[], bool] = lambda: False, rounds: int = 1000) -> None:
        """Let the sender fill its window, deliver the chunks, return the acknowledgements; until quiet."""
        for _ in range(rounds):
            await trio.testing.wait_all_tasks_blocked()
            for peer, (_, acked, _) in self.sender.transfers().items():
                sent = max((c.offset + len(c.data) for c in self.wire.chunks if c.receiver == peer), default=0)
                self.max_unacknowledged = max(self.max_unacknowledged, sent - acked)
            if until() or not (self.wire.to_follower or self.wire.to_leader):
                return
            chunks, self.wire.to_follower = self.wire.to_follower, []
            for chunk in chunks:
                await self.receiver.store(chunk, self.offer)
            acks, self.wire.to_leader = self.wire.to_leader, []
            for ack in acks:
                self.sender.acknowledged(ack)
        raise AssertionError("the transfer did not settle")

    def restart_follower(self) -> None:
        self.receiver = receiver(storage(self.follower_dir), self.wire)


def sender(
    store: RaftStorage, wire: Wire, wanted: Callable[[str, int], bool] = lambda peer, term: True
) -> SnapshotSender:
    return SnapshotSender("g", "n1", open_snapshot=store.open_snapshot, send=wire.send, wanted=wanted,
                          run_blocking=inline, chunk_bytes=CHUNK, window=WINDOW)  # fmt: skip


def receiver(store: RaftStorage, wire: Wire) -> SnapshotReceiver:
    return SnapshotReceiver("g", "n2", receive_snapshot=store.receive_snapshot, load_snapshot=store.load_snapshot,
                            send=wire.send, run_blocking=inline)  # fmt: skip


@asynccontextmanager
async def pair(tmp_path: Path, snapshot: Snapshot) -> AsyncIterator[Pair]:
    leader_store = storage(tmp_path / "leader")
    leader_store.save_snapshot(snapshot)
    wire = Wire()
    follower_dir = tmp_path / "follower"
    both = Pair(
        wire, tmp_path / "leader", follower_dir, sender(leader_store, wire), receiver(storage(follower_dir), wire)
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(both.sender.run)
        yield both
        nursery.cancel_scope.cancel()


async def installed(both: Pair, snapshot: Snapshot) -> None:
    """The follower was offered `snapshot` exactly once, installs it intact, and finds it again after a restart."""
    assert both.offered == [snapshot.meta]
    assert await both.receiver.install(snapshot.meta) == snapshot
    assert storage(both.follower_dir).load().snapshot == snapshot
    assert list(both.follower_dir.glob("snapshots/*.part")) == []


async def test_a_snapshot_streams_in_chunks_within_the_window_and_installs_intact(tmp_path: Path) -> None:
    snapshot = Snapshot(40, 2, state(100_000))
    async with pair(tmp_path, snapshot) as both:
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange()
        await installed(both, snapshot)
        size = both.sender.transfers()["n2"][2]
        assert both.sender.transfers()["n2"] == (40, size, size)
        assert both.sender.chunks_sent == math.ceil(size / CHUNK) > 20, "one chunk per 4 KiB, each sent once"
        assert both.max_unacknowledged <= WINDOW * CHUNK
        assert all(chunk.term == 3 and chunk.done == (chunk.offset + CHUNK >= size) for chunk in both.wire.chunks)


async def test_a_lost_chunk_is_sent_again_after_the_resend_timeout(tmp_path: Path) -> None:
    snapshot = Snapshot(40, 2, state(50_000))
    lost: list[int] = []

    def lose_the_fifth_once(chunk: InstallSnapshot) -> InstallSnapshot | None:
        if chunk.offset == 4 * CHUNK and not lost:
            lost.append(chunk.offset)
            return None
        return chunk

    async with pair(tmp_path, snapshot) as both:
        both.wire.mangle = lose_the_fifth_once
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange()
        assert lost and not both.offered, "the chunks after the gap are refused: the follower waits for the fifth"
        for _ in range(RESEND_TICKS):
            both.sender.tick()
        await both.exchange()
        await installed(both, snapshot)


async def test_a_follower_that_restarts_mid_transfer_gets_the_snapshot_from_the_start(tmp_path: Path) -> None:
    snapshot = Snapshot(40, 2, state(100_000))
    async with pair(tmp_path, snapshot) as both:
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 10 * CHUNK)
        assert list(both.follower_dir.glob("snapshots/*.part")), "a partial file is being written"
        both.wire.to_follower.clear()  # lost with the crash
        both.restart_follower()
        assert list(both.follower_dir.glob("snapshots/*.part")) == [], "a restart removes the partial file"
        for _ in range(RESEND_TICKS):
            both.sender.tick()  # nothing is acknowledged any more: the leader resends, the follower says "from 0"
        await both.exchange()
        await installed(both, snapshot)
        assert [c.offset for c in both.wire.chunks].count(0) == 2, "the transfer started over once"


async def test_a_follower_the_core_asks_for_again_gets_the_snapshot_from_the_start_at_once(tmp_path: Path) -> None:
    """The leader's core sees a new incarnation of the follower (it restarted mid-transfer) and asks for the same
    snapshot again: the transfer starts over from offset 0 then, without waiting for a (backed-off) resend."""
    snapshot = Snapshot(40, 2, state(100_000))
    async with pair(tmp_path, snapshot) as both:
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 10 * CHUNK)
        both.wire.to_follower.clear()  # lost with the crash: the window is full of chunks nobody acknowledges
        both.restart_follower()
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange()
        await installed(both, snapshot)
        assert [c.offset for c in both.wire.chunks].count(0) == 2, "the transfer started over once"


async def test_a_follower_asked_for_again_that_still_holds_a_prefix_goes_on_from_there(tmp_path: Path) -> None:
    """The core asks again after a silence, but the follower kept its partial file: it says how far it got, and
    the leader goes on from there (costing a window of chunks, not the transfer)."""
    snapshot = Snapshot(40, 2, state(100_000))
    async with pair(tmp_path, snapshot) as both:
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 10 * CHUNK)
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange()
        await installed(both, snapshot)
        size = both.sender.transfers()["n2"][2]
        assert len(both.wire.chunks) <= math.ceil(size / CHUNK) + WINDOW


async def test_a_new_leader_sends_from_the_start_and_the_follower_drops_its_partial_file(tmp_path: Path) -> None:
    snapshot = Snapshot(40, 2, state(100_000))
    async with pair(tmp_path, snapshot) as both:
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 10 * CHUNK)
        both.wire.to_follower.clear()  # the leader crashed; it comes back (or another node leads) in term 4
        both.wire.to_leader.clear()
        both.sender = sender(storage(both.leader_dir), both.wire)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(both.sender.run)
            both.sender.start("n2", snapshot.meta, term=4)
            await both.exchange()
            nursery.cancel_scope.cancel()
        await installed(both, snapshot)
        assert {c.term for c in both.wire.chunks} == {3, 4}


async def test_a_newer_snapshot_replaces_the_one_being_sent(tmp_path: Path) -> None:
    older, newer = Snapshot(40, 2, state(100_000, seed=1)), Snapshot(60, 2, state(120_000, seed=2))
    async with pair(tmp_path, older) as both:
        both.sender.start("n2", older.meta, term=3)
        await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 10 * CHUNK)
        storage(both.leader_dir).save_snapshot(newer)
        both.sender.newer_snapshot(newer.meta)
        await both.exchange()
        await installed(both, newer)
        assert both.sender.transfers()["n2"][0] == 60


async def test_a_snapshot_deleted_by_compaction_mid_transfer_is_still_sent_whole(tmp_path: Path) -> None:
    """The leader keeps the file it sends open: two newer snapshots delete it, and the transfer goes on."""
    snapshot = Snapshot(40, 2, state(100_000))
    async with pair(tmp_path, snapshot) as both:
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 10 * CHUNK)
        leader = storage(both.leader_dir)
        leader.save_snapshot(Snapshot(50, 2, b"fifty"))
        leader.save_snapshot(Snapshot(60, 2, b"sixty"))
        assert not (both.leader_dir / "snapshots" / f"snapshot-{40:020d}.snap").exists()
        await both.exchange()
        await installed(both, snapshot)


async def test_a_corrupted_transfer_is_refused_and_started_again(tmp_path: Path) -> None:
    snapshot = Snapshot(40, 2, state(50_000))
    flipped: list[int] = []

    def flip_a_bit_once(chunk: InstallSnapshot) -> InstallSnapshot:
        if chunk.offset == 3 * CHUNK and not flipped:
            flipped.append(chunk.offset)
            data = bytearray(chunk.data)
            data[100] ^= 0x01
            return InstallSnapshot(**{**{f: getattr(chunk, f) for f in chunk.__struct_fields__}, "data": bytes(data)})
        return chunk

    async with pair(tmp_path, snapshot) as both:
        both.wire.mangle = flip_a_bit_once
        both.sender.start("n2", snapshot.meta, term=3)
        await both.exchange()
        assert flipped
        await installed(both, snapshot)
        assert [c.offset for c in both.wire.chunks].count(0) == 2, "refused at the end, then sent again"


async def test_a_transfer_the_core_no_longer_wants_stops(tmp_path: Path) -> None:
    snapshot = Snapshot(40, 2, state(100_000))
    wanted = {"n2": True}
    async with pair(tmp_path, snapshot) as both:
        both.sender = sender(storage(both.leader_dir), both.wire, wanted=lambda peer, term: wanted[peer])
        async with trio.open_nursery() as nursery:
            nursery.start_soon(both.sender.run)
            both.sender.start("n2", snapshot.meta, term=3)
            await both.exchange(until=lambda: both.sender.transfers()["n2"][1] >= 5 * CHUNK)
            wanted["n2"] = False  # the follower answered (SnapshotResponse), or leadership moved
            both.sender.tick()
            assert both.sender.transfers() == {}
            sent = len(both.wire.chunks)
            await both.exchange()
            assert len(both.wire.chunks) == sent
            nursery.cancel_scope.cancel()


async def test_a_transfer_replaced_while_its_chunk_is_read_never_closes_the_file_under_the_read(
    tmp_path: Path,
) -> None:
    """Reads run in a worker thread; a newer snapshot (or a follower that answered) must not close the file then."""
    reading, release = threading.Event(), threading.Event()

    class SlowReader:
        def __init__(self, index: int) -> None:
            self.index, self.size, self.closed = index, 10 * CHUNK, False

        def read(self, offset: int, size: int) -> bytes:
            reading.set()
            release.wait(5)
            assert not self.closed, "closed under a read"
            return b"x" * min(size, self.size - offset)

        def close(self) -> None:
            self.closed = True

    readers: list[SlowReader] = []

    def open_snapshot(index: int) -> SlowReader:
        readers.append(SlowReader(index))
        return readers[-1]

    async def in_thread(fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn)

    wire = Wire()
    streaming = SnapshotSender(
        "g",
        "n1",
        open_snapshot=open_snapshot,  # type: ignore[arg-type]
        send=wire.send,
        wanted=lambda peer, term: True,
        run_blocking=in_thread,
        chunk_bytes=CHUNK,
        window=WINDOW,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(streaming.run)
        streaming.start("n2", SnapshotMeta(40, 2), term=3)
        await trio.to_thread.run_sync(reading.wait, 5)
        streaming.newer_snapshot(SnapshotMeta(60, 2))
        await trio.testing.wait_all_tasks_blocked()
        assert not readers[0].closed
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        with trio.fail_after(5):
            while not readers[0].closed or not wire.chunks:  # noqa: ASYNC110 (worker threads, no event to wait on)
                await trio.sleep(0.01)
        assert len(readers) == 2 and {c.index for c in wire.chunks} == {60}, "the newer snapshot is streamed instead"
        nursery.cancel_scope.cancel()
    assert all(reader.closed for reader in readers)


async def test_chunks_sent_again_before_their_acknowledgements_came_back_do_not_restart_the_transfer(
    tmp_path: Path,
) -> None:
    snapshot = Snapshot(40, 2, state(50_000))
    async with pair(tmp_path, snapshot) as both:
        opened: list[int] = []
        store = storage(both.follower_dir)

        def receive_snapshot(index: int) -> IncomingSnapshot:
            opened.append(index)
            return store.receive_snapshot(index)

        both.receiver = SnapshotReceiver(
            "g",
            "n2",
            receive_snapshot=receive_snapshot,
            load_snapshot=store.load_snapshot,
            send=both.wire.send,
            run_blocking=inline,
        )
        both.sender.start("n2", snapshot.meta, term=3)
        await trio.testing.wait_all_tasks_blocked()
        first_window, both.wire.to_follower = both.wire.to_follower, []
        for chunk in first_window:
            await both.receiver.store(chunk, both.offer)
        late_acks, both.wire.to_leader = both.wire.to_leader, []  # slow to come back: the leader times out
        for _ in range(RESEND_TICKS):
            both.sender.tick()
        await trio.testing.wait_all_tasks_blocked()
        assert [c.offset for c in both.wire.to_follower] == [c.offset for c in first_window]
        both.wire.to_leader = late_acks
        await both.exchange()
        await installed(both, snapshot)
        assert opened == [40], "the resent first chunk did not restart the transfer"
