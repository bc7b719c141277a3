"""The commands of the broker state machine and what applying them returns.

Every state change of mom is one of these commands, written to the log inside an `Entry` that carries the
time at which the leader accepted it. Replaying the same entries on any node gives the same state, so the
commands must hold everything the change needs (ids, password hashes, the time): the core never reads a
clock or a random source. The structs are msgspec structs so that they travel compactly in the log and
on the wire between nodes, and the attribute structs double as the REST schemas (one definition of what
a valid queue is).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from mom.errors import InvalidInput

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
"""A letter or digit first, so that no name is a path segment like `.` or `..` that URLs normalise away."""
_NAME_RE = re.compile(NAME_PATTERN)

Name = Annotated[str, Meta(pattern=NAME_PATTERN)]
Seconds = Annotated[float, Meta(ge=0, le=43_200)]
PositiveSeconds = Annotated[float, Meta(gt=0, le=43_200)]
RetentionSeconds = Annotated[float, Meta(gt=0, le=1_209_600)]
"""Message TTLs reach 14 days, as SQS's MessageRetentionPeriod does."""
DelaySeconds = Annotated[float, Meta(ge=0, le=900)]
WaitSeconds = Annotated[float, Meta(ge=0, le=20)]
ReplicationFactor = Annotated[int, Meta(ge=1, le=7)]
MAX_COUNT = 2**53
"""Upper bound of counts, sizes and offsets in requests: exact in every JSON parser, and within the log's
64-bit integers (a bigger number is a clear 400, not an overflow deep inside)."""


def check_name(name: str, what: str = "name") -> str:
    """Raise InvalidInput unless `name` is a valid destination or subscription name."""
    if not _NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r} must be 1 to 200 characters of [A-Za-z0-9._-], starting with a letter or digit"
        )
    return name


# ---------------------------------------------------------------------------------------------------------
# Attributes (declared by users; also the REST request bodies of PUT)


class QueueAttrs(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    visibility_timeout_s: PositiveSeconds = 30.0
    max_deliveries: Annotated[int, Meta(ge=1, le=1000)] | None = None
    dead_letter_queue: Name | None = None
    max_length: Annotated[int, Meta(ge=1, le=MAX_COUNT)] | None = None
    message_ttl_s: RetentionSeconds | None = None
    replication_factor: ReplicationFactor | None = None
    delay_s: DelaySeconds = 0.0
    """How long a new message stays invisible when its publish names no delay of its own."""
    receive_wait_s: WaitSeconds = 0.0
    """How long a receive that names no wait long-polls (SQS's ReceiveMessageWaitTimeSeconds)."""
    fifo: bool = False
    """FIFO (the name must end in `.fifo`): every message has a group; a group's messages leave in order, and
    a group with a message in flight gives out no other until that one is settled or visible again."""
    content_based_dedup: bool = False
    """A message without a dedup id takes the SHA-256 of its body as one (FIFO queues only)."""


IMMUTABLE_QUEUE_ATTRS = frozenset({"fifo", "replication_factor"})
"""What an UpdateQueue cannot change: the kind of queue and where its replicas are."""


class TopicAttrs(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    retention_s: PositiveSeconds | None = None
    retention_bytes: Annotated[int, Meta(ge=1, le=MAX_COUNT)] | None = None
    replication_factor: ReplicationFactor | None = None


class StartOffset(Struct, frozen=True, forbid_unknown_fields=True):
    offset: Annotated[int, Meta(ge=0, le=MAX_COUNT)]


class SubscriptionAttrs(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    start: Literal["latest", "earliest"] | StartOffset = "latest"
    visibility_timeout_s: PositiveSeconds = 30.0
    max_deliveries: Annotated[int, Meta(ge=1, le=1000)] | None = None
    dead_letter_queue: Name | None = None


# ---------------------------------------------------------------------------------------------------------
# Addresses


class QueueRef(Struct, frozen=True, tag="queue"):
    name: str


class TopicRef(Struct, frozen=True, tag="topic"):
    name: str


class SubscriptionRef(Struct, frozen=True, tag="subscription"):
    topic: str
    name: str


Destination = QueueRef | TopicRef
"""Where a publish goes."""

Source = QueueRef | SubscriptionRef
"""What a receive, ack or nack addresses."""


# ---------------------------------------------------------------------------------------------------------
# Messages


class NewMessage(Struct, frozen=True, array_like=True):
    """A message as published. `id` is chosen at the edge (so replay is deterministic)."""

    id: str
    body: bytes
    """The JSON text of the body, or the raw bytes when `binary`."""
    binary: bool = False
    headers: dict[str, Any] = {}
    delay_ms: int | None = None
    """None: the queue's `delay_s`."""
    dedup_id: str | None = None
    group_id: str | None = None
    """The message group (required on FIFO queues, kept on others)."""


class Delivery(Struct, frozen=True, array_like=True):
    """A message handed to a consumer under a lease; `receipt` names this one delivery."""

    id: str
    offset: int
    body: bytes
    binary: bool
    headers: dict[str, Any]
    receipt: str
    deliveries: int
    published_at_ms: int
    group_id: str | None = None


class StoredMessage(Struct, frozen=True, array_like=True):
    """A message of a topic's retained log, as replay reads it."""

    id: str
    offset: int
    body: bytes
    binary: bool
    headers: dict[str, Any]
    published_at_ms: int


# ---------------------------------------------------------------------------------------------------------
# Commands


class DeclareQueue(Struct, frozen=True, tag="declare_queue"):
    name: str
    attrs: QueueAttrs
    owner: str
    quota: int | None = None
    """Most destinations `owner` may hold (queues and topics together), None for no limit: checked on creation."""


class DeleteQueue(Struct, frozen=True, tag="delete_queue"):
    name: str


class DeclareTopic(Struct, frozen=True, tag="declare_topic"):
    name: str
    attrs: TopicAttrs
    owner: str
    quota: int | None = None
    """As for DeclareQueue."""


class DeleteTopic(Struct, frozen=True, tag="delete_topic"):
    name: str


class DeclareSubscription(Struct, frozen=True, tag="declare_subscription"):
    topic: str
    name: str
    attrs: SubscriptionAttrs
    owner: str


class DeleteSubscription(Struct, frozen=True, tag="delete_subscription"):
    topic: str
    name: str


class Publish(Struct, frozen=True, tag="publish"):
    destination: Destination
    messages: list[NewMessage]


class Receive(Struct, frozen=True, tag="receive"):
    source: Source
    max_messages: int
    visibility_timeout_ms: int | None = None
    """Overrides the destination's default lease for this receive."""


class Ack(Struct, frozen=True, tag="ack"):
    source: Source
    receipts: list[str]


class Nack(Struct, frozen=True, tag="nack"):
    source: Source
    receipts: list[str]
    delay_ms: int = 0


class UpdateQueue(Struct, frozen=True, tag="update_queue"):
    """Change some attributes of a queue (field name -> new value, as in QueueAttrs); the rest stay."""

    name: str
    changes: dict[str, Any]


class TagQueue(Struct, frozen=True, tag="tag_queue"):
    """Set `tags` and remove the keys in `remove` (labels for people and tools; no effect on delivery)."""

    name: str
    tags: dict[str, str]
    remove: list[str] = []


class ChangeVisibility(Struct, frozen=True, tag="change_visibility"):
    """Make the leased messages that `receipts` name visible again `timeouts_ms` from now (0: at once).

    The receipt stays valid: the delivery is the same one, only its lease ends at another time.
    """

    source: QueueRef
    receipts: list[str]
    timeouts_ms: list[int]


class Purge(Struct, frozen=True, tag="purge"):
    """Remove every message of a queue, in flight or not."""

    source: QueueRef


class Tick(Struct, frozen=True, tag="tick"):
    """Housekeeping at the entry's time: expired leases, TTLs, retention and dedup windows."""


class RegisterUser(Struct, frozen=True, tag="register_user"):
    """Create a user; the name is stored in canonical (lower) case and must be free among users and clients."""

    username: str
    password_hash: str
    scopes: list[str]


class RegisterClient(Struct, frozen=True, tag="register_client"):
    client_id: str
    secret_hash: str
    scopes: list[str]
    owner: str
    sigv4_secret: str | None = None
    """The secret itself, for clients that sign SQS requests with SigV4 (an HMAC needs it; see docs/sqs.md)."""


class GrantScopes(Struct, frozen=True, tag="grant_scopes"):
    """Add scopes to an account (`user:NAME` or `client:ID`); they appear in its next token."""

    subject: str
    scopes: list[str]


class RevokeScopes(Struct, frozen=True, tag="revoke_scopes"):
    """Remove scopes from an account, and revoke its tokens issued so far (they carry the old scopes)."""

    subject: str
    scopes: list[str]


class DeleteAccount(Struct, frozen=True, tag="delete_account"):
    """Delete a user or client; its tokens stop working on every node as each applies this entry."""

    subject: str


class RevokeToken(Struct, frozen=True, tag="revoke_token"):
    """Revoke one access token (RFC 7009) by its `jti` until it expires (`expires_ms`), then forget it."""

    token_id: str
    expires_ms: int


class ForwardedDeadLetters(Struct, frozen=True, tag="forwarded_dead_letters"):
    """The leader published every outbox letter up to `upto_seq` to its dead-letter queue: forget them."""

    upto_seq: int


class MemberRecord(Struct, frozen=True, array_like=True):
    """A node of the cluster as the catalog knows it: where it answers REST and replication, and whether it is
    `active` (it takes replicas) or `draining` (its replicas are being moved off, before it is removed)."""

    id: str
    rest: str
    replication: str
    state: str = "active"


class Move(Struct, frozen=True, array_like=True):
    """A replica moving from `source` to `target` in the group of destination `group` (its base id, `q.name`).

    `source` None only adds a replica (a group below its replication factor). The move is the intent: the group's
    leader carries it out with Raft membership changes, then `FinishMove` records the new replica set."""

    group: str
    source: str | None
    target: str


class SeedMembers(Struct, frozen=True, tag="seed_members"):
    """Record the cluster's first member list (from `[[cluster.nodes]]`); ignored once members are recorded.

    The seed ids stay the node set of rendezvous placement for every destination with no explicit replica set,
    so a cluster whose membership never changed places everything where it always did."""

    nodes: list[MemberRecord]
    replication_factor: int


class AddNode(Struct, frozen=True, tag="add_node"):
    node: MemberRecord


class DrainNode(Struct, frozen=True, tag="drain_node"):
    node_id: str


class RemoveNode(Struct, frozen=True, tag="remove_node"):
    node_id: str


class StartMove(Struct, frozen=True, tag="start_move"):
    move: Move


class FinishMove(Struct, frozen=True, tag="finish_move"):
    """The move is done (or abandoned, `done` false): record the group's replica set as it now stands."""

    move: Move
    replicas: list[str]
    done: bool = True


Command = (
    DeclareQueue
    | DeleteQueue
    | DeclareTopic
    | DeleteTopic
    | DeclareSubscription
    | DeleteSubscription
    | Publish
    | Receive
    | Ack
    | Nack
    | Tick
    | UpdateQueue
    | TagQueue
    | ChangeVisibility
    | Purge
    | RegisterUser
    | RegisterClient
    | GrantScopes
    | RevokeScopes
    | DeleteAccount
    | RevokeToken
    | ForwardedDeadLetters
    | SeedMembers
    | AddNode
    | DrainNode
    | RemoveNode
    | StartMove
    | FinishMove
)


class Entry(Struct, frozen=True, array_like=True):
    """One log record: a command and the time (ms since the epoch) the leader accepted it at."""

    now_ms: int
    command: Command


# ---------------------------------------------------------------------------------------------------------
# Results of apply()


class Declared(Struct, frozen=True):
    created: bool
    """False when the same attributes were declared already (idempotent re-declare)."""


class Deleted(Struct, frozen=True):
    pass


class PublishedMessage(Struct, frozen=True):
    id: str
    offset: int
    duplicate: bool = False
    """True when `dedup_id` matched an earlier publish: `id` and `offset` are the first one's."""


class Published(Struct, frozen=True):
    messages: list[PublishedMessage]


class Received(Struct, frozen=True):
    messages: list[Delivery]


class Settled(Struct, frozen=True):
    """Outcome of ack or nack: receipts that took effect, and those that were stale or unknown."""

    settled: list[str]
    unknown: list[str]


class Registered(Struct, frozen=True):
    pass


class Ticked(Struct, frozen=True):
    pass


class ScopesChanged(Struct, frozen=True):
    """The account's scopes after a grant or revoke."""

    scopes: list[str]


class Forwarded(Struct, frozen=True):
    pass


class Updated(Struct, frozen=True):
    changed: bool
    """False when every change named the value the queue had already."""


class Purged(Struct, frozen=True):
    purged: int


class MembersChanged(Struct, frozen=True):
    changed: bool
    """False when the command named what the catalog already held (a repeated drain, a seed after the first)."""


Result = (
    Declared
    | Deleted
    | Published
    | Received
    | Settled
    | Registered
    | Ticked
    | Forwarded
    | ScopesChanged
    | Updated
    | Purged
    | MembersChanged
)


# ---------------------------------------------------------------------------------------------------------
# Read-only views (queries answered from the applied state, not through the log)


class Totals(Struct, array_like=True, gc=False):
    """What a queue, topic or subscription has done since it was declared.

    The counts change only by applying entries, so every replica holds the same ones and they survive leader
    changes and restarts (they are in the snapshot). A topic counts `published`; its subscriptions count the rest.
    """

    published: int = 0
    delivered: int = 0
    """Deliveries handed to consumers (a redelivery counts again)."""
    acked: int = 0
    nacked: int = 0
    dead_lettered: int = 0
    """Messages given up on (max_deliveries or TTL), whether a dead-letter queue took them or they were dropped."""

    def copy(self) -> Totals:
        return Totals(self.published, self.delivered, self.acked, self.nacked, self.dead_lettered)


class QueueInfo(Struct, frozen=True):
    name: str
    attrs: QueueAttrs
    owner: str
    created_at_ms: int
    ready: int
    """Messages that a receive would return now (visible, not leased)."""
    delayed: int
    in_flight: int
    messages: int
    """All messages held: ready + delayed + in flight."""
    tags: dict[str, str] = {}
    bytes: int = 0
    """Body bytes of the messages held."""
    oldest_age_ms: int | None = None
    """Age of the oldest message held (ready, delayed or in flight); None when empty."""
    totals: Totals = msgspec.field(default_factory=Totals)


class PeekedMessage(Struct, frozen=True):
    """A held message as peek shows it, without leasing it: `state` is ready, delayed or in_flight."""

    id: str
    offset: int
    body: bytes
    binary: bool
    headers: dict[str, Any]
    state: Literal["ready", "delayed", "in_flight"]
    deliveries: int
    published_at_ms: int
    visible_at_ms: int | None
    """When a delayed or leased message becomes visible (None: it is now)."""
    group_id: str | None = None


class SubscriptionInfo(Struct, frozen=True):
    topic: str
    name: str
    attrs: SubscriptionAttrs
    owner: str
    created_at_ms: int
    next_offset: int
    """The offset the next first delivery will come from."""
    ready: int
    in_flight: int
    lag: int = 0
    """Messages not acked yet: behind the head of the topic, or delivered and not settled (the consumer lag)."""
    lag_ms: int = 0
    """Age of the oldest message not acked yet; 0 when caught up."""
    totals: Totals = msgspec.field(default_factory=Totals)


class TopicInfo(Struct, frozen=True):
    name: str
    attrs: TopicAttrs
    owner: str
    created_at_ms: int
    first_offset: int
    next_offset: int
    messages: int
    bytes: int
    subscriptions: list[SubscriptionInfo]
    totals: Totals = msgspec.field(default_factory=Totals)
    """`published` of the topic; the other counts summed over its current subscriptions."""


class UserRecord(Struct, frozen=True):
    username: str
    password_hash: str
    scopes: list[str]
    created_at_ms: int


class ClientRecord(Struct, frozen=True):
    client_id: str
    secret_hash: str
    scopes: list[str]
    owner: str
    created_at_ms: int
    sigv4_secret: str | None = None


class OutboxLetter(Struct, frozen=True, array_like=True):
    """A dead letter waiting to be published to its dead-letter queue, which another Broker holds.

    `seq` counts the letters of one Broker from 0 and never repeats, so the publisher can make a re-send after
    a crash a duplicate (dedup id `dead-letter:{source}:{seq}`) and then acknowledge with ForwardedDeadLetters.
    """

    seq: int
    dead_letter_queue: str
    id: str
    body: bytes
    binary: bool
    headers: dict[str, Any]
    group_id: str | None = None


_entry_encoder = msgspec.msgpack.Encoder()
_entry_decoder = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    return _entry_encoder.encode(entry)


def decode_entry(data: bytes) -> Entry:
    return _entry_decoder.decode(data)
