"""/v1/queues: declare, inspect, delete, publish, receive, ack, nack.

Declare and delete change the catalog (the metadata group's leader handles them); everything else runs on the
leader of the queue's own group. Any other node forwards the request there.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_request, tag

from mom.api import answers
from mom.api.context import authorize, ctx, leader_of, meta_leader, principal, request_body, require_owner
from mom.api.listing import listed
from mom.api.messages import parse_publish
from mom.api.openapi import contract
from mom.api.routes import consuming
from mom.api.schemas import AckRequest, NackRequest, PublishRequest, ReceiveRequest, decode_body
from mom.api.views import json_response, queue_view
from mom.broker import Broker
from mom.broker.commands import (
    Declared,
    DeclareQueue,
    DeleteQueue,
    Publish,
    Published,
    QueueAttrs,
    QueueRef,
    check_name,
)
from mom.service import DECLARE_WAIT_S

blueprint = Blueprint("queues", __name__, url_prefix="/v1/queues")
tag_queues = tag(["queues"])


def view(name: str, state: Broker | None = None) -> dict[str, object]:
    """The queue as `state` (its group's applied state) knows it; the catalog's entry when no replica is here."""
    service = ctx().service
    ref = QueueRef(name)
    placement, leader = service.whereabouts(ref)
    source = state or service.serving_replica(ref) or service.catalog
    return queue_view(source.queue_info(name, service.now_ms()), leader=leader, replicas=list(placement.replicas))


@blueprint.put("/<name>")
@tag_queues
@document_request(QueueAttrs)
@contract(200, 201, 400, 401, 403, 409, 413, 415, 429, 503, body=answers.Queue)
async def declare(name: str) -> Response:
    check_name(name, "queue name")
    caller = await authorize("configure", name)
    attrs = decode_body(await request_body(), QueueAttrs)
    quota = None if caller.is_admin else ctx().settings.quotas.destinations
    meta = meta_leader(wait_s=DECLARE_WAIT_S)
    result = await ctx().service.submit(meta, DeclareQueue(name, attrs, caller.subject, quota), Declared)
    await ctx().service.wait_serving(QueueRef(name))
    return json_response(view(name), status=201 if result.created else 200)


@blueprint.get("")
@tag_queues
@contract(200, 401, body=answers.Queues)
async def list_queues() -> Response:
    caller = await principal()
    names = [info.name for info in ctx().service.catalog.list_queues(ctx().service.now_ms())]
    visible = [n for n in names if caller.can("read", n) or caller.can("configure", n)]
    return json_response({"queues": await listed("queues", visible, view)})


@blueprint.get("/<name>")
@tag_queues
@contract(200, 400, 401, 403, 404, 503, body=answers.Queue)
async def show(name: str) -> Response:
    check_name(name, "queue name")
    await authorize("read", name)
    return json_response(view(name, leader_of(QueueRef(name)).state))


@blueprint.delete("/<name>")
@tag_queues
@contract(204, 400, 401, 403, 404, 503)
async def delete(name: str) -> Response:
    check_name(name, "queue name")
    caller = await authorize("configure", name)
    service = ctx().service
    meta = meta_leader()
    require_owner(caller, service.catalog.queue_info(name, service.now_ms()).owner, f"queue {name}")
    await service.submit(meta, DeleteQueue(name))
    return Response(b"", status=204)


@blueprint.post("/<name>/messages")
@tag_queues
@document_request(PublishRequest)
@contract(201, 400, 401, 403, 404, 413, 415, 429, 503, body=answers.Published)
async def publish(name: str) -> Response:
    check_name(name, "queue name")
    await authorize("write", name)
    here = leader_of(QueueRef(name))
    messages = parse_publish(await request_body(), ctx().settings.limits)
    result = await ctx().service.submit(here, Publish(QueueRef(name), messages), Published)
    ctx().metrics.published.labels("queue").inc(len(messages))
    return json_response({"messages": result.messages}, status=201)


@blueprint.post("/<name>/receive")
@tag_queues
@document_request(ReceiveRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 429, 503, body=answers.Deliveries)
async def receive(name: str) -> Response:
    check_name(name, "queue name")
    await authorize("read", name)
    return await consuming.receive(QueueRef(name))


@blueprint.post("/<name>/ack")
@tag_queues
@document_request(AckRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.Acked)
async def ack(name: str) -> Response:
    check_name(name, "queue name")
    await authorize("read", name)
    return await consuming.ack(QueueRef(name))


@blueprint.post("/<name>/nack")
@tag_queues
@document_request(NackRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.Nacked)
async def nack(name: str) -> Response:
    check_name(name, "queue name")
    await authorize("read", name)
    return await consuming.nack(QueueRef(name))
