"""What a route handler needs, reached through the running app rather than module globals."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

from quart import current_app, g, request

from mom.api.auth import Principal, SigningKeys, TokenEndpoint, TokenService, require
from mom.api.auth.scopes import Action
from mom.api.forward import Forwarder, ForwardRequired, hops
from mom.api.guard import Guard
from mom.api.metrics import Metrics
from mom.config import Settings
from mom.errors import Forbidden, InvalidInput, Unauthorized, Unavailable
from mom.service import BrokerService, Handle, MetadataBehind, Ref
from mom.transports.base import PeerStatus

__all__ = [
    "ApiContext",
    "ForwardRequired",
    "LeaderPending",
    "Served",
    "authorize",
    "ctx",
    "leader_of",
    "meta_leader",
    "principal",
    "query_int",
    "request_body",
    "require_owner",
    "served",
]


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


class LeaderPending(Unavailable):
    """No node is known to serve the request's group right now (an election, a new leader catching up): the node
    waits a moment for one before it answers 503 (`mom.api.following`), at most `wait_s` (None: the usual)."""

    def __init__(self, detail: str, *, wait_s: float | None = None, unless: Sequence[str] = ()) -> None:
        super().__init__(detail)
        self.wait_s = wait_s
        self.unless = tuple(unless)
        """Leaders known to be gone (a dead node): hearing of them again ends no wait."""


STORM_WAIT_S = 1.0
"""How long a request waits for a leader while this node elects leaders for many groups at once (their
campaigns queue, `mom.replication._elections.CampaignGate`): a leader may take seconds, so the client hears 503
with Retry-After within a second rather than waiting into its own timeout."""


@dataclass(frozen=True)
class Served:
    """What this request is about, once known (in quart's `g`): the destination and its group (None: the cluster
    metadata), who serves it here and in which term (for the `X-Mom-Leader` answer header), and how long its
    handler may wait (for following a leader that moves)."""

    ref: Ref | None
    group: str | None
    leader: str | None
    term: int
    wait_s: float


def served() -> Served | None:
    found = g.get("mom_served")
    return found if isinstance(found, Served) else None


def _forward_to(
    leader: str | None, replicas: Sequence[str], what: str, wait_s: float, group: str | None = None
) -> ForwardRequired:
    """Where to send a request this node cannot serve: the leader it knows first, then (unless it replicates the
    destination itself and the request was forwarded here already: those replicas know no more than it does)
    the replicas, which know the leader from Raft and serve or forward."""
    me = ctx().settings.node_id
    if leader == me:
        raise LeaderPending(f"{what} has a new leader here that is catching up; retry shortly")
    if me in replicas and group is not None and ctx().service.electing_here(group, leader):
        # A voter of the group that lost its leader, while its node campaigns for many groups at once: the other
        # replicas know no more (a new leader's first message reaches this node as soon as them), and forwarding
        # would hold the request on two busy nodes instead of one. Wait here, briefly: 503 within a second.
        raise LeaderPending(
            f"{what} has no leader at the moment (elections of many destinations are under way); retry shortly",
            wait_s=STORM_WAIT_S,
            unless=[leader] if leader is not None else [],
        )
    targets = [leader] if leader is not None else []
    if me not in replicas or hops() == 0:
        targets += [n for n in replicas if n != me and n != leader]
    if not targets:
        raise LeaderPending(f"{what} has no leader at the moment (an election is under way); retry shortly")
    return ForwardRequired(targets, wait_s=wait_s)


def leader_of(ref: Ref, *, wait_s: float = 0.0) -> Handle:
    """The handle of `ref`'s group if this node serves it; otherwise ForwardRequired (to its leader and its
    replicas, or, when this node cannot yet tell whether `ref` exists, the metadata leader), or a 503."""
    service = ctx().service
    try:
        located = service.locate(ref)
    except MetadataBehind as behind:
        if behind.meta_leader is None:
            raise
        raise ForwardRequired([behind.meta_leader], wait_s=wait_s) from None
    group = located.placement.group_id
    if located.here is not None:
        g.mom_served = Served(ref, group, service.node_id, located.here.term, wait_s)
        return located.here
    g.mom_served = Served(ref, group, None, 0, wait_s)
    raise _forward_to(located.leader, located.placement.replicas, f"destination {group}", wait_s, group)


def meta_leader(*, wait_s: float = 0.0) -> Handle:
    """The metadata group if this node leads it (declares, deletes, accounts); otherwise ForwardRequired."""
    service = ctx().service
    meta = service.locate_meta()
    g.mom_served = Served(None, None, None, 0, wait_s)
    if isinstance(meta, Handle):
        return meta
    if meta is None:
        raise LeaderPending(
            "the cluster metadata has no leader at the moment (an election is under way); retry shortly"
        )
    raise ForwardRequired([meta], wait_s=wait_s)
