"""The memory hub's fault injection: what makes the cluster simulation adversarial and reproducible."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from mom.config import Address
from mom.errors import InvalidInput
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport

NODES = ("a", "b", "c")


def _settings(node: str) -> TransportSettings:
    peers = {peer: Address("127.0.0.1", 0) for peer in NODES if peer != node}
    return TransportSettings(node_id=node, listen=Address("127.0.0.1", 0), peers=peers)


@asynccontextmanager
async def _cluster(hub: MemoryHub) -> AsyncIterator[dict[str, MemoryTransport]]:
    nodes = {node: MemoryTransport(_settings(node), hub) for node in NODES}
    async with trio.open_nursery() as nursery:
        for transport in nodes.values():
            await nursery.start(transport.run)
        yield nodes
        nursery.cancel_scope.cancel()


def _drain(transport: MemoryTransport) -> list[tuple[str, bytes]]:
    received = []
    while True:
        try:
            received.append(transport.incoming.receive_nowait())
        except trio.WouldBlock:
            return received


async def test_partition_cuts_both_directions_until_healed(autojump_clock: trio.testing.MockClock) -> None:
    hub = MemoryHub(random.Random(1))
    async with _cluster(hub) as nodes:
        hub.partition({"a", "b"}, {"c"})
        for sender, receiver in [("a", "c"), ("c", "a"), ("a", "b")]:
            assert nodes[sender].send(receiver, b"cut?")
        await trio.sleep(1)
        assert _drain(nodes["c"]) == []
        assert _drain(nodes["a"]) == []
        assert _drain(nodes["b"]) == [("a", b"cut?")]
        assert not nodes["a"].status("c").connected
        assert nodes["a"].status("b").connected
        assert nodes["a"].status("c").dropped_frames == 0, "a partition is invisible to the sender's counters"

        hub.heal()
        assert nodes["a"].send("c", b"healed")
        await trio.sleep(1)
        assert _drain(nodes["c"]) == [("a", b"healed")]
        assert nodes["a"].status("c").connected


async def test_unnamed_nodes_join_the_first_side(autojump_clock: trio.testing.MockClock) -> None:
    hub = MemoryHub(random.Random(1))
    async with _cluster(hub) as nodes:
        hub.partition({"a"}, {"b"})
        nodes["c"].send("a", b"to a")
        nodes["c"].send("b", b"to b")
        await trio.sleep(1)
        assert _drain(nodes["a"]) == [("c", b"to a")]
        assert _drain(nodes["b"]) == []


async def test_loss_drops_some_frames_and_keeps_the_order_of_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub(random.Random(7))
    hub.set_faults(loss=0.5)
    async with _cluster(hub) as nodes:
        for number in range(200):
            nodes["a"].send("b", b"%d" % number)
            await trio.sleep(0.001)
        await trio.sleep(1)
        received = [int(frame) for _, frame in _drain(nodes["b"])]
    assert 50 < len(received) < 150
    assert received == sorted(received)


async def test_duplicates_arrive_right_after_their_original(autojump_clock: trio.testing.MockClock) -> None:
    hub = MemoryHub(random.Random(3))
    hub.set_faults(duplicate=1.0)
    async with _cluster(hub) as nodes:
        for frame in (b"x", b"y", b"z"):
            nodes["a"].send("b", frame)
        await trio.sleep(1)
        assert [frame for _, frame in _drain(nodes["b"])] == [b"x", b"x", b"y", b"y", b"z", b"z"]


async def _arrival_times(seed: int) -> list[tuple[float, bytes]]:
    """Send 50 frames with random delays and return when, in trio time, each arrived."""
    hub = MemoryHub(random.Random(seed))
    hub.set_faults(delay=(0.01, 0.5))
    arrivals: list[tuple[float, bytes]] = []
    async with _cluster(hub) as nodes:
        start = trio.current_time()
        for number in range(50):
            nodes["a"].send("b", b"%d" % number)
        with trio.move_on_after(2):
            async for _, frame in nodes["b"].incoming:
                arrivals.append((round(trio.current_time() - start, 9), frame))
    return arrivals


async def test_delays_keep_per_sender_order_and_replay_from_the_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    first = await _arrival_times(seed=11)
    assert [frame for _, frame in first] == [b"%d" % number for number in range(50)]
    assert all(0.01 <= when <= 0.5 for when, _ in first)
    assert len({when for when, _ in first}) > 1, "the delays are random, not one constant"
    assert await _arrival_times(seed=11) == first
    assert await _arrival_times(seed=12) != first


async def test_a_crashed_node_neither_sends_nor_receives_until_it_runs_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub(random.Random(1))
    async with _cluster(hub) as nodes:
        hub.crash("c")
        nodes["a"].send("c", b"lost")
        nodes["c"].send("a", b"never sent")
        await trio.sleep(1)
        assert _drain(nodes["c"]) == []
        assert _drain(nodes["a"]) == []
        assert not nodes["a"].status("c").connected
        assert nodes["a"].status("c").dropped_frames == 1

        async with trio.open_nursery() as nursery:
            restarted = MemoryTransport(_settings("c"), hub)
            await nursery.start(restarted.run)
            nodes["a"].send("c", b"back")
            await trio.sleep(1)
            assert _drain(restarted) == [("a", b"back")]
            nursery.cancel_scope.cancel()


async def test_frames_to_a_node_that_is_not_running_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    hub = MemoryHub()
    sender = MemoryTransport(_settings("a"), hub)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        for _ in range(5):
            assert sender.send("b", b"into the void")
        await trio.sleep(1)
        assert sender.status("b").dropped_frames == 5
        assert not sender.status("b").connected
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "faults",
    [{"loss": -0.1}, {"duplicate": 1.5}, {"delay": (0.5, 0.1)}, {"delay": (-1.0, 0.0)}],
)
def test_impossible_faults_are_refused(faults: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        MemoryHub().set_faults(**faults)  # type: ignore[arg-type]
