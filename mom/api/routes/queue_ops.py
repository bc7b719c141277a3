"""/v1/queues/{name}: change attributes, peek, purge, change visibility, redrive dead letters.

The attribute change is a catalog command (the metadata group's leader handles it, and the queue's own group
catches up from the catalog); the rest run on the leader of the queue's group. Any other node forwards.
"""

from __future__ import annotations

import msgspec
from quart import Blueprint, Response
from quart_schema import document_request, tag

from mom.api import answers
from mom.api.context import authorize, ctx, leader_of, meta_leader, query_int, request_body, require_owner
from mom.api.openapi import contract, query_integer
from mom.api.routes.queues import view
from mom.api.schemas import QueueChanges, RedriveRequest, VisibilityRequest, decode_body
from mom.api.views import json_response, peeked_view
from mom.broker.commands import MAX_COUNT, ChangeVisibility, Purge, Purged, QueueRef, Settled, UpdateQueue, check_name
from mom.redrive import redrive

blueprint = Blueprint("queue_ops", __name__, url_prefix="/v1/queues")
tag_queues = tag(["queues"])

PEEK_LIMIT = 1000


@blueprint.patch("/<name>")
@tag_queues
@document_request(QueueChanges)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.Queue)
async def update(name: str) -> Response:
    """Change some attributes of a queue; the others stay.

    Any of PUT's attributes but `fifo` and `replication_factor`, checked as a declare checks them (a
    `dead_letter_queue` must name an existing other queue). Only the queue's creator or an admin."""
    check_name(name, "queue name")
    caller = await authorize("configure", name)
    changes = msgspec.to_builtins(decode_body(await request_body(), QueueChanges))
    service = ctx().service
    meta = meta_leader()
    require_owner(caller, service.catalog.queue_info(name, service.now_ms()).owner, f"queue {name}")
    await service.submit(meta, UpdateQueue(name, changes))
    await service.wait_attributes(name)
    return json_response(view(name))


@blueprint.get("/<name>/messages")
@tag_queues
@contract(
    200,
    400,
    401,
    403,
    404,
    503,
    query=(
        query_integer("from_offset", 0, MAX_COUNT, "First offset to show (default 0)"),
        query_integer("limit", 1, PEEK_LIMIT, "Most messages to show (default 100)"),
    ),
    body=answers.Peeked,
)
async def peek(name: str) -> Response:
    """Peek at the messages a queue holds, without leasing them.

    From `from_offset` on, at most `limit`; each with its state (ready, delayed, in_flight). `next_offset` is
    where the next page starts, null after the last page."""
    check_name(name, "queue name")
    await authorize("read", name)
    from_offset = query_int("from_offset", 0, 0, MAX_COUNT)
    limit = query_int("limit", 100, 1, PEEK_LIMIT)
    group = leader_of(QueueRef(name))
    peeked = group.state.peek_queue(name, from_offset, limit, ctx().service.now_ms())
    next_offset = peeked[-1].offset + 1 if len(peeked) == limit else None
    return json_response({"messages": [peeked_view(p) for p in peeked], "next_offset": next_offset})


@blueprint.post("/<name>/purge")
@tag_queues
@contract(200, 400, 401, 403, 404, 503, body=answers.Purged)
async def purge(name: str) -> Response:
    """Remove every message of a queue, in flight or not.

    Needs mom.read on the queue, as RabbitMQ's queue.purge does."""
    check_name(name, "queue name")
    await authorize("read", name)
    result = await ctx().service.submit(leader_of(QueueRef(name)), Purge(QueueRef(name)), Purged)
    return json_response({"purged": result.purged})


@blueprint.post("/<name>/visibility")
@tag_queues
@document_request(VisibilityRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.VisibilityChanged)
async def visibility(name: str) -> Response:
    """Change when leased messages of a queue become visible again.

    `visibility_timeout_s` from now (0: at once); the receipts stay valid. A receipt that is stale or
    unknown is listed in `unknown`."""
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
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.Redriven)
async def redrive_letters(name: str) -> Response:
    """Move dead letters back to the queue they died in, or to `to`.

    Up to `max_messages` (null: all held now). Needs mom.read here and mom.write on each target; letters
    with no known source, or a target that is gone or not allowed, stay and are counted in `skipped`."""
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
