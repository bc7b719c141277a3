"""/v1/queues/{name}: change attributes, peek, purge, change visibility, redrive dead letters.

The attribute change is a catalog command (the metadata group's leader handles it, and the queue's own group
catches up from the catalog); the rest run on the leader of the queue's group. Any other node forwards.
"""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request
from quart_schema import document_request, tag

from mom.api.context import authorize, ctx, leader_of, meta_leader, request_body, require_owner
from mom.api.routes.queues import view
from mom.api.schemas import RedriveRequest, VisibilityRequest, decode_body
from mom.api.views import json_response, peeked_view
from mom.broker.commands import ChangeVisibility, Purge, Purged, QueueAttrs, QueueRef, Settled, UpdateQueue, check_name
from mom.errors import InvalidInput
from mom.redrive import redrive

blueprint = Blueprint("queue_ops", __name__, url_prefix="/v1/queues")
tag_queues = tag(["queues"])

PEEK_LIMIT = 1000


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"'{name}' must be an integer from {low} to {high}")
    return int(raw)


@blueprint.patch("/<name>")
@tag_queues
@document_request(QueueAttrs)
async def update(name: str) -> Response:
    """Change some attributes (any of PUT's but `replication_factor`); only the queue's creator or an admin."""
    check_name(name, "queue name")
    caller = await authorize("configure", name)
    changes = decode_body(await request_body(), dict[str, Any])
    service = ctx().service
    meta = meta_leader()
    require_owner(caller, service.catalog.queue_info(name, service.now_ms()).owner, f"queue {name}")
    await service.submit(meta, UpdateQueue(name, changes))
    await service.wait_attributes(name)
    return json_response(view(name))


@blueprint.get("/<name>/messages")
@tag_queues
async def peek(name: str) -> Response:
    """The messages the queue holds, from `from_offset` on, without leasing them (`limit` 1..1000, 100)."""
    check_name(name, "queue name")
    await authorize("read", name)
    from_offset = _int_arg("from_offset", 0, 0, 2**62)
    limit = _int_arg("limit", 100, 1, PEEK_LIMIT)
    group = leader_of(QueueRef(name))
    peeked = group.state.peek_queue(name, from_offset, limit, ctx().service.now_ms())
    next_offset = peeked[-1].offset + 1 if len(peeked) == limit else None
    return json_response({"messages": [peeked_view(p) for p in peeked], "next_offset": next_offset})


@blueprint.post("/<name>/purge")
@tag_queues
async def purge(name: str) -> Response:
    """Remove every message, in flight or not (scope read, as RabbitMQ's queue.purge)."""
    check_name(name, "queue name")
    await authorize("read", name)
    result = await ctx().service.submit(leader_of(QueueRef(name)), Purge(QueueRef(name)), Purged)
    return json_response({"purged": result.purged})


@blueprint.post("/<name>/visibility")
@tag_queues
@document_request(VisibilityRequest)
async def visibility(name: str) -> Response:
    """Move the end of leases; the receipts stay valid. 0 makes the messages visible at once."""
    check_name(name, "queue name")
    await authorize("read", name)
    body = decode_body(await request_body(), VisibilityRequest)
    timeout_ms = round(body.visibility_timeout_s * 1000)
    command = ChangeVisibility(QueueRef(name), body.receipts, [timeout_ms] * len(body.receipts))
    result = await ctx().service.submit(leader_of(QueueRef(name)), command, Settled)
    return json_response({"changed": result.settled, "unknown": result.unknown})


@blueprint.post("/<name>/redrive")
@tag_queues
@document_request(RedriveRequest)
async def redrive_letters(name: str) -> Response:
    """Move dead letters from this queue back to their source queue (or `to`); read here, write there."""
    check_name(name, "queue name")
    caller = await authorize("read", name)
    body = decode_body(await request_body(), RedriveRequest)
    group = leader_of(QueueRef(name))
    result = await redrive(
        ctx().service,
        group,
        name,
        limit=body.max_messages,
        to=body.to,
        may_write=lambda target: caller.can("write", target),
    )
    return json_response({"moved": result.moved, "by_queue": result.by_queue, "skipped": result.skipped})
