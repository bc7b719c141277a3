"""Request bodies of the REST API, decoded and validated in one msgspec pass.

Message bodies stay as `msgspec.Raw` from request to log to response: the JSON text a producer sent is stored
and handed to consumers without being parsed into Python objects or encoded again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Raw, Struct, UnsetType

from mom.broker.commands import NAME_PATTERN, PositiveSeconds, Seconds, StartOffset, WaitSeconds

DedupId = Annotated[str, Meta(min_length=1, max_length=128)]
GroupId = Annotated[str, Meta(min_length=1, max_length=128)]
Receipt = Annotated[str, Meta(min_length=1, max_length=200)]
Username = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._@-]{1,100}$")]
Password = Annotated[str, Meta(min_length=8, max_length=1024)]


class MessageIn(Struct, forbid_unknown_fields=True):
    body: Raw | UnsetType = UNSET
    body_base64: str | UnsetType = UNSET
    headers: dict[str, Any] = {}
    delay_s: Seconds | None = None
    """None: the queue's delay_s."""
    dedup_id: DedupId | None = None
    group_id: GroupId | None = None


class PublishRequest(Struct, forbid_unknown_fields=True):
    """Either a batch (`messages`) or the fields of one message at the top level."""

    messages: Annotated[list[MessageIn], Meta(min_length=1)] | UnsetType = UNSET
    body: Raw | UnsetType = UNSET
    body_base64: str | UnsetType = UNSET
    headers: dict[str, Any] = {}
    delay_s: Seconds | None = None
    dedup_id: DedupId | None = None
    group_id: GroupId | None = None


class ReceiveRequest(Struct, forbid_unknown_fields=True):
    max_messages: Annotated[int, Meta(ge=1, le=100)] = 1
    wait_s: WaitSeconds | None = None
    """None: the queue's receive_wait_s (0 for subscriptions)."""
    visibility_timeout_s: PositiveSeconds | None = None


class VisibilityRequest(Struct, forbid_unknown_fields=True):
    receipts: Annotated[list[Receipt], Meta(min_length=1, max_length=1000)]
    visibility_timeout_s: Annotated[float, Meta(ge=0, le=43_200)]


class RedriveRequest(Struct, forbid_unknown_fields=True):
    max_messages: Annotated[int, Meta(ge=1)] | None = None
    """None: every message the dead-letter queue holds now."""
    to: Annotated[str, Meta(pattern=NAME_PATTERN)] | None = None
    """None: each message back to the queue its x-death header names."""


class AckRequest(Struct, forbid_unknown_fields=True):
    receipts: Annotated[list[Receipt], Meta(min_length=1, max_length=1000)]


class NackRequest(Struct, forbid_unknown_fields=True):
    receipts: Annotated[list[Receipt], Meta(min_length=1, max_length=1000)]
    delay_s: Seconds = 0.0


class UserRequest(Struct, forbid_unknown_fields=True):
    username: Username
    password: Password


class ClientRequest(Struct, forbid_unknown_fields=True):
    scopes: Annotated[list[str], Meta(min_length=1, max_length=100)]
    client_id: Username | None = None
    sigv4: bool = False
    """Also keep the secret itself, so the client can sign SQS requests (AWS SigV4): see docs/sqs.md."""


class SubscriptionRequest(Struct, forbid_unknown_fields=True):
    """Documentation twin of SubscriptionAttrs (`start` is "latest", "earliest" or {"offset": N})."""

    start: Literal["latest", "earliest"] | StartOffset = "latest"
    visibility_timeout_s: PositiveSeconds = 30.0
    max_deliveries: int | None = None
    dead_letter_queue: str | None = None


T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_body(data: bytes, schema: type[T]) -> T:
    """Decode a JSON request body into `schema`; an empty body means `{}` (all defaults).

    Raises msgspec.DecodeError / ValidationError, which the error handler turns into 400 problem+json.
    """
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders[schema] = msgspec.json.Decoder(schema)
    return decoder.decode(data if data.strip() else b"{}")  # type: ignore[no-any-return]
