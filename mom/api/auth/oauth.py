"""The OAuth 2.0 token endpoint: password (RFC 6749 §4.3) and client_credentials (§4.4) grants.

authlib supplies the grant logic (client authentication methods, parameter checks, error codes); this module
supplies the framework hooks it leaves open, the account adapters and the mom rules: a request naming no
client is the built-in public client `mom`, a token's scopes are its owner's scopes narrowed by `scope`, and
an unknown user is answered exactly like a wrong password. authlib is synchronous and argon2 costs tens of
milliseconds, so each request runs in a worker thread under the shared hashing limiter.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import msgspec
import trio
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    ClientMixin,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    OAuth2Error,
)

from mom.api.auth.passwords import check_secret, hashing_limiter, verify_secret
from mom.api.auth.scopes import narrow
from mom.api.auth.tokens import TokenService
from mom.broker.accounts import client_subject, user_subject
from mom.broker.commands import ClientRecord, UserRecord
from mom.errors import InvalidInput

PUBLIC_CLIENT_ID = "mom"
"""The built-in public client of password-grant requests that name no client (the README's curl tour)."""

_TOKEN_URI = "http://127.0.0.1/v1/auth/token"
"""authlib refuses request URLs other than https or loopback. Transport security belongs to the server in
front of this endpoint (TLS in hypercorn or a proxy), which this framework-free class does not see."""

_RESPONSE_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_SECRET_METHODS = ("client_secret_basic", "client_secret_post")
_UNSAFE_DESCRIPTION = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")


class AccountLookup(Protocol):
    def user(self, username: str) -> UserRecord | None: ...

    def client(self, client_id: str) -> ClientRecord | None: ...

    def tokens_valid_from_ms(self, subject: str) -> int | None: ...


Answer = tuple[int, dict[str, Any], dict[str, str]]


class TokenEndpoint:
    """POST /v1/auth/token, minus HTTP: parsed parameters in, (status, JSON body, extra headers) out."""

    def __init__(self, accounts: AccountLookup, tokens: TokenService) -> None:
        self._server = _Server(accounts, tokens)

    async def handle(self, params: Mapping[str, str], authorization: str | None) -> Answer:
        """Answer a token request; errors follow RFC 6749 §5.2 and never raise."""
        basic = authorization is not None and authorization[:6].lower() == "basic "
        if basic and not _decodable_basic(authorization or ""):
            return _error_answer(InvalidClientError("malformed HTTP Basic credentials"))
        if not params.get("grant_type"):
            return _error_answer(InvalidRequestError("Missing 'grant_type' in request."))
        data = dict(params)
        if data["grant_type"] == "password" and "client_id" not in data and not basic:
            data["client_id"] = PUBLIC_CLIENT_ID
        request = _Request(data, authorization if basic else None)
        answer: Answer = await trio.to_thread.run_sync(
            self._server.create_token_response, request, limiter=hashing_limiter()
        )
        return answer


class _Client(ClientMixin):  # type: ignore[misc]
    """A registered client (confidential: it holds a secret), or the built-in public one (no secret)."""

    def __init__(self, client_id: str, secret_hash: str | None, scopes: Sequence[str]) -> None:
        self.client_id = client_id
        self.secret_hash = secret_hash
        self.scopes = scopes

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret_hash is not None and verify_secret(self.secret_hash, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.secret_hash is None:
            return method == "none"
        return method in _SECRET_METHODS

    def check_grant_type(self, grant_type: str) -> bool:
        if self.secret_hash is None:
            return grant_type == "password"
        return grant_type in ("password", "client_credentials")


_PUBLIC_CLIENT = _Client(PUBLIC_CLIENT_ID, None, ())


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, params: dict[str, str]) -> None:
        self._params = params

    @property
    def data(self) -> dict[str, str]:
        return self._params


class _Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, params: dict[str, str], basic_authorization: str | None) -> None:
        headers = {"Authorization": basic_authorization} if basic_authorization else {}
        super().__init__("POST", _TOKEN_URI, headers=headers)
        self.payload = _Payload(params)

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


def _validate_scope(granted: Sequence[str], requested: str | None) -> None:
    try:
        narrow(granted, requested)
    except InvalidInput as exc:
        raise InvalidScopeError(_description(exc.detail)) from None


class _PasswordGrant(grants.ResourceOwnerPasswordCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = [*_SECRET_METHODS, "none"]

    def authenticate_user(self, username: str, password: str) -> UserRecord:
        user = self.server.accounts.user(username)
        if not check_secret(user.password_hash if user else None, password):
            raise InvalidGrantError("invalid username or password")
        return user  # type: ignore[no-any-return]

    def validate_requested_scope(self) -> None:
        _validate_scope(self.request.user.scopes, self.request.payload.scope)


class _ClientCredentialsGrant(grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = list(_SECRET_METHODS)

    def validate_requested_scope(self) -> None:
        _validate_scope(self.request.client.scopes, self.request.payload.scope)


class _Server(AuthorizationServer):  # type: ignore[misc]
    """authlib's authorization server with the hooks a web framework integration would provide."""

    def __init__(self, accounts: AccountLookup, tokens: TokenService) -> None:
        super().__init__()
        self.accounts = accounts
        self._tokens = tokens
        self.register_grant(_PasswordGrant)
        self.register_grant(_ClientCredentialsGrant)
        self.register_token_generator("default", self._generate_token)

    def query_client(self, client_id: str) -> _Client | None:
        if client_id == PUBLIC_CLIENT_ID:
            return _PUBLIC_CLIENT
        record = self.accounts.client(client_id)
        return _Client(record.client_id, record.secret_hash, record.scopes) if record else None

    def _generate_token(
        self,
        grant_type: str,
        client: _Client,
        user: UserRecord | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        """The access token: a user's for the password grant, else the client's own (client_credentials)."""
        granted: Sequence[str]
        if user is not None:
            subject, granted = user_subject(user.username), user.scopes
        else:
            subject, granted = client_subject(client.client_id), client.scopes
        issued = self._tokens.issue(
            subject, narrow(granted, scope), client.client_id, not_before_ms=self.accounts.tokens_valid_from_ms(subject)
        )
        return msgspec.structs.asdict(issued)

    def save_token(self, token: dict[str, Any], request: _Request) -> None:
        """Nothing to store: access tokens are self-contained JWTs and there are no refresh tokens."""

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No listeners: mom does not subscribe to authlib's signals."""

    def create_oauth2_request(self, request: _Request) -> _Request:
        return request

    def handle_response(self, status: int, body: dict[str, Any], headers: list[tuple[str, str]]) -> Answer:
        return status, body, _RESPONSE_HEADERS.copy()

    def handle_error_response(self, request: _Request, error: OAuth2Error) -> Answer:
        return _error_answer(error)


def _error_answer(error: OAuth2Error) -> Answer:
    """An RFC 6749 §5.2 error: 400, except invalid_client: 401 with a Basic challenge.

    RFC 6749 requires the 401 when the client tried HTTP Basic and allows it otherwise; answering every
    failed client authentication alike also tells a client that sent body credentials that Basic works.
    """
    body = {
        "error": error.error,
        "error_description": _description(error.get_error_description() or error.error),
    }
    headers = _RESPONSE_HEADERS.copy()
    if isinstance(error, InvalidClientError):
        headers["WWW-Authenticate"] = 'Basic realm="mom", error="invalid_client"'
        return 401, body, headers
    return 400, body, headers


def _description(text: str) -> str:
    """Keep `error_description` within the characters RFC 6749 allows (user input may echo into it)."""
    return _UNSAFE_DESCRIPTION.sub("?", text)


def _decodable_basic(authorization: str) -> bool:
    try:
        base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    return True
