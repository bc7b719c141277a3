"""A real 3-node cluster on 127.0.0.1: any-node access, kill -9 of a leader under load, catch-up, full restart."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import ADMIN_PASSWORD, Api, Cluster, new_user, token

pytestmark = pytest.mark.transport

LOAD_BEFORE_KILL_S = 1.5
ACKNOWLEDGED_BEFORE_KILL = 20
LOAD_AFTER_KILL_S = 4.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


def wait_for(predicate: object, timeout_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout_s} s")


def preferred_leader_leads(cluster: Cluster, name: str, via: str = "mom1") -> bool:
    entry = next(d for d in cluster.cluster_view(via)["destinations"] if d["name"] == name)
    return bool(entry["leader"] == entry["replicas"][0])


def test_every_node_serves_every_request(cluster: Cluster) -> None:
    apis = {node_id: cluster.api(node_id) for node_id in cluster.nodes}
    assert apis["mom1"].retrying("PUT", "/v1/queues/orders").status_code == 201
    for node_id, api in apis.items():
        api.publish("orders", f"from-{node_id}")
    got = apis["mom2"].receive("orders", max_messages=10, wait_s=2)
    assert sorted(m["body"] for m in got) == ["from-mom1", "from-mom2", "from-mom3"]
    assert apis["mom3"].ack("orders", *[m["receipt"] for m in got])["unknown"] == []
    view = apis["mom3"].get("/v1/queues/orders").json()
    assert sorted(view["replicas"]) == ["mom1", "mom2", "mom3"] and view["leader"] in view["replicas"]
    cluster_view = cluster.cluster_view("mom2")
    assert {n["id"]: n["state"] for n in cluster_view["nodes"]} == {"mom1": "up", "mom2": "up", "mom3": "up"}
    assert cluster_view["transport"] == cluster.transport


def test_accounts_and_tokens_are_cluster_wide(cluster: Cluster) -> None:
    urls = {node_id: node.url for node_id, node in cluster.nodes.items()}
    username, _ = new_user(urls["mom2"])
    bearer = token(urls["mom3"], username, "a-long-password")
    api = Api(urls["mom1"], bearer)
    assert api.retrying("PUT", "/v1/topics/news").status_code == 201
    assert api.retrying("PUT", "/v1/topics/news/subscriptions/reader").status_code == 201
    response = api.retrying("POST", "/v1/topics/news/messages", json={"body": "headline"})
    assert response.status_code == 201


def test_sse_is_relayed_by_a_node_that_does_not_lead(cluster: Cluster) -> None:
    cluster.api().retrying("PUT", "/v1/topics/alerts")
    leader = cluster.leader_of("alerts")
    follower = next(n for n in cluster.nodes if n != leader)
    api = cluster.api(follower)
    api.retrying("PUT", "/v1/topics/alerts/subscriptions/pager", json={"start": "earliest"})
    api.retrying("POST", "/v1/topics/alerts/messages", json={"body": {"level": "high"}})
    headers = {"Authorization": api.http.headers["Authorization"]}
    url = f"{cluster.nodes[follower].url}/v1/topics/alerts/subscriptions/pager/events"
    with httpx.stream("GET", url, headers=headers, timeout=20) as stream:
        assert stream.status_code == 200
        for line in stream.iter_lines():
            if line.startswith("data: "):
                assert json.loads(line[6:])["body"] == {"level": "high"}
                break


def test_kill_9_of_a_leader_under_load_loses_no_acknowledged_publish(cluster: Cluster) -> None:
    admin = cluster.api()
    admin.retrying("PUT", "/v1/queues/payments")
    wait_for(lambda: preferred_leader_leads(cluster, "payments"), what="preferred leader in charge")
    leader = cluster.leader_of("payments")
    assert leader is not None
    survivors = [n for n in cluster.nodes if n != leader]
    acknowledged: list[str] = []
    unexpected: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    killed_at: list[float] = []
    first_write_after_kill: list[float] = []

    def produce(via: str, worker: int) -> None:
        url = cluster.nodes[via].url
        bearer = token(url, "admin", ADMIN_PASSWORD)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {bearer}"}, timeout=10) as http:
            for n in range(100_000):
                if stop.is_set():
                    return
                body = f"{worker}-{n}"
                message = {"body": body, "dedup_id": body}
                while not stop.is_set():
                    try:
                        answer = http.post("/v1/queues/payments/messages", json=message)
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    if answer.status_code == 201:
                        with lock:
                            acknowledged.append(body)
                            if killed_at and not first_write_after_kill:
                                first_write_after_kill.append(time.monotonic())
                        break
                    if answer.status_code not in (429, 503):
                        unexpected.append(f"{body}: {answer.status_code} {answer.text}")  # seen by the test thread
                        return
                    time.sleep(0.05)

    workers = [threading.Thread(target=produce, args=(via, i)) for i, via in enumerate(survivors * 2)]
    for worker in workers:
        worker.start()
    time.sleep(LOAD_BEFORE_KILL_S)
    # On a loaded machine the producers may not even have their tokens yet: kill once some writes were answered.
    wait_for(lambda: len(acknowledged) >= ACKNOWLEDGED_BEFORE_KILL, 30, "publishes acknowledged before the kill")
    with lock:
        before_kill = list(acknowledged)
    cluster.nodes[leader].kill()
    killed_at.append(time.monotonic())
    time.sleep(LOAD_AFTER_KILL_S)
    stop.set()
    for worker in workers:
        worker.join(30)
    assert not unexpected, unexpected
    assert first_write_after_kill, "no write succeeded after the leader was killed"
    assert first_write_after_kill[0] - killed_at[0] < LOAD_AFTER_KILL_S

    cluster.nodes[leader].start()
    wait_for(lambda: cluster.leader_of("payments", via=survivors[0]) == leader, 30, "old leader back in charge")
    api = cluster.api(survivors[0])
    drained = api.drain("payments", acknowledged)
    missing = drained.missing(acknowledged)
    assert not missing, (
        f"{len(missing)} acknowledged publishes never delivered ({len(drained.missing(before_kill))} of them "
        f"acknowledged before the kill): {missing[:20]}; the queue: {api.get('/v1/queues/payments').text}; "
        f"receives refused on the way: {drained.refused[:5]}"
    )
    assert not drained.stored_twice(), "dedup ids must keep retried publishes single"


def test_a_whole_cluster_restart_loses_nothing_acknowledged(cluster: Cluster) -> None:
    admin = cluster.api("mom2")
    admin.retrying("PUT", "/v1/queues/ledger")
    bodies = [f"entry-{i}" for i in range(200)]
    for chunk in range(0, 200, 50):
        batch = {"messages": [{"body": b} for b in bodies[chunk : chunk + 50]]}
        assert admin.retrying("POST", "/v1/queues/ledger/messages", json=batch).status_code == 201
    cluster.kill_all()
    cluster.start()
    drained = cluster.api("mom3").drain("ledger", bodies)
    assert sorted(drained.ids) == sorted(bodies), drained.refused[:5]
    assert not drained.stored_twice()


def test_unique_names_across_the_cluster(cluster: Cluster) -> None:
    name = f"q-{uuid.uuid4().hex[:6]}"
    assert cluster.api("mom1").retrying("PUT", f"/v1/queues/{name}", json={"max_length": 5}).status_code == 201
    assert cluster.api("mom3").retrying("PUT", f"/v1/queues/{name}", json={"max_length": 6}).status_code == 409
    assert cluster.api("mom2").retrying("DELETE", f"/v1/queues/{name}").status_code == 204
    assert cluster.api("mom3").retrying("GET", f"/v1/queues/{name}").status_code == 404


def test_sse_ends_with_an_error_event_when_leadership_moves_away(cluster: Cluster) -> None:
    """A stream served by a leader that loses the lead ends with `event: error` (503, reconnect), not broken."""
    admin = cluster.api()
    admin.retrying("PUT", "/v1/topics/feed")
    admin.retrying("PUT", "/v1/topics/feed/subscriptions/s", json={"start": "earliest"})
    wait_for(lambda: preferred_leader_leads(cluster, "feed"), 30, "preferred leader in charge")
    preferred = cluster.leader_of("feed")
    assert preferred is not None
    survivor = next(n for n in cluster.nodes if n != preferred)
    cluster.nodes[preferred].kill()
    wait_for(lambda: cluster.leader_of("feed", via=survivor) not in (None, preferred), 30, "an interim leader")
    interim = cluster.leader_of("feed", via=survivor)
    assert interim is not None
    api = cluster.api(interim)
    received: list[bytes] = []
    broken: list[str] = []

    def listen() -> None:
        url = f"{cluster.nodes[interim].url}/v1/topics/feed/subscriptions/s/events"
        try:
            with httpx.stream(
                "GET", url, headers={"Authorization": api.http.headers["Authorization"]}, timeout=60
            ) as s:
                assert s.status_code == 200
                for chunk in s.iter_raw():
                    received.append(chunk)
        except httpx.HTTPError as exc:
            broken.append(repr(exc))

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    wait_for(lambda: b"connected" in b"".join(received), 30, "the stream open")
    cluster.nodes[preferred].start()
    wait_for(lambda: cluster.leader_of("feed", via=interim) == preferred, 60, "the preferred leader back in charge")
    listener.join(60)
    assert not listener.is_alive(), "the stream did not end after the leadership moved away"
    text = b"".join(received)
    assert not broken, f"the stream broke instead of ending: {broken}; it carried {text[-300:]!r}"
    assert b"event: error" in text and b'"status":503' in text, text[-300:]
