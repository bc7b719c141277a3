"""A node that comes back after the metadata group compacted its log past it gets the catalog as a snapshot; it
must then run the groups of the destinations declared while it was away, though it never applied their declares
one by one (it used to start only those declared after the snapshot, leaving the others one replica short)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Cluster

pytestmark = pytest.mark.transport

QUEUES = 32
PADDING = "-" + "x" * 150
"""Long names make big declares: a few fill the 4 KiB between two snapshots of the metadata group."""
SMALL_SNAPSHOTS = """
[storage]
snapshot_bytes = 4096
"""


def test_a_node_that_got_the_catalog_as_a_snapshot_runs_the_groups_declared_while_it_was_away(
    tmp_path: Path,
) -> None:
    cluster = Cluster(tmp_path / "cluster", settings=SMALL_SNAPSHOTS).start()
    try:
        cluster.nodes["mom3"].kill()
        admin = cluster.api("mom1")
        names = [f"while-away-{i:02d}{PADDING}" for i in range(QUEUES)]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda name: admin.retrying("PUT", f"/v1/queues/{name}").status_code, names))
        assert answers == [201] * QUEUES
        print(f"{QUEUES} queues declared in {time.monotonic() - started:.1f} s")
        # Each node snapshots (and compacts) on its own once it has applied enough: wait for both that are up, so
        # that whichever leads has compacted the declares away and mom3 can only catch up from a snapshot.
        for survivor in ("mom1", "mom2"):
            assert _eventually(partial(_logged, cluster.nodes[survivor].log_path, "group meta: snapshot at")), (
                f"{survivor} never snapshotted the metadata group"
            )
        cluster.nodes["mom3"].start()
        log = cluster.nodes["mom3"].log_path
        assert _eventually(lambda: "group meta installed the leader's snapshot" in log.read_text(errors="replace")), (
            "the declares were compacted away: mom3 had to get the catalog as a snapshot"
        )

        def running_on_mom3() -> set[str]:
            view = cluster.cluster_view("mom3")["destinations"]
            return {d["name"] for d in view if d["name"] in names and d["commit_index"] is not None}

        assert _eventually(lambda: running_on_mom3() == set(names)), (
            f"mom3 runs no group for {sorted(set(names) - running_on_mom3())}"
        )
    finally:
        cluster.kill_all()


def _logged(log: Path, line: str) -> bool:
    return line in log.read_text(errors="replace")


def _eventually(condition: object, timeout_s: float = 60.0) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (httpx.HTTPError, KeyError):
            pass
        time.sleep(0.3)
    return False
