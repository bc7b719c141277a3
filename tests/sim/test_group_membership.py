"""The membership API of `RaftGroup` (what the cluster level codes against), with real groups, real storage
and routers over the memory transport, in virtual time: add a node started empty as a learner, promote it once
caught up (from a snapshot), remove a voter and then the leader, with writes before and after.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from mom.broker.commands import DeclareQueue, NewMessage, Publish, QueueAttrs, QueueRef
from mom.config import Address
from mom.errors import MembershipChangeRefused, Unavailable
from mom.log.disk import Disk
from mom.replication.group import RaftGroup
from mom.replication.membership import Membership
from mom.replication.raft import NotLeader
from mom.replication.router import Router
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport
from tests.sim.cluster_harness import REPLICATION, STORAGE, TICK_S, clock_ms
from tests.sim.memfs import MemoryFileSystem
from tests.sim.test_cluster_sim import run_sim

IDS = ["n1", "n2", "n3", "n4"]
INITIAL = ["n1", "n2", "n3"]


@dataclass
class Node:
    group: RaftGroup
    scope: trio.CancelScope
    told: list[tuple[Membership, bool]]


class Nodes:
    def __init__(self, nursery: trio.Nursery, data_dir: Path, seed: int) -> None:
        self.nursery = nursery
        self.data_dir = data_dir
        self.rng = random.Random(seed)
        self.hub = MemoryHub(random.Random(seed))
        self.disks = {node_id: MemoryFileSystem() for node_id in IDS}
        self.nodes: dict[str, Node] = {}

    async def start(self, node_id: str, *, joining: bool = False) -> Node:
        return await self.nursery.start(self._run, node_id, joining)  # type: ignore[no-any-return]

    async def _run(self, node_id: str, joining: bool, *, task_status: trio.TaskStatus[Node]) -> None:
        rng = random.Random(self.rng.getrandbits(64))
        peers = {peer: Address("127.0.0.1", 0) for peer in IDS if peer != node_id}
        transport = MemoryTransport(TransportSettings(node_id, Address("127.0.0.1", 0), peers), self.hub)
        router = Router(node_id, transport, tick_interval_s=TICK_S, peers=IDS, incarnation=rng.getrandbits(62) + 1)
        group = RaftGroup(
            "q0",
            node_id,
            INITIAL,
            self.data_dir / node_id,
            STORAGE,
            router.send,
            disk=Disk.inline(self.disks[node_id]),
            replication=REPLICATION,
            dedup_window_ms=3_600_000,
            clock_ms=clock_ms,
            rng=random.Random(rng.getrandbits(64)),
            preferred_leader="n1",
            joining_as_learner=joining,
        )
        told: list[tuple[Membership, bool]] = []
        group.add_membership_listener(lambda membership, removed: told.append((membership, removed)))
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(transport.run)
                    await nursery.start(router.run)
                    await nursery.start(group.run)
                    router.add_group(group)
                    node = self.nodes[node_id] = Node(group, scope, told)
                    task_status.started(node)
        finally:
            self.disks[node_id].crash(self.rng)  # what was not synced is lost (a stop syncs nothing either)

    def stop(self, node_id: str) -> None:
        self.hub.crash(node_id)
        self.nodes.pop(node_id).scope.cancel()

    async def power_loss(self) -> None:
        """Every node loses power at once, then all start again from what their disks synced."""
        running = list(self.nodes)
        for node_id in running:
            self.stop(node_id)
        await trio.sleep(TICK_S * 10)
        for node_id in running:
            await self.start(node_id, joining=node_id not in INITIAL)

    async def leader(self) -> RaftGroup:
        with trio.fail_after(60):
            while True:
                leaders = [n.group for n in self.nodes.values() if n.group.is_leader]
                if leaders:
                    leader = max(leaders, key=lambda g: g.term)
                    if (
                        leader.commit_index
                        and leader.core
                        and leader.core.log.term_at(leader.commit_index) == leader.term
                    ):
                        return leader
                await trio.sleep(TICK_S)

    async def change(self, kind: str, node: str) -> RaftGroup:
        """Through whoever leads, retrying refusals (a learner not caught up yet) and lost leaderships."""
        with trio.fail_after(120):
            while True:
                leader = await self.leader()
                try:
                    await getattr(leader, kind)(node)
                    return leader
                except (MembershipChangeRefused, Unavailable):  # NotLeader, OutcomeUnknown too
                    await trio.sleep(TICK_S * 4)

    async def write(self, name: str) -> None:
        with trio.fail_after(60):
            while True:
                leader = await self.leader()
                try:
                    await leader.submit(DeclareQueue(name, QueueAttrs(), "me"))
                    await leader.submit(
                        Publish(QueueRef(name), [NewMessage(f"{name}-{i}", b'"x"' * 200) for i in range(20)])
                    )
                    return
                except Unavailable:
                    await trio.sleep(TICK_S)


async def until(what: str, predicate: Callable[[], bool], timeout_s: float = 60) -> None:
    with trio.move_on_after(timeout_s):
        while True:
            if predicate():
                return
            await trio.sleep(TICK_S)
    raise AssertionError(f"{what}: not within {timeout_s} virtual seconds")


async def has_queue(node: Node, name: str) -> None:
    await until(f"{name} on a node", lambda: name in {q.name for q in node.group.broker.list_queues(clock_ms())})


def test_add_promote_remove_a_voter_then_the_leader(tmp_path: Path) -> None:
    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            nodes = Nodes(nursery, tmp_path, seed)
            for node_id in INITIAL:
                await nodes.start(node_id)
            for i in range(6):  # past snapshot_bytes: the new node needs a snapshot
                await nodes.write(f"before{i}")
            leader = await nodes.leader()
            with pytest.raises(MembershipChangeRefused, match="not a learner"):
                await leader.promote("n4")
            follower = next(n.group for n in nodes.nodes.values() if not n.group.is_leader)
            with pytest.raises(NotLeader):
                await follower.add_learner("n4")

            n4 = await nodes.start("n4", joining=True)
            leader = await nodes.change("add_learner", "n4")
            await leader.add_learner("n4")  # idempotent
            assert leader.membership == Membership(tuple(INITIAL), ("n4",))
            await has_queue(n4, "before5")
            assert n4.group.snapshots_installed >= 1
            assert n4.group.membership == Membership(tuple(INITIAL), ("n4",))
            assert n4.group.core is not None and not n4.group.core.voting
            leader = await nodes.change("promote", "n4")
            assert leader.membership == Membership(("n1", "n2", "n3", "n4"))

            victim = next(n for n in INITIAL if not nodes.nodes[n].group.is_leader)
            leader = await nodes.change("remove_member", victim)
            assert victim not in leader.membership
            removed = nodes.nodes[victim]
            await until("the removed node knows", lambda: removed.group.removed)
            assert removed.told and removed.told[-1][1], "the removed node's listener heard it"
            nodes.stop(victim)
            await nodes.write("after-replace")

            old = await nodes.leader()
            await old.remove_member(old.node_id)
            await until("the removed leader steps down", lambda: not old.is_leader)
            assert old.removed
            new = await nodes.leader()
            assert new.node_id != old.node_id and len(new.membership.voters) == 2
            nodes.stop(old.node_id)
            await nodes.write("after-leader-removed")
            for node in nodes.nodes.values():
                await has_queue(node, "after-leader-removed")
            nursery.cancel_scope.cancel()

    run_sim(scenario, 1)


@pytest.mark.parametrize("seed", range(8))
def test_changes_survive_a_power_loss_at_any_point(tmp_path: Path, seed: int) -> None:
    """3 -> 4 -> 3 (replace a voter) while every node loses power at a random moment, on a disk that keeps only
    what was synced: the changes all complete, and every write acknowledged before is on every member."""

    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            nodes = Nodes(nursery, tmp_path / str(seed), seed)
            for node_id in INITIAL:
                await nodes.start(node_id)
            await nodes.write("before")

            cut = trio.Event()

            async def cut_power() -> None:
                await trio.sleep(nodes.rng.uniform(0, 0.5))  # the three changes take about 0.5 virtual seconds
                await nodes.power_loss()
                cut.set()

            nursery.start_soon(cut_power)
            await nodes.start("n4", joining=True)
            await nodes.change("add_learner", "n4")
            await nodes.change("promote", "n4")
            await nodes.change("remove_member", "n1")
            await cut.wait()
            await nodes.write("after")
            await until("n1 knows it was removed", lambda: "n1" not in nodes.nodes or nodes.nodes["n1"].group.removed)
            leader = await nodes.leader()
            assert leader.membership == Membership(("n2", "n3", "n4"))
            for node_id in ("n2", "n3", "n4"):
                await until(
                    f"{node_id} applied", lambda n=node_id: queue_names(nodes.nodes.get(n)) >= {"before", "after"}
                )
            nursery.cancel_scope.cancel()

    run_sim(scenario, seed)


def queue_names(node: Node | None) -> set[str]:
    return {q.name for q in node.group.broker.list_queues(clock_ms())} if node is not None else set()
