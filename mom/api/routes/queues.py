"""/v1/queues: declare, inspect, delete, publish, receive, ack, nack."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_request, tag

from mom.api.context import authorize, ctx, principal, request_body, require_owner
from mom.api.messages import parse_publish
from mom.api.routes import consuming
from mom.api.schemas import AckRequest, NackRequest, PublishRequest, ReceiveRequest, decode_body
from mom.api.views import json_response, queue_view
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

blueprint = Blueprint("queues", __name__, url_prefix="/v1/queues")
tag_queues = tag(["queues"])


def _view(name: str) -> Response:
    service = ctx().service
    info = service.broker.queue_info(name, service.now_ms())
    node = ctx().settings.node_id
    return json_response(queue_view(info, leader=node, replicas=[node]))


@blueprint.put("/<name>")
@tag_queues
@document_request(QueueAttrs)
async def declare(name: str) -> Response:
    check_name(name, "queue name")
    caller = authorize("configure", name)
    attrs = decode_body(await request_body(), QueueAttrs)
    result = await ctx().service.submit(DeclareQueue(name, attrs, caller.subject))
    assert isinstance(result, Declared)
    response = _view(name)
    response.status_code = 201 if result.created else 200
    return response


@blueprint.get("")
@tag_queues
async def list_queues() -> Response:
    caller = principal()
    service = ctx().service
    node = ctx().settings.node_id
    queues = [
        queue_view(info, leader=node, replicas=[node])
        for info in service.broker.list_queues(service.now_ms())
        if caller.can("read", info.name) or caller.can("configure", info.name)
    ]
    return json_response({"queues": queues})


@blueprint.get("/<name>")
@tag_queues
async def show(name: str) -> Response:
    check_name(name, "queue name")
    authorize("read", name)
    return _view(name)


@blueprint.delete("/<name>")
@tag_queues
async def delete(name: str) -> Response:
    check_name(name, "queue name")
    caller = authorize("configure", name)
    service = ctx().service
    require_owner(caller, service.broker.queue_info(name, service.now_ms()).owner, f"queue {name}")
    await service.submit(DeleteQueue(name))
    return Response(b"", status=204)


@blueprint.post("/<name>/messages")
@tag_queues
@document_request(PublishRequest)
async def publish(name: str) -> Response:
    check_name(name, "queue name")
    authorize("write", name)
    messages = parse_publish(await request_body(), ctx().settings.limits)
    result = await ctx().service.submit(Publish(QueueRef(name), messages))
    assert isinstance(result, Published)
    ctx().metrics.published.labels("queue").inc(len(messages))
    return json_response({"messages": result.messages}, status=201)


@blueprint.post("/<name>/receive")
@tag_queues
@document_request(ReceiveRequest)
async def receive(name: str) -> Response:
    check_name(name, "queue name")
    authorize("read", name)
    return await consuming.receive(QueueRef(name))


@blueprint.post("/<name>/ack")
@tag_queues
@document_request(AckRequest)
async def ack(name: str) -> Response:
    check_name(name, "queue name")
    authorize("read", name)
    return await consuming.ack(QueueRef(name))


@blueprint.post("/<name>/nack")
@tag_queues
@document_request(NackRequest)
async def nack(name: str) -> Response:
    check_name(name, "queue name")
    authorize("read", name)
    return await consuming.nack(QueueRef(name))
