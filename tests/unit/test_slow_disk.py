"""A disk that stalls for seconds on one group must not stall the node's other groups.

Three nodes in one process over the memory transport, in real time (the stall is a real `time.sleep` in the
storage layer, `[storage] fault_delay_ms`): node n1 leads group "fast" and follows group "slow". n1's copy of
"slow" is stopped while the leader compacts its log, then restarted with a disk on which every write takes
seconds, so that it must load its log, install the leader's snapshot (a snapshot save and a log reset, both stalled) and
restore the state machine from it. Meanwhile the event loop must never stall (a watchdog task measures how late
its wake-ups are) and "fast" must keep its leader and term.

The three nodes share one event loop here, so a stall would freeze all of them alike and could hide from the
election check; the watchdog is what sees it (the nemesis suite checks leadership across real processes).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import trio

from mom.broker.commands import DeclareQueue, NewMessage, Publish, QueueAttrs, QueueRef
from mom.config import Address, StorageSection
from mom.log.disk import Disk
from mom.replication.group import RaftGroup
from mom.replication.router import Router
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport

NODES = ("n1", "n2", "n3")
STALL_MS = 2000
ELECTION_TICKS = 20
"""An election timeout of 1 to 2 s (50 ms ticks): shorter than the stall, long enough to ignore a loaded machine."""


def clock_ms() -> int:
    return 1_700_000_000_000 + int(trio.current_time() * 1000)


@dataclass
class Node:
    node_id: str
    router: Router
    nursery: trio.Nursery
    data_dir: Path
    disk: Disk = field(default_factory=Disk)
    groups: dict[str, RaftGroup] = field(default_factory=dict)
    scopes: dict[str, trio.CancelScope] = field(default_factory=dict)

    async def start_group(self, group_id: str, preferred: str, *, stall_ms: int = 0) -> None:
        storage = StorageSection(
            fsync="always", segment_bytes=4096, snapshot_bytes=4096, fault_delay_ms=stall_ms, fault_delay_groups="slow"
        )
        group = RaftGroup(
            group_id,
            self.node_id,
            NODES,
            self.data_dir / self.node_id / group_id,
            storage,
            self.router.send,
            disk=self.disk,
            dedup_window_ms=60_000,
            clock_ms=clock_ms,
            rng=random.Random(f"{self.node_id}/{group_id}"),
            preferred_leader=preferred,
            election_ticks=ELECTION_TICKS,
        )
        scope = trio.CancelScope()

        async def run(*, task_status: trio.TaskStatus[None]) -> None:
            with scope:
                try:
                    await group.run(task_status=task_status)
                finally:
                    self.router.remove_group(group_id)

        await self.nursery.start(run)
        self.router.add_group(group)
        self.groups[group_id], self.scopes[group_id] = group, scope


@dataclass
class Watchdog:
    """Wakes up every 50 ms and remembers the latest it ever woke: how long the event loop was blocked."""

    worst_s: float = 0.0

    async def run(self) -> None:
        while True:
            due = trio.current_time() + 0.05
            await trio.sleep_until(due)
            self.worst_s = max(self.worst_s, trio.current_time() - due)


async def wait_until(what: str, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
    with trio.move_on_after(timeout_s):
        while True:
            if predicate():
                return
            await trio.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def leader(nodes: dict[str, Node], group_id: str) -> RaftGroup | None:
    leaders = [n.groups[group_id] for n in nodes.values() if group_id in n.groups and n.groups[group_id].is_leader]
    return max(leaders, key=lambda g: g.term) if leaders else None


async def test_a_stalling_disk_on_one_group_leaves_the_other_groups_leaders_alone(tmp_path: Path) -> None:
    hub = MemoryHub(random.Random(0))
    nodes: dict[str, Node] = {}
    async with trio.open_nursery() as nursery:
        for node_id in NODES:
            peers = {peer: Address("127.0.0.1", 0) for peer in NODES if peer != node_id}
            transport = MemoryTransport(TransportSettings(node_id, Address("127.0.0.1", 0), peers), hub)
            router = Router(node_id, transport)
            await nursery.start(transport.run)
            await nursery.start(router.run)
            nodes[node_id] = Node(node_id, router, nursery, tmp_path)
        for node in nodes.values():
            await node.start_group("fast", preferred="n1")
            await node.start_group("slow", preferred="n2", stall_ms=0)

        def led_by(group_id: str, node_id: str) -> Callable[[], bool]:
            def check() -> bool:
                found = leader(nodes, group_id)
                return found is not None and found.node_id == node_id

            return check

        await wait_until("n1 leads fast", led_by("fast", "n1"))
        await wait_until("n2 leads slow", led_by("slow", "n2"))
        slow_leader = nodes["n2"].groups["slow"]
        await slow_leader.submit(DeclareQueue("orders", QueueAttrs(), "me"))

        nodes["n1"].scopes["slow"].cancel()  # n1's copy of "slow" misses what comes next
        await wait_until("n1's slow group stopped", lambda: nodes["n1"].groups["slow"].core is None)
        body = b'"' + b"x" * 600 + b'"'
        for number in range(20):
            await slow_leader.submit(Publish(QueueRef("orders"), [NewMessage(f"m{number}", body)]))
        await wait_until(
            "the leader of slow compacted its log", lambda: slow_leader.storage_stats()["snapshot_index"] > 5
        )

        fast = nodes["n1"].groups["fast"]
        term = fast.term
        watchdog = Watchdog()
        nursery.start_soon(watchdog.run)
        await nodes["n1"].start_group("slow", preferred="n2", stall_ms=STALL_MS)
        restarted = nodes["n1"].groups["slow"]
        snapshot_index = slow_leader.storage_stats()["snapshot_index"]
        await wait_until(
            "n1's slow group installed the leader's snapshot",
            lambda: restarted.applied_index >= snapshot_index,
            timeout_s=60,
        )
        await trio.sleep(1.0)
        assert watchdog.worst_s < STALL_MS / 1000 / 2, f"the event loop was blocked for {watchdog.worst_s:.1f} s"
        assert [n.groups["fast"].term for n in nodes.values()] == [term] * 3, "fast held an election"
        assert fast.is_leader
        nursery.cancel_scope.cancel()
