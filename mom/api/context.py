"""What a route handler needs, reached through the running app rather than module globals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from quart import current_app, request

from mom.api.auth import Principal, SigningKeys, TokenEndpoint, TokenService, require
from mom.api.auth.scopes import Action
from mom.api.metrics import Metrics
from mom.config import Settings
from mom.errors import Forbidden, Unauthorized
from mom.service import BrokerService


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    service: BrokerService
    keys: SigningKeys
    tokens: TokenService
    token_endpoint: TokenEndpoint
    metrics: Metrics
    is_ready: Callable[[], bool]


def ctx() -> ApiContext:
    return cast(ApiContext, current_app.extensions["mom"])


def principal() -> Principal:
    """The caller, from its bearer token; Unauthorized when there is none or it does not verify."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (POST /v1/auth/token)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return ctx().tokens.verify(token.strip())


def authorize(action: Action, name: str) -> Principal:
    """The caller, if its token's scopes allow `action` on destination `name`; else Forbidden."""
    caller = principal()
    require(caller, action, name)
    return caller


def require_owner(caller: Principal, owner: str, what: str) -> None:
    if not caller.is_admin and caller.subject != owner:
        raise Forbidden(f"only the creator of {what} ({owner}) or an admin may delete it")


async def request_body() -> bytes:
    """The raw request body (read once by the app's before_request hook, cached)."""
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)
