"""The lean path of the single-message routes (mom.api.lean) answers exactly as Quart does, errors included.

The lean path serves POST publish, receive and ack without a query string; the same request with a query
string (which those routes ignore) goes through Quart. Each case sends both and compares status, the headers a
client acts on and the problem body.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from tests.integration.harness import NodeProcess
from tests.security.helpers import admin, assert_problem, node_with, plain_user

LIMITS = "[quotas]\nlong_polls = 1\n[limits]\nmax_message_bytes = 100\nmax_batch_bytes = 1000\n"
COMPARED = ("content-type", "retry-after", "www-authenticate", "x-mom-leader", "content-length")
VIA_QUART = "?via=quart"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = node_with(tmp_path_factory.mktemp("lean"), LIMITS)
    yield process
    process.stop()


def both(http: httpx.Client, path: str, **kwargs: Any) -> tuple[httpx.Response, httpx.Response]:
    """The same POST through the lean path and through Quart."""
    return http.post(path, **kwargs), http.post(path + VIA_QUART, **kwargs)


def assert_same(lean: httpx.Response, quart: httpx.Response, status: int, slug: str) -> None:
    assert_problem(lean, status, slug)
    assert (lean.status_code, lean.json()) == (quart.status_code, quart.json())
    assert {h: lean.headers.get(h) for h in COMPARED} == {h: quart.headers.get(h) for h in COMPARED}


ROUTES = ("/messages", "/receive", "/ack")


def test_unauthenticated_and_forbidden(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert user.put(f"/v1/queues/{name}.q").status_code == 201
    with httpx.Client(base_url=node.url, timeout=30) as anonymous:
        for route in ROUTES:
            assert_same(*both(anonymous, f"/v1/queues/{name}.q{route}", json={}), 401, "unauthorized")
            bad = {"Authorization": "Bearer not.a.token"}
            assert_same(*both(anonymous, f"/v1/queues/{name}.q{route}", json={}, headers=bad), 401, "unauthorized")
    boss = admin(node.url)
    assert boss.put("/v1/queues/not-yours").status_code == 201
    assert boss.put("/v1/topics/not-yours-t").status_code == 201
    for route in ROUTES:
        assert_same(*both(user.http, f"/v1/queues/not-yours{route}", json={}), 403, "forbidden")
    assert_same(*both(user.http, "/v1/topics/not-yours-t/messages", json={"body": 1}), 403, "forbidden")


def test_missing_destinations(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    for route in ROUTES:
        body = {"receipts": ["1.1.1"]} if route == "/ack" else {"body": 1} if route == "/messages" else {}
        assert_same(*both(user.http, f"/v1/queues/{name}.none{route}", json=body), 404, "not-found")
    assert_same(*both(user.http, f"/v1/topics/{name}.none/messages", json={"body": 1}), 404, "not-found")
    assert user.put(f"/v1/topics/{name}.t").status_code == 201
    sub = f"/v1/topics/{name}.t/subscriptions/none"
    assert_same(*both(user.http, sub + "/receive", json={}), 404, "not-found")


def test_bad_bodies(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert user.put(f"/v1/queues/{name}.q").status_code == 201
    path = f"/v1/queues/{name}.q"
    json_type = {"Content-Type": "application/json"}
    for route in ROUTES:
        assert_same(*both(user.http, path + route, content=b"{nope", headers=json_type), 400, "malformed")
        text = {"Content-Type": "text/plain"}
        assert_same(*both(user.http, path + route, content=b"{}", headers=text), 415, "unsupported-media-type")
        huge = b'{"body": "' + b"x" * 3_000_000 + b'"}'
        # A connection that got a 413 for an unread body may be closed under the client's next request
        # (Hypercorn, either path): each oversized request gets a connection of its own.
        lean, quart = (
            httpx.post(node.url + path + route + query, content=huge, headers={**user.http.headers, **json_type})
            for query in ("", VIA_QUART)
        )
        assert_same(lean, quart, 413, "request-entity-too-large")
    assert_same(*both(user.http, path + "/messages", json={"body": "x" * 200}), 413, "too-large")
    assert_same(*both(user.http, path + "/messages", json={"bodyy": 1}), 400, "invalid-input")
    assert_same(*both(user.http, path + "/receive", json={"max_messages": 0}), 400, "invalid-input")
    assert_same(*both(user.http, path + "/ack", json={"receipts": ["nope"]}), 400, "invalid-input")
    deep = b'{"body": ' + b"[" * 100 + b"]" * 100 + b"}"
    assert_same(*both(user.http, path + "/messages", content=deep, headers=json_type), 400, "invalid-input")


def test_success_answers_have_the_same_shape(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert user.put(f"/v1/queues/{name}.q").status_code == 201
    path = f"/v1/queues/{name}.q"
    lean, quart = both(user.http, path + "/messages", json={"body": {"n": 1}})
    assert lean.status_code == quart.status_code == 201
    assert lean.headers["x-mom-leader"] == quart.headers["x-mom-leader"]
    assert lean.headers["content-type"] == quart.headers["content-type"] == "application/json"
    assert [set(m) for m in lean.json()["messages"]] == [set(m) for m in quart.json()["messages"]]
    received = [user.post(path + "/receive", json={"max_messages": 1}).json()["messages"][0] for _ in range(2)]
    assert received[0]["body"] == received[1]["body"] == {"n": 1}
    lean, quart = (
        user.post(path + "/ack", json={"receipts": [received[0]["receipt"]]}),
        user.post(path + "/ack" + VIA_QUART, json={"receipts": [received[1]["receipt"]]}),
    )
    assert lean.json() == {"acked": [received[0]["receipt"]], "unknown": []}
    assert quart.json() == {"acked": [received[1]["receipt"]], "unknown": []}
    assert lean.headers["x-mom-leader"] == quart.headers["x-mom-leader"]


async def test_long_poll_quota(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert user.put(f"/v1/queues/{name}.q").status_code == 201
    path = f"/v1/queues/{name}.q/receive"
    headers = dict(user.http.headers)
    async with (
        httpx.AsyncClient(base_url=node.url, headers=headers, timeout=30) as http,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(lambda: http.post(path, json={"wait_s": 3}))
        await trio.sleep(1.0)
        lean = await http.post(path, json={"wait_s": 1})
        quart = await http.post(path + VIA_QUART, json={"wait_s": 1})
    assert_same(lean, quart, 429, "quota-long-polls")


async def test_a_long_poll_ends_when_its_client_leaves(node: NodeProcess) -> None:
    """A receive the client gave up on leases nothing: its wait is cancelled with the connection."""
    name, user = plain_user(node.url)
    assert user.put(f"/v1/queues/{name}.q").status_code == 201
    path = f"/v1/queues/{name}.q"
    async with httpx.AsyncClient(base_url=node.url, headers=dict(user.http.headers), timeout=30) as http:
        with trio.move_on_after(1.0):
            await http.post(path + "/receive", json={"wait_s": 10})
    await trio.sleep(0.5)
    user.publish(f"{name}.q", "after")
    assert [m["body"] for m in user.receive(f"{name}.q", wait_s=1)] == ["after"]
