"""Routing in the service layer of five in-process nodes (memory transport, virtual time, real groups and storage).

Three of the five nodes replicate a queue; the other two must still know its leader: from the news a leader
sends once it serves the queue, after the first election and after a failover. A write refused by a leader that
hands over becomes `LeadershipMoved` naming the new leader (nothing was written), and a declare answers only
once the queue is served, wherever it is asked.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing

from mom.broker.commands import DeclareQueue, NewMessage, Publish, Published, QueueAttrs, QueueRef
from mom.config import Address, ClusterSection, NodeEntry, NodeSection, Settings, StorageSection
from mom.log.disk import Disk
from mom.replication.manager import GroupManager
from mom.replication.router import Router
from mom.service import BrokerService, Handle, LeadershipMoved
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport

EPOCH_MS = 1_700_000_000_000
NODES = [f"n{i}" for i in range(1, 6)]


def clock_ms() -> int:
    return EPOCH_MS + int(trio.current_time() * 1000)


@dataclass
class Node:
    service: BrokerService
    manager: GroupManager
    scope: trio.CancelScope


@dataclass
class Five:
    nodes: dict[str, Node]
    hub: MemoryHub

    def up(self) -> list[str]:
        return [n for n, node in self.nodes.items() if not node.scope.cancel_called]

    def crash(self, node_id: str) -> None:
        self.hub.crash(node_id)
        self.nodes[node_id].scope.cancel()


@asynccontextmanager
async def five_nodes(tmp_path: Path) -> AsyncIterator[Five]:
    hub = MemoryHub(random.Random(7))
    entries = [NodeEntry(n, f"127.0.0.1:{8000 + i}", f"127.0.0.1:{9000 + i}") for i, n in enumerate(NODES)]
    five = Five({}, hub)
    async with trio.open_nursery() as nursery:
        for node_id in NODES:
            settings = Settings(
                node=NodeSection(id=node_id, data_dir=str(tmp_path / node_id)),
                cluster=ClusterSection(transport="grpc", replication_factor=3, nodes=entries),
                storage=StorageSection(fsync="never"),
            )
            peers = {n: Address("127.0.0.1", 0) for n in NODES if n != node_id}
            five.nodes[node_id] = await nursery.start(_node, settings, hub, peers)
        yield five
        nursery.cancel_scope.cancel()


async def _node(
    settings: Settings, hub: MemoryHub, peers: dict[str, Address], *, task_status: trio.TaskStatus[Node]
) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            transport = MemoryTransport(TransportSettings(settings.node_id, Address("127.0.0.1", 0), peers), hub)
            await nursery.start(transport.run)
            router = Router(settings.node_id, transport)
            await nursery.start(router.run)
            manager = GroupManager(
                settings, router, disk=Disk.inline(), clock_ms=clock_ms, rng=random.Random(settings.node_id)
            )
            await nursery.start(manager.run)
            service = BrokerService(manager, clock_ms=clock_ms)
            await nursery.start(service.run)
            task_status.started(Node(service, manager, scope))


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    with trio.move_on_after(timeout_s):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)
    raise AssertionError(f"{what}: not within {timeout_s} virtual seconds")


def meta_handle(five: Five) -> tuple[str, Handle]:
    for node_id in five.up():
        meta = five.nodes[node_id].service.locate_meta()
        if isinstance(meta, Handle):
            return node_id, meta
    raise LookupError("no metadata leader")


async def declare(five: Five, name: str) -> str:
    """Declare through the metadata leader as the REST layer does; returns the node that answered."""
    await until(lambda: _has_meta_leader(five), "a metadata leader")
    node_id, meta = meta_handle(five)
    service = five.nodes[node_id].service
    await service.submit(meta, DeclareQueue(name, QueueAttrs(), "admin"))
    await service.wait_serving(QueueRef(name))
    return node_id


def _has_meta_leader(five: Five) -> bool:
    try:
        meta_handle(five)
    except LookupError:
        return False
    return True


def leader(five: Five, name: str) -> str | None:
    """The node whose service serves the queue (its ready leader), if any."""
    for node_id in five.up():
        if five.nodes[node_id].service.locate(QueueRef(name)).here is not None:
            return node_id
    return None


def known_leaders(five: Five, name: str) -> dict[str, str | None]:
    return {n: five.nodes[n].service.locate(QueueRef(name)).leader for n in five.up()}


async def test_every_node_learns_the_leader_of_a_queue_it_does_not_replicate(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with five_nodes(tmp_path) as five:
        answered_by = await declare(five, "orders")
        replicas = five.nodes["n1"].service.placement(QueueRef("orders")).replicas
        others = [n for n in NODES if n not in replicas]
        assert len(others) == 2
        first = leader(five, "orders")
        assert first is not None
        assert five.nodes[answered_by].service.whereabouts(QueueRef("orders"))[1] == first, "settled when answered"
        await until(lambda: set(known_leaders(five, "orders").values()) == {first}, "every node knows the leader")
        assert first == replicas[0], "a new queue's preferred replica stands first and wins"

        five.crash(first)
        await until(lambda: leader(five, "orders") not in (None, first), "a new leader")
        second = leader(five, "orders")
        await until(
            lambda: all(known_leaders(five, "orders")[n] == second for n in others),
            "the nodes outside the replica set follow the new leader",
            timeout_s=5.0,
        )


async def test_a_write_refused_during_a_hand_over_names_the_new_leader(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with five_nodes(tmp_path) as five:
        await declare(five, "handed")
        old = leader(five, "handed")
        assert old is not None
        here = five.nodes[old].service.locate(QueueRef("handed")).here
        assert here is not None
        group = five.nodes[old].manager.group(here.group_id)
        assert group is not None
        new = next(n for n in group.voters if n != old)
        group.transfer_leadership(new)
        publish = Publish(QueueRef("handed"), [NewMessage(id="m1", body=b"1")])
        with pytest.raises(LeadershipMoved) as moved:
            await five.nodes[old].service.submit(here, publish, Published)
        assert moved.value.leader == new and moved.value.group_id == here.group_id
        await until(lambda: leader(five, "handed") == new, "the new leader serves")
        assert five.nodes[new].service.catalog.queue_info("handed", clock_ms()).name == "handed"


async def test_a_write_waits_out_a_hand_over_that_does_not_happen(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with five_nodes(tmp_path) as five:
        await declare(five, "kept")
        old = leader(five, "kept")
        assert old is not None
        here = five.nodes[old].service.locate(QueueRef("kept")).here
        assert here is not None
        group = five.nodes[old].manager.group(here.group_id)
        assert group is not None
        gone = next(n for n in group.voters if n != old)
        five.crash(gone)
        group.transfer_leadership(gone)  # it never catches up: the transfer is abandoned after an election timeout
        publish = Publish(QueueRef("kept"), [NewMessage(id="m1", body=b"1")])
        result = await five.nodes[old].service.submit(here, publish, Published)
        assert [m.id for m in result.messages] == ["m1"] and leader(five, "kept") == old
