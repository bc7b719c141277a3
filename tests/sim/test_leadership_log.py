"""What a person watching the nodes' logs sees of elections: one line per leadership change of a group, written by
the node that took the lead, naming the group, itself and the term."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
import trio

from mom.replication.group import RaftGroup
from tests.sim.cluster_harness import TICK_S, Cluster
from tests.sim.test_cluster_sim import run_sim

LEADS = re.compile(r"^group (\S+): (\S+) leads \(term (\d+)\)$")


def test_each_leadership_change_is_one_line_by_the_new_leader(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mom.replication")
    seen: set[tuple[str, str, int]] = set()

    async def scenario(seed: int) -> None:
        async with trio.open_nursery() as nursery:
            cluster = Cluster(seed, tmp_path, nursery)
            for node_id in cluster.ids:
                await cluster.start(node_id)

            async def watch() -> None:
                while True:
                    for gid in cluster.group_ids:
                        leader = cluster.leader(gid)
                        if leader is not None:
                            seen.add((gid, leader.node_id, leader.term))
                    await trio.sleep(TICK_S / 5)

            nursery.start_soon(watch)

            def led_elsewhere(than: RaftGroup | None) -> bool:
                leader = cluster.leader("q1")
                return leader is not None and (than is None or leader.node_id != than.node_id)

            await cluster.wait_until("q1 has a leader", lambda: led_elsewhere(None), timeout_s=10)
            first = cluster.leader("q1")
            assert first is not None
            cluster.crash(first.node_id)
            await cluster.wait_until("another node leads q1", lambda: led_elsewhere(first), timeout_s=10)
            await cluster.start(first.node_id)
            await cluster.wait_until("q1's preferred leader is back", lambda: led_elsewhere(None), timeout_s=10)
            await trio.sleep(1.0)
            nursery.cancel_scope.cancel()

    run_sim(scenario, 3)
    logged = [m.groups() for r in caplog.records if (m := LEADS.match(r.getMessage()))]
    changes = [(gid, node_id, int(term)) for gid, node_id, term in logged]
    assert len({(gid, term) for gid, _, term in changes}) == len(changes), "one line per change, not per replica"
    assert seen <= set(changes), "every leader observed said so in its log"
    q1 = [(node_id, term) for gid, node_id, term in changes if gid == "q1"]
    assert len({node_id for node_id, _ in q1}) >= 2 and [t for _, t in q1] == sorted(t for _, t in q1)
