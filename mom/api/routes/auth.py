"""Registration, client credentials, the OAuth 2.0 token endpoint and the public keys."""

from __future__ import annotations

import secrets
from typing import Any

import msgspec
from quart import Blueprint, Response, request
from quart_schema import document_request, tag

from mom.api.auth import DEFAULT_USER_SCOPES, hash_secret_async, parse_scopes
from mom.api.auth.oauth import PUBLIC_CLIENT_ID
from mom.api.context import ctx, meta_leader, principal, request_body
from mom.api.schemas import ClientRequest, UserRequest, decode_body
from mom.api.views import json_response
from mom.broker.commands import RegisterClient, RegisterUser
from mom.errors import Conflict, Forbidden, InvalidInput

blueprint = Blueprint("auth", __name__)
tag_auth = tag(["auth"])


@blueprint.post("/v1/auth/users")
@tag_auth
@document_request(UserRequest)
async def register_user() -> Response:
    """Create a user with read/write/configure on every destination (open registration, or an admin's call)."""
    if not ctx().settings.auth.open_registration and not (await principal()).is_admin:
        raise Forbidden("open registration is off: ask an admin to create your account")
    body = decode_body(await request_body(), UserRequest)
    meta = meta_leader()
    password_hash = await hash_secret_async(body.password)
    scopes = list(DEFAULT_USER_SCOPES)
    await ctx().service.submit(meta, RegisterUser(body.username, password_hash, scopes))
    return json_response({"username": body.username, "scopes": scopes}, status=201)


@blueprint.post("/v1/auth/clients")
@tag_auth
@document_request(ClientRequest)
async def register_client() -> Response:
    """Create OAuth client credentials (admin only); the secret is shown in this answer and never again."""
    caller = await principal()
    if not caller.is_admin:
        raise Forbidden("only an admin may create clients (scope mom.admin)")
    body = decode_body(await request_body(), ClientRequest)
    scopes = parse_scopes(body.scopes)
    client_id = body.client_id or f"client-{secrets.token_hex(8)}"
    if client_id == PUBLIC_CLIENT_ID:
        raise Conflict(f"client id {PUBLIC_CLIENT_ID!r} is reserved for the built-in public client")
    meta = meta_leader()
    secret = secrets.token_urlsafe(32)
    secret_hash = await hash_secret_async(secret)
    sigv4_secret = secret if body.sigv4 else None
    await ctx().service.submit(meta, RegisterClient(client_id, secret_hash, scopes, caller.subject, sigv4_secret))
    answer = {"client_id": client_id, "client_secret": secret, "scopes": scopes, "sigv4": body.sigv4}
    return json_response(answer, status=201)


async def _token_params() -> dict[str, str]:
    if request.mimetype == "application/json":
        try:
            raw: Any = msgspec.json.decode(await request_body())
        except msgspec.DecodeError as exc:
            raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise InvalidInput("the token request must be a JSON object of strings")
        return raw
    form = await request.form
    return {key: form[key] for key in form}


@blueprint.post("/v1/auth/token")
@tag_auth
async def token() -> Response:
    """OAuth 2.0 token endpoint: grant_type=password or client_credentials, form-encoded or JSON."""
    params = await _token_params()
    status, body, headers = await ctx().token_endpoint.handle(params, request.headers.get("Authorization"))
    response = json_response(body, status=status)
    for name, value in headers.items():
        response.headers[name] = value
    return response


@blueprint.get("/.well-known/jwks.json")
@tag_auth
async def jwks() -> Response:
    return json_response(ctx().keys.jwks())
