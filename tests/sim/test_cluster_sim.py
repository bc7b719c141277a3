"""The replicated broker under faults: three nodes, several groups, clients that publish, consume and retry.

Each seed is one trio run in virtual time (`MockClock`), with loss, duplication, delay, partitions, crashes and
restarts chosen from the seed; safety is checked while it runs, delivery and replica agreement once everything
is healed. MOM_SIM_SEEDS=N runs N seeds; a failure prints the command that replays its seed alone.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing

from mom.broker.commands import DeclareQueue, NewMessage, Publish, QueueAttrs, QueueRef
from mom.config import Address, StorageSection
from mom.log.disk import Disk
from mom.log.segment import HEADER
from mom.replication.group import RaftGroup
from mom.replication.router import Router
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport
from tests.sim.cluster_harness import Cluster, QueueClient, clock_ms, in_background, seed_trio_scheduler

SEEDS = int(os.environ.get("MOM_SIM_SEEDS", "30"))
CHAOS_S = 8.0
MESSAGES = 30
VIRTUAL_LIMIT_S = 120


class Livelock(trio.abc.Instrument):
    """Cancels `scope` when tasks keep running without virtual time ever moving on (two nodes bouncing messages
    at each other forever, say): under MockClock that would hang the run instead of failing it."""

    LIMIT = 2_000_000

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.at = -1.0
        self.steps = 0
        self.tripped_at: float | None = None

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        now = trio.current_time()
        if now != self.at:
            self.at, self.steps = now, 0
            return
        self.steps += 1
        if self.steps > self.LIMIT and self.tripped_at is None:
            self.tripped_at = now
            self.scope.cancel()


def run_sim(fn: Callable[[int], Awaitable[None]], seed: int) -> None:
    """Run `fn(seed)` as one deterministic trio run; on failure name the seed and how to replay it."""
    seed_trio_scheduler(seed)

    async def bounded() -> None:
        scope = trio.CancelScope()
        livelock = Livelock(scope)
        trio.lowlevel.add_instrument(livelock)
        try:
            with scope, trio.fail_after(VIRTUAL_LIMIT_S):
                await fn(seed)
        except trio.TooSlowError:
            raise AssertionError(f"the run did not finish within {VIRTUAL_LIMIT_S} virtual seconds") from None
        if livelock.tripped_at is not None:
            raise AssertionError(f"virtual time stopped at {livelock.tripped_at:.2f} s: tasks run in circles")

    try:
        trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))
    except BaseException as exc:
        replay = (
            f"seed {seed}; replay with: MOM_SIM_SEED={seed} .venv/bin/pytest tests/sim/test_cluster_sim.py -k replay"
        )
        print(replay)
        exc.add_note(replay)
        raise


async def faulty_run(seed: int, data_dir: Path) -> Cluster:
    async with trio.open_nursery() as nursery:
        cluster = Cluster(seed, data_dir, nursery)
        observing = await in_background(nursery, cluster.observe)
        for node_id in cluster.ids:
            await cluster.start(node_id)
        clients = [
            QueueClient(cluster, gid, f"queue-{gid}", random.Random(cluster.rng.getrandbits(64)))
            for gid in cluster.group_ids[1:]
        ]
        for client in clients:
            await client.declare()
        background = [await in_background(nursery, c.consume) for c in clients]
        background += [await in_background(nursery, c.housekeeping) for c in clients]
        async with trio.open_nursery() as load:
            load.start_soon(cluster.chaos, CHAOS_S)
            for client in clients:
                load.start_soon(partial(client.publish, MESSAGES, pause_s=CHAOS_S / MESSAGES))
        for scope in background[: len(clients)]:
            scope.cancel()
        for client in clients:
            await client.drain(timeout_s=60)
            assert client.received <= client.published, (
                f"delivered but never published: {client.received - client.published}"
            )
            assert len(client.acknowledged) == MESSAGES
        await wait_for_agreement(cluster)
        for scope in background:
            scope.cancel()
        observing.cancel()
        cluster.observer.check(cluster.nodes)
        for node_id in cluster.ids:
            cluster.crash(node_id)
    return cluster


async def wait_for_agreement(cluster: Cluster) -> None:
    """Every replica of every group applies the leader's whole log and holds the same broker state."""
    for gid in cluster.group_ids:

        def caught_up(gid: str = gid) -> bool:
            leader = cluster.leader(gid)
            return leader is not None and all(
                n.groups[gid].applied_index == leader.commit_index == leader.applied_index for n in cluster.live()
            )

        await cluster.wait_until(f"{gid} replicas caught up", caught_up, timeout_s=30)
        states = {n.node_id: n.groups[gid].broker.snapshot() for n in cluster.live()}
        assert len(set(states.values())) == 1, f"{gid}: replicas differ at the same applied index"


def test_random_faults(tmp_path: Path) -> None:
    started = time.monotonic()
    chunks = installs = 0
    for seed in range(SEEDS):

        async def one(seed: int, data_dir: Path = tmp_path / f"seed{seed}") -> None:
            nonlocal chunks, installs
            cluster = await faulty_run(seed, data_dir)
            chunks += cluster.snapshot_chunks_sent
            installs += cluster.snapshots_installed

        run_sim(one, seed)
    print(f"{SEEDS} seeds in {time.monotonic() - started:.1f}s: {installs} snapshots installed, {chunks} chunks sent")
    assert installs >= max(1, SEEDS // 10), "the faults must make replicas fall behind the compacted log"
    assert chunks >= 3 * installs, "snapshots travel in several chunks each"


def test_replay(tmp_path: Path) -> None:
    """Runs the one schedule named by MOM_SIM_SEED (0 when unset)."""
    seed = int(os.environ.get("MOM_SIM_SEED", "0"))

    async def one(seed: int) -> None:
        await faulty_run(seed, tmp_path)

    run_sim(one, seed)


def test_same_seed_same_run(tmp_path: Path) -> None:
    """Determinism is what makes a failing seed worth printing: two runs of a seed end in the same state."""
    digests = []
    for attempt in range(2):

        async def one(seed: int, data_dir: Path = tmp_path / f"run{attempt}") -> None:
            cluster = await faulty_run(seed, data_dir)
            history = cluster.observer.history
            digests.append((trio.current_time(), cluster.events, history))

        run_sim(one, 7)
    assert digests[0] == digests[1]


def test_leader_killed_mid_load_fails_over_and_returns(tmp_path: Path) -> None:
    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            observing = await in_background(nursery, cluster.observe)
            for node_id in cluster.ids:
                await cluster.start(node_id)
            gid = "q1"
            home = cluster.preferred[gid]
            client = QueueClient(cluster, gid, "orders", random.Random(seed))
            await client.declare()

            def led_by_home() -> bool:
                leader = cluster.leader(gid)
                return leader is not None and leader.node_id == home

            await cluster.wait_until(f"{home} leads {gid}", led_by_home, timeout_s=10)
            async with trio.open_nursery() as load:
                load.start_soon(client.publish, 60)
                await trio.sleep(1.0)
                acked_before = len(client.acknowledged)
                assert acked_before > 0
                cluster.crash(home)
                crashed_at = trio.current_time()

                def writes_resumed() -> bool:
                    leader = cluster.leader(gid)
                    return leader is not None and len(client.acknowledged) > acked_before + 2

                await cluster.wait_until("writes resume on a new leader", writes_resumed, timeout_s=3)
                failover_s = trio.current_time() - crashed_at
                new_leader = cluster.leader(gid)
                assert new_leader is not None and new_leader.node_id != home
                await trio.sleep(1.0)
                await cluster.start(home)
                await cluster.wait_until(f"{home} leads {gid} again", led_by_home, timeout_s=10)
            restarted = cluster.nodes[home]
            assert restarted is not None
            await client.drain(timeout_s=20)
            await wait_for_agreement(cluster)
            assert restarted.groups[gid].broker.queue_info("orders", 0).messages == 0
            assert failover_s < 3
            observing.cancel()
            for node_id in cluster.ids:
                cluster.crash(node_id)

    run_sim(scenario, 1)


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(5):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


async def test_a_durable_single_voter_group_recovers_its_state(tmp_path: Path) -> None:
    """fsync = "always": the flushes run in worker threads, and a restart replays the log into the broker."""
    hub = MemoryHub(random.Random(0))

    async def run_once(publish: int) -> tuple[int, bytes]:
        transport = MemoryTransport(TransportSettings("n1", Address("127.0.0.1", 0), {}), hub)
        router = Router("n1", transport)
        settings = StorageSection(fsync="always", segment_bytes=4096, snapshot_bytes=4096)
        group = RaftGroup(
            "q",
            "n1",
            ["n1"],
            tmp_path,
            settings,
            router.send,
            disk=Disk(),
            dedup_window_ms=60_000,
            clock_ms=clock_ms,
            rng=random.Random(1),
            election_ticks=2,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            await nursery.start(router.run)
            await nursery.start(group.run)
            router.add_group(group)
            await wait_for(lambda: group.is_leader)
            if publish:
                await group.submit(DeclareQueue("orders", QueueAttrs(), "me"))
            for number in range(publish):
                body = NewMessage(f"m{number}", b'"' + b"x" * 300 + b'"')
                await group.submit(Publish(QueueRef("orders"), [body]))
            # Everything in the log is committed (the new term's no-op included) and applied: a restart's commit
            # index starts at the snapshot, so "applied == committed" alone would hold before the replay.
            await wait_for(
                lambda: group.core is not None and group.applied_index == group.commit_index == group.core.last_index
            )
            nursery.cancel_scope.cancel()
        return group.applied_index, group.broker.snapshot()

    index, state = await run_once(publish=40)
    assert (tmp_path / "snapshots").exists(), "40 publishes of 300 bytes exceed snapshot_bytes"
    recovered_index, recovered_state = await run_once(publish=0)
    assert recovered_index > index and recovered_state == state


@pytest.mark.parametrize("loss", ["flipped-bit", "wiped"])
def test_a_replica_that_lost_its_data_never_helps_lose_acknowledged_writes(tmp_path: Path, loss: str) -> None:
    """Writes acknowledged by the leader and one follower only; that follower's log gets a flipped bit mid-way
    (or its disk is wiped) while it is down, and then the leader dies too. The third replica never had the
    writes: with the amnesiac's vote it would be elected and serve without them. Instead the group has no leader
    until the old one is back, and then every acknowledged write is there."""

    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            observing = await in_background(nursery, cluster.observe)
            for node_id in cluster.ids:
                await cluster.start(node_id)
            gid = "q1"
            client = QueueClient(cluster, gid, "orders", random.Random(seed))
            await client.declare()
            await cluster.wait_until("a leader of q1", lambda: cluster.leader(gid) is not None, timeout_s=10)
            leader = cluster.leader(gid)
            assert leader is not None
            follower, third = (n for n in cluster.ids if n != leader.node_id)
            cluster.crash(third)
            await client.publish(20, pause_s=0.01)
            cluster.crash(follower)
            await trio.sleep(0.5)
            log_dir = tmp_path / follower / gid / "log"
            disk = cluster.disks[follower]
            if loss == "wiped":
                disk.wipe(tmp_path / follower)
            else:
                [(name, _)] = disk.files(log_dir).items()
                disk.flip_bit(log_dir / name, HEADER.size)
            cluster.crash(leader.node_id)
            await cluster.start(follower)
            await cluster.start(third)
            await _no_leader_until_the_holder_returns(cluster, client, gid, leader.node_id)
            recovered = cluster.nodes[follower]
            assert recovered is not None and all(
                g.core is not None and g.core.voting for g in recovered.groups.values()
            )
            observing.cancel()
            for node_id in cluster.ids:
                cluster.crash(node_id)

    run_sim(scenario, 3)


def test_a_wiped_replica_and_one_that_never_started_the_group_do_not_make_an_empty_majority(tmp_path: Path) -> None:
    """Writes acknowledged by two replicas while the third has not started the group (its node down, or its
    catalog behind); then one of the two loses its disk (a replaced machine) and the other goes down. The wiped
    one and the one that never had the group both start with nothing of it: if both counted as empty they would
    make a majority, decide the group is new, and elect a leader without the acknowledged writes. Instead the
    group has no leader until the replica holding the writes is back, and then every write is there."""

    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            observing = await in_background(nursery, cluster.observe)
            gid = "q1"
            late = cluster.preferred[gid]  # the group's preferred leader starts last: the others elect one of theirs
            for node_id in cluster.ids:
                if node_id != late:
                    await cluster.start(node_id)
            client = QueueClient(cluster, gid, "orders", random.Random(seed))
            await client.declare()
            await cluster.wait_until("a leader of q1", lambda: cluster.leader(gid) is not None, timeout_s=10)
            leader = cluster.leader(gid)
            assert leader is not None
            await client.publish(20, pause_s=0.01)
            (follower,) = (n for n in cluster.ids if n not in (leader.node_id, late))
            cluster.crash(follower)
            cluster.crash(leader.node_id)
            await trio.sleep(0.5)
            cluster.disks[follower].wipe(tmp_path / follower)
            await cluster.start(follower)
            await cluster.start(late)
            await _no_leader_until_the_holder_returns(cluster, client, gid, leader.node_id)
            await cluster.wait_until(
                "every replica votes again",
                lambda: all(g.core is not None and g.core.voting for n in cluster.live() for g in n.groups.values()),
                timeout_s=30,
            )
            observing.cancel()
            for node_id in cluster.ids:
                cluster.crash(node_id)

    run_sim(scenario, 3)


async def _no_leader_until_the_holder_returns(cluster: Cluster, client: QueueClient, gid: str, holder: str) -> None:
    """For 5 s no leader is elected without `holder`, the one replica left with the acknowledged writes; then it
    starts again, and everything the client wrote is applied and agreed on."""
    with trio.move_on_after(5.0):
        while True:
            assert cluster.leader(gid) is None, "a leader without the acknowledged writes was elected"
            await trio.sleep(0.05)
    await cluster.start(holder)
    await client.drain(timeout_s=30)
    await wait_for_agreement(cluster)
