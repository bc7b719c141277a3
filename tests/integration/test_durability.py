"""Crash safety of a real node: kill -9 under load, torn and corrupt log tails, disk bounded by snapshots."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, token

LOAD_SECONDS = 2.0
PRODUCERS = 4


def admin_api(node: NodeProcess) -> Api:
    return Api(node.url, token(node.url, "admin", ADMIN_PASSWORD))


def drain(api: Api, queue: str) -> list[object]:
    bodies: list[object] = []
    while batch := api.receive(queue, max_messages=100):
        bodies += [m["body"] for m in batch]
        api.ack(queue, *[m["receipt"] for m in batch])
    return bodies


def test_kill_9_under_publish_load_loses_no_acknowledged_publish(fresh_node: NodeProcess) -> None:
    api = admin_api(fresh_node.start())
    api.put("/v1/queues/orders")
    bearer = api.http.headers["Authorization"]
    acknowledged: list[str] = []
    attempted: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce(worker: int) -> None:
        with httpx.Client(base_url=fresh_node.url, headers={"Authorization": bearer}, timeout=10) as http:
            for batch in range(100_000):
                if stop.is_set():
                    return
                bodies = [f"{worker}-{batch}-{i}" for i in range(10)]
                with lock:
                    attempted.extend(bodies)
                try:
                    response = http.post("/v1/queues/orders/messages", json={"messages": [{"body": b} for b in bodies]})
                except httpx.TransportError:
                    return
                if response.status_code == 201:
                    with lock:
                        acknowledged.extend(bodies)

    workers = [threading.Thread(target=produce, args=(w,)) for w in range(PRODUCERS)]
    for worker in workers:
        worker.start()
    time.sleep(LOAD_SECONDS)
    fresh_node.kill()
    stop.set()
    for worker in workers:
        worker.join(15)
    assert len(acknowledged) > 100, "the load did not get going"

    received = drain(admin_api(fresh_node.start()), "orders")
    assert set(acknowledged) <= set(received), "an acknowledged publish was lost"
    assert set(received) <= set(attempted), "a message nobody published appeared"
    assert len(received) == len(set(received))


def _segments(node: NodeProcess) -> list[Path]:
    """The log segments of queue q's replication group."""
    return sorted((node.data_dir / "groups").glob("q.q@*/log/*.log"))


def _publish_one_by_one(api: Api, count: int) -> None:
    api.put("/v1/queues/q")
    for i in range(count):
        api.publish("q", i)


def test_a_torn_tail_is_cut_off_and_the_node_starts(fresh_node: NodeProcess) -> None:
    _publish_one_by_one(admin_api(fresh_node.start()), 20)
    fresh_node.stop()
    last = _segments(fresh_node)[-1]
    data = last.read_bytes()
    last.write_bytes(data[:-5])
    assert drain(admin_api(fresh_node.start()), "q") == list(range(19))


def test_a_bit_flip_in_the_last_record_is_detected(fresh_node: NodeProcess) -> None:
    _publish_one_by_one(admin_api(fresh_node.start()), 20)
    fresh_node.stop()
    last = _segments(fresh_node)[-1]
    data = bytearray(last.read_bytes())
    data[-3] ^= 0x10
    last.write_bytes(bytes(data))
    assert drain(admin_api(fresh_node.start()), "q") == list(range(19))


def test_clean_restart_keeps_everything(fresh_node: NodeProcess) -> None:
    api = admin_api(fresh_node.start())
    api.put("/v1/queues/jobs", json={"visibility_timeout_s": 60})
    api.put("/v1/topics/news")
    api.put("/v1/topics/news/subscriptions/reader", json={"start": "earliest"})
    api.post("/v1/topics/news/messages", json={"body": "headline"})
    api.publish("jobs", "a", "b")
    leased = api.receive("jobs")
    assert fresh_node.stop() == 0
    api = admin_api(fresh_node.start())
    info = api.get("/v1/queues/jobs").json()
    assert (info["ready"], info["in_flight"]) == (1, 1), "the lease must survive the restart"
    assert api.ack("jobs", leased[0]["receipt"])["acked"] == [leased[0]["receipt"]]
    got = api.post("/v1/topics/news/subscriptions/reader/receive", json={}).json()["messages"]
    assert [m["body"] for m in got] == ["headline"]


def test_disk_use_stays_bounded_when_messages_are_acked(tmp_path: Path) -> None:
    config = tmp_path / "mom.toml"
    config.write_text("[storage]\nsegment_bytes = 65536\nsnapshot_bytes = 262144\n")
    node = NodeProcess(tmp_path / "data", config=config).start()
    try:
        api = admin_api(node)
        api.put("/v1/queues/churn")
        body = "x" * 1000
        for _ in range(40):
            api.post("/v1/queues/churn/messages", json={"messages": [{"body": body}] * 100})
            batch = api.receive("churn", max_messages=100)
            api.ack("churn", *[m["receipt"] for m in batch])
        time.sleep(0.5)
        used = sum(p.stat().st_size for p in (tmp_path / "data").rglob("*") if p.is_file())
        assert used < 1_500_000, f"{used} bytes on disk after 4 MB published and acked"
        assert api.get("/v1/queues/churn").json()["messages"] == 0
    finally:
        node.stop()
