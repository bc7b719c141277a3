"""Peek, purge, attribute changes, visibility changes, FIFO and redrive over REST against a real node."""

from __future__ import annotations

import time
import uuid

from tests.integration.harness import Api, NodeProcess, new_user, token
from tests.integration.test_queues_api import assert_problem


def qname(suffix: str = "") -> str:
    return f"q-{uuid.uuid4().hex[:12]}{suffix}"


def wait_for_messages(api: Api, queue: str, count: int) -> None:
    """Dead letters reach their queue through the leader's housekeeping, a moment after the nack."""
    deadline = time.monotonic() + 30
    while api.get(f"/v1/queues/{queue}").json()["messages"] != count:
        assert time.monotonic() < deadline, f"{queue} never held {count} messages"
        time.sleep(0.05)


def test_peek_shows_messages_without_leasing_them(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    api.publish(name, {"n": 1}, {"n": 2}, {"n": 3})
    api.receive(name, max_messages=1)
    page = api.get(f"/v1/queues/{name}/messages", params={"limit": 2})
    assert page.status_code == 200, page.text
    messages = page.json()["messages"]
    assert [(m["body"], m["state"], m["deliveries"]) for m in messages] == [
        ({"n": 1}, "in_flight", 1),
        ({"n": 2}, "ready", 0),
    ]
    assert page.json()["next_offset"] == 2
    rest = api.get(f"/v1/queues/{name}/messages", params={"from_offset": 2}).json()
    assert [m["body"] for m in rest["messages"]] == [{"n": 3}] and rest["next_offset"] is None
    assert api.get(f"/v1/queues/{name}").json()["ready"] == 2, "peeking leased nothing"
    assert_problem(api.get(f"/v1/queues/{name}/messages", params={"limit": 0}), 400)


def test_purge_empties_the_queue(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    api.publish(name, 1, 2, 3)
    leased = api.receive(name, max_messages=1)
    purged = api.post(f"/v1/queues/{name}/purge")
    assert purged.status_code == 200 and purged.json() == {"purged": 3}
    assert api.get(f"/v1/queues/{name}").json()["messages"] == 0
    assert api.ack(name, leased[0]["receipt"])["unknown"] == [leased[0]["receipt"]]
    assert_problem(api.post(f"/v1/queues/{qname()}/purge"), 404)


def test_patch_changes_attributes_and_only_the_owner_may(api: Api, node: NodeProcess) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}", json={"visibility_timeout_s": 30})
    changed = api.patch(f"/v1/queues/{name}", json={"visibility_timeout_s": 1, "delay_s": 0, "receive_wait_s": 2})
    assert changed.status_code == 200, changed.text
    assert changed.json()["attributes"]["visibility_timeout_s"] == 1
    assert changed.json()["attributes"]["receive_wait_s"] == 2
    assert_problem(api.patch(f"/v1/queues/{name}", json={"visibility_timeout_s": 0}), 400)
    assert_problem(api.patch(f"/v1/queues/{name}", json={"colour": "red"}), 400)
    assert_problem(api.patch(f"/v1/queues/{name}", json={"replication_factor": 2}), 400)
    assert_problem(api.patch(f"/v1/queues/{name}", json=[1]), 400)
    _, other = new_user(node.url)
    stranger = Api(node.url, other)
    assert_problem(stranger.patch(f"/v1/queues/{name}", json={"visibility_timeout_s": 5}), 403)
    api.publish(name, "x")
    first = api.receive(name)
    time.sleep(1.2)
    again = api.receive(name)
    assert [m["deliveries"] for m in first + again] == [1, 2], "the new visibility timeout (1 s) applied"
    api.ack(name, again[0]["receipt"])
    started = time.monotonic()
    assert api.receive(name, max_messages=1) == []
    assert time.monotonic() - started >= 1.5, "receive_wait_s made the receive long-poll"


def test_visibility_change_keeps_the_receipt(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}", json={"visibility_timeout_s": 30})
    api.publish(name, "a")
    (message,) = api.receive(name)
    result = api.post(
        f"/v1/queues/{name}/visibility", json={"receipts": [message["receipt"]], "visibility_timeout_s": 0}
    )
    assert result.json() == {"changed": [message["receipt"]], "unknown": []}
    assert [m["deliveries"] for m in api.receive(name)] == [2]
    assert_problem(api.post(f"/v1/queues/{name}/visibility", json={"receipts": ["x"], "visibility_timeout_s": 1}), 400)


def test_fifo_queue_holds_a_group_while_one_of_its_messages_is_in_flight(api: Api) -> None:
    name = qname(".fifo")
    assert api.put(f"/v1/queues/{name}", json={"fifo": True, "content_based_dedup": True}).status_code == 201
    assert_problem(api.put(f"/v1/queues/{qname()}", json={"fifo": True}), 400)
    messages = [{"body": i, "group_id": "a" if i % 2 else "b"} for i in range(4)]
    assert api.post(f"/v1/queues/{name}/messages", json={"messages": messages}).status_code == 201
    assert_problem(api.post(f"/v1/queues/{name}/messages", json={"body": 9}), 400)
    first = api.receive(name, max_messages=1)
    assert [(m["body"], m["group_id"]) for m in first] == [(0, "b")]
    assert [m["body"] for m in api.receive(name, max_messages=10)] == [1, 3]
    api.ack(name, first[0]["receipt"])
    assert [m["body"] for m in api.receive(name, max_messages=10)] == [2]


def test_redrive_moves_dead_letters_back_to_their_source(api: Api) -> None:
    source, dlq = qname(), qname("-dlq")
    api.put(f"/v1/queues/{dlq}")
    api.put(f"/v1/queues/{source}", json={"max_deliveries": 1, "dead_letter_queue": dlq})
    api.publish(source, "a", "b", "c")
    receipts = [m["receipt"] for m in api.receive(source, max_messages=3)]
    api.post(f"/v1/queues/{source}/nack", json={"receipts": receipts})
    wait_for_messages(api, dlq, 3)
    one = api.post(f"/v1/queues/{dlq}/redrive", json={"max_messages": 1})
    assert one.status_code == 200 and one.json()["moved"] == 1, one.text
    rest = api.post(f"/v1/queues/{dlq}/redrive", json={}).json()
    assert rest == {"moved": 2, "by_queue": {source: 2}, "skipped": 0}
    back = api.receive(source, max_messages=10)
    assert sorted(m["body"] for m in back) == ["a", "b", "c"]
    assert all("x-death" not in m["headers"] for m in back)
    assert api.get(f"/v1/queues/{dlq}").json()["messages"] == 0


def test_redrive_needs_write_on_the_target(node: NodeProcess) -> None:
    username, bearer = new_user(node.url)
    api = Api(node.url, bearer)
    dlq, other = qname("-dlq"), qname()
    api.put(f"/v1/queues/{dlq}")
    api.put(f"/v1/queues/{other}")
    api.publish(dlq, "orphan")
    result = api.post(f"/v1/queues/{dlq}/redrive", json={}).json()
    assert result == {"moved": 0, "by_queue": {}, "skipped": 1}, "no x-death: nowhere to go"
    assert api.get(f"/v1/queues/{dlq}").json()["ready"] == 1, "a skipped letter is visible again"
    reader = Api(node.url, token(node.url, username, "a-long-password", scope=f"mom.read:{dlq}"))
    assert reader.post(f"/v1/queues/{dlq}/redrive", json={"to": other}).json()["skipped"] == 1
    assert api.post(f"/v1/queues/{dlq}/redrive", json={"to": other}).json()["by_queue"] == {other: 1}
    assert [m["body"] for m in api.receive(other)] == ["orphan"]
