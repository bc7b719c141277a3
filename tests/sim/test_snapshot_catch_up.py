"""A replica far behind the compacted log catches up from a chunked snapshot, in the whole-cluster simulation,
although the transfer is cut twice: the follower crashes in the middle of it, then the leader does.

Real groups, storage and routers over the memory transport in virtual time (`cluster_harness`); frames are
delayed so that a transfer takes many round trips and can be interrupted half way.
"""

from __future__ import annotations

import random
from pathlib import Path

import trio

from tests.sim.cluster_harness import Cluster, QueueClient, in_background
from tests.sim.test_cluster_sim import run_sim, wait_for_agreement

GROUP = "q0"


async def mid_transfer(cluster: Cluster, receiver: str) -> str:
    """Wait until some leader of GROUP is streaming a snapshot to `receiver`, half sent; returns the leader's id."""
    with trio.fail_after(30):
        while True:
            for node in cluster.live():
                transfer = node.groups[GROUP].snapshot_transfers().get(receiver)
                if transfer is not None and 0 < transfer[1] < transfer[2] // 2:
                    return node.node_id
            await trio.sleep(0.001)


def test_a_follower_catches_up_from_a_snapshot_although_the_follower_and_then_the_leader_crash_mid_transfer(
    tmp_path: Path,
) -> None:
    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            observing = await in_background(nursery, cluster.observe)
            for node_id in cluster.ids:
                await cluster.start(node_id)
            client = QueueClient(cluster, GROUP, "orders", random.Random(seed))
            await client.declare()
            home = cluster.preferred[GROUP]
            behind = next(node_id for node_id in cluster.ids if node_id != home)

            def led_by_home() -> bool:
                leader = cluster.leader(GROUP)
                return leader is not None and leader.node_id == home

            await cluster.wait_until(f"{home} leads {GROUP}", led_by_home, timeout_s=10)
            cluster.crash(behind)
            await client.publish(150, pause_s=0.0)  # several snapshots' worth: the log is compacted past `behind`
            cluster.hub.set_faults(delay=(0.002, 0.004))

            await cluster.start(behind)
            await mid_transfer(cluster, behind)
            cluster.crash(behind)
            await trio.sleep(0.5)
            await cluster.start(behind)
            leader = await mid_transfer(cluster, behind)
            cluster.crash(leader)
            await trio.sleep(0.5)
            await cluster.start(leader)

            await client.drain(timeout_s=30)
            await wait_for_agreement(cluster)
            restarted = cluster.nodes[behind]
            assert restarted is not None and restarted.groups[GROUP].snapshots_installed == 1
            observing.cancel()
            for node_id in cluster.ids:
                cluster.crash(node_id)
        assert cluster.snapshot_chunks_sent > 20, "the transfers (two cut, one whole) took many chunks"

    run_sim(scenario, 3)
