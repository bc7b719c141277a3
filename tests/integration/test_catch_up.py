"""A follower killed while its queue grows far past the snapshot threshold catches up after a restart, over the
transport in MOM_TRANSPORT: the leader streams it the snapshot in chunks (no frame near any transport limit),
and its replica then holds every message, which a receive after killing the leader proves.

The 200 MiB run is the issue's scenario (`slow`); the 30 MiB run does the same with small budgets (frames,
chunks, snapshots), so it needs many chunks and several snapshots, and runs by default.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Api, Cluster

pytestmark = pytest.mark.transport

MiB = 1024 * 1024
BODY_BYTES = 900 * 1024
BATCH = 8

SMALL_BUDGETS = """
[storage]
snapshot_bytes = 4194304
segment_bytes = 4194304

[replication]
max_frame_bytes = 262144
max_append_bytes = 131072
snapshot_chunk_bytes = 65536
"""


def wait_for(what: str, predicate: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, KeyError, StopIteration, ValueError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def destination(cluster: Cluster, node_id: str, name: str) -> dict[str, object]:
    return next(d for d in cluster.cluster_view(node_id)["destinations"] if d["name"] == name)


def publish(api: Api, total_bytes: int) -> list[str]:
    """Publish bodies of BODY_BYTES in batches until `total_bytes`; returns the acknowledged bodies' keys."""
    acknowledged: list[str] = []
    number = 0
    while number * BODY_BYTES < total_bytes:
        keys = [f"{number + i:06d}" for i in range(BATCH)]
        batch = {"messages": [{"body": key + "-" + "x" * (BODY_BYTES - 7), "dedup_id": key} for key in keys]}
        for _ in range(100):
            answer = api.http.post("/v1/queues/big/messages", json=batch)
            if answer.status_code not in (429, 503):
                break
            time.sleep(0.2)
        assert answer.status_code == 201, answer.text
        acknowledged += keys
        number += BATCH
    return acknowledged


def receive_all(api: Api) -> list[str]:
    keys: list[str] = []
    while messages := api.receive("big", max_messages=10, wait_s=1):
        keys += [str(m["body"])[:6] for m in messages]
        assert all(len(str(m["body"])) == BODY_BYTES for m in messages)
        api.ack("big", *[m["receipt"] for m in messages])
    return keys


def catch_up(tmp_path: Path, total_bytes: int, settings: str) -> None:
    cluster = Cluster(tmp_path / "cluster", settings=settings).start()
    try:
        admin = cluster.api("mom1")
        assert admin.retrying("PUT", "/v1/queues/big").status_code == 201
        replicas = destination(cluster, "mom1", "big")["replicas"]
        assert isinstance(replicas, list)
        leader, follower = replicas[0], replicas[1]  # leadership settles on the preferred replica, the first
        wait_for(f"{leader} leads big", lambda: destination(cluster, follower, "big")["leader"] == leader)
        cluster.nodes[follower].kill()

        started = time.monotonic()
        acknowledged = publish(cluster.api(leader), total_bytes)
        published_s = time.monotonic() - started
        leader_commit = destination(cluster, leader, "big")["commit_index"]
        assert isinstance(leader_commit, int)

        cluster.nodes[follower].start()
        wait_for(
            f"{follower} caught up with {leader}",
            lambda: (
                destination(cluster, follower, "big")["commit_index"]
                == destination(cluster, leader, "big")["commit_index"]
                >= leader_commit
            ),
            timeout_s=120,
        )
        caught_up_s = time.monotonic() - started - published_s
        # The follower's core takes the snapshot's index as committed as soon as it decides to install it; the
        # line is logged once the snapshot is durable and applied, a moment later on a loaded machine.
        wait_for(
            f"{follower} installed the leader's snapshot (the log was compacted, so it needs one)",
            lambda: "installed the leader's snapshot" in cluster.nodes[follower].log_path.read_text(errors="replace"),
            timeout_s=30,
        )

        cluster.nodes[leader].kill()
        received = receive_all(cluster.api(follower))
        assert sorted(received) == sorted(acknowledged), "every acknowledged message is on the survivors"
        print(f"{total_bytes // MiB} MiB published in {published_s:.1f} s, caught up in {caught_up_s:.1f} s")
    finally:
        cluster.kill_all()


def test_a_follower_killed_while_a_queue_grows_30_mib_catches_up_from_chunked_snapshots(tmp_path: Path) -> None:
    catch_up(tmp_path, 30 * MiB, SMALL_BUDGETS)


@pytest.mark.slow
def test_a_follower_killed_while_a_queue_grows_past_200_mib_catches_up_after_restart(tmp_path: Path) -> None:
    catch_up(tmp_path, 200 * MiB, "")
