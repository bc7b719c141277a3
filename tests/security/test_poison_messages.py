"""Finding 2: what is stored is always valid JSON; a body that is not is refused at the edge, and nothing else."""

from __future__ import annotations

import uuid

from mom.client import Client
from tests.integration.harness import ADMIN_PASSWORD, NodeProcess
from tests.security.helpers import admin, assert_problem

JSON = {"content-type": "application/json"}


def test_invalid_utf8_in_a_body_is_refused_and_the_queue_stays_readable(node: NodeProcess) -> None:
    api = admin(node.url)
    queue = f"poison-{uuid.uuid4().hex[:6]}"
    assert api.put(f"/v1/queues/{queue}").status_code == 201
    assert api.post(f"/v1/queues/{queue}/messages", json={"body": "good"}).status_code == 201
    for raw in (b'{"body": "\xff\xfe"}', b'{"body": {"k\xc3": 1}}', b'{"messages": [{"body": "\xed\xa0\x80"}]}'):
        answer = api.post(f"/v1/queues/{queue}/messages", content=raw, headers=JSON)
        assert "UTF-8" in assert_problem(answer, 400)["detail"]
    assert api.post(f"/v1/queues/{queue}/messages", json={"body_base64": "//4="}).status_code == 201
    with Client(node.url, username="admin", password=ADMIN_PASSWORD) as client:
        bodies = [m.get("body", m.get("body_base64")) for m in client.receive(queue=queue, max_messages=10)]
    assert bodies == ["good", b"\xff\xfe"]


def test_deep_nesting_is_refused_with_a_clear_400(node: NodeProcess) -> None:
    api = admin(node.url)
    queue = f"deep-{uuid.uuid4().hex[:6]}"
    assert api.put(f"/v1/queues/{queue}").status_code == 201
    for raw in (
        b'{"body":' + b"[" * 990 + b"]" * 990 + b"}",
        b'{"body":1,"headers":{"a":' + b"[" * 5000 + b"]" * 5000 + b"}}",
        b'{"body":' + b'{"a":' * 65 + b"1" + b"}" * 65 + b"}",
    ):
        assert (
            "deep" in assert_problem(api.post(f"/v1/queues/{queue}/messages", content=raw, headers=JSON), 400)["detail"]
        )
    fine = b'{"body":' + b"[" * 60 + b'"[[[[{{{{"' + b"]" * 60 + b"}"
    assert api.post(f"/v1/queues/{queue}/messages", content=fine, headers=JSON).status_code == 201
    assert_problem(api.post("/v1/auth/token", content=b"[" * 5000 + b"]" * 5000, headers=JSON), 400)
