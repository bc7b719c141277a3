"""Message bodies and message attributes between SQS and mom's messages (one queue, two APIs).

Bodies: an SQS body that is valid JSON is stored as a JSON body (a REST consumer gets the value); any other
text is stored as raw bytes (REST shows it as `body_base64`). Either way the exact text comes back over SQS.
A REST message with a binary body that is not valid UTF-8 text reaches SQS base64-encoded, with the message
attribute `mom-body-encoding: base64`.

Attributes are mom headers. SQS -> mom: a `String` attribute is a string header; a `Number` whose text is
exactly a JSON number's is that number; any other attribute is kept typed, as
`{"DataType": ..., "StringValue": ...}` or `{"DataType": ..., "BinaryValue": <base64>}`. mom -> SQS: a string
header is a `String` attribute, a number a `Number`, a typed header its type, and any other JSON value a
`String.json` attribute holding its JSON text. So an attribute sent over SQS comes back over SQS exactly (its
MD5 matches), and REST headers stay readable JSON.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

import msgspec

from mom.api.sqs.errors import INVALID_MESSAGE_CONTENTS, INVALID_PARAMETER_VALUE, SqsError

MAX_ATTRIBUTES = 10
BODY_ENCODING = "mom-body-encoding"
_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_TYPE_RE = re.compile(r"(String|Number|Binary)(\.[A-Za-z0-9_.-]{1,200})?")
_INVALID_TEXT = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class AttributeValue:
    data_type: str
    string: str | None = None
    binary: bytes | None = None

    def wire(self) -> dict[str, Any]:
        """As the JSON protocol carries it (binary values base64-encoded)."""
        if self.binary is not None:
            return {"DataType": self.data_type, "BinaryValue": base64.b64encode(self.binary).decode()}
        return {"DataType": self.data_type, "StringValue": self.string}


def check_text(text: str, what: str) -> str:
    """SQS accepts only the characters XML 1.0 allows."""
    if _INVALID_TEXT.search(text):
        raise SqsError(INVALID_MESSAGE_CONTENTS, f"{what} contains characters outside the allowed set")
    return text


# -- bodies --------------------------------------------------------------------------------------------------


def body_to_mom(text: str) -> tuple[bytes, bool]:
    """(bytes, binary) for mom: JSON text stays JSON, anything else is raw bytes."""
    data = text.encode("utf-8")
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        return data, True
    return data, False


def body_to_sqs(body: bytes, binary: bool) -> tuple[str, bool]:
    """(text, base64?) for SQS: the text as stored, or base64 when it is not text SQS can carry."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return base64.b64encode(body).decode(), True
    if binary and _INVALID_TEXT.search(text):
        return base64.b64encode(body).decode(), True
    return text, False


# -- attributes ----------------------------------------------------------------------------------------------


def parse_attributes(raw: Any) -> dict[str, AttributeValue]:
    """Validate SQS message attributes as a client sent them (JSON protocol shape)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SqsError(INVALID_PARAMETER_VALUE, "MessageAttributes must be a map")
    if len(raw) > MAX_ATTRIBUTES:
        raise SqsError(
            INVALID_PARAMETER_VALUE,
            f"Number of message attributes [{len(raw)}] exceeds the allowed maximum [{MAX_ATTRIBUTES}].",
        )
    parsed: dict[str, AttributeValue] = {}
    for name, value in raw.items():
        if not _NAME_RE.fullmatch(name) or name.startswith((".", "AWS.", "Amazon.")) or ".." in name:
            raise SqsError(INVALID_PARAMETER_VALUE, f"Message attribute name '{name}' is invalid.")
        if not isinstance(value, dict) or not isinstance(value.get("DataType"), str):
            raise SqsError(INVALID_PARAMETER_VALUE, f"The message attribute '{name}' must contain a DataType.")
        data_type = value["DataType"]
        if not _TYPE_RE.fullmatch(data_type):
            raise SqsError(INVALID_PARAMETER_VALUE, f"The message attribute '{name}' has an invalid DataType.")
        parsed[name] = _value(name, data_type, value)
    return parsed


def _value(name: str, data_type: str, value: dict[str, Any]) -> AttributeValue:
    if data_type.startswith("Binary"):
        raw = value.get("BinaryValue")
        if not isinstance(raw, str | bytes) or not raw:
            raise SqsError(INVALID_PARAMETER_VALUE, f"The message attribute '{name}' must contain a BinaryValue.")
        try:
            data = raw if isinstance(raw, bytes) else base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise SqsError(INVALID_PARAMETER_VALUE, f"The message attribute '{name}' is not base64.") from None
        return AttributeValue(data_type, binary=data)
    text = value.get("StringValue")
    if not isinstance(text, str) or not text:
        raise SqsError(INVALID_PARAMETER_VALUE, f"The message attribute '{name}' must contain a StringValue.")
    if data_type.startswith("Number"):
        try:
            float(text)
        except ValueError:
            raise SqsError(INVALID_PARAMETER_VALUE, f"The message attribute '{name}' is not a number.") from None
    return AttributeValue(data_type, string=check_text(text, f"message attribute '{name}'"))


def attributes_to_headers(attributes: dict[str, AttributeValue]) -> dict[str, Any]:
    headers: dict[str, Any] = {}
    for name, value in attributes.items():
        if value.binary is not None:
            headers[name] = {"DataType": value.data_type, "BinaryValue": base64.b64encode(value.binary).decode()}
            continue
        text = value.string or ""
        if value.data_type == "String":
            headers[name] = text
            continue
        if value.data_type == "Number":
            try:
                number = msgspec.json.decode(text.encode())
            except msgspec.DecodeError:
                number = None
            exact = isinstance(number, int | float) and msgspec.json.encode(number).decode() == text
            if exact and not isinstance(number, bool):
                headers[name] = number
                continue
        headers[name] = {"DataType": value.data_type, "StringValue": text}
    return headers


def _typed(value: dict[str, Any]) -> AttributeValue | None:
    data_type = value.get("DataType")
    if set(value) not in ({"DataType", "StringValue"}, {"DataType", "BinaryValue"}):
        return None
    if not isinstance(data_type, str) or not _TYPE_RE.fullmatch(data_type):
        return None
    if "BinaryValue" in value and data_type.startswith("Binary") and isinstance(value["BinaryValue"], str):
        try:
            return AttributeValue(data_type, binary=base64.b64decode(value["BinaryValue"], validate=True))
        except binascii.Error:
            return None
    if "StringValue" in value and not data_type.startswith("Binary") and isinstance(value["StringValue"], str):
        return AttributeValue(data_type, string=value["StringValue"])
    return None


def headers_to_attributes(headers: dict[str, Any]) -> dict[str, AttributeValue]:
    """Every header whose name SQS allows, as an SQS attribute (see the module docstring)."""
    attributes: dict[str, AttributeValue] = {}
    for name, value in headers.items():
        if not _NAME_RE.fullmatch(name) or name.startswith((".", "AWS.", "Amazon.")) or ".." in name:
            continue
        if isinstance(value, str):
            attributes[name] = AttributeValue("String", string=value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = AttributeValue("Number", string=msgspec.json.encode(value).decode())
        elif isinstance(value, dict) and (typed := _typed(value)) is not None:
            attributes[name] = typed
        else:
            attributes[name] = AttributeValue("String.json", string=msgspec.json.encode(value).decode())
    return attributes


def select(attributes: dict[str, AttributeValue], names: list[str]) -> dict[str, AttributeValue]:
    """The attributes a receive asked for: `All`, `.*`, `prefix.*` or exact names."""
    if not names:
        return {}
    if "All" in names or ".*" in names:
        return attributes
    prefixes = tuple(n[:-1] for n in names if n.endswith(".*"))
    exact = set(names)
    return {k: v for k, v in attributes.items() if k in exact or (prefixes and k.startswith(prefixes))}
