"""Membership changes on real clusters: a node joins and gets replicas, one is drained and removed while a
workload runs (nothing acknowledged lost, nothing stored twice, no 503 once it is gone); a dead machine is
replaced; moves cut by a restart of every node resume. What would lose replicas or go below the replication
factor is refused with 409 and changes nothing.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.harness import Api, Cluster, NodeProcess, free_port

pytestmark = pytest.mark.transport


@pytest.fixture
def three(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster", size=3).start()
    yield running
    running.kill_all()


def eventually(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        else:
            return result
        time.sleep(0.1)


QUEUES = [f"moving{i}" for i in range(6)]


class Workload:
    """Producers (with dedup ids, retrying what was not answered) and a consumer that acks, through the nodes
    that stay, until stopped: what was acknowledged and what was delivered, by body."""

    def __init__(self, cluster: Cluster, via: list[str]) -> None:
        self._apis = [cluster.api(node) for node in via]
        self.acknowledged: list[str] = []
        self.delivered: dict[str, set[str]] = {}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._produce), threading.Thread(target=self._consume)]

    def __enter__(self) -> Workload:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)

    def _produce(self) -> None:
        i = 0
        while not self._stop.is_set():
            queue, body = QUEUES[i % len(QUEUES)], f"m{i}"
            api = self._apis[i % len(self._apis)]
            message = {"messages": [{"body": body, "dedup_id": body}]}
            for _ in range(200):  # the same dedup id again until answered: never stored twice
                try:
                    answer = api.post(f"/v1/queues/{queue}/messages", json=message)
                except httpx.TransportError:
                    continue
                if answer.status_code == 201:
                    self.acknowledged.append(body)
                    break
                if answer.status_code not in (429, 503):
                    self.errors.append(answer.text)
                    break
                time.sleep(0.05)
            i += 1
            time.sleep(0.01)

    def _consume(self) -> None:
        api = self._apis[-1]
        while not self._stop.is_set():
            for queue in QUEUES:
                try:
                    answer = api.post(f"/v1/queues/{queue}/receive", json={"max_messages": 50, "wait_s": 0})
                except httpx.TransportError:
                    continue
                if answer.status_code != 200:
                    continue
                batch = answer.json()["messages"]
                for message in batch:
                    self.delivered.setdefault(message["body"], set()).add(message["id"])
                if batch:
                    with contextlib.suppress(httpx.TransportError):
                        api.post(f"/v1/queues/{queue}/ack", json={"receipts": [m["receipt"] for m in batch]})


def _assert(condition: bool) -> None:
    assert condition


def joining_node(cluster: Cluster) -> tuple[NodeProcess, str, str]:
    """A 4th node whose config names the cluster's nodes and itself, with `join = true`."""
    config = cluster.directory / "cluster.toml"
    node = NodeProcess(cluster.directory / "mom4", env={"MOM_NODE_ID": "mom4"})
    replication = f"127.0.0.1:{free_port()}"
    text = config.read_text().replace("replication_factor = 3", "replication_factor = 3\njoin = true", 1)
    text += f'\n[[cluster.nodes]]\nid = "mom4"\nrest = "127.0.0.1:{node.port}"\nreplication = "{replication}"\n'
    joined = cluster.directory / "join.toml"
    joined.write_text(text)
    node.config = joined
    return node, f"http://127.0.0.1:{node.port}", replication


def replicas_held(admin: Api) -> tuple[dict[str, int], list[dict[str, Any]]]:
    listed = admin.get("/v1/cluster/nodes").json()
    return {n["id"]: n["replicas"] for n in listed["nodes"]}, listed["moves"]


def test_a_node_is_added_then_one_drained_and_removed_while_a_workload_runs(three: Cluster) -> None:
    admin = three.api("mom2")
    for queue in QUEUES:
        assert admin.retrying("PUT", f"/v1/queues/{queue}").status_code == 201
    mom4, rest, replication = joining_node(three)
    three.nodes["mom4"] = mom4
    mom4.start(wait=False)
    with Workload(three, ["mom2", "mom3"]) as workload:
        time.sleep(1)
        added = admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": rest, "replication": replication})
        assert added.status_code == 201, added.text
        mom4.wait_healthy()

        def mom4_has_its_share() -> None:
            held, moves = replicas_held(admin)
            assert held["mom4"] >= 4 and not moves, (held, moves)

        eventually(mom4_has_its_share, timeout_s=60)
        assert admin.post("/v1/cluster/nodes/mom1/drain").status_code == 200

        def mom1_is_empty() -> None:
            held, moves = replicas_held(admin)
            assert held["mom1"] == 0 and not moves, (held, moves)

        eventually(mom1_is_empty, timeout_s=60)
        assert admin.delete("/v1/cluster/nodes/mom1").status_code == 204
        time.sleep(1)
    three.nodes["mom1"].stop()
    assert not workload.errors, workload.errors[:3]
    assert len(workload.acknowledged) > 50

    def settled() -> None:
        view = three.cluster_view("mom2")
        assert [n["id"] for n in view["nodes"]] == ["mom2", "mom3", "mom4"]
        for entry in view["destinations"]:
            assert len(entry["replicas"]) == 3 and "mom1" not in entry["replicas"], entry
            assert entry["leader"] == entry["replicas"][0], entry  # preferred leaders moved too
        assert "mom4" in {entry["leader"] for entry in view["destinations"]}

    eventually(settled, timeout_s=30)
    for node_id in ("mom2", "mom3", "mom4"):  # no 503 once mom1 is gone: raw requests, no retries
        api = three.api(node_id)
        for queue in QUEUES:
            answer = api.post(f"/v1/queues/{queue}/messages", json={"messages": [{"body": f"after-{node_id}-{queue}"}]})
            assert answer.status_code == 201, (node_id, queue, answer.text)
    ids = dict(workload.delivered)
    for queue in QUEUES:
        for body, got in admin.drain(queue, []).ids.items():
            ids.setdefault(body, set()).update(got)
    missing = sorted(set(workload.acknowledged) - ids.keys())
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:10]}"
    twice = {body: got for body, got in ids.items() if len(got) > 1}
    assert not twice, f"stored twice: {list(twice.items())[:5]}"


def test_a_dead_machine_is_replaced_by_a_new_node(three: Cluster) -> None:
    admin = three.api("mom1")
    for queue in QUEUES[:3]:
        assert admin.retrying("PUT", f"/v1/queues/{queue}").status_code == 201
        admin.publish(queue, f"before-{queue}")
    listed = admin.get("/v1/cluster/nodes").json()
    assert [(n["id"], n["state"], n["replicas"]) for n in listed["nodes"]] == [
        ("mom1", "active", 3),
        ("mom2", "active", 3),
        ("mom3", "active", 3),
    ]
    mom4, rest, replication = joining_node(three)
    refusals = [
        admin.post("/v1/cluster/nodes", json={"id": "mom2", "rest": rest, "replication": replication}),
        admin.post(
            "/v1/cluster/nodes", json={"id": "mom5", "rest": listed["nodes"][0]["rest_url"], "replication": replication}
        ),
        admin.post("/v1/cluster/nodes/mom3/drain"),
        admin.delete("/v1/cluster/nodes/mom3"),
    ]
    assert [r.status_code for r in refusals] == [409, 409, 409, 409], [r.text for r in refusals]
    assert "replication factor" in refusals[2].json()["detail"]
    assert admin.post("/v1/cluster/nodes/mom9/drain").status_code == 404

    three.nodes["mom3"].kill()
    three.nodes["mom4"] = mom4
    mom4.start(wait=False)
    assert admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": rest, "replication": replication}).is_success
    assert (
        admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": rest, "replication": replication}).status_code
        == 200
    )
    mom4.wait_healthy()
    refused = admin.delete("/v1/cluster/nodes/mom3")
    assert refused.status_code == 409 and "drain it first" in refused.json()["detail"]
    assert admin.post("/v1/cluster/nodes/mom3/drain").status_code == 200

    def mom3_is_empty() -> None:
        held, moves = replicas_held(admin)
        assert held["mom3"] == 0 and held["mom4"] == 3 and not moves, (held, moves)

    eventually(mom3_is_empty, timeout_s=60)
    assert admin.delete("/v1/cluster/nodes/mom3").status_code == 204
    api = three.api("mom4")
    for queue in QUEUES[:3]:
        answer = api.post(f"/v1/queues/{queue}/messages", json={"messages": [{"body": f"after-{queue}"}]})
        assert answer.status_code == 201, answer.text
        assert sorted(api.drain(queue, [f"before-{queue}", f"after-{queue}"]).ids) == [
            f"after-{queue}",
            f"before-{queue}",
        ]

    # A node added but never started: the moves planned onto it are abandoned once it is drained, then it goes.
    ghost = {"id": "mom5", "rest": f"127.0.0.1:{free_port()}", "replication": f"127.0.0.1:{free_port()}"}
    assert admin.post("/v1/cluster/nodes", json=ghost).status_code == 201
    eventually(lambda: _assert(any(m["target"] == "mom5" for m in replicas_held(admin)[1])), timeout_s=30)
    assert admin.post("/v1/cluster/nodes/mom5/drain").status_code == 200

    def ghost_gone() -> None:
        held, moves = replicas_held(admin)
        assert held["mom5"] == 0 and not moves, (held, moves)

    eventually(ghost_gone, timeout_s=30)
    assert admin.delete("/v1/cluster/nodes/mom5").status_code == 204


def test_moves_cut_by_a_restart_of_every_node_resume(three: Cluster) -> None:
    admin = three.api("mom1")
    for queue in QUEUES[:3]:
        assert admin.retrying("PUT", f"/v1/queues/{queue}").status_code == 201
        admin.publish(queue, *(f"{queue}-{i}" for i in range(5)))
    mom4, rest, replication = joining_node(three)
    mom4.env["MOM_FAULT_DISK_DELAY_MS"] = "200"  # its log syncs stall: a move onto it takes a while
    three.nodes["mom4"] = mom4
    mom4.start(wait=False)
    assert admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": rest, "replication": replication}).is_success

    def moving() -> None:
        assert replicas_held(admin)[1], "a move in progress"

    eventually(moving, timeout_s=30)
    three.kill_all()
    del mom4.env["MOM_FAULT_DISK_DELAY_MS"]
    three.start()
    admin = three.api("mom2")

    def mom4_has_its_share() -> None:
        held, moves = replicas_held(admin)
        assert held["mom4"] >= 2 and not moves, (held, moves)

    eventually(mom4_has_its_share, timeout_s=60)
    for queue in QUEUES[:3]:
        drained = admin.drain(queue, [f"{queue}-{i}" for i in range(5)])
        assert drained.missing([f"{queue}-{i}" for i in range(5)]) == [] and not drained.stored_twice()
