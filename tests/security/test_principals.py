"""Finding 1: users and clients are distinct principals; names are case-insensitive; system names are reserved."""

from __future__ import annotations

import uuid

from tests.integration.harness import Api, NodeProcess, token
from tests.security.helpers import admin, assert_problem, plain_user, register


def test_a_user_named_like_a_client_cannot_take_over_its_destinations(node: NodeProcess) -> None:
    boss = admin(node.url)
    client_id = f"ci-bot-{uuid.uuid4().hex[:6]}"
    created = boss.post("/v1/auth/clients", json={"client_id": client_id, "scopes": ["mom.configure:*"]})
    assert created.status_code == 201, created.text
    service = Api(node.url, _client_token(node, client_id, created.json()["client_secret"]))
    queue = f"builds-{uuid.uuid4().hex[:6]}"
    assert service.put(f"/v1/queues/{queue}").status_code == 201
    assert service.get(f"/v1/queues/{queue}").status_code in (200, 403)
    assert_problem(register(node.url, client_id), 409)
    assert_problem(register(node.url, client_id.upper()), 409)
    _, attacker = plain_user(node.url)
    boss.post(f"/v1/auth/users/{_name(attacker)}/grant", json={"scopes": ["mom.configure:*"]})
    attacker = Api(node.url, token(node.url, _name(attacker), "a-long-password"))
    assert_problem(attacker.delete(f"/v1/queues/{queue}"), 403)
    owner = boss.get(f"/v1/queues/{queue}").json()["owner"]
    assert owner == f"client:{client_id}"


def test_a_client_cannot_take_a_user_name(node: NodeProcess) -> None:
    name, _ = plain_user(node.url, prefix="taken")
    answer = admin(node.url).post("/v1/auth/clients", json={"client_id": name, "scopes": ["mom.read:x.*"]})
    assert_problem(answer, 409)


def test_names_are_case_insensitive(node: NodeProcess) -> None:
    name = f"Carol{uuid.uuid4().hex[:6]}"
    created = register(node.url, name)
    assert created.status_code == 201 and created.json()["username"] == name.lower()
    assert created.json()["subject"] == f"user:{name.lower()}"
    assert_problem(register(node.url, name.lower()), 409)
    assert_problem(register(node.url, name.upper()), 409)
    assert token(node.url, name.upper(), "a-long-password")
    assert_problem(register(node.url, "ADMIN"), 409)


def test_system_like_names_are_reserved(node: NodeProcess) -> None:
    for name in ("admin", "Admin", "mom", "root", "administrator", "admin-2", "mom_ops", "node"):
        assert_problem(register(node.url, name), 409)
    answer = admin(node.url).post("/v1/auth/clients", json={"client_id": "mom", "scopes": ["mom.read:x.*"]})
    assert_problem(answer, 409)


def test_subjects_name_the_kind_of_principal(node: NodeProcess) -> None:
    name, user = plain_user(node.url)
    queue = f"{name}.q"
    assert user.put(f"/v1/queues/{queue}").status_code == 201
    assert user.get(f"/v1/queues/{queue}").json()["owner"] == f"user:{name}"


def _client_token(node: NodeProcess, client_id: str, secret: str) -> str:
    import httpx

    answer = httpx.post(
        node.url + "/v1/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _name(api: Api) -> str:
    import base64
    import json

    bearer = api.http.headers["Authorization"].split()[1]
    payload = bearer.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return str(claims["sub"]).partition(":")[2]
