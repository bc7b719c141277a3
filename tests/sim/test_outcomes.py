"""What a submitter is told when its write's fate is not known: `OutcomeUnknown`, never a plain `Unavailable`.

`Unavailable` promises that nothing was written; once a write has been proposed that promise cannot be kept
(a majority may already hold it, and the next leader then commits it), so a leadership lost after proposing
and a node stopping with writes in flight both answer `OutcomeUnknown`.

A receive is a write too (it leases messages): one whose answer is lost may have taken its lease, and the
messages it leased are then invisible, not lost, until its visibility timeout ends.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from mom.broker.commands import Ack, NewMessage, Publish, QueueRef, Receive, Received
from mom.errors import OutcomeUnknown, Unavailable
from tests.sim.cluster_harness import Cluster, QueueClient, clock_ms
from tests.sim.test_cluster_sim import run_sim


def publish(body: bytes) -> Publish:
    return Publish(QueueRef("orders"), [NewMessage("m-" + body.decode(), body)])


def test_a_leader_cut_off_after_proposing_answers_outcome_unknown(tmp_path: Path) -> None:
    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            for node_id in cluster.ids:
                await cluster.start(node_id)
            client = QueueClient(cluster, "q1", "orders", random.Random(seed))
            await client.declare()
            leader = cluster.leader("q1")
            assert leader is not None
            others = [n for n in cluster.ids if n != leader.node_id]
            cluster.hub.partition([leader.node_id], others)
            with pytest.raises(OutcomeUnknown) as caught:
                await leader.submit(publish(b"cut-off"))  # answered once it steps down
            assert isinstance(caught.value, Unavailable), "a subclass: `except Unavailable` still catches it"
            for node_id in cluster.ids:
                cluster.crash(node_id)

    run_sim(scenario, 3)


def test_a_node_stopping_with_writes_in_flight_answers_outcome_unknown(tmp_path: Path) -> None:
    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            for node_id in cluster.ids:
                await cluster.start(node_id)
            client = QueueClient(cluster, "q1", "orders", random.Random(seed))
            await client.declare()
            leader = cluster.leader("q1")
            assert leader is not None
            others = [n for n in cluster.ids if n != leader.node_id]
            cluster.hub.partition([leader.node_id], others)  # the write cannot commit: it stays in flight
            errors: list[BaseException] = []

            async def write() -> None:
                try:
                    await leader.submit(publish(b"in-flight"))
                except Unavailable as exc:
                    errors.append(exc)

            nursery.start_soon(write)
            await trio.sleep(0.01)
            cluster.crash(leader.node_id)
            await trio.sleep(0.1)
            assert len(errors) == 1 and isinstance(errors[0], OutcomeUnknown), errors
            for node_id in cluster.ids:
                cluster.crash(node_id)

    run_sim(scenario, 4)


def test_a_receive_whose_answer_is_lost_hides_its_messages_until_the_visibility_timeout(tmp_path: Path) -> None:
    """The kill -9 integration test once reported the queue's 100 oldest messages lost: its drain (receive until a
    receive comes back empty) ran right after a receive whose answer it never got. This is that schedule, on the
    real groups: the leased messages are in flight, not gone, and the next consumer gets them after the timeout.
    """

    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            for node_id in cluster.ids:
                await cluster.start(node_id)
            client = QueueClient(cluster, "q1", "orders", random.Random(seed))
            await client.declare()
            await client.publish(30, pause_s=0)
            home = cluster.preferred["q1"]
            await cluster.wait_until(f"{home} leads", lambda: getattr(cluster.leader("q1"), "node_id", 0) == home, 10)
            leader = cluster.leader("q1")
            assert leader is not None
            others = [n for n in cluster.ids if n != home]
            lease_ms = 2000
            errors: list[BaseException] = []

            async def receive() -> None:
                try:
                    await leader.submit(Receive(QueueRef("orders"), 10, lease_ms))
                except Unavailable as exc:
                    errors.append(exc)

            # The leader's AppendEntries reaches the followers (10 ms), their acknowledgements (20 ms) do not: the
            # entry is on a majority, the leader cannot know it, steps down (CheckQuorum) and answers "unknown".
            cluster.hub.set_faults(delay=(0.01, 0.01))
            nursery.start_soon(receive)
            await trio.sleep(0.015)
            cluster.hub.partition([home], others)
            await cluster.wait_until("the receive is answered", lambda: bool(errors), 5)
            assert isinstance(errors[0], OutcomeUnknown), errors

            def next_leader_applied_the_lease() -> bool:
                new = cluster.leader("q1")
                return (
                    new is not None
                    and new.node_id != home
                    and new.broker.queue_info("orders", clock_ms()).in_flight == 10
                )

            await cluster.wait_until("the next leader commits the lost receive", next_leader_applied_the_lease, 5)
            cluster.hub.heal()
            cluster.hub.set_faults()

            async def drain() -> set[str]:
                """Receive and ack until a receive comes back empty (the integration test's old drain)."""
                got: set[str] = set()
                while True:
                    result = await cluster.submit("q1", Receive(QueueRef("orders"), 10, lease_ms))
                    assert isinstance(result, Received)
                    if not result.messages:
                        return got
                    got |= {m.id for m in result.messages}
                    await cluster.submit("q1", Ack(QueueRef("orders"), [m.receipt for m in result.messages]))

            leased = {f"orders-{n}" for n in range(10)}  # a receive takes the oldest first
            drained_at = trio.current_time()
            first = await drain()
            assert trio.current_time() - drained_at < lease_ms / 1000, "the drain must end within the lease"
            assert first == client.acknowledged - leased, "the drain stops at the lease: the oldest 10 look lost"
            await trio.sleep(lease_ms / 1000)
            assert await drain() == leased, "after the visibility timeout the leased messages are delivered"
            for node_id in cluster.ids:
                cluster.crash(node_id)

    run_sim(scenario, 5)
