"""What every `base.Transport` must do, as reusable checks (in the spirit of trio's `check_two_way_stream`).

Each check takes a `Network`: how to build a transport from its settings. The checks run real nodes on
127.0.0.1 with ports reserved up front (peers must know each other's addresses before anyone starts), stop
and restart nodes at the same address, and look only at the public interface.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from mom.config import Address
from mom.transports.base import Transport, TransportSettings

NODES = ("n1", "n2", "n3")
PROMPTLY_S = 5.0
MiB = 1024 * 1024


def free_port() -> int:
    """A port that was free a moment ago; a node binds it right after, so the race is only theoretical."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Network:
    """Builds transports of one kind for one test; every node's address is fixed at creation."""

    make: Callable[[TransportSettings], Transport]
    addresses: dict[str, Address] = field(default_factory=dict)

    def settings(
        self, node: str, *, cluster_id: str = "mom", send_queue_frames: int = 256, send_queue_bytes: int = 64 * MiB
    ) -> TransportSettings:
        for name in (*NODES, node):
            self.addresses.setdefault(name, Address("127.0.0.1", free_port()))
        peers = {peer: self.addresses[peer] for peer in NODES if peer != node}
        return TransportSettings(
            node_id=node,
            listen=self.addresses[node],
            peers=peers,
            cluster_id=cluster_id,
            send_queue_frames=send_queue_frames,
            send_queue_bytes=send_queue_bytes,
        )

    @asynccontextmanager
    async def running(self, settings: TransportSettings) -> AsyncIterator[Transport]:
        """Run a transport for the duration of the block; leaving it cancels `run()` and waits for it."""
        transport = self.make(settings)
        async with trio.open_nursery() as nursery:
            bound = await nursery.start(transport.run)
            assert bound == settings.listen, "run() reports the address it listens on"
            yield transport
            nursery.cancel_scope.cancel()

    @asynccontextmanager
    async def cluster(self, nodes: tuple[str, ...] = NODES) -> AsyncIterator[dict[str, Transport]]:
        settings = {node: self.settings(node) for node in nodes}
        async with trio.open_nursery() as nursery:
            transports = {node: self.make(settings[node]) for node in nodes}
            for transport in transports.values():
                await nursery.start(transport.run)
            yield transports
            nursery.cancel_scope.cancel()


async def _wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll `predicate`: transports publish their state through `status()`, not through events."""
    with trio.move_on_after(PROMPTLY_S):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting until {what}")


async def _send(transport: Transport, peer: str, frame: bytes) -> None:
    """Send, waiting while the queue is full: the checks that count frames must not lose any to back-pressure."""
    while not transport.send(peer, frame):  # noqa: ASYNC110 (no event says that a queue has room)
        await trio.sleep(0.001)


async def _receive(transport: Transport, count: int) -> list[tuple[str, bytes]]:
    received: list[tuple[str, bytes]] = []
    with trio.fail_after(20):
        async for item in transport.incoming:
            received.append(item)
            if len(received) == count:
                break
    return received


def _frame(number: int, size: int) -> bytes:
    return random.Random(number).randbytes(size)


async def check_frames_arrive_intact_and_in_order(network: Network) -> None:
    sizes = [0, 1, 4 * MiB, 2 * MiB + 3, *(random.Random(5).randrange(64 * 1024) for _ in range(996))]
    frames = [_frame(number, size) for number, size in enumerate(sizes)]
    async with network.cluster() as nodes:
        received: list[tuple[str, bytes]] = []

        async def receive() -> None:
            received.extend(await _receive(nodes["n2"], len(frames)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive)
            for frame in frames:
                await _send(nodes["n1"], "n2", frame)
    assert [sender for sender, _ in received] == ["n1"] * len(frames)
    assert [frame for _, frame in received] == frames


async def check_all_pairs_both_ways(network: Network) -> None:
    async with network.cluster() as nodes:
        for sender, transport in nodes.items():
            for receiver in nodes:
                if receiver != sender:
                    for number in range(20):
                        await _send(transport, receiver, f"{sender}>{receiver}#{number}".encode())
        for receiver, transport in nodes.items():
            received = await _receive(transport, 40)
            for sender in nodes:
                if sender != receiver:
                    from_sender = [frame for peer, frame in received if peer == sender]
                    assert from_sender == [f"{sender}>{receiver}#{n}".encode() for n in range(20)]


async def check_send_to_an_unknown_peer_is_refused(network: Network) -> None:
    async with network.cluster(("n1",)) as nodes:
        assert nodes["n1"].send("nobody", b"x") is False


async def check_status_is_truthful(network: Network) -> None:
    async with network.cluster() as nodes:
        assert nodes["n2"].status("n1").last_seen is None
        await _wait_for(
            lambda: all(nodes[a].status(b).connected for a in NODES for b in NODES if a != b),
            "every link is connected",
        )
        before = trio.current_time()
        await _send(nodes["n1"], "n2", b"ping")
        assert await _receive(nodes["n2"], 1) == [("n1", b"ping")]
        last_seen = nodes["n2"].status("n1").last_seen
        assert last_seen is not None and before <= last_seen <= trio.current_time()
        assert nodes["n2"].status("n3").last_seen is None
        assert nodes["n1"].status("n2").dropped_frames == 0


async def check_a_stopped_peer_costs_bounded_memory_and_comes_back(network: Network) -> None:
    """The send queue is bounded in bytes: a stopped peer costs the sender at most that, whatever it sends."""
    capacity, frame_size, burst = 1 * MiB, 64 * 1024, 200
    sender_settings = network.settings("n1", send_queue_bytes=capacity)
    async with network.running(sender_settings) as sender:
        async with network.running(network.settings("n2")) as peer:
            await _wait_for(lambda: sender.status("n2").connected, "n1 is connected to n2")
            await _send(sender, "n2", b"before")
            assert await _receive(peer, 1) == [("n1", b"before")]
        await _wait_for(lambda: not sender.status("n2").connected, "n1 sees that n2 stopped")

        started = time.monotonic()
        for number in range(burst):
            sender.send("n2", _frame(number, frame_size))
            assert sender.status("n2").queued_bytes <= capacity
        assert time.monotonic() - started < 1.0, "send() never waits for a peer"
        slack = 5
        """Frames a transport may hold outside its queue (ZeroMQ's pipe of 4, one being written to a dead link)."""
        await _wait_for(
            lambda: sender.status("n2").dropped_frames >= burst - capacity // frame_size - slack,
            "frames beyond the queue's capacity in bytes are dropped and counted",
        )

        async with network.running(network.settings("n2")) as restarted:
            arrived = False
            with trio.fail_after(PROMPTLY_S):
                while not arrived:
                    sender.send("n2", b"after")
                    with trio.move_on_after(0.2):
                        async for _, frame in restarted.incoming:
                            if frame == b"after":
                                arrived = True
                                break
            await _wait_for(lambda: sender.status("n2").connected, "n1 is connected to the restarted n2")


async def check_a_frame_larger_than_the_queue_still_goes_alone(network: Network) -> None:
    """A frame above the byte budget is taken when the queue is empty (a big Raft message is never stuck), and
    while it waits, nothing else fits beside it."""
    big = _frame(7, 3 * MiB)
    async with (
        network.running(network.settings("n2")) as receiver,
        network.running(network.settings("n1", send_queue_bytes=256 * 1024)) as sender,
    ):
        await _wait_for(lambda: sender.status("n2").connected, "n1 is connected to n2")
        await _send(sender, "n2", big)
        assert await _receive(receiver, 1) == [("n1", big)]
        await _send(sender, "n2", b"next")
        assert await _receive(receiver, 1) == [("n1", b"next")]


async def check_cancellation_is_prompt_and_leaves_no_threads(network: Network) -> None:
    before = set(threading.enumerate())
    async with network.cluster() as nodes:
        await _wait_for(lambda: nodes["n1"].status("n2").connected, "n1 is connected to n2")
        for peer in ("n2", "n3"):
            await _send(nodes["n1"], peer, b"x" * MiB)
        started = trio.current_time()
    assert trio.current_time() - started < PROMPTLY_S
    left = [
        thread.name
        for thread in set(threading.enumerate()) - before
        if not thread.name.startswith("Trio thread")  # trio's own idle worker cache, not ours
    ]
    assert left == [], "threads outlived run()"


async def check_another_cluster_is_refused(network: Network) -> None:
    intruder_settings = network.settings("n1", cluster_id="other")
    async with network.running(network.settings("n2")) as member, network.running(intruder_settings) as intruder:
        for _ in range(20):
            intruder.send("n2", b"intrusion")
            await trio.sleep(0.05)
        assert not intruder.status("n2").connected
        with trio.move_on_after(0.2):
            frame = await member.incoming.receive()
            raise AssertionError(f"a node of another cluster delivered {frame!r}")


async def check_an_unknown_node_is_refused(network: Network) -> None:
    stranger_settings = network.settings("stranger")
    async with network.running(network.settings("n2")) as member, network.running(stranger_settings) as stranger:
        for _ in range(20):
            stranger.send("n2", b"who am I")
            await trio.sleep(0.05)
        assert not stranger.status("n2").connected
        with trio.move_on_after(0.2):
            frame = await member.incoming.receive()
            raise AssertionError(f"a node unknown to the cluster delivered {frame!r}")


CHECKS: list[Callable[[Network], Awaitable[None]]] = [
    check_frames_arrive_intact_and_in_order,
    check_all_pairs_both_ways,
    check_send_to_an_unknown_peer_is_refused,
    check_status_is_truthful,
    check_a_stopped_peer_costs_bounded_memory_and_comes_back,
    check_a_frame_larger_than_the_queue_still_goes_alone,
    check_cancellation_is_prompt_and_leaves_no_threads,
    check_another_cluster_is_refused,
    check_an_unknown_node_is_refused,
]
