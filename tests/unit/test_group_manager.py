"""The manager starts and stops exactly the groups the catalog places here, one catalog change at a time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from mom.broker.commands import DeleteQueue
from mom.replication.manager import GroupManager
from tests.unit.test_housekeeping import declare, one_node, until


async def test_declares_and_deletes_start_and_stop_one_group_each_without_recomputing_the_others(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    placements = 0
    placement = GroupManager.placement

    def counted(self: GroupManager, ref: Any) -> Any:
        nonlocal placements
        placements += 1
        return placement(self, ref)

    monkeypatch.setattr(GroupManager, "placement", counted)
    async with one_node(tmp_path) as service:
        manager = service._manager
        before = placements
        for i in range(20):
            await declare(service, f"q{i}")
        assert len(manager.groups()) == 21
        assert placements - before < 20 * 10, "a declare places its own destination, not every one again"
        gid = next(g.group_id for g in manager.groups() if g.group_id.startswith("q.q3@"))
        await service.submit(service.locate_meta(), DeleteQueue("q3"))  # type: ignore[arg-type]
        await until(lambda: manager.group(gid) is None, "q3's group stopped")
        await trio.sleep(1)  # the new declare gets another creation time, so another group id
        await declare(service, "q3")
        again = [g.group_id for g in manager.groups() if g.group_id.startswith("q.q3@")]
        assert len(again) == 1 and again[0] != gid
        assert len(manager.groups()) == 21
