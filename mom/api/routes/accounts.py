"""Account administration (admins): list users and clients, grant and revoke scopes, delete accounts.

Every change is a command of the metadata log, so every node sees it; taking scopes away or deleting an
account revokes the tokens issued to it so far (they carry the old scopes), on every node.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_request, tag

from mom.api import answers
from mom.api.context import ctx, meta_leader, principal, request_body
from mom.api.openapi import contract
from mom.api.schemas import ScopesRequest, decode_body
from mom.api.views import json_response, rfc3339
from mom.broker.accounts import CLIENT, USER, client_subject, user_subject
from mom.broker.commands import (
    ClientRecord,
    DeleteAccount,
    GrantScopes,
    RevokeScopes,
    ScopesChanged,
    UserRecord,
)
from mom.errors import Conflict, Forbidden, NotFound

blueprint = Blueprint("accounts", __name__, url_prefix="/v1/auth")
tag_accounts = tag(["accounts"])


async def _admin() -> None:
    if not (await principal()).is_admin:
        raise Forbidden("only an admin may manage accounts (scope mom.admin)")


def _user_view(user: UserRecord) -> dict[str, object]:
    return {
        "username": user.username,
        "subject": user_subject(user.username),
        "scopes": user.scopes,
        "created_at": rfc3339(user.created_at_ms),
    }


def _client_view(client: ClientRecord) -> dict[str, object]:
    return {
        "client_id": client.client_id,
        "subject": client_subject(client.client_id),
        "scopes": client.scopes,
        "owner": client.owner,
        "created_at": rfc3339(client.created_at_ms),
    }


def _subject(kind: str, name: str) -> str:
    accounts = ctx().service.catalog.accounts
    subject = user_subject(name) if kind == USER else client_subject(name)
    if accounts.account(subject) is None:
        raise NotFound(f"{kind} {name.lower()!r} does not exist")
    return subject


@blueprint.get("/users")
@tag_accounts
@contract(200, 401, 403, body=answers.Users)
async def list_users() -> Response:
    """Every user with its scopes (admin only)."""
    await _admin()
    return json_response({"users": [_user_view(u) for u in ctx().service.catalog.accounts.users()]})


@blueprint.get("/users/<username>")
@tag_accounts
@contract(200, 401, 403, 404, body=answers.User)
async def show_user(username: str) -> Response:
    """One user and its scopes (an admin, or the user itself)."""
    caller = await principal()
    if not caller.is_admin and caller.subject != user_subject(username):
        raise Forbidden("only an admin or the user itself may see a user")
    user = ctx().service.catalog.accounts.user(username)
    if user is None:
        raise NotFound(f"user {username.lower()!r} does not exist")
    return json_response(_user_view(user))


@blueprint.get("/clients")
@tag_accounts
@contract(200, 401, 403, body=answers.Clients)
async def list_clients() -> Response:
    """Every OAuth client with its scopes and the admin who created it (admin only)."""
    await _admin()
    return json_response({"clients": [_client_view(c) for c in ctx().service.catalog.accounts.clients()]})


async def _change(kind: str, name: str, verb: str) -> Response:
    await _admin()
    body = decode_body(await request_body(), ScopesRequest)
    meta = meta_leader()  # the leader's catalog has every account written so far
    subject = _subject(kind, name)
    command = GrantScopes(subject, body.scopes) if verb == "grant" else RevokeScopes(subject, body.scopes)
    result = await ctx().service.submit(meta, command)
    assert isinstance(result, ScopesChanged)
    return json_response({"subject": subject, "scopes": result.scopes})


async def _delete(kind: str, name: str) -> Response:
    await _admin()
    if kind == USER and name.lower() == ctx().settings.auth.admin_username.lower():
        raise Conflict("the bootstrap admin account cannot be deleted")
    meta = meta_leader()
    subject = _subject(kind, name)
    await ctx().service.submit(meta, DeleteAccount(subject))
    return Response(b"", status=204)


@blueprint.post("/users/<username>/grant")
@tag_accounts
@document_request(ScopesRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.AccountScopes)
async def grant_user(username: str) -> Response:
    """Add scopes to a user (admin only); its next token carries them."""
    return await _change(USER, username, "grant")


@blueprint.post("/users/<username>/revoke")
@tag_accounts
@document_request(ScopesRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.AccountScopes)
async def revoke_user(username: str) -> Response:
    """Take scopes from a user (admin only); its tokens issued so far stop working on every node."""
    return await _change(USER, username, "revoke")


@blueprint.delete("/users/<username>")
@tag_accounts
@contract(204, 401, 403, 404, 409, 503)
async def delete_user(username: str) -> Response:
    """Delete a user (admin only): its tokens stop working on every node. Its destinations stay."""
    return await _delete(USER, username)


@blueprint.post("/clients/<client_id>/grant")
@tag_accounts
@document_request(ScopesRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.AccountScopes)
async def grant_client(client_id: str) -> Response:
    """Add scopes to an OAuth client (admin only)."""
    return await _change(CLIENT, client_id, "grant")


@blueprint.post("/clients/<client_id>/revoke")
@tag_accounts
@document_request(ScopesRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.AccountScopes)
async def revoke_client(client_id: str) -> Response:
    """Take scopes from an OAuth client (admin only); its tokens issued so far stop working."""
    return await _change(CLIENT, client_id, "revoke")


@blueprint.delete("/clients/<client_id>")
@tag_accounts
@contract(204, 401, 403, 404, 503)
async def delete_client(client_id: str) -> Response:
    """Delete an OAuth client (admin only): its tokens stop working on every node."""
    return await _delete(CLIENT, client_id)
