"""The shapes of successful answers, as the OpenAPI document states them (mom.api.views builds the answers).

These structs exist to describe: the schemathesis test of the document (tests/security) checks every answer
against them, so a change to a view that is not made here too fails a test.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, Struct, UnsetType

from mom.broker.commands import QueueAttrs, SubscriptionAttrs, TopicAttrs


class Queue(Struct):
    name: str
    attributes: QueueAttrs
    owner: str
    created_at: str
    ready: int
    delayed: int
    in_flight: int
    messages: int
    leader: str | None
    replicas: list[str]


class Subscription(Struct):
    topic: str
    name: str
    attributes: SubscriptionAttrs
    owner: str
    created_at: str
    next_offset: int
    ready: int
    in_flight: int


class Topic(Struct):
    name: str
    attributes: TopicAttrs
    owner: str
    created_at: str
    first_offset: int
    next_offset: int
    messages: int
    bytes: int
    subscriptions: list[Subscription]
    leader: str | None
    replicas: list[str]


class Queues(Struct):
    queues: list[Queue]


class Topics(Struct):
    topics: list[Topic]


class Subscriptions(Struct):
    subscriptions: list[Subscription]


class PublishedMessage(Struct):
    id: str
    offset: int
    duplicate: bool


class Published(Struct):
    messages: list[PublishedMessage]


class Delivery(Struct):
    """A leased message: `body` (JSON, as published) or `body_base64` (bytes)."""

    id: str
    offset: int
    headers: dict[str, Any]
    receipt: str
    deliveries: int
    published_at: str
    body: Any = UNSET
    body_base64: str | UnsetType = UNSET


class Deliveries(Struct):
    messages: list[Delivery]


class StoredMessage(Struct):
    id: str
    offset: int
    headers: dict[str, Any]
    published_at: str
    body: Any = UNSET
    body_base64: str | UnsetType = UNSET


class Replay(Struct):
    messages: list[StoredMessage]
    next_offset: int


class PeekedMessage(Struct):
    """A held message as peek shows it: `state` is ready, delayed or in_flight; `visible_at` null: visible now."""

    id: str
    offset: int
    headers: dict[str, Any]
    state: Literal["ready", "delayed", "in_flight"]
    deliveries: int
    published_at: str
    visible_at: str | None
    group_id: str | None
    body: Any = UNSET
    body_base64: str | UnsetType = UNSET


class Peeked(Struct):
    messages: list[PeekedMessage]
    next_offset: int | None
    """Where the next page starts; null when this page was the last."""


class Purged(Struct):
    purged: int


class VisibilityChanged(Struct):
    changed: list[str]
    unknown: list[str]


class Redriven(Struct):
    moved: int
    by_queue: dict[str, int]
    skipped: int


class Acked(Struct):
    acked: list[str]
    unknown: list[str]


class Nacked(Struct):
    nacked: list[str]
    unknown: list[str]


class Node(Struct):
    id: str
    rest_url: str
    state: Literal["up", "unreachable"]
    last_seen: str | None
    member: Literal["active", "draining"]


class DestinationState(Struct):
    kind: Literal["queue", "topic"]
    name: str
    group: str
    leader: str | None
    replicas: list[str]
    commit_index: int | None
    replica_lag: dict[str, int] | None


class MoveState(Struct):
    group: str
    source: str | None
    target: str


class Cluster(Struct):
    node_id: str
    transport: str
    metadata_leader: str | None
    nodes: list[Node]
    destinations: list[DestinationState]
    moves: list[MoveState]


class Member(Struct):
    id: str
    rest_url: str
    replication: str
    state: Literal["active", "draining"]
    replicas: int


class MoveDone(Struct):
    recorded: bool


class Members(Struct):
    nodes: list[Member]
    moves: list[MoveState]


class Token(Struct):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class RegisteredUser(Struct):
    username: str
    subject: str
    scopes: list[str]


class CreatedClient(Struct):
    client_id: str
    subject: str
    client_secret: str
    scopes: list[str]


class User(Struct):
    username: str
    subject: str
    scopes: list[str]
    created_at: str


class Users(Struct):
    users: list[User]


class Client(Struct):
    client_id: str
    subject: str
    scopes: list[str]
    owner: str
    created_at: str


class Clients(Struct):
    clients: list[Client]


class AccountScopes(Struct):
    subject: str
    scopes: list[str]


class Status(Struct):
    status: str


class KeySet(Struct):
    """RFC 7517 JWK Set of public keys."""

    keys: list[dict[str, Any]]


class Empty(Struct):
    """An empty object."""
