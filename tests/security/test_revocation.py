"""Finding 8: tokens end with their account, by revocation (RFC 7009), and long-lived streams with them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
import trio
from httpx_ws import WebSocketDisconnect

from tests.integration.harness import Api, NodeProcess, token
from tests.security.helpers import admin, assert_problem, node_with, plain_user

SETTINGS = "[auth]\ntoken_ttl_s = 10\n"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = node_with(tmp_path_factory.mktemp("ttl"), SETTINGS)
    yield process
    process.stop()


def test_revoke_endpoint(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    bearer = user.http.headers["Authorization"].split()[1]
    other = Api(node.url, token(node.url, name, "a-long-password"))
    assert user.get("/v1/queues").status_code == 200
    answer = httpx.post(node.url + "/v1/auth/revoke", data={"token": bearer, "token_type_hint": "access_token"})
    assert answer.status_code == 200
    assert_problem(user.get("/v1/queues"), 401)
    assert other.get("/v1/queues").status_code == 200  # only that token
    assert httpx.post(node.url + "/v1/auth/revoke", data={"token": "not-a-token"}).status_code == 200
    assert httpx.post(node.url + "/v1/auth/revoke", json={"token": bearer}).status_code == 200
    missing = httpx.post(node.url + "/v1/auth/revoke", data={})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_deleting_a_user_revokes_its_tokens(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert user.put(f"/v1/queues/{name}.stays").status_code == 201
    boss = admin(node.url)
    assert boss.delete(f"/v1/auth/users/{name}").status_code == 204
    assert_problem(user.get("/v1/queues"), 401)
    form = {"grant_type": "password", "username": name, "password": "a-long-password"}
    assert httpx.post(node.url + "/v1/auth/token", data=form).json()["error"] == "invalid_grant"
    assert_problem(boss.delete(f"/v1/auth/users/{name}"), 404)
    assert_problem(boss.delete("/v1/auth/users/admin"), 409)
    assert boss.get(f"/v1/queues/{name}.stays").json()["owner"] == f"user:{name}"


def test_deleting_a_client_revokes_its_tokens(node: NodeProcess) -> None:
    boss = admin(node.url)
    created = boss.post("/v1/auth/clients", json={"scopes": ["mom.read:x.*"]}).json()
    issued = httpx.post(
        node.url + "/v1/auth/token",
        data={"grant_type": "client_credentials"},
        auth=(created["client_id"], created["client_secret"]),
    ).json()["access_token"]
    service = Api(node.url, issued)
    assert service.get("/v1/queues").status_code == 200
    assert created["client_id"] in [c["client_id"] for c in boss.get("/v1/auth/clients").json()["clients"]]
    assert boss.delete(f"/v1/auth/clients/{created['client_id']}").status_code == 204
    assert_problem(service.get("/v1/queues"), 401)


async def _events_until_closed(url: str, bearer: str, path: str, limit_s: float) -> tuple[bytes, float]:
    started = time.monotonic()
    received = b""
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {bearer}"}, timeout=60) as http:
        with trio.fail_after(limit_s):
            async with http.stream("GET", path) as answer:
                assert answer.status_code == 200
                async for chunk in answer.aiter_raw():
                    received += chunk
    return received, time.monotonic() - started


async def test_sse_closes_at_token_expiry(short_lived: NodeProcess) -> None:
    name, user = plain_user(short_lived.url)
    assert user.put(f"/v1/topics/{name}.t").status_code == 201
    assert user.put(f"/v1/topics/{name}.t/subscriptions/s").status_code == 201
    bearer = token(short_lived.url, name, "a-long-password")
    received, took = await _events_until_closed(
        short_lived.url, bearer, f"/v1/topics/{name}.t/subscriptions/s/events", 30
    )
    assert b"event: error" in received and b"expired" in received
    assert took <= 14


async def test_sse_closes_on_revocation(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert user.put(f"/v1/topics/{name}.t").status_code == 201
    assert user.put(f"/v1/topics/{name}.t/subscriptions/s").status_code == 201
    bearer = user.http.headers["Authorization"].split()[1]

    async def revoke_soon() -> None:
        await trio.sleep(1.0)
        async with httpx.AsyncClient() as http:
            await http.post(node.url + "/v1/auth/revoke", data={"token": bearer})

    async with trio.open_nursery() as nursery:
        nursery.start_soon(revoke_soon)
        received, took = await _events_until_closed(node.url, bearer, f"/v1/topics/{name}.t/subscriptions/s/events", 10)
    assert b"revoked" in received and took < 8


async def test_a_websocket_closes_when_its_token_is_revoked(node: NodeProcess) -> None:
    from tests.integration.test_stream_api import socket

    _, user = plain_user(node.url)
    bearer = user.http.headers["Authorization"].split()[1]
    async with socket(node.url, bearer) as ws:
        async with httpx.AsyncClient() as http:
            assert (await http.post(node.url + "/v1/auth/revoke", data={"token": bearer})).status_code == 200
        with trio.fail_after(10), pytest.raises(WebSocketDisconnect) as closed:
            while True:
                await ws.receive_text(timeout=10.0)
    assert closed.value.code == 1008
