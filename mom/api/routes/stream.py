"""GET /v1/stream: publish, subscribe and settle over one WebSocket, for producers and consumers at high rates.

One request per message is capped by what the HTTP stack can answer; a socket carries many operations at once.
Each publish, ack or nack frame runs in its own task (at most `MAX_IN_FLIGHT` per connection; the reader stops
reading beyond that, so TCP pushes back on the client) and is answered in completion order with its correlation
id. A subscription leases messages only while the client has credit for them, and every answer leaves through
one bounded outbox, so a slow client makes the server stop pulling, never buffer without bound.

The socket is served by whichever node the client reached. For a destination another node leads, publish, ack
and nack frames are relayed to that leader over one upstream socket per leader, opened as the caller (its own
bearer token: authorization stays the caller's; `mom.api.stream_relay`), or as one HTTP request each where that
leader refuses the socket; a subscription long-polls the leader's REST receive.
Frames are documented in `mom.api.stream_frames` and docs/streaming.md.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import trio
from quart import Blueprint, websocket

from mom.api import hypercorn_fixes
from mom.api import stream_frames as frames
from mom.api.auth import Principal, require
from mom.api.context import ApiContext, ForwardRequired, ctx, leader_of
from mom.api.forward import HOPS_HEADER, MAX_HOPS
from mom.api.messages import parse_publish
from mom.api.stream_frames import AckFrame, ClientFrame, NackFrame, PublishFrame, SubscribeFrame
from mom.api.stream_relay import Relay
from mom.api.views import delivery_view
from mom.broker.commands import (
    Ack,
    Destination,
    Nack,
    Publish,
    Published,
    QueueRef,
    Settled,
    Source,
    SubscriptionRef,
    TopicRef,
    check_name,
)
from mom.errors import Conflict, InvalidInput, MomError, NotFound, Overloaded, Unauthorized, Unavailable, class_for

log = logging.getLogger("mom.api.stream")

blueprint = Blueprint("stream", __name__, url_prefix="/v1")

MAX_IN_FLIGHT = 256
"""Publish, ack and nack frames processed at once per connection."""
OUTBOX_FRAMES = 64
"""Answers and deliveries waiting for the socket; beyond this their producers wait."""
MAX_SUBSCRIPTIONS = 64
MAX_BAD_FRAMES = 32
"""Consecutive frames that are not JSON text after which the connection is closed (1003)."""
PULL_MAX = 100
LOCAL_WAIT_S = 15.0
REMOTE_WAIT_S = 20.0
RETRY_S = (0.05, 2.0)
"""First and longest pause before a subscription retries after a 429/503 or an unreachable leader."""


class Malformed(InvalidInput):
    title, slug = "Malformed JSON", "malformed"


# ---------------------------------------------------------------------------------------------------------
# The endpoint


async def _credentials() -> tuple[Principal, str]:
    """The caller from `Authorization: Bearer` or, for browsers that cannot set it, `?access_token=`."""
    header = websocket.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    else:
        token = websocket.args.get("access_token", "")
        if not token:
            raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>' or ?access_token=")
    return await ctx().verify_token(token.strip()), token.strip()


@blueprint.websocket("/stream")
async def stream() -> None:
    caller, bearer = await _credentials()  # raised before accepting: answered as a 401 problem
    hops = websocket.headers.get(HOPS_HEADER, "0")
    with ctx().guard.quotas.hold("streams", caller):  # 429 before accepting, like the 401
        await websocket.accept()
        await Connection(ctx(), caller, bearer, int(hops) if hops.isdigit() else MAX_HOPS).run()


# ---------------------------------------------------------------------------------------------------------
# One connection


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Credit:
    """Deliveries a subscription is still owed; its pump waits here while the client has none left."""

    def __init__(self, initial: int) -> None:
        self.available = initial
        self._changed = trio.Event()

    def add(self, amount: int) -> None:
        if self.available + amount > frames.MAX_CREDIT:
            raise InvalidInput(f"credit may not exceed {frames.MAX_CREDIT} (it is {self.available})")
        self.available += amount
        self._changed.set()

    async def take(self, most: int) -> int:
        while self.available == 0:
            self._changed = trio.Event()
            await self._changed.wait()
        taken = min(most, self.available)
        self.available -= taken
        return taken

    def give_back(self, amount: int) -> None:
        self.available += amount


@dataclass
class _Subscription:
    name: str
    source: Source
    visibility_timeout_s: float | None
    credit: Credit
    scope: trio.CancelScope


class Connection:
    def __init__(self, context: ApiContext, caller: Principal, bearer: str, hops: int = 0) -> None:
        self._context = context
        self._caller = caller
        self._bearer = bearer
        self._hops = hops
        """How many nodes relayed this socket here: one that was relayed relays on over HTTP only."""
        self._leaders = _Leaders(context, bearer, hops + 1)
        self._relay: Relay | None = None
        self._expires_at = _expiry(bearer)
        self._outbox, self._pending = trio.open_memory_channel[str | _Close](OUTBOX_FRAMES)
        self._slots = trio.Semaphore(MAX_IN_FLIGHT)
        self._subs: dict[str, _Subscription] = {}

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._hops == 0:
                self._relay = Relay(self._context.forwarder, self._bearer, nursery)
            nursery.start_soon(self._write)
            nursery.start_soon(self._expire)
            await self._read()

    async def _write(self) -> None:
        """Send what the outbox holds; the frames that are ready together (the answers of one commit) leave in
        one socket write."""
        async for first in self._pending:
            async with hypercorn_fixes.corked():
                item: str | _Close | None = first
                while item is not None:
                    if isinstance(item, _Close):
                        await websocket.close(item.code, item.reason)
                        self._nursery.cancel_scope.cancel()
                        return
                    await websocket.send(item)
                    try:
                        item = self._pending.receive_nowait()
                    except trio.WouldBlock:
                        item = None

    async def _expire(self) -> None:
        """A connection lives no longer than the token it was opened with, nor past its revocation."""
        guard = self._context.guard
        with trio.move_on_after(max(0.0, (self._expires_at or float("inf")) - time.time())):
            while (reason := guard.accounts.refusal(self._caller)) is None:
                await guard.changes.wait()
            await self._outbox.send(frames.error(None, None, Unauthorized(reason)))
            await self._outbox.send(_Close(1008, "token revoked"))
            return
        await self._outbox.send(frames.error(None, None, Unauthorized("the token expired; reconnect")))
        await self._outbox.send(_Close(1008, "token expired"))

    async def _read(self) -> None:
        bad = 0
        while True:
            data = await websocket.receive()
            if not isinstance(data, str):
                bad += 1
                await self._outbox.send(frames.error(None, None, Malformed("send JSON text frames, not binary")))
            else:
                try:
                    frame = frames.decode_frame(data)
                except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
                    bad = 0
                    await self._outbox.send(frames.error(*frames.head_of(data), InvalidInput(str(exc))))
                except msgspec.DecodeError as exc:
                    bad += 1
                    await self._outbox.send(frames.error(None, None, Malformed(f"the frame is not JSON: {exc}")))
                else:
                    bad = 0
                    await self._dispatch(frame)
            if bad >= MAX_BAD_FRAMES:
                await self._outbox.send(_Close(1003, "too many frames that are not JSON text"))
                await trio.sleep_forever()

    async def _dispatch(self, frame: ClientFrame) -> None:
        if isinstance(frame, PublishFrame | AckFrame):
            await self._slots.acquire()
            self._nursery.start_soon(self._answer, frame)
            return
        try:
            if isinstance(frame, SubscribeFrame):
                self._subscribe(frame)
                return
            elif isinstance(frame, frames.CreditFrame):
                self._sub(frame.sub).credit.add(frame.add)
                return
            else:
                self._sub(frame.sub).scope.cancel()
                del self._subs[frame.sub]
                answer = frames.subscription_state("unsubscribed", frame.sub)
        except MomError as exc:
            answer = frames.error(None, frame.sub, exc)
        await self._outbox.send(answer)

    async def _answer(self, frame: PublishFrame | AckFrame) -> None:
        sub = frame.sub if isinstance(frame, AckFrame) else None
        try:
            try:
                if isinstance(frame, PublishFrame):
                    answer = await self._publish(frame)
                else:
                    answer = await self._settle(frame)
            except MomError as exc:
                answer = frames.error(frame.id, sub, exc)
            except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
                answer = frames.error(frame.id, sub, InvalidInput(str(exc)))
            except msgspec.DecodeError as exc:
                answer = frames.error(frame.id, sub, Malformed(str(exc)))
            except Exception:
                log.exception("unhandled error in a stream frame")
                answer = frames.error(frame.id, sub, MomError("the server hit an unexpected error; it was logged"))
            await self._outbox.send(answer)
        finally:
            self._slots.release()

    # -- operations

    async def _publish(self, frame: PublishFrame) -> str:
        ref = _destination(frame.queue, frame.topic)
        require(self._caller, "write", _name(ref))
        try:
            here = leader_of(ref)
        except ForwardRequired as forward:
            upstream = {"op": "publish", **_fields(ref), "messages": frame.messages}
            if (relayed := await self._relayed(forward, upstream)) is None:
                path = _path(ref) + "/messages"
                relayed = await self._leaders.post(forward, path, b'{"messages":%b}' % frame.messages)
            return frames.published(frame.id, msgspec.json.decode(relayed, type=_Answer).messages)
        messages = parse_publish(b'{"messages":%b}' % frame.messages, self._context.settings.limits)
        result = await self._context.service.submit(here, Publish(ref, messages), Published)
        self._context.metrics.published.labels("queue" if isinstance(ref, QueueRef) else "topic").inc(len(messages))
        return frames.published(frame.id, result.messages)

    async def _settle(self, frame: AckFrame) -> str:
        if frame.sub is not None:
            if (frame.queue, frame.topic, frame.subscription) != (None, None, None):
                raise InvalidInput("give either 'sub' or the queue / topic and subscription, not both")
            source = self._sub(frame.sub).source
        else:
            source = _source(frame.queue, frame.topic, frame.subscription)
        require(self._caller, "read", _name(source))
        verb = "nack" if isinstance(frame, NackFrame) else "ack"
        delay_s = frame.delay_s if isinstance(frame, NackFrame) else 0.0
        try:
            here = leader_of(source)
        except ForwardRequired as forward:
            body: dict[str, Any] = {"receipts": frame.receipts}
            if verb == "nack":
                body["delay_s"] = delay_s
            answer = await self._relayed(forward, {"op": verb, **_fields(source), **body})
            if answer is None:
                answer = await self._leaders.post(forward, f"{_path(source)}/{verb}", msgspec.json.encode(body))
            done = msgspec.json.decode(answer, type=_Settled).done
            return frames.settled(verb + "ed", frame.id, done.get(verb + "ed", []), done.get("unknown", []))
        command = Nack(source, frame.receipts, round(delay_s * 1000)) if verb == "nack" else Ack(source, frame.receipts)
        result = await self._context.service.submit(here, command, Settled)
        if verb == "ack":
            self._context.metrics.acked.inc(len(result.settled))
        return frames.settled(verb + "ed", frame.id, result.settled, result.unknown)

    async def _relayed(self, forward: ForwardRequired, frame: dict[str, Any]) -> bytes | None:
        """The leader's answer to `frame` over the upstream socket to it, or None: relay over HTTP instead."""
        if self._relay is None:
            return None
        return await self._relay.call(forward.targets, frame)

    # -- subscriptions

    def _sub(self, name: str) -> _Subscription:
        try:
            return self._subs[name]
        except KeyError:
            raise NotFound(f"no subscription named {name!r} on this connection") from None

    def _subscribe(self, frame: SubscribeFrame) -> None:
        source = _source(frame.queue, frame.topic, frame.subscription)
        require(self._caller, "read", _name(source))
        if frame.sub in self._subs:
            raise Conflict(f"this connection already has a subscription named {frame.sub!r}")
        if len(self._subs) >= MAX_SUBSCRIPTIONS:
            raise InvalidInput(f"a connection may hold at most {MAX_SUBSCRIPTIONS} subscriptions")
        sub = _Subscription(frame.sub, source, frame.visibility_timeout_s, Credit(frame.credit), trio.CancelScope())
        self._subs[frame.sub] = sub
        self._nursery.start_soon(self._pump, sub)

    async def _pump(self, sub: _Subscription) -> None:
        """Lease what the credit allows and push it; a 4xx ends the subscription with an error frame."""
        pause = RETRY_S[0]
        with sub.scope:
            try:
                await self._check(sub.source)
            except MomError as exc:
                await self._end(sub, exc)
                return
            await self._outbox.send(frames.subscription_state("subscribed", sub.name))
            while True:
                wanted = await sub.credit.take(PULL_MAX)
                try:
                    batch = await self._pull(sub, wanted)
                except MomError as exc:
                    sub.credit.give_back(wanted)
                    if exc.status in (429, 503):
                        await trio.sleep(pause)
                        pause = min(RETRY_S[1], pause * 2)
                        continue
                    await self._end(sub, exc)
                    return
                pause = RETRY_S[0]
                sub.credit.give_back(wanted - len(batch))
                if batch:
                    await self._outbox.send(frames.deliver(sub.name, batch))

    async def _end(self, sub: _Subscription, exc: MomError) -> None:
        if self._subs.get(sub.name) is sub:
            del self._subs[sub.name]
        await self._outbox.send(frames.error(None, sub.name, exc))

    async def _check(self, source: Source) -> None:
        """NotFound (or the leader's error) unless `source` exists: answered before `subscribed`."""
        try:
            here = leader_of(source)
        except ForwardRequired as forward:
            await self._leaders.get(forward, _path(source))
            return
        here.state.ready_at(source, self._context.service.now_ms())

    async def _pull(self, sub: _Subscription, most: int) -> list[Any]:
        vt = sub.visibility_timeout_s
        try:
            here = leader_of(sub.source)
        except ForwardRequired as forward:
            body: dict[str, Any] = {"max_messages": most, "wait_s": REMOTE_WAIT_S}
            if vt is not None:
                body["visibility_timeout_s"] = vt
            path = _path(sub.source) + "/receive"
            answer = await self._leaders.post(forward, path, msgspec.json.encode(body), wait_s=REMOTE_WAIT_S)
            return msgspec.json.decode(answer, type=_Received).messages
        deliveries = await self._context.service.receive(
            here,
            sub.source,
            max_messages=most,
            wait_s=LOCAL_WAIT_S,
            visibility_timeout_ms=None if vt is None else round(vt * 1000),
        )
        self._context.metrics.delivered.inc(len(deliveries))
        return [delivery_view(d) for d in deliveries]


# ---------------------------------------------------------------------------------------------------------
# Other nodes, over their REST API


class _Answer(msgspec.Struct):
    messages: msgspec.Raw


class _Settled(msgspec.Struct):
    """A leader's answer to an ack or nack, over REST (`acked`/`nacked`, `unknown`) or as an answer frame."""

    acked: list[str] | None = None
    nacked: list[str] | None = None
    unknown: list[str] = []

    @property
    def done(self) -> dict[str, list[str]]:
        return {"acked": self.acked or [], "nacked": self.nacked or [], "unknown": self.unknown}


class _Received(msgspec.Struct):
    messages: list[msgspec.Raw]


class _Problem(msgspec.Struct):
    type: str = ""
    title: str = ""
    detail: str = ""


class _Leaders:
    """Requests to the node that leads a destination, as the caller (its bearer token), over the node's client."""

    def __init__(self, context: ApiContext, bearer: str, hops: int) -> None:
        self._forwarder = context.forwarder
        self._headers = {
            "authorization": f"Bearer {bearer}",
            "content-type": "application/json",
            HOPS_HEADER: str(hops),
        }

    async def get(self, forward: ForwardRequired, path: str) -> bytes:
        return await self._request("GET", forward, path, b"")

    async def post(self, forward: ForwardRequired, path: str, body: bytes, *, wait_s: float = 0.0) -> bytes:
        return await self._request("POST", forward, path, body, wait_s)

    async def _request(
        self, method: str, forward: ForwardRequired, path: str, body: bytes, wait_s: float = 0.0
    ) -> bytes:
        to = ForwardRequired(forward.targets, wait_s=wait_s)
        answer = await self._forwarder.call(to, method, path, content=body, headers=self._headers)
        if answer.is_success:
            return answer.content
        raise _error_from(answer)


def _error_from(answer: httpx.Response) -> MomError:
    """The leader's problem answer as a MomError carrying the same status, title, type and detail."""
    try:
        problem = msgspec.json.decode(answer.content, type=_Problem)
    except msgspec.MsgspecError:
        problem = _Problem(detail=answer.text[:200])
    error = class_for(answer.status_code, problem.type)(problem.detail or answer.reason_phrase)
    error.status = answer.status_code
    error.title = problem.title or answer.reason_phrase
    error.slug = problem.type.rsplit("/", 1)[-1] or error.slug
    retry_after = answer.headers.get("retry-after", "")
    if isinstance(error, Overloaded | Unavailable) and retry_after.isdigit():
        error.retry_after_s = float(retry_after)
    return error


# ---------------------------------------------------------------------------------------------------------
# Names, paths, tokens


def _destination(queue: str | None, topic: str | None) -> Destination:
    if queue is not None and topic is None:
        check_name(queue, "queue name")
        return QueueRef(queue)
    if topic is not None and queue is None:
        check_name(topic, "topic name")
        return TopicRef(topic)
    raise InvalidInput("give exactly one of 'queue' or 'topic'")


def _source(queue: str | None, topic: str | None, subscription: str | None) -> Source:
    if queue is not None and topic is None and subscription is None:
        check_name(queue, "queue name")
        return QueueRef(queue)
    if queue is None and topic is not None and subscription is not None:
        check_name(topic, "topic name")
        check_name(subscription, "subscription name")
        return SubscriptionRef(topic, subscription)
    raise InvalidInput("give either 'queue', or 'topic' with 'subscription'")


def _name(ref: Destination | Source) -> str:
    """The name scopes are checked against: the queue, or the topic (a subscription's included)."""
    return ref.topic if isinstance(ref, SubscriptionRef) else ref.name


def _fields(ref: Destination | Source) -> dict[str, str]:
    """The destination fields of a frame about `ref`."""
    if isinstance(ref, QueueRef):
        return {"queue": ref.name}
    if isinstance(ref, TopicRef):
        return {"topic": ref.name}
    return {"topic": ref.topic, "subscription": ref.name}


def _path(ref: Destination | Source) -> str:
    if isinstance(ref, QueueRef):
        return f"/v1/queues/{ref.name}"
    if isinstance(ref, TopicRef):
        return f"/v1/topics/{ref.name}"
    return f"/v1/topics/{ref.topic}/subscriptions/{ref.name}"


def _expiry(bearer: str) -> float | None:
    """The `exp` of a token that was verified already (so its claims can be read without checking again)."""
    try:
        payload = bearer.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None
