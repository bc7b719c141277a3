"""Finding 3: a new user may use its own prefix only; admins grant more; registration is closed by default."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.integration.harness import NodeProcess, token
from tests.security.helpers import admin, assert_problem, plain_user, register


def test_a_new_user_gets_its_own_prefix_only(node: NodeProcess) -> None:
    name, alice = plain_user(node.url)
    answer = httpx.post(
        node.url + "/v1/auth/token", data={"grant_type": "password", "username": name, "password": "a-long-password"}
    )
    assert set(answer.json()["scope"].split()) == {f"mom.{a}:{name}.*" for a in ("read", "write", "configure")}
    assert alice.put(f"/v1/queues/{name}.inbox").status_code == 201
    assert alice.post(f"/v1/queues/{name}.inbox/messages", json={"body": 1}).status_code == 201
    assert_problem(alice.put(f"/v1/queues/shared-{uuid.uuid4().hex[:6]}"), 403)
    assert_problem(alice.put(f"/v1/queues/{name}"), 403)


def test_users_cannot_read_each_others_data(node: NodeProcess) -> None:
    bob_name, bob = plain_user(node.url)
    _, eve = plain_user(node.url)
    assert bob.put(f"/v1/queues/{bob_name}.private").status_code == 201
    assert bob.post(f"/v1/queues/{bob_name}.private/messages", json={"body": "secret"}).status_code == 201
    assert_problem(eve.post(f"/v1/queues/{bob_name}.private/receive", json={}), 403)
    assert_problem(eve.get(f"/v1/queues/{bob_name}.private"), 403)
    assert f"{bob_name}.private" not in [q["name"] for q in eve.get("/v1/queues").json()["queues"]]
    names = [d["name"] for d in eve.get("/v1/cluster").json()["destinations"]]
    assert f"{bob_name}.private" not in names
    assert f"{bob_name}.private" in [d["name"] for d in bob.get("/v1/cluster").json()["destinations"]]


def test_an_admin_grants_and_revokes_scopes(node: NodeProcess) -> None:
    name, _ = plain_user(node.url)
    boss = admin(node.url)
    shared = f"shared-{uuid.uuid4().hex[:6]}"
    assert boss.put(f"/v1/queues/{shared}").status_code == 201
    granted = boss.post(f"/v1/auth/users/{name}/grant", json={"scopes": [f"mom.write:{shared}"]})
    assert granted.status_code == 200 and f"mom.write:{shared}" in granted.json()["scopes"]
    writer = httpx.Client(
        base_url=node.url, headers={"Authorization": f"Bearer {token(node.url, name, 'a-long-password')}"}
    )
    assert writer.post(f"/v1/queues/{shared}/messages", json={"body": 1}).status_code == 201
    listed = {u["username"]: u for u in boss.get("/v1/auth/users").json()["users"]}
    assert f"mom.write:{shared}" in listed[name]["scopes"]
    revoked = boss.post(f"/v1/auth/users/{name}/revoke", json={"scopes": [f"mom.write:{shared}"]})
    assert revoked.status_code == 200 and f"mom.write:{shared}" not in revoked.json()["scopes"]
    assert_problem(writer.post(f"/v1/queues/{shared}/messages", json={"body": 2}), 401)
    fresh = httpx.Client(
        base_url=node.url, headers={"Authorization": f"Bearer {token(node.url, name, 'a-long-password')}"}
    )
    assert_problem(fresh.post(f"/v1/queues/{shared}/messages", json={"body": 3}), 403)
    assert fresh.put(f"/v1/queues/{name}.mine").status_code == 201


def test_only_admins_manage_accounts(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    assert_problem(user.get("/v1/auth/users"), 403)
    assert_problem(user.post(f"/v1/auth/users/{name}/grant", json={"scopes": ["mom.admin"]}), 403)
    assert_problem(user.delete(f"/v1/auth/users/{name}"), 403)
    assert user.get(f"/v1/auth/users/{name}").status_code == 200


def test_registration_is_closed_by_default(tmp_path: Path) -> None:
    closed = NodeProcess(tmp_path / "data", env={"MOM_OPEN_REGISTRATION": ""})
    closed.start()
    try:
        assert_problem(register(closed.url, "walker"), 401)
        boss = admin(closed.url)
        assert register(closed.url, "walker", bearer=boss.http.headers["Authorization"].split()[1]).status_code == 201
        assert token(closed.url, "walker", "a-long-password")
    finally:
        closed.stop()
