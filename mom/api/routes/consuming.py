"""Receive, ack, nack and SSE push: the same for a queue and for a topic subscription, on its group's leader."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import trio
from quart import Response, request

from mom.api.context import ctx, leader_of, request_body
from mom.api.schemas import AckRequest, NackRequest, ReceiveRequest, decode_body
from mom.api.views import delivery_view, json_response
from mom.broker.commands import Ack, Nack, QueueRef, Settled, Source
from mom.errors import InvalidInput
from mom.service import Handle

SSE_BATCH = 10
MAX_WAIT_S = 20.0
"""The longest long-poll (a queue's receive_wait_s is at most this): bounds forwarding when none is given."""
SSE_KEEPALIVE_S = 15.0


async def receive(source: Source) -> Response:
    body = decode_body(await request_body(), ReceiveRequest)
    here = leader_of(source, wait_s=MAX_WAIT_S if body.wait_s is None else body.wait_s)
    vt = body.visibility_timeout_s
    wait_s = body.wait_s
    if wait_s is None:
        wait_s = default_wait_s(here, source)
    deliveries = await ctx().service.receive(
        here,
        source,
        max_messages=body.max_messages,
        wait_s=wait_s,
        visibility_timeout_ms=None if vt is None else round(vt * 1000),
    )
    ctx().metrics.delivered.inc(len(deliveries))
    return json_response({"messages": [delivery_view(d) for d in deliveries]})


def default_wait_s(here: Handle, source: Source) -> float:
    """A queue's receive_wait_s (404 for a missing queue); a subscription does not wait by default."""
    if isinstance(source, QueueRef):
        return here.state.queue_info(source.name, ctx().service.now_ms()).attrs.receive_wait_s
    here.state.ready_at(source, ctx().service.now_ms())
    return 0.0


async def ack(source: Source) -> Response:
    here = leader_of(source)
    body = decode_body(await request_body(), AckRequest)
    result = await ctx().service.submit(here, Ack(source, body.receipts), Settled)
    ctx().metrics.acked.inc(len(result.settled))
    return json_response({"acked": result.settled, "unknown": result.unknown})


async def nack(source: Source) -> Response:
    here = leader_of(source)
    body = decode_body(await request_body(), NackRequest)
    result = await ctx().service.submit(here, Nack(source, body.receipts, round(body.delay_s * 1000)), Settled)
    return json_response({"nacked": result.settled, "unknown": result.unknown})


def _batch_arg() -> int:
    raw = request.args.get("batch", str(SSE_BATCH))
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise InvalidInput("'batch' must be an integer from 1 to 100")
    return int(raw)


async def events(source: Source) -> Response:
    """Server-Sent Events: leases messages as they arrive and pushes them; the consumer acks with /ack."""
    here = leader_of(source)
    service, metrics = ctx().service, ctx().metrics
    here.state.ready_at(source, service.now_ms())  # 404 before the stream starts, not inside it
    batch = _batch_arg()

    async def stream() -> AsyncIterator[bytes]:
        yield b": connected\n\n"
        while True:
            deliveries = await service.receive(
                here, source, max_messages=batch, wait_s=SSE_KEEPALIVE_S, visibility_timeout_ms=None
            )
            if not deliveries:
                yield b": keep-alive\n\n"
                continue
            metrics.delivered.inc(len(deliveries))
            for d in deliveries:
                data = msgspec.json.encode(delivery_view(d))
                yield b"event: message\nid: " + d.receipt.encode() + b"\ndata: " + data + b"\n\n"
            await trio.lowlevel.checkpoint()

    response = Response(stream(), content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.timeout = None
    return response
