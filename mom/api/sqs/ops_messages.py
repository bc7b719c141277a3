"""SQS operations on messages: send, receive, delete, change visibility (single and batch).

All run on the queue's leader (`leader_of` raises ForwardRequired elsewhere; the route forwards). A batch checks
its entries one by one, answers each bad one in `Failed`, and commits the good ones as one log command.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from typing import Any

from mom.api.context import ctx, leader_of
from mom.api.sqs import attributes as ma
from mom.api.sqs.call import Call
from mom.api.sqs.errors import (
    BATCH_TOO_LONG,
    EMPTY_BATCH,
    IDS_NOT_DISTINCT,
    INVALID_BATCH_ENTRY_ID,
    INVALID_PARAMETER_VALUE,
    MESSAGE_NOT_INFLIGHT,
    MISSING_PARAMETER,
    RECEIPT_HANDLE_IS_INVALID,
    TOO_MANY_ENTRIES,
    SqsError,
    from_mom,
)
from mom.api.sqs.md5 import md5_of_attributes, md5_of_body
from mom.api.sqs.queue_attributes import arn
from mom.broker._leases import parse_receipts
from mom.broker.commands import (
    Ack,
    ChangeVisibility,
    Delivery,
    NewMessage,
    Publish,
    Published,
    QueueAttrs,
    QueueRef,
    Settled,
)
from mom.errors import InvalidInput, MomError
from mom.service import Handle

Result = dict[str, Any]

MAX_WAIT_S = 20
"""The longest WaitTimeSeconds (and ReceiveMessageWaitTimeSeconds): a receive forwarded without one may wait so long."""
MAX_BATCH = 10
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,80}")


class _Prepared:
    __slots__ = ("attributes", "body", "message")

    def __init__(self, message: NewMessage, body: str, attributes: dict[str, ma.AttributeValue]) -> None:
        self.message, self.body, self.attributes = message, body, attributes


def _prepare(call: Call, entry: dict[str, Any], attrs: QueueAttrs) -> _Prepared:
    body = entry.get("MessageBody")
    if body is None or body == "":
        raise SqsError(MISSING_PARAMETER, "The request must contain the parameter MessageBody.")
    if not isinstance(body, str):
        raise SqsError(INVALID_PARAMETER_VALUE, "MessageBody must be a string.")
    ma.check_text(body, "the message body")
    attributes = ma.parse_attributes(entry.get("MessageAttributes"))
    size = len(body.encode()) + sum(
        len(k) + len(v.data_type) + len(v.binary if v.binary is not None else (v.string or "").encode())
        for k, v in attributes.items()
    )
    limit = ctx().settings.limits.max_message_bytes
    if size > limit:
        raise SqsError(INVALID_PARAMETER_VALUE, f"The message is {size} bytes long; the limit is {limit} bytes.")
    delay = call.integer("DelaySeconds", None, 0, 900, entry)
    group_id, dedup_id = entry.get("MessageGroupId"), entry.get("MessageDeduplicationId")
    for key, value in (("MessageGroupId", group_id), ("MessageDeduplicationId", dedup_id)):
        if value is not None and (not isinstance(value, str) or not re.fullmatch(r"[!-~]{1,128}", value)):
            raise SqsError(INVALID_PARAMETER_VALUE, f"Value {value} for parameter {key} is invalid.")
    if attrs.fifo:
        if group_id is None:
            raise SqsError(MISSING_PARAMETER, "The request must contain the parameter MessageGroupId.")
        if dedup_id is None and not attrs.content_based_dedup:
            raise SqsError(
                INVALID_PARAMETER_VALUE,
                "The queue should either have ContentBasedDeduplication enabled or MessageDeduplicationId "
                "provided explicitly",
            )
        if delay is not None:
            raise SqsError(
                INVALID_PARAMETER_VALUE,
                f"Value {delay} for parameter DelaySeconds is invalid. Reason: The request include parameter "
                "that is not valid for this queue type.",
            )
    data, binary = ma.body_to_mom(body)
    message = NewMessage(
        id=str(uuid.uuid4()),
        body=data,
        binary=binary,
        headers=ma.attributes_to_headers(attributes),
        delay_ms=None if delay is None else delay * 1000,
        dedup_id=dedup_id,
        group_id=group_id,
    )
    return _Prepared(message, body, attributes)


def _sent(prepared: _Prepared, message_id: str, offset: int, fifo: bool) -> Result:
    out: Result = {"MessageId": message_id, "MD5OfMessageBody": md5_of_body(prepared.body)}
    if prepared.attributes:
        out["MD5OfMessageAttributes"] = md5_of_attributes(prepared.attributes)
    if fifo:
        out["SequenceNumber"] = f"{offset:020d}"
    return out


def _queue_attrs(group: Handle, name: str) -> QueueAttrs:
    return group.state.queue_info(name, ctx().service.now_ms()).attrs


async def _publish(group: Handle, name: str, messages: list[NewMessage]) -> Published:
    try:
        result = await ctx().service.submit(group, Publish(QueueRef(name), messages), Published)
    except InvalidInput as exc:
        raise SqsError(INVALID_PARAMETER_VALUE, exc.detail) from None
    ctx().metrics.published.labels("queue").inc(len(messages))
    return result


async def send_message(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "write")
    group = leader_of(QueueRef(name))
    attrs = _queue_attrs(group, name)
    prepared = _prepare(call, call.params, attrs)
    published = (await _publish(group, name, [prepared.message])).messages[0]
    return _sent(prepared, published.id, published.offset, attrs.fifo)


def _entries(call: Call, total_limit: int | None = None) -> list[dict[str, Any]]:
    entries = call.params.get("Entries") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SqsError(INVALID_PARAMETER_VALUE, "Entries must be a list of entries.")
    if not entries:
        raise SqsError(EMPTY_BATCH, "There should be at least one entry in the request.")
    if len(entries) > MAX_BATCH:
        raise SqsError(
            TOO_MANY_ENTRIES, f"Maximum number of entries per request are {MAX_BATCH}. You have sent {len(entries)}."
        )
    ids = [e.get("Id") for e in entries]
    for entry_id in ids:
        if not isinstance(entry_id, str) or not _ENTRY_ID.fullmatch(entry_id):
            raise SqsError(
                INVALID_BATCH_ENTRY_ID,
                "A batch entry id can only contain alphanumeric characters, hyphens and underscores "
                f"(1 to 80): {entry_id!r}.",
            )
    if len(set(ids)) != len(ids):
        raise SqsError(IDS_NOT_DISTINCT, "Two or more batch entries in the request have the same Id.")
    if total_limit is not None:
        total = sum(len(str(e.get("MessageBody", "")).encode()) for e in entries)
        if total > total_limit:
            raise SqsError(BATCH_TOO_LONG, f"Batch requests cannot be longer than {total_limit} bytes.")
    return entries


def _failed(entry_id: str, error: SqsError) -> Result:
    return {"Id": entry_id, "SenderFault": error.kind.sender, "Code": error.kind.query_code, "Message": error.message}


async def send_message_batch(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "write")
    entries = _entries(call, ctx().settings.limits.max_message_bytes)
    group = leader_of(QueueRef(name))
    attrs = _queue_attrs(group, name)
    good: list[tuple[str, _Prepared]] = []
    failed: list[Result] = []
    for entry in entries:
        try:
            good.append((entry["Id"], _prepare(call, entry, attrs)))
        except SqsError as error:
            failed.append(_failed(entry["Id"], error))
    successful: list[Result] = []
    if good:
        published = await _publish(group, name, [p.message for _, p in good])
        for (entry_id, prepared), result in zip(good, published.messages, strict=True):
            successful.append({"Id": entry_id, **_sent(prepared, result.id, result.offset, attrs.fifo)})
    return {"Successful": successful, "Failed": failed}


# -- receiving -----------------------------------------------------------------------------------------------


def _system_attributes(d: Delivery, names: set[str], fifo: bool, region: str) -> dict[str, str]:
    every = {
        "SentTimestamp": str(d.published_at_ms),
        "ApproximateReceiveCount": str(d.deliveries),
    }
    if d.group_id is not None:
        every["MessageGroupId"] = d.group_id
    if fifo:
        every["SequenceNumber"] = f"{d.offset:020d}"
    death = d.headers.get("x-death")
    if isinstance(death, dict) and isinstance(death.get("queue"), str):
        every["DeadLetterQueueSourceArn"] = arn(region, death["queue"])
    if "All" in names:
        return every
    return {k: v for k, v in every.items() if k in names}


def _message(call: Call, d: Delivery, system: set[str], wanted: list[str], fifo: bool) -> Result:
    body, encoded = ma.body_to_sqs(d.body, d.binary)
    attributes = ma.headers_to_attributes(d.headers)
    if encoded:
        attributes[ma.BODY_ENCODING] = ma.AttributeValue("String", string="base64")
    selected = ma.select(attributes, wanted)
    out: Result = {"MessageId": d.id, "ReceiptHandle": d.receipt, "MD5OfBody": md5_of_body(body), "Body": body}
    found = _system_attributes(d, system, fifo, call.region)
    if found:
        out["Attributes"] = found
    if selected:
        out["MessageAttributes"] = {k: v.wire() for k, v in selected.items()}
        out["MD5OfMessageAttributes"] = md5_of_attributes(selected)
    return out


async def receive_message(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read")
    most = call.integer("MaxNumberOfMessages", 1, 1, 10) or 1
    wait = call.integer("WaitTimeSeconds", None, 0, MAX_WAIT_S)
    visibility = call.integer("VisibilityTimeout", None, 0, 43_200)
    system = set(call.strings("AttributeNames")) | set(call.strings("MessageSystemAttributeNames"))
    wanted = call.strings("MessageAttributeNames")
    group = leader_of(QueueRef(name), wait_s=MAX_WAIT_S if wait is None else wait)  # forwarded: may long-poll
    attrs = _queue_attrs(group, name)
    wait_s = attrs.receive_wait_s if wait is None else wait
    with ctx().guard.quotas.hold("long_polls", call.principal) if wait_s > 0 else contextlib.nullcontext():
        deliveries = await ctx().service.receive(
            group,
            QueueRef(name),
            max_messages=most,
            wait_s=wait_s,
            visibility_timeout_ms=None if visibility is None else max(1, visibility * 1000),
        )
    ctx().metrics.delivered.inc(len(deliveries))
    return {"Messages": [_message(call, d, system, wanted, attrs.fifo) for d in deliveries]}


# -- settling ------------------------------------------------------------------------------------------------


def _receipt(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise SqsError(MISSING_PARAMETER, "The request must contain the parameter ReceiptHandle.")
    try:
        parse_receipts([value])
    except InvalidInput:
        raise SqsError(
            RECEIPT_HANDLE_IS_INVALID, f'The input receipt handle "{value}" is not a valid receipt handle.'
        ) from None
    return value


async def _settle(group: Handle, command: Ack | ChangeVisibility) -> Settled:
    try:
        result = await ctx().service.submit(group, command, Settled)
    except MomError as exc:
        raise from_mom(exc) from None
    return result


async def delete_message(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read")
    receipt = _receipt(call.params.get("ReceiptHandle"))
    result = await _settle(leader_of(QueueRef(name)), Ack(QueueRef(name), [receipt]))
    ctx().metrics.acked.inc(len(result.settled))
    return {}


async def delete_message_batch(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read")
    entries = _entries(call)
    good: list[tuple[str, str]] = []
    failed: list[Result] = []
    for entry in entries:
        try:
            good.append((entry["Id"], _receipt(entry.get("ReceiptHandle"))))
        except SqsError as error:
            failed.append(_failed(entry["Id"], error))
    group = leader_of(QueueRef(name))
    if good:
        result = await _settle(group, Ack(QueueRef(name), [r for _, r in good]))
        ctx().metrics.acked.inc(len(result.settled))
    return {"Successful": [{"Id": entry_id} for entry_id, _ in good], "Failed": failed}


def _not_inflight(receipt: str) -> SqsError:
    return SqsError(
        MESSAGE_NOT_INFLIGHT,
        f"Value {receipt} for parameter ReceiptHandle is invalid. Reason: Message does not exist or is not "
        "available for visibility timeout change.",
    )


async def change_message_visibility(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read")
    receipt = _receipt(call.params.get("ReceiptHandle"))
    timeout = call.integer("VisibilityTimeout", None, 0, 43_200)
    if timeout is None:
        raise SqsError(MISSING_PARAMETER, "The request must contain the parameter VisibilityTimeout.")
    result = await _settle(leader_of(QueueRef(name)), ChangeVisibility(QueueRef(name), [receipt], [timeout * 1000]))
    if result.unknown:
        raise _not_inflight(receipt)
    return {}


async def change_message_visibility_batch(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read")
    entries = _entries(call)
    good: list[tuple[str, str, int]] = []
    failed: list[Result] = []
    for entry in entries:
        try:
            timeout = call.integer("VisibilityTimeout", None, 0, 43_200, entry)
            if timeout is None:
                raise SqsError(MISSING_PARAMETER, "The request must contain the parameter VisibilityTimeout.")
            good.append((entry["Id"], _receipt(entry.get("ReceiptHandle")), timeout * 1000))
        except SqsError as error:
            failed.append(_failed(entry["Id"], error))
    group = leader_of(QueueRef(name))
    successful: list[Result] = []
    if good:
        command = ChangeVisibility(QueueRef(name), [r for _, r, _ in good], [t for _, _, t in good])
        result = await _settle(group, command)
        unknown = set(result.unknown)
        for entry_id, receipt, _ in good:
            if receipt in unknown:
                failed.append(_failed(entry_id, _not_inflight(receipt)))
            else:
                successful.append({"Id": entry_id})
    return {"Successful": successful, "Failed": failed}
