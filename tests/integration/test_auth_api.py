"""Auth over the wire: registration, the OAuth 2.0 token endpoint, JWT checks and scope enforcement."""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, new_user, token
from tests.integration.test_queues_api import assert_problem


def test_every_v1_endpoint_requires_a_token(node: NodeProcess) -> None:
    for method, path in [
        ("get", "/v1/queues"),
        ("put", "/v1/queues/a"),
        ("post", "/v1/queues/a/messages"),
        ("get", "/v1/topics"),
        ("get", "/v1/cluster"),
    ]:
        response = httpx.request(method, node.url + path, json={})
        assert_problem(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer garbage",
        "Basic dXNlcjpwYXNz",
        "Bearer",
        "Bearer a.b.c",
        "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9.",
    ],
)
def test_bad_tokens_are_refused(node: NodeProcess, header: str) -> None:
    assert_problem(httpx.get(node.url + "/v1/queues", headers={"Authorization": header}), 401)


def test_a_tampered_token_is_refused(node: NodeProcess) -> None:
    _, bearer = new_user(node.url)
    header, payload, signature = bearer.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "mom.admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = httpx.get(node.url + "/v1/queues", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"})
    assert_problem(response, 401)


def test_token_endpoint_accepts_form_and_json_and_answers_oauth_errors(node: NodeProcess) -> None:
    username = f"u-{uuid.uuid4().hex[:8]}"
    httpx.post(node.url + "/v1/auth/users", json={"username": username, "password": "password-123"})
    form = httpx.post(
        node.url + "/v1/auth/token",
        data={"grant_type": "password", "username": username, "password": "password-123"},
    )
    assert form.status_code == 200
    body = form.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0 and f"mom.write:{username}.*" in body["scope"]
    as_json = httpx.post(
        node.url + "/v1/auth/token",
        json={"grant_type": "password", "username": username, "password": "password-123"},
    )
    assert as_json.status_code == 200
    wrong = httpx.post(
        node.url + "/v1/auth/token",
        data={"grant_type": "password", "username": username, "password": "wrong-password"},
    )
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    unknown = httpx.post(
        node.url + "/v1/auth/token",
        data={"grant_type": "password", "username": "nobody-here", "password": "wrong-password"},
    )
    assert unknown.json() == wrong.json()
    unsupported = httpx.post(node.url + "/v1/auth/token", data={"grant_type": "implicit"})
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"


def test_jwks_publishes_the_signing_key_named_in_tokens(node: NodeProcess) -> None:
    _, bearer = new_user(node.url)
    header = json.loads(base64.urlsafe_b64decode(bearer.split(".")[0] + "=="))
    keys = httpx.get(node.url + "/.well-known/jwks.json").json()["keys"]
    assert header["kid"] in [k["kid"] for k in keys]
    assert header["alg"] in ("EdDSA", "ES256")
    assert all("d" not in k for k in keys)


def test_registration_validates_and_refuses_duplicates(node: NodeProcess) -> None:
    name = f"u-{uuid.uuid4().hex[:8]}"
    assert (
        httpx.post(node.url + "/v1/auth/users", json={"username": name, "password": "password-123"}).status_code == 201
    )
    assert_problem(httpx.post(node.url + "/v1/auth/users", json={"username": name, "password": "password-456"}), 409)
    assert_problem(httpx.post(node.url + "/v1/auth/users", json={"username": "x y", "password": "password-123"}), 400)
    assert_problem(httpx.post(node.url + "/v1/auth/users", json={"username": "short-pw", "password": "123"}), 400)


def test_scopes_limit_what_a_token_may_do(node: NodeProcess, admin: Api) -> None:
    username = f"u-{uuid.uuid4().hex[:8]}"
    httpx.post(node.url + "/v1/auth/users", json={"username": username, "password": "password-123"})
    admin.post(f"/v1/auth/users/{username}/grant", json={"scopes": ["mom.read:*", "mom.write:*", "mom.configure:*"]})
    full = Api(node.url, token(node.url, username, "password-123"))
    full.put("/v1/queues/orders.eu")
    full.put("/v1/queues/payments")
    narrow = Api(node.url, token(node.url, username, "password-123", scope="mom.write:orders.* mom.read:orders.*"))
    assert narrow.post("/v1/queues/orders.eu/messages", json={"body": 1}).status_code == 201
    assert_problem(narrow.post("/v1/queues/payments/messages", json={"body": 1}), 403)
    assert_problem(narrow.put("/v1/queues/orders.new"), 403)
    assert [q["name"] for q in narrow.get("/v1/queues").json()["queues"]] == ["orders.eu"]
    wider = httpx.post(
        node.url + "/v1/auth/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": "password-123",
            "scope": "mom.admin",
        },
    )
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_only_the_creator_or_an_admin_may_delete(node: NodeProcess, admin: Api) -> None:
    _, owner_token = new_user(node.url)
    _, other_token = new_user(node.url)
    owner, other = Api(node.url, owner_token), Api(node.url, other_token)
    name = f"owned-{uuid.uuid4().hex[:8]}"
    owner.put(f"/v1/queues/{name}")
    owner.put(f"/v1/topics/{name}")
    assert_problem(other.delete(f"/v1/queues/{name}"), 403)
    assert_problem(other.delete(f"/v1/topics/{name}"), 403)
    assert owner.delete(f"/v1/queues/{name}").status_code == 204
    assert admin.delete(f"/v1/topics/{name}").status_code == 204


def test_client_credentials_created_by_an_admin(node: NodeProcess, admin: Api) -> None:
    created = admin.post("/v1/auth/clients", json={"scopes": ["mom.read:reports.*"]})
    assert created.status_code == 201
    client_id, secret = created.json()["client_id"], created.json()["client_secret"]
    issued = httpx.post(
        node.url + "/v1/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert issued.status_code == 200 and issued.json()["scope"] == "mom.read:reports.*"
    service = Api(node.url, issued.json()["access_token"])
    assert_problem(service.put("/v1/queues/reports.daily"), 403)
    bad = httpx.post(
        node.url + "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "wrong"},
    )
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    _, user_token = new_user(node.url)
    assert_problem(Api(node.url, user_token).post("/v1/auth/clients", json={"scopes": ["mom.admin"]}), 403)
    assert token(node.url, "admin", ADMIN_PASSWORD)
