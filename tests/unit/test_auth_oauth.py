"""The OAuth 2.0 token endpoint: password and client_credentials grants, and RFC 6749 §5.2 errors."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
import trio

from mom.api.auth import PUBLIC_CLIENT_ID, SigningKeys, TokenEndpoint, TokenService, hash_secret
from mom.api.auth import oauth as oauth_module
from mom.broker.commands import ClientRecord, UserRecord

USERS = {
    "alice": ("wonderland", ["mom.read:*", "mom.write:*", "mom.configure:*"]),
    "root": ("toor", ["mom.admin"]),
}
CLIENTS = {"billing": ("s3cret", ["mom.read:invoices.*", "mom.write:invoices.*"])}


class Accounts:
    def __init__(self) -> None:
        self.users = {
            name: UserRecord(name, hash_secret(password), scopes, 0) for name, (password, scopes) in USERS.items()
        }
        self.clients = {
            cid: ClientRecord(cid, hash_secret(secret), scopes, "root", 0) for cid, (secret, scopes) in CLIENTS.items()
        }

    def user(self, username: str) -> UserRecord | None:
        return self.users.get(username)

    def client(self, client_id: str) -> ClientRecord | None:
        return self.clients.get(client_id)

    def tokens_valid_from_ms(self, subject: str) -> int | None:
        return None


@pytest.fixture(scope="module")
def accounts() -> Accounts:
    return Accounts()


@pytest.fixture(scope="module")
def tokens() -> TokenService:
    return TokenService(SigningKeys.generate(), issuer="urn:mom", audience="mom", ttl_s=900)


@pytest.fixture
def endpoint(accounts: Accounts, tokens: TokenService) -> TokenEndpoint:
    return TokenEndpoint(accounts, tokens)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def assert_error(answer: tuple[int, dict[str, Any], dict[str, str]], status: int, error: str) -> dict[str, Any]:
    got_status, body, headers = answer
    assert (got_status, body["error"]) == (status, error), body
    assert isinstance(body["error_description"], str) and body["error_description"]
    assert headers["Cache-Control"] == "no-store"
    return body


# ---------------------------------------------------------------------------------------------------------
# password grant


async def test_password_grant_without_a_client(endpoint: TokenEndpoint, tokens: TokenService) -> None:
    params = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    status, body, headers = await endpoint.handle(params, None)
    assert status == 200
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    assert body["scope"] == "mom.read:* mom.write:* mom.configure:*"
    assert headers["Cache-Control"] == "no-store" and "WWW-Authenticate" not in headers
    caller = tokens.verify(body["access_token"])
    assert caller.subject == "user:alice" and caller.client_id == PUBLIC_CLIENT_ID
    assert caller.scopes == {"mom.read:*", "mom.write:*", "mom.configure:*"}


async def test_password_grant_narrows_scopes(endpoint: TokenEndpoint, tokens: TokenService) -> None:
    params = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    status, body, _ = await endpoint.handle({**params, "scope": "mom.read:orders.* mom.write:orders.eu"}, None)
    assert status == 200 and body["scope"] == "mom.read:orders.* mom.write:orders.eu"
    caller = tokens.verify(body["access_token"])
    assert caller.can("read", "orders.us") and not caller.can("read", "invoices")
    assert caller.can("write", "orders.eu") and not caller.can("write", "orders.us")


async def test_admin_user_gets_admin(endpoint: TokenEndpoint, tokens: TokenService) -> None:
    params = {"grant_type": "password", "username": "root", "password": "toor"}
    _, body, _ = await endpoint.handle(params, None)
    assert tokens.verify(body["access_token"]).is_admin


@pytest.mark.parametrize("scope", ["mom.admin", "mom.read:* mom.delete:*", 'mom.read:"x"\\'])
async def test_password_grant_invalid_scope(endpoint: TokenEndpoint, scope: str) -> None:
    params = {"grant_type": "password", "username": "alice", "password": "wonderland", "scope": scope}
    body = assert_error(await endpoint.handle(params, None), 400, "invalid_scope")
    assert '"' not in body["error_description"] and "\\" not in body["error_description"]


async def test_wrong_password_and_unknown_user_look_the_same(endpoint: TokenEndpoint) -> None:
    wrong = await endpoint.handle({"grant_type": "password", "username": "alice", "password": "nope"}, None)
    unknown = await endpoint.handle({"grant_type": "password", "username": "bob", "password": "nope"}, None)
    assert_error(wrong, 400, "invalid_grant")
    assert wrong == unknown


@pytest.mark.parametrize("missing", ["username", "password"])
async def test_password_grant_missing_params(endpoint: TokenEndpoint, missing: str) -> None:
    params = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    del params[missing]
    body = assert_error(await endpoint.handle(params, None), 400, "invalid_request")
    assert missing in body["error_description"]


async def test_password_grant_through_a_registered_client(endpoint: TokenEndpoint, tokens: TokenService) -> None:
    params = {"grant_type": "password", "username": "alice", "password": "wonderland"}
    status, body, _ = await endpoint.handle(params, basic("billing", "s3cret"))
    assert status == 200
    caller = tokens.verify(body["access_token"])
    assert (caller.subject, caller.client_id) == ("user:alice", "billing")
    status, body, _ = await endpoint.handle({**params, "client_id": "billing", "client_secret": "s3cret"}, None)
    assert status == 200 and tokens.verify(body["access_token"]).client_id == "billing"


async def test_password_grant_with_a_confidential_client_must_authenticate(endpoint: TokenEndpoint) -> None:
    params = {"grant_type": "password", "username": "alice", "password": "wonderland", "client_id": "billing"}
    assert_error(await endpoint.handle(params, None), 401, "invalid_client")
    assert_error(await endpoint.handle(params, basic("billing", "wrong")), 401, "invalid_client")


# ---------------------------------------------------------------------------------------------------------
# client_credentials grant


async def test_client_credentials_in_the_body(endpoint: TokenEndpoint, tokens: TokenService) -> None:
    params = {"grant_type": "client_credentials", "client_id": "billing", "client_secret": "s3cret"}
    status, body, headers = await endpoint.handle(params, None)
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert body["scope"] == "mom.read:invoices.* mom.write:invoices.*"
    caller = tokens.verify(body["access_token"])
    assert (caller.subject, caller.client_id) == ("client:billing", "billing")
    assert caller.can("write", "invoices.2024") and not caller.can("write", "orders")


async def test_client_credentials_with_basic_and_scope(endpoint: TokenEndpoint, tokens: TokenService) -> None:
    params = {"grant_type": "client_credentials", "scope": "mom.read:invoices.eu"}
    status, body, _ = await endpoint.handle(params, basic("billing", "s3cret"))
    assert status == 200 and body["scope"] == "mom.read:invoices.eu"
    assert tokens.verify(body["access_token"]).scopes == {"mom.read:invoices.eu"}


async def test_client_credentials_scope_beyond_the_client(endpoint: TokenEndpoint) -> None:
    params = {"grant_type": "client_credentials", "scope": "mom.read:*"}
    assert_error(await endpoint.handle(params, basic("billing", "s3cret")), 400, "invalid_scope")


async def test_client_credentials_bad_secret(endpoint: TokenEndpoint) -> None:
    in_body = {"grant_type": "client_credentials", "client_id": "billing", "client_secret": "nope"}
    by_basic = {"grant_type": "client_credentials"}
    for params, authorization in [(by_basic, basic("billing", "nope")), (in_body, None)]:
        answer = await endpoint.handle(params, authorization)
        assert_error(answer, 401, "invalid_client")
        assert answer[2]["WWW-Authenticate"].startswith("Basic realm=")


@pytest.mark.parametrize(
    ("params", "authorization"),
    [
        ({"grant_type": "client_credentials"}, None),
        ({"grant_type": "client_credentials", "client_id": "ghost", "client_secret": "x"}, None),
        ({"grant_type": "client_credentials"}, basic("ghost", "x")),
        ({"grant_type": "client_credentials", "client_id": PUBLIC_CLIENT_ID}, None),
        ({"grant_type": "client_credentials"}, "Basic !!!not-base64"),
        ({"grant_type": "client_credentials"}, "Basic " + base64.b64encode(b"\xff\xfe:x").decode()),
    ],
)
async def test_client_credentials_without_a_valid_client(
    endpoint: TokenEndpoint, params: dict[str, str], authorization: str | None
) -> None:
    assert_error(await endpoint.handle(params, authorization), 401, "invalid_client")


# ---------------------------------------------------------------------------------------------------------
# the request itself


@pytest.mark.parametrize("grant_type", ["authorization_code", "refresh_token", 'x"y\\z\u00e9'])
async def test_unsupported_grant_type(endpoint: TokenEndpoint, grant_type: str) -> None:
    body = assert_error(await endpoint.handle({"grant_type": grant_type}, None), 400, "unsupported_grant_type")
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in body["error_description"])


@pytest.mark.parametrize("params", [{}, {"grant_type": ""}, {"username": "alice", "password": "wonderland"}])
async def test_missing_grant_type(endpoint: TokenEndpoint, params: dict[str, str]) -> None:
    assert_error(await endpoint.handle(params, None), 400, "invalid_request")


async def test_token_requests_leave_the_loop_free(endpoint: TokenEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    """The password check only finishes once another trio task has run: on the loop thread it would hang."""
    loop_ran = threading.Event()

    def check_needing_the_loop(secret_hash: str | None, secret: str) -> bool:
        assert loop_ran.wait(timeout=5), "the trio loop was blocked during the token request"
        return True

    async def other_task() -> None:
        await trio.sleep(0.01)
        loop_ran.set()

    monkeypatch.setattr(oauth_module, "check_secret", check_needing_the_loop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        status, _, _ = await endpoint.handle({"grant_type": "password", "username": "alice", "password": "?"}, None)
    assert status == 200
