"""/v1/topics: the retained log, its durable subscriptions, replay and SSE push.

Declare and delete of a topic change the catalog (the metadata group's leader handles them); subscriptions,
publishing, consuming and replay run on the leader of the topic's own group. Any other node forwards there.
"""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import document_request, tag

from mom.api import answers
from mom.api.context import (
    authorize,
    ctx,
    leader_of,
    meta_leader,
    principal,
    query_int,
    request_body,
    require_owner,
)
from mom.api.listing import listed
from mom.api.messages import parse_publish
from mom.api.openapi import contract, query_integer
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
from mom.broker import Broker
from mom.broker.commands import (
    MAX_COUNT,
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
from mom.service import DECLARE_WAIT_S, Handle

blueprint = Blueprint("topics", __name__, url_prefix="/v1/topics")
tag_topics = tag(["topics"])
MAX_REPLAY = 1000


def view(name: str, state: Broker | None = None) -> dict[str, object]:
    """The topic as `state` (its group's applied state) knows it; the catalog's entry when no replica is here."""
    service = ctx().service
    ref = TopicRef(name)
    placement, leader = service.whereabouts(ref)
    source = state or service.serving_replica(ref) or service.catalog
    return topic_view(source.topic_info(name, service.now_ms()), leader=leader, replicas=list(placement.replicas))


def _subscription_view(here: Handle, topic: str, name: str) -> Response:
    service = ctx().service
    return json_response(subscription_view(here.state.subscription_info(topic, name, service.now_ms())))


def _names(topic: str, subscription: str | None = None) -> None:
    check_name(topic, "topic name")
    if subscription is not None:
        check_name(subscription, "subscription name")


@blueprint.put("/<name>")
@tag_topics
@document_request(TopicAttrs)
@contract(200, 201, 400, 401, 403, 409, 413, 415, 429, 503, body=answers.Topic)
async def declare(name: str) -> Response:
    _names(name)
    caller = await authorize("configure", name)
    attrs = decode_body(await request_body(), TopicAttrs)
    quota = None if caller.is_admin else ctx().settings.quotas.destinations
    meta = meta_leader(wait_s=DECLARE_WAIT_S)
    result = await ctx().service.submit(meta, DeclareTopic(name, attrs, caller.subject, quota), Declared)
    await ctx().service.wait_serving(TopicRef(name))
    return json_response(view(name), status=201 if result.created else 200)


@blueprint.get("")
@tag_topics
@contract(200, 401, body=answers.Topics)
async def list_topics() -> Response:
    caller = await principal()
    names = [info.name for info in ctx().service.catalog.list_topics(ctx().service.now_ms())]
    visible = [n for n in names if caller.can("read", n) or caller.can("configure", n)]
    return json_response({"topics": await listed("topics", visible, view)})


@blueprint.get("/<name>")
@tag_topics
@contract(200, 400, 401, 403, 404, 503, body=answers.Topic)
async def show(name: str) -> Response:
    _names(name)
    await authorize("read", name)
    return json_response(view(name, leader_of(TopicRef(name)).state))


@blueprint.delete("/<name>")
@tag_topics
@contract(204, 400, 401, 403, 404, 503)
async def delete(name: str) -> Response:
    _names(name)
    caller = await authorize("configure", name)
    service = ctx().service
    meta = meta_leader()
    require_owner(caller, service.catalog.topic_info(name, service.now_ms()).owner, f"topic {name}")
    await service.submit(meta, DeleteTopic(name))
    return Response(b"", status=204)


@blueprint.post("/<name>/messages")
@tag_topics
@document_request(PublishRequest)
@contract(201, 400, 401, 403, 404, 413, 415, 429, 503, body=answers.Published)
async def publish(name: str) -> Response:
    _names(name)
    await authorize("write", name)
    here = leader_of(TopicRef(name))
    messages = parse_publish(await request_body(), ctx().settings.limits)
    result = await ctx().service.submit(here, Publish(TopicRef(name), messages), Published)
    ctx().metrics.published.labels("topic").inc(len(messages))
    return json_response({"messages": result.messages}, status=201)


@blueprint.get("/<name>/messages")
@tag_topics
@contract(
    200,
    400,
    401,
    403,
    404,
    503,
    query=(
        query_integer("from_offset", 0, MAX_COUNT, "First offset to read (default 0)"),
        query_integer("limit", 1, MAX_REPLAY, "Most messages to return (default 100)"),
    ),
    body=answers.Replay,
)
async def replay(name: str) -> Response:
    """Read the retained log from `from_offset` (default 0), at most `limit` messages (default 100)."""
    _names(name)
    await authorize("read", name)
    broker = leader_of(TopicRef(name)).state
    from_offset = query_int("from_offset", 0, 0, MAX_COUNT)
    limit = query_int("limit", 100, 1, MAX_REPLAY)
    messages = broker.read_topic(name, from_offset, limit)
    if messages:
        next_offset = messages[-1].offset + 1
    else:
        next_offset = max(from_offset, broker.topic_info(name, ctx().service.now_ms()).first_offset)
    return json_response({"messages": [stored_view(m) for m in messages], "next_offset": next_offset})


@blueprint.get("/<name>/subscriptions")
@tag_topics
@contract(200, 400, 401, 403, 404, 503, body=answers.Subscriptions)
async def list_subscriptions(name: str) -> Response:
    _names(name)
    await authorize("read", name)
    info = leader_of(TopicRef(name)).state.topic_info(name, ctx().service.now_ms())
    return json_response({"subscriptions": [subscription_view(s) for s in info.subscriptions]})


@blueprint.put("/<name>/subscriptions/<sub>")
@tag_topics
@document_request(SubscriptionRequest)
@contract(200, 201, 400, 401, 403, 404, 409, 413, 415, 503, body=answers.Subscription)
async def subscribe(name: str, sub: str) -> Response:
    _names(name, sub)
    caller = await authorize("read", name)
    here = leader_of(TopicRef(name))
    attrs = decode_body(await request_body(), SubscriptionAttrs)
    result = await ctx().service.submit(here, DeclareSubscription(name, sub, attrs, caller.subject), Declared)
    response = _subscription_view(here, name, sub)
    response.status_code = 201 if result.created else 200
    return response


@blueprint.get("/<name>/subscriptions/<sub>")
@tag_topics
@contract(200, 400, 401, 403, 404, 503, body=answers.Subscription)
async def show_subscription(name: str, sub: str) -> Response:
    _names(name, sub)
    await authorize("read", name)
    return _subscription_view(leader_of(TopicRef(name)), name, sub)


@blueprint.delete("/<name>/subscriptions/<sub>")
@tag_topics
@contract(204, 400, 401, 403, 404, 503)
async def unsubscribe(name: str, sub: str) -> Response:
    _names(name, sub)
    caller = await authorize("read", name)
    service = ctx().service
    here = leader_of(TopicRef(name))
    owner = here.state.subscription_info(name, sub, service.now_ms()).owner
    require_owner(caller, owner, f"subscription {name}/{sub}")
    await service.submit(here, DeleteSubscription(name, sub))
    return Response(b"", status=204)


@blueprint.post("/<name>/subscriptions/<sub>/receive")
@tag_topics
@document_request(ReceiveRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 429, 503, body=answers.Deliveries)
async def receive(name: str, sub: str) -> Response:
    _names(name, sub)
    await authorize("read", name)
    return await consuming.receive(SubscriptionRef(name, sub))


@blueprint.post("/<name>/subscriptions/<sub>/ack")
@tag_topics
@document_request(AckRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.Acked)
async def ack(name: str, sub: str) -> Response:
    _names(name, sub)
    await authorize("read", name)
    return await consuming.ack(SubscriptionRef(name, sub))


@blueprint.post("/<name>/subscriptions/<sub>/nack")
@tag_topics
@document_request(NackRequest)
@contract(200, 400, 401, 403, 404, 413, 415, 503, body=answers.Nacked)
async def nack(name: str, sub: str) -> Response:
    _names(name, sub)
    await authorize("read", name)
    return await consuming.nack(SubscriptionRef(name, sub))


@blueprint.get("/<name>/subscriptions/<sub>/events")
@tag_topics
@contract(
    200,
    400,
    401,
    403,
    404,
    429,
    503,
    content_type="text/event-stream",
    body={"type": "string"},
    query=(query_integer("batch", 1, 100, "Most messages leased at once (default 10)"),),
)
async def events(name: str, sub: str) -> Response:
    """Server-Sent Events push of the subscription's messages (ack them with /ack); `batch` caps each lease."""
    _names(name, sub)
    await authorize("read", name)
    return await consuming.events(SubscriptionRef(name, sub))
