"""The frames of the streaming endpoint (`GET /v1/stream`, a WebSocket): one JSON object per text frame.

Client frames are a union tagged by `op`, decoded and validated in one msgspec pass. A publish frame's `messages`
stay `msgspec.Raw`: on the leader they go through the very code REST publishes use (`parse_publish`, so the same
validation and 413 limits), and on any other node they travel to the leader untouched. Server frames are built
here as well, so that every shape a client can see is in this one file (and in docs/streaming.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta, Raw, Struct

from mom.api.errors import PROBLEM_TYPE_BASE
from mom.api.schemas import Receipt
from mom.broker.commands import PositiveSeconds, Seconds
from mom.errors import MomError, Overloaded, Unavailable

MAX_CREDIT = 10_000
"""Most deliveries a subscription may be owed at once; it bounds what one subscription can lease unasked."""

CorrelationId = Annotated[str, Meta(min_length=1, max_length=200)] | int
SubName = Annotated[str, Meta(min_length=1, max_length=200)]
Receipts = Annotated[list[Receipt], Meta(min_length=1, max_length=1000)]


class Frame(Struct, tag_field="op", forbid_unknown_fields=True, kw_only=True):
    """A frame from the client; `op` names its kind."""


class PublishFrame(Frame, tag="publish"):
    id: CorrelationId
    messages: Raw
    """As in a REST publish: `[{"body"|"body_base64", "headers", "delay_s", "dedup_id"}, ...]`."""
    queue: str | None = None
    topic: str | None = None


class SubscribeFrame(Frame, tag="subscribe"):
    sub: SubName
    """The client's name for this subscription on this connection; deliveries carry it."""
    credit: Annotated[int, Meta(ge=0, le=MAX_CREDIT)]
    queue: str | None = None
    topic: str | None = None
    subscription: str | None = None
    visibility_timeout_s: PositiveSeconds | None = None


class CreditFrame(Frame, tag="credit"):
    sub: SubName
    add: Annotated[int, Meta(ge=1, le=MAX_CREDIT)]


class AckFrame(Frame, tag="ack"):
    """Settles receipts of the subscription `sub`, or of `queue` / `topic` + `subscription` given directly."""

    id: CorrelationId
    receipts: Receipts
    sub: SubName | None = None
    queue: str | None = None
    topic: str | None = None
    subscription: str | None = None


class NackFrame(AckFrame, tag="nack"):
    delay_s: Seconds = 0.0


class UnsubscribeFrame(Frame, tag="unsubscribe"):
    sub: SubName


ClientFrame = PublishFrame | SubscribeFrame | CreditFrame | AckFrame | NackFrame | UnsubscribeFrame


class _Head(Struct):
    """What an error answer can echo from a frame that did not validate."""

    id: Any = None
    sub: Any = None


_frame_decoder = msgspec.json.Decoder(ClientFrame)
_head_decoder = msgspec.json.Decoder(_Head)
_encoder = msgspec.json.Encoder()


def decode_frame(data: str | bytes) -> ClientFrame:
    """Raises msgspec.DecodeError (not JSON) or msgspec.ValidationError (not a valid frame)."""
    return _frame_decoder.decode(data)


def head_of(data: str | bytes) -> tuple[str | int | None, str | None]:
    """The correlation id and subscription name of a frame, as far as they can be read; for error answers."""
    try:
        head = _head_decoder.decode(data)
    except msgspec.MsgspecError:
        return None, None
    ident = head.id if isinstance(head.id, str | int) and not isinstance(head.id, bool) else None
    return ident, head.sub if isinstance(head.sub, str) else None


def _text(frame: dict[str, Any]) -> str:
    return _encoder.encode(frame).decode()


def published(ident: str | int, messages: Any) -> str:
    """`messages`: `[{"id", "offset", "duplicate"}]` as Structs, or the leader's answer as Raw JSON."""
    return _text({"op": "published", "id": ident, "messages": messages})


def deliver(sub: str, messages: list[Any]) -> str:
    """`messages` as REST receive gives them (`delivery_view` dicts, or a leader's answer as Raw JSON)."""
    return _text({"op": "deliver", "sub": sub, "messages": messages})


def settled(op: str, ident: str | int, done: list[str], unknown: list[str]) -> str:
    """`acked` or `nacked`: the receipts that took effect under that key (as REST answers), and the unknown."""
    return _text({"op": op, "id": ident, op: done, "unknown": unknown})


def subscription_state(op: str, sub: str) -> str:
    """`subscribed` once a subscription is registered, `unsubscribed` once it is gone."""
    return _text({"op": op, "sub": sub})


def error(ident: str | int | None, sub: str | None, exc: MomError) -> str:
    """The REST problem's fields (`type`, `title`, `status`, `detail`), with the frame's `id` and/or `sub`."""
    frame: dict[str, Any] = {"op": "error"}
    if ident is not None:
        frame["id"] = ident
    if sub is not None:
        frame["sub"] = sub
    frame |= {"type": PROBLEM_TYPE_BASE + exc.slug, "title": exc.title, "status": exc.status, "detail": exc.detail}
    if isinstance(exc, Overloaded | Unavailable):
        frame["retry_after_s"] = exc.retry_after_s
    return _text(frame)
