"""Registration, client credentials, the OAuth 2.0 token and revocation endpoints, and the public keys."""

from __future__ import annotations

import base64
import binascii
import logging
import secrets

from quart import Blueprint, Response, request
from quart_schema import document_request, tag

from mom.api import answers
from mom.api.auth import default_user_scopes, hash_secret_async, parse_scopes
from mom.api.context import ctx, meta_leader, principal, request_body
from mom.api.openapi import BEARER_OPTIONAL, PUBLIC, contract
from mom.api.schemas import ClientRequest, RevokeRequest, TokenRequest, UserRequest, decode_body, is_reserved
from mom.api.views import json_response
from mom.broker.accounts import client_subject, user_subject
from mom.broker.commands import RegisterClient, RegisterUser, RevokeToken
from mom.errors import Conflict, Forbidden, LoginThrottled, Unauthorized, Unavailable

log = logging.getLogger("mom.auth")

blueprint = Blueprint("auth", __name__)
tag_auth = tag(["auth"])


@blueprint.post("/v1/auth/users")
@tag_auth
@document_request(UserRequest)
@contract(201, 400, 401, 403, 409, 413, 415, 503, security=BEARER_OPTIONAL, body=answers.RegisteredUser)
async def register_user() -> Response:
    """Create a user, who may then use destinations named `<username>.*`.

    Open registration (a node setting, off by default for `mom serve`) lets anyone call this; otherwise only an
    admin may, with a bearer token. User names are case-insensitive and stored in lower case; names that look
    like the system's (`admin`, `mom`, ...) are reserved. Wider access is granted by an admin.
    """
    context = ctx()
    if not context.settings.auth.open_registration and not (await principal()).is_admin:
        raise Forbidden("open registration is off: ask an admin to create your account")
    body = decode_body(await request_body(), UserRequest)
    username = body.username.lower()
    if is_reserved(username, context.settings.auth.admin_username):
        raise Conflict(f"the name {username!r} is reserved")
    meta = meta_leader()
    password_hash = await hash_secret_async(body.password)
    scopes = default_user_scopes(username)
    await context.service.submit(meta, RegisterUser(username, password_hash, scopes))
    return json_response({"username": username, "subject": user_subject(username), "scopes": scopes}, status=201)


@blueprint.post("/v1/auth/clients")
@tag_auth
@document_request(ClientRequest)
@contract(201, 400, 401, 403, 409, 413, 415, 503, body=answers.CreatedClient)
async def register_client() -> Response:
    """Create OAuth client credentials (admin only).

    The secret is shown in this answer and never again. Client ids share one case-insensitive namespace with
    user names.
    """
    context = ctx()
    caller = await principal()
    if not caller.is_admin:
        raise Forbidden("only an admin may create clients (scope mom.admin)")
    body = decode_body(await request_body(), ClientRequest)
    scopes = parse_scopes(body.scopes)
    client_id = (body.client_id or f"client-{secrets.token_hex(8)}").lower()
    if is_reserved(client_id, context.settings.auth.admin_username):
        raise Conflict(f"the client id {client_id!r} is reserved")
    meta = meta_leader()
    secret = secrets.token_urlsafe(32)
    secret_hash = await hash_secret_async(secret)
    sigv4_secret = secret if body.sigv4 else None
    await context.service.submit(meta, RegisterClient(client_id, secret_hash, scopes, caller.subject, sigv4_secret))
    return json_response(
        {
            "client_id": client_id,
            "subject": client_subject(client_id),
            "client_secret": secret,
            "scopes": scopes,
            "sigv4": body.sigv4,
        },
        status=201,
    )


async def _form_or_json(schema: type[TokenRequest] | type[RevokeRequest]) -> dict[str, str]:
    """The parameters of an OAuth request, form-encoded (RFC 6749) or, as a convenience, a JSON object."""
    if request.mimetype == "application/json":
        decoded = decode_body(await request_body(), schema)
        return {k: v for k, v in decode_fields(decoded).items() if v is not None}
    form = await request.form
    return {key: form[key] for key in form}


def decode_fields(decoded: TokenRequest | RevokeRequest) -> dict[str, str | None]:
    return {name: getattr(decoded, name) for name in decoded.__struct_fields__}


def _login_name(params: dict[str, str]) -> str | None:
    """Who a token request tries to log in as, for throttling: the user, or the client (body or HTTP Basic)."""
    if params.get("grant_type") == "password":
        return user_subject(params["username"]) if params.get("username") else None
    client_id = params.get("client_id")
    header = request.headers.get("Authorization", "")
    if not client_id and header[:6].lower() == "basic ":
        try:
            client_id = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            return None
    return client_subject(client_id) if client_id else None


@blueprint.post("/v1/auth/token")
@tag_auth
@document_request(TokenRequest)
@contract(200, 400, 401, 413, 415, 429, 503, security=PUBLIC, oauth_errors=(400, 401), form=True, body=answers.Token)
async def token() -> Response:
    """The OAuth 2.0 token endpoint (RFC 6749): grant_type password or client_credentials.

    Parameters come form-encoded (`application/x-www-form-urlencoded`, the standard) or as a JSON object.
    Errors are OAuth errors (`{"error", "error_description"}`: 400, or 401 `invalid_client`). Repeated failures
    for one name or from one address are throttled: 429 with Retry-After, without checking the password.
    """
    context = ctx()
    params = await _form_or_json(TokenRequest)
    name, address = _login_name(params), request.remote_addr
    try:
        context.guard.logins.check(name, address)
    except LoginThrottled:
        context.metrics.logins.labels("throttled").inc()
        raise
    status, body, headers = await context.token_endpoint.handle(params, request.headers.get("Authorization"))
    if body.get("error") in ("invalid_grant", "invalid_client") and not context.guard.accounts.is_current():
        raise Unavailable("this node is catching up with the cluster's accounts; retry shortly")
    if status == 200:
        context.guard.logins.succeeded(name)
        context.metrics.logins.labels("ok").inc()
    elif body.get("error") in ("invalid_grant", "invalid_client"):
        context.metrics.logins.labels("failed").inc()
        lock = context.guard.logins.failed(name, address)
        if lock:
            log.warning("failed login for %s from %s: locked for %.0f s", name, address, lock)
    response = json_response(body, status=status)
    for header, value in headers.items():
        response.headers[header] = value
    return response


@blueprint.post("/v1/auth/revoke")
@tag_auth
@document_request(RevokeRequest)
@contract(200, 400, 413, 415, 503, security=PUBLIC, oauth_errors=(400,), form=True, body=answers.Empty)
async def revoke() -> Response:
    """Revoke an access token (RFC 7009): it stops working on every node of the cluster.

    Holding the token is the proof needed. As the RFC says, an invalid, expired or unknown token is answered
    200 as well (nothing to revoke).
    """
    context = ctx()
    params = await _form_or_json(RevokeRequest)
    raw = params.get("token", "")
    if not raw:
        return json_response({"error": "invalid_request", "error_description": "the 'token' parameter is missing"}, 400)
    try:
        revoked = await context.verify_token(raw)
    except Unauthorized:
        return json_response({}, status=200)
    meta = meta_leader()
    await context.service.submit(meta, RevokeToken(revoked.token_id, round(revoked.expires_at * 1000)))
    return json_response({}, status=200)


@blueprint.get("/.well-known/jwks.json")
@tag_auth
@contract(200, security=PUBLIC, body=answers.KeySet)
async def jwks() -> Response:
    """The public keys this node signs tokens with (RFC 7517 JWK Set), for verifying them elsewhere."""
    return json_response(ctx().keys.jwks())
