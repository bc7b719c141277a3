"""Receive, ack, nack and SSE push: the same for a queue and for a topic subscription, on its group's leader.

Waiting requests are bounded per principal (long-polls, streams: `mom.api.quotas`), and an SSE stream lives no
longer than the token it was opened with: it ends at the token's expiry, or as soon as the token is revoked
(the account deleted, its scopes cut, the token itself revoked), with a final `event: error`.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import trio
from quart import Response, request

from mom.api.auth import Principal
from mom.api.context import ApiContext, ctx, leader_of, principal, request_body
from mom.api.errors import PROBLEM_TYPE_BASE
from mom.api.schemas import AckRequest, NackRequest, ReceiveRequest, decode_body
from mom.api.views import delivery_view, json_response
from mom.broker.commands import Ack, Delivery, Nack, QueueRef, Settled, Source
from mom.errors import InvalidInput, MomError
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
    caller = await principal()
    quotas = ctx().guard.quotas
    with quotas.hold("long_polls", caller) if wait_s > 0 else contextlib.nullcontext():
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
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100:
        raise InvalidInput("'batch' must be an integer from 1 to 100")
    return int(raw)


async def events(source: Source) -> Response:
    """Server-Sent Events: leases messages as they arrive and pushes them; the consumer acks with /ack."""
    here = leader_of(source)
    context = ctx()
    service, metrics = context.service, context.metrics
    here.state.ready_at(source, service.now_ms())  # 404 before the stream starts, not inside it
    batch = _batch_arg()
    caller = await principal()
    release = context.guard.quotas.acquire("streams", caller)  # 429 before the stream starts

    async def lease() -> list[Delivery]:
        return await service.receive(
            here, source, max_messages=batch, wait_s=SSE_KEEPALIVE_S, visibility_timeout_ms=None
        )

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                ended = _ended(context, caller)
                if ended is not None:
                    yield b"event: error\ndata: " + msgspec.json.encode({"status": 401, "detail": ended}) + b"\n\n"
                    return
                try:
                    deliveries = await _until_token_ends(context, caller, lease)
                except MomError as exc:  # the answer has started: end the stream saying why (not a broken one)
                    yield b"event: error\ndata: " + _problem(exc) + b"\n\n"
                    return
                if not deliveries:
                    yield b": keep-alive\n\n"
                    continue
                metrics.delivered.inc(len(deliveries))
                for d in deliveries:
                    data = msgspec.json.encode(delivery_view(d))
                    yield b"event: message\nid: " + d.receipt.encode() + b"\ndata: " + data + b"\n\n"
                await trio.lowlevel.checkpoint()
        finally:
            release()

    body = stream()
    weakref.finalize(body, release)  # a stream that never started (the client left at once) gives its place back
    response = Response(body, content_type="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.timeout = None
    return response


def _problem(exc: MomError) -> bytes:
    """The error as the problem+json an answer that had not started would have carried."""
    return msgspec.json.encode(
        {"type": PROBLEM_TYPE_BASE + exc.slug, "title": exc.title, "status": exc.status, "detail": exc.detail}
    )


def _ended(context: ApiContext, caller: Principal) -> str | None:
    """Why the caller's token no longer counts (expired, revoked), or None while it does."""
    if time.time() >= caller.expires_at:
        return "the token expired; reconnect with a new one"
    return context.guard.accounts.refusal(caller)


async def _until_token_ends(
    context: ApiContext, caller: Principal, lease: Callable[[], Awaitable[list[Delivery]]]
) -> list[Delivery]:
    """`lease()`, cut short (answering []) when the token expires or an account change may have revoked it; what
    `lease()` raised (leadership moved: 503) is raised as it is, not inside an exception group."""
    result: list[Delivery] = []
    failed: list[MomError] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            try:
                result.extend(await lease())
            except MomError as exc:
                failed.append(exc)
            nursery.cancel_scope.cancel()

        async def watch() -> None:
            with trio.move_on_after(max(0.0, caller.expires_at - time.time())):
                await context.guard.changes.wait()
            nursery.cancel_scope.cancel()

        nursery.start_soon(run)
        nursery.start_soon(watch)
    if failed:
        raise failed[0]
    return result
