"""The MD5 digests SQS answers with, computed as SQS documents them (SDKs compare them with their own)."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping

from mom.api.sqs.attributes import AttributeValue


def md5_of_body(body: str) -> str:
    return hashlib.md5(body.encode("utf-8"), usedforsecurity=False).hexdigest()


def _field(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def md5_of_attributes(attributes: Mapping[str, AttributeValue]) -> str:
    """Names in order; for each its name, data type, a transport byte (1 string, 2 binary) and value, each
    length-prefixed (4 bytes, big-endian), digested together."""
    digest = hashlib.md5(usedforsecurity=False)
    for name in sorted(attributes):
        value = attributes[name]
        digest.update(_field(name.encode()) + _field(value.data_type.encode()))
        if value.binary is not None:
            digest.update(b"\x02" + _field(value.binary))
        else:
            digest.update(b"\x01" + _field((value.string or "").encode()))
    return digest.hexdigest()
