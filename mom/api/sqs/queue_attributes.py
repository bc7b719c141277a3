"""SQS queue attributes as mom queue attributes, and back.

| SQS | mom |
| --- | --- |
| VisibilityTimeout (0..43200) | visibility_timeout_s (0 is 1 ms: mom leases are never empty) |
| MessageRetentionPeriod (60..1209600) | message_ttl_s (unset: kept until consumed, reported as 1209600) |
| DelaySeconds (0..900) | delay_s |
| ReceiveMessageWaitTimeSeconds (0..20) | receive_wait_s |
| RedrivePolicy {deadLetterTargetArn, maxReceiveCount} | dead_letter_queue, max_deliveries |
| FifoQueue, ContentBasedDeduplication | fifo, content_based_dedup |

Attributes SQS has and mom does not enforce (encryption, policies, throughput settings) are accepted and not
stored: `IGNORED`. Anything else is InvalidAttributeName.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mom.api.sqs.errors import INVALID_ATTRIBUTE_NAME, INVALID_ATTRIBUTE_VALUE, SqsError
from mom.broker.commands import QueueAttrs, QueueInfo

ACCOUNT = "000000000000"
UNSET_RETENTION_S = 1_209_600
VISIBILITY_ZERO_S = 0.001

IGNORED = frozenset(
    {
        "MaximumMessageSize",
        "Policy",
        "KmsMasterKeyId",
        "KmsDataKeyReusePeriodSeconds",
        "SqsManagedSseEnabled",
        "DeduplicationScope",
        "FifoThroughputLimit",
        "RedriveAllowPolicy",
    }
)
SETTABLE = frozenset(
    {
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "ReceiveMessageWaitTimeSeconds",
        "RedrivePolicy",
        "ContentBasedDeduplication",
    }
)
READ_ONLY = frozenset(
    {
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
        "CreatedTimestamp",
        "LastModifiedTimestamp",
        "QueueArn",
    }
)
ALL = SETTABLE | IGNORED | READ_ONLY | {"FifoQueue"}


def arn(region: str, name: str) -> str:
    return f"arn:aws:sqs:{region}:{ACCOUNT}:{name}"


def name_of_arn(value: str) -> str:
    parts = value.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
        raise SqsError(INVALID_ATTRIBUTE_VALUE, f"'{value}' is not an SQS queue ARN")
    return parts[5]


def _int(name: str, text: Any, low: int, high: int) -> int:
    digits = str(text).strip().lstrip("-")
    if not isinstance(text, str | int) or not (digits.isascii() and digits.isdigit()):
        raise SqsError(INVALID_ATTRIBUTE_VALUE, f"Invalid value for the parameter {name}.")
    value = int(str(text).strip())
    if not low <= value <= high:
        raise SqsError(INVALID_ATTRIBUTE_VALUE, f"Invalid value for the parameter {name}: {low} to {high}.")
    return value


def _bool(name: str, text: Any) -> bool:
    if str(text).lower() not in ("true", "false"):
        raise SqsError(INVALID_ATTRIBUTE_VALUE, f"Invalid value for the parameter {name}: true or false.")
    return str(text).lower() == "true"


def to_changes(attributes: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    """mom attribute values for the SQS attributes given (only those named)."""
    changes: dict[str, Any] = {}
    for name, value in attributes.items():
        if name in IGNORED:
            continue
        if name not in SETTABLE and not (creating and name == "FifoQueue"):
            raise SqsError(INVALID_ATTRIBUTE_NAME, f"Unknown or read-only attribute {name}.")
        if name == "VisibilityTimeout":
            seconds = _int(name, value, 0, 43_200)
            changes["visibility_timeout_s"] = float(seconds) if seconds else VISIBILITY_ZERO_S
        elif name == "MessageRetentionPeriod":
            changes["message_ttl_s"] = float(_int(name, value, 60, 1_209_600))
        elif name == "DelaySeconds":
            changes["delay_s"] = float(_int(name, value, 0, 900))
        elif name == "ReceiveMessageWaitTimeSeconds":
            changes["receive_wait_s"] = float(_int(name, value, 0, 20))
        elif name == "FifoQueue":
            changes["fifo"] = _bool(name, value)
        elif name == "ContentBasedDeduplication":
            changes["content_based_dedup"] = _bool(name, value)
        elif name == "RedrivePolicy":
            changes.update(_redrive_policy(value))
    return changes


def _redrive_policy(value: Any) -> dict[str, Any]:
    if value in ("", None):
        return {"dead_letter_queue": None, "max_deliveries": None}
    try:
        policy = msgspec.json.decode(value.encode() if isinstance(value, str) else b"")
    except msgspec.DecodeError:
        policy = None
    if not isinstance(policy, dict) or "deadLetterTargetArn" not in policy or "maxReceiveCount" not in policy:
        raise SqsError(
            INVALID_ATTRIBUTE_VALUE,
            "Value for parameter RedrivePolicy is invalid. Reason: Redrive policy is not a valid JSON map "
            "with deadLetterTargetArn and maxReceiveCount.",
        )
    return {
        "dead_letter_queue": name_of_arn(str(policy["deadLetterTargetArn"])),
        "max_deliveries": _int("maxReceiveCount", policy["maxReceiveCount"], 1, 1000),
    }


def create_attrs(name: str, changes: dict[str, Any]) -> QueueAttrs:
    """The attributes of a queue CreateQueue declares: SQS's defaults, FIFO from the name, then `changes`."""
    fifo = changes.get("fifo", name.endswith(".fifo"))
    try:
        return msgspec.convert({**changes, "fifo": fifo}, QueueAttrs)
    except msgspec.ValidationError as exc:
        raise SqsError(INVALID_ATTRIBUTE_VALUE, f"invalid attributes: {exc}") from None


def matches(existing: QueueAttrs, changes: dict[str, Any]) -> bool:
    """CreateQueue of an existing queue succeeds when the attributes it names have the values the queue has."""
    current = msgspec.to_builtins(existing)
    return all(current.get(key) == value for key, value in changes.items())


def to_sqs(info: QueueInfo, *, region: str, max_message_bytes: int) -> dict[str, str]:
    """Every attribute of the queue as GetQueueAttributes answers it."""
    a = info.attrs
    out = {
        "QueueArn": arn(region, info.name),
        "ApproximateNumberOfMessages": str(info.ready),
        "ApproximateNumberOfMessagesNotVisible": str(info.in_flight),
        "ApproximateNumberOfMessagesDelayed": str(info.delayed),
        "CreatedTimestamp": str(info.created_at_ms // 1000),
        "LastModifiedTimestamp": str(info.created_at_ms // 1000),
        "VisibilityTimeout": str(int(a.visibility_timeout_s)),
        "MaximumMessageSize": str(max_message_bytes),
        "MessageRetentionPeriod": str(UNSET_RETENTION_S if a.message_ttl_s is None else int(a.message_ttl_s)),
        "DelaySeconds": str(int(a.delay_s)),
        "ReceiveMessageWaitTimeSeconds": str(int(a.receive_wait_s)),
        "SqsManagedSseEnabled": "false",
    }
    if a.dead_letter_queue is not None and a.max_deliveries is not None:
        policy = {"deadLetterTargetArn": arn(region, a.dead_letter_queue), "maxReceiveCount": a.max_deliveries}
        out["RedrivePolicy"] = msgspec.json.encode(policy).decode()
    if a.fifo:
        out["FifoQueue"] = "true"
        out["ContentBasedDeduplication"] = "true" if a.content_based_dedup else "false"
        out["DeduplicationScope"] = "queue"
        out["FifoThroughputLimit"] = "perQueue"
    return out


def select(all_attributes: dict[str, str], names: list[str]) -> dict[str, str]:
    for name in names:
        if name != "All" and name not in ALL:
            raise SqsError(INVALID_ATTRIBUTE_NAME, f"Unknown Attribute {name}.")
    if "All" in names:
        return all_attributes
    return {name: all_attributes[name] for name in names if name in all_attributes}
