"""Request bodies of the REST API, decoded and validated in one msgspec pass.

Message bodies stay as `msgspec.Raw` from request to log to response: the JSON text a producer sent is stored
and handed to consumers without being parsed into Python objects or encoded again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from mom.api.jsontext import check_json_text
from mom.api.openapi import PATH_PATTERNS
from mom.broker.commands import (
    MAX_COUNT,
    NAME_PATTERN,
    DelaySeconds,
    Name,
    PositiveSeconds,
    RetentionSeconds,
    Seconds,
    StartOffset,
    WaitSeconds,
)
from mom.errors import InvalidInput

DedupId = Annotated[str, Meta(min_length=1, max_length=128)]
GroupId = Annotated[str, Meta(min_length=1, max_length=128)]
Receipt = Annotated[str, Meta(min_length=1, max_length=200)]
"""A receipt as the stream frames take it (checked later, after the frame's scopes)."""
ReceiptFormat = Annotated[str, Meta(pattern=r"^[0-9]{1,18}\.[0-9]{1,18}\.[0-9]{1,9}$")]
"""A receipt as receive hands it out (incarnation.offset.delivery); REST checks the format with the body."""
Username = Annotated[str, Meta(pattern=PATH_PATTERNS["username"])]
"""No dots: a user owns the destinations `<name>.*`, and no user's prefix may lie inside another's."""
ClientId = Annotated[str, Meta(pattern=PATH_PATTERNS["client_id"])]
Password = Annotated[str, Meta(min_length=8, max_length=1024)]
Scope = Annotated[str, Meta(pattern=r"^(mom\.admin|mom\.(read|write|configure):[A-Za-z0-9._*?-]{1,200})$")]
Scopes = Annotated[list[Scope], Meta(min_length=1, max_length=100)]

HeaderScalar = (
    Annotated[str, Meta(max_length=4096)] | Annotated[int, Meta(ge=-MAX_COUNT, le=MAX_COUNT)] | float | bool | None
)
HeaderValue = HeaderScalar | dict[Annotated[str, Meta(max_length=256)], HeaderScalar]
"""A header is a scalar, or an object of scalars (as `x-death` is); numbers within +-2**53."""
Headers = Annotated[dict[Annotated[str, Meta(min_length=1, max_length=256)], HeaderValue], Meta(max_length=64)]

RESERVED_NAMES = frozenset(
    {"admin", "administrator", "root", "superuser", "system", "mom", "node", "anonymous", "everyone", "nobody"}
)
RESERVED_PREFIXES = ("admin-", "admin_", "mom-", "mom_", "mom.", "node-", "system-")


def is_reserved(name: str, admin_username: str) -> bool:
    """Names a user or client may not take: the admin's, and names that pass for the system's."""
    lowered = name.lower()
    return lowered == admin_username.lower() or lowered in RESERVED_NAMES or lowered.startswith(RESERVED_PREFIXES)


class MessageIn(Struct, forbid_unknown_fields=True):
    body: Raw | UnsetType = UNSET
    body_base64: str | UnsetType = UNSET
    headers: Headers = {}
    delay_s: Seconds | None = None
    """None: the queue's delay_s."""
    dedup_id: DedupId | None = None
    group_id: GroupId | None = None


class PublishRequest(Struct, forbid_unknown_fields=True):
    """Either a batch (`messages`) or the fields of one message at the top level."""

    messages: Annotated[list[MessageIn], Meta(min_length=1)] | UnsetType = UNSET
    body: Raw | UnsetType = UNSET
    body_base64: str | UnsetType = UNSET
    headers: Headers = {}
    delay_s: Seconds | None = None
    dedup_id: DedupId | None = None
    group_id: GroupId | None = None


class ReceiveRequest(Struct, forbid_unknown_fields=True):
    max_messages: Annotated[int, Meta(ge=1, le=100)] = 1
    wait_s: WaitSeconds | None = None
    """None: the queue's receive_wait_s (0 for subscriptions)."""
    visibility_timeout_s: PositiveSeconds | None = None


class VisibilityRequest(Struct, forbid_unknown_fields=True):
    receipts: Annotated[list[ReceiptFormat], Meta(min_length=1, max_length=1000)]
    visibility_timeout_s: Annotated[float, Meta(ge=0, le=43_200)]


class QueueChanges(Struct, forbid_unknown_fields=True):
    """PATCH of a queue: the attributes it names change (null clears an optional one), the rest stay.

    QueueAttrs but `fifo` and `replication_factor`, which cannot change after a declare.
    """

    visibility_timeout_s: PositiveSeconds | UnsetType = UNSET
    max_deliveries: Annotated[int, Meta(ge=1, le=1000)] | UnsetType | None = UNSET
    dead_letter_queue: Name | UnsetType | None = UNSET
    max_length: Annotated[int, Meta(ge=1, le=MAX_COUNT)] | UnsetType | None = UNSET
    message_ttl_s: RetentionSeconds | UnsetType | None = UNSET
    delay_s: DelaySeconds | UnsetType = UNSET
    receive_wait_s: WaitSeconds | UnsetType = UNSET
    content_based_dedup: bool | UnsetType = UNSET


class RedriveRequest(Struct, forbid_unknown_fields=True):
    max_messages: Annotated[int, Meta(ge=1, le=MAX_COUNT)] | None = None
    """None: every message the dead-letter queue holds now."""
    to: Annotated[str, Meta(pattern=NAME_PATTERN)] | None = None
    """None: each message back to the queue its x-death header names."""


class AckRequest(Struct, forbid_unknown_fields=True):
    receipts: Annotated[list[ReceiptFormat], Meta(min_length=1, max_length=1000)]


class NackRequest(Struct, forbid_unknown_fields=True):
    receipts: Annotated[list[ReceiptFormat], Meta(min_length=1, max_length=1000)]
    delay_s: Seconds = 0.0


class UserRequest(Struct, forbid_unknown_fields=True):
    username: Username
    password: Password


class ClientRequest(Struct, forbid_unknown_fields=True):
    scopes: Scopes
    client_id: ClientId | None = None
    sigv4: bool = False
    """Also keep the secret itself, so the client can sign SQS requests (AWS SigV4): see docs/sqs.md."""


NodeId = Annotated[str, Meta(pattern=PATH_PATTERNS["node_id"])]
_PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_HOST = r"(\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})"
HostPort = Annotated[str, Meta(pattern=f"^{_HOST}:{_PORT}$")]
RestAddress = Annotated[str, Meta(pattern=f"^(https?://)?{_HOST}:{_PORT}/?$")]


class AddNodeRequest(Struct, forbid_unknown_fields=True):
    """A node to add to the cluster: its id and where it answers REST (`http://host:port` or `host:port`) and
    replication (`host:port`)."""

    id: NodeId
    rest: RestAddress
    replication: HostPort


class MoveDoneRequest(Struct, forbid_unknown_fields=True):
    """A replica move carried out by its group's leader (nodes send it to the metadata leader)."""

    group: Annotated[str, Meta(pattern=r"^[qt]\.[A-Za-z0-9._-]{1,200}$")]
    source: NodeId | None
    target: NodeId
    replicas: Annotated[list[NodeId], Meta(min_length=1, max_length=7)]


class ScopesRequest(Struct, forbid_unknown_fields=True):
    """Scopes to grant to, or revoke from, a user or client."""

    scopes: Scopes


class TokenRequest(Struct):
    """OAuth 2.0 token request parameters (form-encoded, or the same as a JSON object).

    Unknown parameters are ignored, as RFC 6749 (section 3.2) requires.

    grant_type password needs username and password; client_credentials needs the client's id and secret,
    here or as HTTP Basic credentials.
    """

    grant_type: Literal["password", "client_credentials"]
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None


class RevokeRequest(Struct):
    """RFC 7009 revocation request parameters (form-encoded, or the same as a JSON object); others are ignored."""

    token: Annotated[str, Meta(min_length=1)]
    token_type_hint: str | None = None


class SubscriptionRequest(Struct, forbid_unknown_fields=True):
    """Documentation twin of SubscriptionAttrs (`start` is "latest", "earliest" or {"offset": N})."""

    start: Literal["latest", "earliest"] | StartOffset = "latest"
    visibility_timeout_s: PositiveSeconds = 30.0
    max_deliveries: Annotated[int, Meta(ge=1, le=1000)] | None = None
    dead_letter_queue: Name | None = None


T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_body(data: bytes, schema: type[T]) -> T:
    """Decode a JSON request body into `schema`; an empty body means `{}` (all defaults).

    The text is checked first (UTF-8, nesting depth: `check_json_text`), so that what is stored is always
    valid JSON. Raises InvalidInput, or msgspec.DecodeError / ValidationError, which the error handler turns
    into 400 problem+json. Duplicate keys: in request fields the last one wins; message bodies are kept as sent.
    """
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders[schema] = msgspec.json.Decoder(schema)
    check_json_text(data)
    text = data if data.strip() else b"{}"
    try:
        return decoder.decode(text)  # type: ignore[no-any-return]
    except RecursionError:
        raise InvalidInput("the JSON is nested too deeply") from None
    except msgspec.ValidationError as exc:
        if "got `float`" not in str(exc) or schema in _RAW_BODIES:
            raise
        # JSON has one number type: 3.0 is the integer 3 (as JSON Schema says too). Read integral floats so.
        return msgspec.convert(_integral(msgspec.json.decode(text)), schema)


_RAW_BODIES: frozenset[type[Any]] = frozenset({PublishRequest, MessageIn})
"""Schemas holding message bodies (kept as raw text): never decoded into Python objects."""


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_COUNT:
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value
