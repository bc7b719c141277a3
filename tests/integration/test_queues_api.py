"""Queues over the wire against a real node: the happy paths and every kind of bad input."""

from __future__ import annotations

import base64
import socket
import time
import uuid

import httpx
import pytest

from tests.integration.harness import Api, NodeProcess


def qname() -> str:
    return f"q-{uuid.uuid4().hex[:12]}"


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return dict(body)


def test_declare_is_idempotent_and_conflicts_on_different_attributes(api: Api) -> None:
    name = qname()
    created = api.put(f"/v1/queues/{name}", json={"visibility_timeout_s": 5})
    assert created.status_code == 201
    assert created.json()["attributes"]["visibility_timeout_s"] == 5
    assert api.put(f"/v1/queues/{name}", json={"visibility_timeout_s": 5}).status_code == 200
    conflict = assert_problem(api.put(f"/v1/queues/{name}", json={"visibility_timeout_s": 6}), 409)
    assert "visibility_timeout_s" in str(conflict["detail"])
    assert api.get(f"/v1/queues/{name}").json()["attributes"]["visibility_timeout_s"] == 5


def test_publish_receive_ack_round_trip_keeps_json_bodies_headers_and_order(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    bodies = [{"n": i, "nested": [1, "two", None]} for i in range(5)] + ["text", 3.5, None, True]
    published = api.publish(name, *bodies)
    assert [m["offset"] for m in published] == list(range(len(bodies)))
    got = api.receive(name, max_messages=100)
    assert [m["body"] for m in got] == bodies
    assert all(m["deliveries"] == 1 and m["published_at"].endswith("Z") for m in got)
    assert api.get(f"/v1/queues/{name}").json()["in_flight"] == len(bodies)
    result = api.ack(name, *[m["receipt"] for m in got])
    assert len(result["acked"]) == len(bodies) and result["unknown"] == []
    info = api.get(f"/v1/queues/{name}").json()
    assert (info["ready"], info["in_flight"], info["messages"]) == (0, 0, 0)


def test_single_message_form_binary_bodies_and_headers(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    raw = bytes(range(256))
    r1 = api.post(f"/v1/queues/{name}/messages", json={"body": {"a": 1}, "headers": {"kind": "x", "n": 2}})
    r2 = api.post(f"/v1/queues/{name}/messages", json={"body_base64": base64.b64encode(raw).decode()})
    assert r1.status_code == r2.status_code == 201
    first, second = api.receive(name, max_messages=10)
    assert first["body"] == {"a": 1} and first["headers"] == {"kind": "x", "n": 2}
    assert base64.b64decode(second["body_base64"]) == raw and "body" not in second


def test_unacked_message_is_redelivered_after_its_visibility_timeout(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}", json={"visibility_timeout_s": 0.5})
    api.publish(name, "again")
    first = api.receive(name)
    assert api.receive(name) == []
    second = api.receive(name, wait_s=5)
    assert second[0]["id"] == first[0]["id"] and second[0]["deliveries"] == 2
    stale = api.ack(name, first[0]["receipt"])
    assert stale["unknown"] == [first[0]["receipt"]]
    assert api.ack(name, second[0]["receipt"])["acked"] == [second[0]["receipt"]]


def test_nack_with_delay_and_dead_letter_after_max_deliveries(api: Api) -> None:
    dlq, name = qname(), qname()
    api.put(f"/v1/queues/{dlq}")
    assert api.put(f"/v1/queues/{name}", json={"max_deliveries": 2, "dead_letter_queue": dlq}).status_code == 201
    api.publish(name, {"poison": True})
    first = api.receive(name)[0]
    nacked = api.post(f"/v1/queues/{name}/nack", json={"receipts": [first["receipt"]], "delay_s": 0.3})
    assert nacked.json() == {"nacked": [first["receipt"]], "unknown": []}
    assert api.receive(name) == []
    second = api.receive(name, wait_s=5)[0]
    assert second["deliveries"] == 2
    api.post(f"/v1/queues/{name}/nack", json={"receipts": [second["receipt"]]})
    assert api.receive(name) == []
    dead = api.receive(dlq, wait_s=5)[0]
    assert dead["body"] == {"poison": True}
    assert dead["headers"]["x-death"]["reason"] == "max_deliveries"
    assert dead["headers"]["x-death"]["message_id"] == first["id"]
    assert dead["headers"]["x-death"]["queue"] == name


def test_long_poll_returns_as_soon_as_a_message_arrives(api: Api, node: NodeProcess) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    import threading

    def publish_later() -> None:
        time.sleep(0.5)
        Api(node.url, api.http.headers["Authorization"].split()[1]).publish(name, "late")

    threading.Thread(target=publish_later).start()
    started = time.monotonic()
    got = api.receive(name, wait_s=10)
    assert [m["body"] for m in got] == ["late"]
    assert time.monotonic() - started < 8


def test_long_poll_with_nothing_to_receive_waits_then_answers_empty(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    started = time.monotonic()
    assert api.receive(name, wait_s=1) == []
    assert time.monotonic() - started >= 0.9


def test_delayed_message_is_invisible_until_its_delay_passes(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    api.post(f"/v1/queues/{name}/messages", json={"body": "later", "delay_s": 0.5})
    assert api.get(f"/v1/queues/{name}").json()["delayed"] == 1
    assert api.receive(name) == []
    assert [m["body"] for m in api.receive(name, wait_s=5)] == ["later"]


def test_dedup_id_makes_a_republish_a_no_op_returning_the_first_id(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    first = api.post(f"/v1/queues/{name}/messages", json={"body": 1, "dedup_id": "order-7"}).json()
    again = api.post(f"/v1/queues/{name}/messages", json={"body": 2, "dedup_id": "order-7"}).json()
    assert again["messages"][0]["id"] == first["messages"][0]["id"]
    assert again["messages"][0]["duplicate"] is True
    assert [m["body"] for m in api.receive(name, max_messages=10)] == [1]


def test_max_length_refuses_a_batch_that_does_not_fit_and_keeps_nothing_of_it(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}", json={"max_length": 3})
    api.publish(name, 1, 2)
    full = api.post(f"/v1/queues/{name}/messages", json={"messages": [{"body": 3}, {"body": 4}]})
    assert_problem(full, 429)
    assert full.headers["Retry-After"]
    assert api.get(f"/v1/queues/{name}").json()["messages"] == 2


def test_delete_queue_then_it_is_gone(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    api.publish(name, "x")
    assert api.delete(f"/v1/queues/{name}").status_code == 204
    assert_problem(api.get(f"/v1/queues/{name}"), 404)
    assert_problem(api.delete(f"/v1/queues/{name}"), 404)
    assert name not in [q["name"] for q in api.get("/v1/queues").json()["queues"]]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("put", "/v1/queues/bad name", {}, 400),
        ("put", "/v1/queues/" + "x" * 201, {}, 400),
        ("put", "/v1/queues/ok", {"visibility_timeout_s": "soon"}, 400),
        ("put", "/v1/queues/ok", {"visibility_timeout_s": -1}, 400),
        ("put", "/v1/queues/ok", {"unknown_field": 1}, 400),
        ("put", "/v1/queues/ok", {"dead_letter_queue": "does-not-exist"}, 400),
        ("post", "/v1/queues/missing-queue/messages", {"body": 1}, 404),
        ("post", "/v1/queues/missing-queue/receive", {}, 404),
        ("post", "/v1/queues/missing-queue/ack", {"receipts": ["x"]}, 404),
        ("get", "/v1/queues/missing-queue", None, 404),
        ("get", "/v1/no-such-endpoint", None, 404),
        ("patch", "/v1/queues/ok/receive", {}, 405),
    ],
)
def test_bad_requests_get_problem_json_and_change_nothing(
    api: Api, method: str, path: str, body: object, status: int
) -> None:
    def state() -> list[dict[str, object]]:  # the oldest message's age moves on by itself: leave it out
        return [{k: v for k, v in q.items() if k != "oldest_age_s"} for q in api.get("/v1/queues").json()["queues"]]

    before = state()
    kwargs = {} if body is None else {"json": body}
    assert_problem(api.request(method, path, **kwargs), status)
    assert state() == before


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"{not json", 400),
        (b'{"messages": []}', 400),
        (b'{"messages": [{}]}', 400),
        (b'{"messages": "x"}', 400),
        (b'{"body": 1, "body_base64": "AA=="}', 400),
        (b'{"body_base64": "***"}', 400),
        (b'{"body": 1, "delay_s": -5}', 400),
        (b'{"body": 1, "extra": true}', 400),
        (b'{"messages": [{"body": 1}], "body": 2}', 400),
        (b"[1, 2]", 400),
    ],
)
def test_malformed_publishes_are_refused_and_store_nothing(api: Api, payload: bytes, status: int) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    response = api.post(f"/v1/queues/{name}/messages", content=payload, headers={"content-type": "application/json"})
    assert_problem(response, status)
    assert api.get(f"/v1/queues/{name}").json()["messages"] == 0


def test_size_limits_answer_413(api: Api, node: NodeProcess) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    too_big = {"body": "x" * (1024 * 1024 + 1)}
    assert_problem(api.post(f"/v1/queues/{name}/messages", json=too_big), 413)
    too_many = {"messages": [{"body": i} for i in range(1001)]}
    assert_problem(api.post(f"/v1/queues/{name}/messages", json=too_many), 413)
    assert _status_of_oversized_request(node, api, f"/v1/queues/{name}/messages", 25 * 1024 * 1024) == 413
    assert api.get(f"/v1/queues/{name}").json()["messages"] == 0


def test_a_413_for_an_unread_body_closes_the_connection_so_the_next_request_gets_a_new_one(
    api: Api, node: NodeProcess
) -> None:
    """The server answers before reading a too-large body, then drops the connection (the rest of the body is
    still on the wire). Without `Connection: close` a keep-alive client sent its next request on that connection
    and got "Server disconnected"."""
    name = qname()
    api.put(f"/v1/queues/{name}")
    head = _oversized_response_head(node, api, f"/v1/queues/{name}/messages", 25 * 1024 * 1024)
    assert head.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in head.lower(), head
    too_big = b'{"body": "' + b"z" * (24 * 1024 * 1024) + b'"}'
    for _ in range(3):  # each 413 on the shared keep-alive client, then a request that must get through
        refused = api.post(f"/v1/queues/{name}/messages", content=too_big, headers={"content-type": "application/json"})
        assert_problem(refused, 413)
        assert api.get(f"/v1/queues/{name}").json()["messages"] == 0


def _oversized_response_head(node: NodeProcess, api: Api, path: str, length: int) -> bytes:
    """The response head to a request whose Content-Length is over the limit, of which only 64 KiB are sent."""
    with socket.create_connection(("127.0.0.1", node.port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Authorization: {api.http.headers['Authorization']}\r\nContent-Length: {length}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"body": "' + b"y" * 65536)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
    return received.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def _status_of_oversized_request(node: NodeProcess, api: Api, path: str, length: int) -> int:
    """The server must refuse a body over its limit from Content-Length, without reading it all."""
    return int(_oversized_response_head(node, api, path, length).split(b"\r\n", 1)[0].split()[1])


@pytest.mark.parametrize(
    "options",
    [{"max_messages": 0}, {"max_messages": 101}, {"wait_s": 21}, {"visibility_timeout_s": 0}, {"nope": 1}],
)
def test_receive_validates_its_options(api: Api, options: dict[str, object]) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    assert_problem(api.post(f"/v1/queues/{name}/receive", json=options), 400)


def test_ack_validates_receipts(api: Api) -> None:
    name = qname()
    api.put(f"/v1/queues/{name}")
    assert_problem(api.post(f"/v1/queues/{name}/ack", json={"receipts": []}), 400)
    assert_problem(api.post(f"/v1/queues/{name}/ack", json={"receipts": "abc"}), 400)
    assert_problem(api.post(f"/v1/queues/{name}/ack", json={"receipts": ["not-a-receipt"]}), 400)
