"""/v1/topics: the retained log, its durable subscriptions, replay and SSE push."""

from __future__ import annotations

from quart import Blueprint, Response, request
from quart_schema import document_request, tag

from mom.api.context import authorize, ctx, principal, request_body, require_owner
from mom.api.messages import parse_publish
from mom.api.routes import consuming
from mom.api.schemas import (
    AckRequest,
    NackRequest,
    PublishRequest,
    ReceiveRequest,
    SubscriptionRequest,
    decode_body,
)
from mom.api.views import json_response, stored_view, subscription_view, topic_view
from mom.broker.commands import (
    Declared,
    DeclareSubscription,
    DeclareTopic,
    DeleteSubscription,
    DeleteTopic,
    Publish,
    Published,
    SubscriptionAttrs,
    SubscriptionRef,
    TopicAttrs,
    TopicRef,
    check_name,
)
from mom.errors import InvalidInput

blueprint = Blueprint("topics", __name__, url_prefix="/v1/topics")
tag_topics = tag(["topics"])
MAX_REPLAY = 1000


def _topic_view(name: str) -> Response:
    service = ctx().service
    node = ctx().settings.node_id
    info = service.broker.topic_info(name, service.now_ms())
    return json_response(topic_view(info, leader=node, replicas=[node]))


def _subscription_view(topic: str, name: str) -> Response:
    service = ctx().service
    return json_response(subscription_view(service.broker.subscription_info(topic, name, service.now_ms())))


def _names(topic: str, subscription: str | None = None) -> None:
    check_name(topic, "topic name")
    if subscription is not None:
        check_name(subscription, "subscription name")


@blueprint.put("/<name>")
@tag_topics
@document_request(TopicAttrs)
async def declare(name: str) -> Response:
    _names(name)
    caller = authorize("configure", name)
    attrs = decode_body(await request_body(), TopicAttrs)
    result = await ctx().service.submit(DeclareTopic(name, attrs, caller.subject))
    assert isinstance(result, Declared)
    response = _topic_view(name)
    response.status_code = 201 if result.created else 200
    return response


@blueprint.get("")
@tag_topics
async def list_topics() -> Response:
    caller = principal()
    service = ctx().service
    node = ctx().settings.node_id
    topics = [
        topic_view(info, leader=node, replicas=[node])
        for info in service.broker.list_topics(service.now_ms())
        if caller.can("read", info.name) or caller.can("configure", info.name)
    ]
    return json_response({"topics": topics})


@blueprint.get("/<name>")
@tag_topics
async def show(name: str) -> Response:
    _names(name)
    authorize("read", name)
    return _topic_view(name)


@blueprint.delete("/<name>")
@tag_topics
async def delete(name: str) -> Response:
    _names(name)
    caller = authorize("configure", name)
    service = ctx().service
    require_owner(caller, service.broker.topic_info(name, service.now_ms()).owner, f"topic {name}")
    await service.submit(DeleteTopic(name))
    return Response(b"", status=204)


@blueprint.post("/<name>/messages")
@tag_topics
@document_request(PublishRequest)
async def publish(name: str) -> Response:
    _names(name)
    authorize("write", name)
    messages = parse_publish(await request_body(), ctx().settings.limits)
    result = await ctx().service.submit(Publish(TopicRef(name), messages))
    assert isinstance(result, Published)
    ctx().metrics.published.labels("topic").inc(len(messages))
    return json_response({"messages": result.messages}, status=201)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"query parameter '{name}' must be an integer from {low} to {high}")
    return int(raw)


@blueprint.get("/<name>/messages")
@tag_topics
async def replay(name: str) -> Response:
    """Read the retained log from `from_offset` (default 0), at most `limit` messages (default 100)."""
    _names(name)
    authorize("read", name)
    from_offset = _int_arg("from_offset", 0, 0, 2**63 - 1)
    limit = _int_arg("limit", 100, 1, MAX_REPLAY)
    service = ctx().service
    messages = service.broker.read_topic(name, from_offset, limit)
    if messages:
        next_offset = messages[-1].offset + 1
    else:
        next_offset = max(from_offset, service.broker.topic_info(name, service.now_ms()).first_offset)
    return json_response({"messages": [stored_view(m) for m in messages], "next_offset": next_offset})


@blueprint.get("/<name>/subscriptions")
@tag_topics
async def list_subscriptions(name: str) -> Response:
    _names(name)
    authorize("read", name)
    service = ctx().service
    info = service.broker.topic_info(name, service.now_ms())
    return json_response({"subscriptions": [subscription_view(s) for s in info.subscriptions]})


@blueprint.put("/<name>/subscriptions/<sub>")
@tag_topics
@document_request(SubscriptionRequest)
async def subscribe(name: str, sub: str) -> Response:
    _names(name, sub)
    caller = authorize("read", name)
    attrs = decode_body(await request_body(), SubscriptionAttrs)
    result = await ctx().service.submit(DeclareSubscription(name, sub, attrs, caller.subject))
    assert isinstance(result, Declared)
    response = _subscription_view(name, sub)
    response.status_code = 201 if result.created else 200
    return response


@blueprint.get("/<name>/subscriptions/<sub>")
@tag_topics
async def show_subscription(name: str, sub: str) -> Response:
    _names(name, sub)
    authorize("read", name)
    return _subscription_view(name, sub)


@blueprint.delete("/<name>/subscriptions/<sub>")
@tag_topics
async def unsubscribe(name: str, sub: str) -> Response:
    _names(name, sub)
    caller = authorize("read", name)
    service = ctx().service
    owner = service.broker.subscription_info(name, sub, service.now_ms()).owner
    require_owner(caller, owner, f"subscription {name}/{sub}")
    await service.submit(DeleteSubscription(name, sub))
    return Response(b"", status=204)


@blueprint.post("/<name>/subscriptions/<sub>/receive")
@tag_topics
@document_request(ReceiveRequest)
async def receive(name: str, sub: str) -> Response:
    _names(name, sub)
    authorize("read", name)
    return await consuming.receive(SubscriptionRef(name, sub))


@blueprint.post("/<name>/subscriptions/<sub>/ack")
@tag_topics
@document_request(AckRequest)
async def ack(name: str, sub: str) -> Response:
    _names(name, sub)
    authorize("read", name)
    return await consuming.ack(SubscriptionRef(name, sub))


@blueprint.post("/<name>/subscriptions/<sub>/nack")
@tag_topics
@document_request(NackRequest)
async def nack(name: str, sub: str) -> Response:
    _names(name, sub)
    authorize("read", name)
    return await consuming.nack(SubscriptionRef(name, sub))


@blueprint.get("/<name>/subscriptions/<sub>/events")
@tag_topics
async def events(name: str, sub: str) -> Response:
    """Server-Sent Events push of the subscription's messages (ack them with /ack); `batch` caps each lease."""
    _names(name, sub)
    authorize("read", name)
    return await consuming.events(SubscriptionRef(name, sub))
