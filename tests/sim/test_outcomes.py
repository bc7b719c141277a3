"""What a submitter is told when its write's fate is not known: `OutcomeUnknown`, never a plain `Unavailable`.

`Unavailable` promises that nothing was written; once a write has been proposed that promise cannot be kept
(a majority may already hold it, and the next leader then commits it), so a leadership lost after proposing
and a node stopping with writes in flight both answer `OutcomeUnknown`.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import trio

from mom.broker.commands import NewMessage, Publish, QueueRef
from mom.errors import OutcomeUnknown, Unavailable
from tests.sim.cluster_harness import Cluster, QueueClient
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
