"""From a publish request to the core's NewMessage list, enforcing the size limits (413) on the way."""

from __future__ import annotations

import binascii
import os
from base64 import b64decode

from msgspec import UNSET

from mom.api.schemas import MessageIn, PublishRequest, decode_body
from mom.broker.commands import NewMessage
from mom.config import LimitsSection
from mom.errors import InvalidInput, TooLarge

_UUID4_CLEAR = 0xF000 << 64 | 0xC000 << 48
_UUID4_SET = 0x4000 << 64 | 0x8000 << 48


def new_message_id() -> str:
    """A random (version 4) UUID in its usual text form, as `str(uuid.uuid4())` gives it.

    Built from the 16 random bytes directly: every published message gets one, and `uuid.UUID`'s constructor
    and its checks cost twice as much as the randomness and the formatting together."""
    text = f"{int.from_bytes(os.urandom(16)) & ~_UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _one(message: MessageIn | PublishRequest, position: int, limits: LimitsSection) -> NewMessage:
    where = f"message {position}"
    if message.body is not UNSET and message.body_base64 is not UNSET:
        raise InvalidInput(f"{where}: give either 'body' or 'body_base64', not both")
    if message.body is not UNSET:
        body, binary = bytes(message.body), False
    elif message.body_base64 is not UNSET:
        try:
            body, binary = b64decode(message.body_base64, validate=True), True
        except binascii.Error:
            raise InvalidInput(f"{where}: 'body_base64' is not valid base64") from None
    else:
        raise InvalidInput(f"{where}: 'body' (any JSON value) or 'body_base64' is required")
    if len(body) > limits.max_message_bytes:
        raise TooLarge(f"{where} is {len(body)} bytes; the limit is {limits.max_message_bytes}")
    return NewMessage(
        id=new_message_id(),
        body=body,
        binary=binary,
        headers=message.headers,
        delay_ms=None if message.delay_s is None else round(message.delay_s * 1000),
        dedup_id=message.dedup_id,
        group_id=message.group_id,
    )


def parse_publish(data: bytes, limits: LimitsSection) -> list[NewMessage]:
    request = decode_body(data, PublishRequest)
    if request.messages is UNSET:
        return [_one(request, 0, limits)]
    if request.body is not UNSET or request.body_base64 is not UNSET:
        raise InvalidInput("give either 'messages' (a batch) or one message's 'body', not both")
    if len(request.messages) > limits.max_batch_messages:
        raise TooLarge(f"the batch has {len(request.messages)} messages; the limit is {limits.max_batch_messages}")
    messages = [_one(m, i, limits) for i, m in enumerate(request.messages)]
    total = sum(len(m.body) for m in messages)
    if total > limits.max_batch_bytes:
        raise TooLarge(f"the batch holds {total} bytes of bodies; the limit is {limits.max_batch_bytes}")
    return messages
