"""The data directory's recorded first use, which tells a replica with nothing of a group whether its disk may have
held the group before (wiped since) or never did (`mom.replication._disk_age`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from mom.broker.commands import QueueRef
from mom.errors import StorageError
from mom.log.fs import OS_FILES
from mom.replication._disk_age import BORN_FILE, born_ms, held_before
from tests.unit.test_housekeeping import EPOCH_MS, declare, one_node


def test_the_first_use_is_recorded_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert born_ms(OS_FILES, data, 5_000) == 5_000
    assert born_ms(OS_FILES, data, 9_000) == 5_000, "a restart keeps the first use"
    assert sorted(p.name for p in data.iterdir()) == [BORN_FILE]


def test_a_directory_holding_groups_but_no_record_is_as_old_as_any_group(tmp_path: Path) -> None:
    (tmp_path / "groups" / "q.orders@1000").mkdir(parents=True)  # written by a version that kept no record
    assert born_ms(OS_FILES, tmp_path, 9_000) == 0
    assert not held_before(0, 1000)


def test_a_damaged_record_is_refused_and_says_what_it_should_hold(tmp_path: Path) -> None:
    (tmp_path / BORN_FILE).write_bytes(b"\x00\x17")
    with pytest.raises(StorageError, match="epoch milliseconds"):
        born_ms(OS_FILES, tmp_path, 9_000)


def test_a_group_declared_up_to_the_first_use_may_have_been_held_by_an_earlier_disk() -> None:
    assert held_before(born=2_000, declared_ms=1_000) and held_before(born=2_000, declared_ms=2_000)
    assert not held_before(born=2_000, declared_ms=2_001)


async def test_a_node_tells_its_groups_whether_its_disk_is_younger_than_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    with trio.fail_after(120):
        async with one_node(tmp_path) as service:
            await declare(service, "q")
            manager = service._manager
            assert born_ms(OS_FILES, tmp_path, 0) == EPOCH_MS, "recorded at the node's start"
            group = manager.group(manager.placement(QueueRef("q")).group_id)
            assert group is not None and group.core is not None
            assert group.core._held_before is False, "declared after the disk's first use: never held before"
            assert manager.meta.core is not None and manager.meta.core._held_before is None, "no declaration"
