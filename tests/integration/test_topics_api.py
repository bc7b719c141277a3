"""Topics over the wire: fan-out to durable subscriptions, start positions, replay and SSE push."""

from __future__ import annotations

import json
import uuid

import httpx

from tests.integration.harness import Api, NodeProcess
from tests.integration.test_queues_api import assert_problem


def tname() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def publish(api: Api, topic: str, *bodies: object) -> list[dict[str, object]]:
    response = api.post(f"/v1/topics/{topic}/messages", json={"messages": [{"body": b} for b in bodies]})
    assert response.status_code == 201, response.text
    return list(response.json()["messages"])


def receive(api: Api, topic: str, sub: str, **options: object) -> list[dict[str, object]]:
    response = api.post(f"/v1/topics/{topic}/subscriptions/{sub}/receive", json=options)
    assert response.status_code == 200, response.text
    return list(response.json()["messages"])


def test_every_subscription_receives_every_message(api: Api) -> None:
    topic = tname()
    assert api.put(f"/v1/topics/{topic}").status_code == 201
    for sub in ("billing", "shipping"):
        assert api.put(f"/v1/topics/{topic}/subscriptions/{sub}").status_code == 201
    publish(api, topic, "a", "b", "c")
    for sub in ("billing", "shipping"):
        got = receive(api, topic, sub, max_messages=10)
        assert [m["body"] for m in got] == ["a", "b", "c"]
        acked = api.post(f"/v1/topics/{topic}/subscriptions/{sub}/ack", json={"receipts": [m["receipt"] for m in got]})
        assert len(acked.json()["acked"]) == 3
    info = api.get(f"/v1/topics/{topic}").json()
    assert info["next_offset"] == 3 and info["messages"] == 3
    assert {s["name"]: s["ready"] for s in info["subscriptions"]} == {"billing": 0, "shipping": 0}


def test_start_positions_latest_earliest_and_offset(api: Api) -> None:
    topic = tname()
    api.put(f"/v1/topics/{topic}")
    publish(api, topic, 0, 1, 2, 3)
    api.put(f"/v1/topics/{topic}/subscriptions/late", json={"start": "latest"})
    api.put(f"/v1/topics/{topic}/subscriptions/all", json={"start": "earliest"})
    api.put(f"/v1/topics/{topic}/subscriptions/mid", json={"start": {"offset": 2}})
    publish(api, topic, 4)
    assert [m["body"] for m in receive(api, topic, "late", max_messages=10)] == [4]
    assert [m["body"] for m in receive(api, topic, "all", max_messages=10)] == [0, 1, 2, 3, 4]
    assert [m["body"] for m in receive(api, topic, "mid", max_messages=10)] == [2, 3, 4]


def test_subscription_redeclare_and_conflict(api: Api) -> None:
    topic = tname()
    api.put(f"/v1/topics/{topic}")
    assert api.put(f"/v1/topics/{topic}/subscriptions/s", json={"visibility_timeout_s": 3}).status_code == 201
    assert api.put(f"/v1/topics/{topic}/subscriptions/s", json={"visibility_timeout_s": 3}).status_code == 200
    assert_problem(api.put(f"/v1/topics/{topic}/subscriptions/s", json={"visibility_timeout_s": 4}), 409)
    assert_problem(api.put(f"/v1/topics/{topic}/subscriptions/s", json={"start": "sometime"}), 400)
    assert_problem(api.put(f"/v1/topics/{tname()}/subscriptions/s"), 404)


def test_replay_reads_the_retained_log_by_offset(api: Api) -> None:
    topic = tname()
    api.put(f"/v1/topics/{topic}")
    publish(api, topic, *range(10))
    page = api.get(f"/v1/topics/{topic}/messages", params={"from_offset": 3, "limit": 4}).json()
    assert [m["body"] for m in page["messages"]] == [3, 4, 5, 6] and page["next_offset"] == 7
    rest = api.get(f"/v1/topics/{topic}/messages", params={"from_offset": page["next_offset"]}).json()
    assert [m["offset"] for m in rest["messages"]] == [7, 8, 9]
    assert api.get(f"/v1/topics/{topic}/messages", params={"from_offset": 99}).json()["messages"] == []
    for bad in ({"from_offset": -1}, {"limit": 0}, {"limit": "many"}):
        assert_problem(api.get(f"/v1/topics/{topic}/messages", params=bad), 400)


def test_retention_by_bytes_drops_the_oldest(api: Api) -> None:
    topic = tname()
    api.put(f"/v1/topics/{topic}", json={"retention_bytes": 30})
    publish(api, topic, *["0123456789" for _ in range(5)])
    info = api.get(f"/v1/topics/{topic}").json()
    assert info["bytes"] <= 30 and info["first_offset"] >= 2 and info["next_offset"] == 5


def test_deleting_a_topic_removes_its_subscriptions(api: Api) -> None:
    topic = tname()
    api.put(f"/v1/topics/{topic}")
    api.put(f"/v1/topics/{topic}/subscriptions/s")
    assert api.delete(f"/v1/topics/{topic}").status_code == 204
    assert_problem(api.get(f"/v1/topics/{topic}/subscriptions/s"), 404)
    api.put(f"/v1/topics/{topic}")
    assert api.get(f"/v1/topics/{topic}/subscriptions").json()["subscriptions"] == []


def test_sse_pushes_messages_and_ack_settles_them(api: Api, node: NodeProcess) -> None:
    topic = tname()
    api.put(f"/v1/topics/{topic}")
    api.put(f"/v1/topics/{topic}/subscriptions/push")
    publish(api, topic, {"i": 0}, {"i": 1})
    events: list[dict[str, object]] = []
    headers = {"Authorization": api.http.headers["Authorization"]}
    with httpx.stream(
        "GET", f"{node.url}/v1/topics/{topic}/subscriptions/push/events", headers=headers, timeout=30
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: ") :]))
                if len(events) == 2:
                    break
    assert [e["body"] for e in events] == [{"i": 0}, {"i": 1}]
    receipts = [e["receipt"] for e in events]
    acked = api.post(f"/v1/topics/{topic}/subscriptions/push/ack", json={"receipts": receipts}).json()
    assert acked["acked"] == receipts
    assert_problem(api.get(f"/v1/topics/{topic}/subscriptions/nope/events"), 404)


def test_subscription_nack_redelivers_and_dead_letters_after_max_deliveries(api: Api) -> None:
    topic, dlq = tname(), f"dlq-{uuid.uuid4().hex[:8]}"
    api.put(f"/v1/queues/{dlq}")
    api.put(f"/v1/topics/{topic}")
    sub = f"/v1/topics/{topic}/subscriptions/worker"
    assert api.put(sub, json={"max_deliveries": 2, "dead_letter_queue": dlq}).status_code == 201
    publish(api, topic, "job")
    first = receive(api, topic, "worker")[0]
    assert api.post(sub + "/nack", json={"receipts": [first["receipt"]]}).json()["nacked"] == [first["receipt"]]
    second = receive(api, topic, "worker", wait_s=5)[0]
    assert second["deliveries"] == 2 and second["id"] == first["id"]
    api.post(sub + "/nack", json={"receipts": [second["receipt"]]})
    assert receive(api, topic, "worker") == []
    dead = api.receive(dlq, wait_s=5)
    assert [m["body"] for m in dead] == ["job"]
    assert dead[0]["headers"]["x-death"] == {
        "queue": f"{topic}/worker",
        "reason": "max_deliveries",
        "message_id": first["id"],
    }
