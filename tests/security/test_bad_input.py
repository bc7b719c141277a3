"""Findings 6 and 10: bad input is a clear 4xx problem, never a 500: huge numbers, deep nesting, wrong media
types, non-ASCII digits, OPTIONS, oversized headers."""

from __future__ import annotations

import socket
import uuid

import httpx

from tests.integration.harness import NodeProcess
from tests.security.helpers import admin, assert_problem

JSON = {"content-type": "application/json"}
HUGE = 2**70


def test_integers_beyond_64_bits_are_a_400(node: NodeProcess) -> None:
    api = admin(node.url)
    name = f"big-{uuid.uuid4().hex[:6]}"
    assert_problem(api.put(f"/v1/queues/{name}", json={"max_length": HUGE}), 400)
    assert_problem(api.put(f"/v1/topics/{name}", json={"retention_bytes": HUGE}), 400)
    assert api.put(f"/v1/queues/{name}").status_code == 201
    assert api.put(f"/v1/topics/{name}").status_code == 201
    assert_problem(api.post(f"/v1/queues/{name}/messages", json={"body": 1, "headers": {"n": HUGE}}), 400)
    assert_problem(api.post(f"/v1/queues/{name}/messages", json={"body": 1, "headers": {"x": {"n": -HUGE}}}), 400)
    assert_problem(api.put(f"/v1/topics/{name}/subscriptions/s", json={"start": {"offset": HUGE}}), 400)
    assert_problem(api.get(f"/v1/topics/{name}/messages", params={"from_offset": str(HUGE)}), 400)
    assert api.post(f"/v1/queues/{name}/messages", json={"body": HUGE, "headers": {"n": 2**53}}).status_code == 201


def test_json_bodies_need_a_json_media_type(node: NodeProcess) -> None:
    api = admin(node.url)
    name = f"media-{uuid.uuid4().hex[:6]}"
    assert api.put(f"/v1/queues/{name}").status_code == 201
    for media in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        answer = api.post(f"/v1/queues/{name}/messages", content=b'{"body": 1}', headers={"content-type": media})
        assert_problem(answer, 415, "unsupported-media-type")
    assert api.post(f"/v1/queues/{name}/messages", content=b'{"body": 1}', headers=JSON).status_code == 201
    problem = {"content-type": "application/merge-patch+json"}
    assert api.post(f"/v1/queues/{name}/messages", content=b'{"body": 2}', headers=problem).status_code == 201


def test_query_numbers_must_be_ascii_digits(node: NodeProcess) -> None:
    api = admin(node.url)
    name = f"digits-{uuid.uuid4().hex[:6]}"
    assert api.put(f"/v1/topics/{name}").status_code == 201
    for value in ("\u0661", "\uff11", "1\u0662", "+1", "1e3", " 1"):
        assert_problem(api.get(f"/v1/topics/{name}/messages", params={"from_offset": value}), 400)
    assert api.get(f"/v1/topics/{name}/messages", params={"from_offset": "1"}).status_code == 200


def test_options_and_unknown_methods_are_problems(node: NodeProcess) -> None:
    assert_problem(httpx.request("OPTIONS", node.url + "/v1/queues"), 405)
    assert_problem(httpx.request("PATCH", node.url + "/v1/queues"), 405)


def test_oversized_headers_get_a_problem_body(node: NodeProcess) -> None:
    answer = httpx.get(node.url + "/v1/queues", headers={"X-Big": "a" * 200_000})
    assert_problem(answer, 431)


def test_malformed_request_line_closes_cleanly(node: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        data = sock.recv(4096)
    assert data.startswith(b"HTTP/1.1 400")
