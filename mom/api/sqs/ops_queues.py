"""SQS operations on queues: create, find, list, attributes, tags, purge, delete, dead-letter redrive.

Each runs where the REST route for the same thing runs: catalog changes on the metadata leader, queue contents
on the queue's leader (`meta_leader` / `leader_of` raise ForwardRequired elsewhere; the route forwards).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from quart import current_app

from mom.api.context import ctx, leader_of, meta_leader, require_owner
from mom.api.sqs import queue_attributes as qa
from mom.api.sqs.call import Call
from mom.api.sqs.errors import (
    INVALID_ATTRIBUTE_VALUE,
    INVALID_PARAMETER_VALUE,
    QUEUE_DOES_NOT_EXIST,
    QUEUE_NAME_EXISTS,
    RESOURCE_NOT_FOUND,
    SqsError,
)
from mom.broker.commands import DeclareQueue, DeleteQueue, Purge, QueueInfo, QueueRef, TagQueue, UpdateQueue, check_name
from mom.errors import Conflict, InvalidInput, NotFound
from mom.redrive import redrive

Result = dict[str, Any]
MAX_LIST = 1000


def _catalog_info(name: str) -> QueueInfo:
    service = ctx().service
    try:
        return service.catalog.queue_info(name, service.now_ms())
    except NotFound:
        raise SqsError(QUEUE_DOES_NOT_EXIST, "The specified queue does not exist.") from None


async def create_queue(call: Call) -> Result:
    name = call.text("QueueName")
    try:
        check_name(name, "queue name")
    except InvalidInput as exc:
        raise SqsError(INVALID_PARAMETER_VALUE, exc.detail) from None
    call.allow(name, "configure")
    changes = qa.to_changes(call.mapping("Attributes"), creating=True)
    tags = call.mapping("tags") or call.mapping("Tags")
    service = ctx().service
    meta = meta_leader()
    existing = service.catalog.queue_info(name, 0) if _exists(name) else None
    if existing is not None:
        if not qa.matches(existing.attrs, changes):
            raise SqsError(QUEUE_NAME_EXISTS, f"A queue named {name} already exists with other attributes.")
        return {"QueueUrl": call.url(name)}
    attrs = qa.create_attrs(name, changes)
    try:
        quota = None if call.principal.is_admin else ctx().settings.quotas.destinations
        await service.submit(meta, DeclareQueue(name, attrs, call.principal.subject, quota))
    except Conflict:
        raise SqsError(QUEUE_NAME_EXISTS, f"A queue named {name} already exists with other attributes.") from None
    except InvalidInput as exc:
        raise SqsError(INVALID_ATTRIBUTE_VALUE, exc.detail) from None
    if tags:
        await service.submit(meta, TagQueue(name, {str(k): str(v) for k, v in tags.items()}))
    await service.wait_serving(QueueRef(name))
    return {"QueueUrl": call.url(name)}


def _exists(name: str) -> bool:
    try:
        ctx().service.catalog.queue_info(name, 0)
    except NotFound:
        return False
    return True


async def get_queue_url(call: Call) -> Result:
    name = call.text("QueueName")
    call.allow(name, "read", "write", "configure")
    _catalog_info(name)
    return {"QueueUrl": call.url(name)}


def _page(call: Call, names: list[str]) -> tuple[list[str], str | None]:
    limit = call.integer("MaxResults", None, 1, MAX_LIST)
    token = call.params.get("NextToken")
    if token:
        names = [n for n in names if n > str(token)]
    if limit is None:
        return names[:MAX_LIST], None
    return names[:limit], names[limit - 1] if len(names) > limit else None


def _visible(call: Call, name: str) -> bool:
    return call.principal.can("read", name) or call.principal.can("configure", name)


async def list_queues(call: Call) -> Result:
    prefix = call.params.get("QueueNamePrefix") or ""
    service = ctx().service
    names = [q.name for q in service.catalog.list_queues(service.now_ms()) if q.name.startswith(str(prefix))]
    page, token = _page(call, [n for n in names if _visible(call, n)])
    result: Result = {"QueueUrls": [call.url(n) for n in page]} if page else {}
    if token is not None:
        result["NextToken"] = token
    return result


async def list_dead_letter_source_queues(call: Call) -> Result:
    dlq = call.queue()
    call.allow(dlq, "read", "configure")
    _catalog_info(dlq)
    service = ctx().service
    sources = [q.name for q in service.catalog.list_queues(service.now_ms()) if q.attrs.dead_letter_queue == dlq]
    page, token = _page(call, [n for n in sources if _visible(call, n)])
    result: Result = {"queueUrls": [call.url(n) for n in page]}
    if token is not None:
        result["NextToken"] = token
    return result


async def get_queue_attributes(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read", "configure")
    names = call.strings("AttributeNames")
    catalog = _catalog_info(name)
    group = leader_of(QueueRef(name))
    counts = group.state.queue_info(name, ctx().service.now_ms())
    info = QueueInfo(
        name=name,
        attrs=catalog.attrs,
        owner=catalog.owner,
        created_at_ms=catalog.created_at_ms,
        ready=counts.ready,
        delayed=counts.delayed,
        in_flight=counts.in_flight,
        messages=counts.messages,
    )
    everything = qa.to_sqs(info, region=call.region, max_message_bytes=ctx().settings.limits.max_message_bytes)
    selected = qa.select(everything, names)
    return {"Attributes": selected} if selected else {}


async def set_queue_attributes(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "configure")
    changes = qa.to_changes(call.mapping("Attributes"), creating=False)
    service = ctx().service
    meta = meta_leader()
    require_owner(call.principal, _catalog_info(name).owner, f"queue {name}")
    if changes:
        try:
            await service.submit(meta, UpdateQueue(name, changes))
        except InvalidInput as exc:
            raise SqsError(INVALID_ATTRIBUTE_VALUE, exc.detail) from None
        await service.wait_attributes(name)
    return {}


async def delete_queue(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "configure")
    service = ctx().service
    meta = meta_leader()
    require_owner(call.principal, _catalog_info(name).owner, f"queue {name}")
    await service.submit(meta, DeleteQueue(name))
    return {}


async def purge_queue(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read")
    await ctx().service.submit(leader_of(QueueRef(name)), Purge(QueueRef(name)))
    return {}


async def tag_queue(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "configure")
    tags = {str(k): str(v) for k, v in call.mapping("Tags").items()}
    _catalog_info(name)
    await ctx().service.submit(meta_leader(), TagQueue(name, tags))
    return {}


async def untag_queue(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "configure")
    keys = call.strings("TagKeys")
    _catalog_info(name)
    await ctx().service.submit(meta_leader(), TagQueue(name, {}, keys))
    return {}


async def list_queue_tags(call: Call) -> Result:
    name = call.queue()
    call.allow(name, "read", "configure")
    tags = _catalog_info(name).tags
    return {"Tags": tags} if tags else {}


# -- message move tasks (redrive) ----------------------------------------------------------------------------


@dataclass
class MoveTasks:
    """The move tasks this node ran, newest last (kept in memory: a task runs to completion in its request)."""

    by_source: dict[str, list[Result]] = field(default_factory=dict)
    keep: int = 10

    def record(self, source: str, task: Result) -> None:
        tasks = self.by_source.setdefault(source, [])
        tasks.append(task)
        del tasks[: -self.keep]


def move_tasks() -> MoveTasks:
    tasks = current_app.extensions.get("mom_sqs_move_tasks")
    if not isinstance(tasks, MoveTasks):
        tasks = current_app.extensions["mom_sqs_move_tasks"] = MoveTasks()
    return tasks


async def start_message_move_task(call: Call) -> Result:
    source_arn = call.text("SourceArn")
    dlq = qa.name_of_arn(source_arn)
    destination_arn = call.params.get("DestinationArn")
    target = qa.name_of_arn(str(destination_arn)) if destination_arn else None
    call.allow(dlq, "read")
    _catalog_info(dlq)
    if target is not None:
        _catalog_info(target)
    group = leader_of(QueueRef(dlq))
    started = ctx().service.now_ms()
    result = await redrive(
        ctx().service, group, dlq, limit=None, to=target, may_write=lambda q: call.principal.can("write", q)
    )
    handle = str(uuid.uuid4())
    task: Result = {
        "TaskHandle": handle,
        "Status": "COMPLETED",
        "SourceArn": source_arn,
        "ApproximateNumberOfMessagesMoved": result.moved,
        "ApproximateNumberOfMessagesToMove": result.moved + result.skipped,
        "StartedTimestamp": started,
    }
    if destination_arn:
        task["DestinationArn"] = destination_arn
    move_tasks().record(dlq, task)
    return {"TaskHandle": handle}


async def list_message_move_tasks(call: Call) -> Result:
    dlq = qa.name_of_arn(call.text("SourceArn"))
    call.allow(dlq, "read")
    _catalog_info(dlq)
    leader_of(QueueRef(dlq))
    limit = call.integer("MaxResults", 1, 1, 10) or 1
    tasks = move_tasks().by_source.get(dlq, [])
    return {"Results": list(reversed(tasks))[:limit]}


async def cancel_message_move_task(call: Call) -> Result:
    raise SqsError(RESOURCE_NOT_FOUND, "Move tasks run to completion within StartMessageMoveTask: none is running.")
