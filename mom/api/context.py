"""What a route handler needs, reached through the running app rather than module globals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

from quart import current_app, request

from mom.api.auth import Principal, SigningKeys, TokenEndpoint, TokenService, require
from mom.api.auth.scopes import Action
from mom.api.forward import Forwarder
from mom.api.guard import Guard
from mom.api.metrics import Metrics
from mom.config import Settings
from mom.errors import Forbidden, InvalidInput, Unauthorized, Unavailable
from mom.service import BrokerService, Handle, MetadataBehind, Ref
from mom.transports.base import PeerStatus


@dataclass(frozen=True)
class ApiContext:
    settings: Settings
    service: BrokerService
    keys: SigningKeys
    tokens: TokenService
    token_endpoint: TokenEndpoint
    metrics: Metrics
    is_ready: Callable[[], bool]
    forwarder: Forwarder
    peer_urls: dict[str, str]
    """REST base URL of every node of the cluster by id (this one included)."""
    verify_token: Callable[[str], Awaitable[Principal]]
    """Signature, claims and revocation: a principal only for a token that counts now."""
    transport_status: Callable[[str], PeerStatus]
    guard: Guard


def ctx() -> ApiContext:
    return cast(ApiContext, current_app.extensions["mom"])


async def principal() -> Principal:
    """The caller, from its bearer token; Unauthorized when there is none or it does not verify."""
    header = request.headers.get("Authorization")
    if not header:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' (POST /v1/auth/token)")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return await ctx().verify_token(token.strip())


async def authorize(action: Action, name: str) -> Principal:
    """The caller, if its token's scopes allow `action` on destination `name`; else Forbidden."""
    caller = await principal()
    require(caller, action, name)
    return caller


def require_owner(caller: Principal, owner: str, what: str) -> None:
    """Owners are subjects (`user:alice`, `client:ci-bot`), so a user can never pass for a client of that name."""
    if not caller.is_admin and caller.subject != owner:
        raise Forbidden(f"only the creator of {what} ({owner}) or an admin may delete it")


async def request_body() -> bytes:
    """The raw request body (read once by the app's before_request hook, cached)."""
    return await request.get_data(cache=True, as_text=False, parse_form_data=False)


def query_int(name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as an integer from `low` to `high` (ASCII digits only); InvalidInput otherwise."""
    raw = request.args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidInput(f"query parameter '{name}' must be an integer from {low} to {high}")
    return int(raw)


class ForwardRequired(Exception):
    """Raised by a handler on a node that does not lead what the request is about; answered by forwarding.

    `wait_s` is how long the leader's handler may legitimately take beyond an ordinary request (a long-poll's
    wait, a declare waiting for its group): the forwarding bound grows by that much.
    """

    def __init__(self, node_id: str, url: str, wait_s: float = 0.0) -> None:
        super().__init__(node_id)
        self.node_id, self.url, self.wait_s = node_id, url, wait_s


def _forward_to(leader: str | None, candidates: Sequence[str], what: str, wait_s: float) -> ForwardRequired:
    context = ctx()
    me = context.settings.node_id
    if leader == me:
        raise Unavailable(f"{what} has a new leader here that is catching up; retry shortly")
    target = leader if leader is not None else next((n for n in candidates if n != me), None)
    if leader is None and me in candidates:
        target = None  # we replicate it and know no leader: an election is under way
    if target is None:
        raise Unavailable(f"{what} has no leader at the moment (an election is under way); retry shortly")
    return ForwardRequired(target, context.peer_urls[target], wait_s)


def leader_of(ref: Ref, *, wait_s: float = 0.0) -> Handle:
    """The handle of `ref`'s group if this node serves it; otherwise ForwardRequired (to its leader, a replica,
    or, when this node cannot yet tell whether `ref` exists, the metadata leader), or a 503."""
    service = ctx().service
    try:
        located = service.locate(ref)
    except MetadataBehind as behind:
        if behind.meta_leader is None:
            raise
        raise ForwardRequired(behind.meta_leader, ctx().peer_urls[behind.meta_leader], wait_s) from None
    if located.here is not None:
        return located.here
    raise _forward_to(located.leader, located.placement.replicas, f"destination {located.placement.group_id}", wait_s)


def meta_leader(*, wait_s: float = 0.0) -> Handle:
    """The metadata group if this node leads it (declares, deletes, accounts); otherwise ForwardRequired."""
    service = ctx().service
    meta = service.locate_meta()
    if isinstance(meta, Handle):
        return meta
    raise _forward_to(meta, service.node_ids, "the cluster metadata", wait_s)
