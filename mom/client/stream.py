"""The streaming client: publish, consume and ack over one WebSocket (`GET /v1/stream`), on trio or asyncio.

    async with StreamClient("http://127.0.0.1:8080", username="alice", password="...") as s:
        ids = await s.publish([{"body": {"n": 1}}], queue="orders")       # many may be awaited at once
        async with s.subscribe(queue="orders", prefetch=100) as sub:       # at most 100 unacked at once
            async for message in sub:
                sub.ack_nowait(message["receipt"])                           # acks leave in batches

Frames are JSON text, one object each; `op` names the kind and `id` correlates an answer with its request:

    client: {"op":"publish","id":ID,"queue":Q | "topic":T,
             "messages":[{"body"|"body_base64","headers","delay_s","dedup_id"}]}
    server: {"op":"published","id":ID,"messages":[{"id","offset","duplicate"}]}          (once durable)
    client: {"op":"subscribe","sub":S,"queue":Q | "topic":T,"subscription":N,"credit":C,"visibility_timeout_s":V}
    server: {"op":"subscribed","sub":S}, then {"op":"deliver","sub":S,"messages":[<as REST receive>]}
    client: {"op":"credit","sub":S,"add":C}            each delivered message uses one credit
    client: {"op":"ack"|"nack","id":ID,"sub":S,"receipts":[...],"delay_s":D}
    server: {"op":"acked","id":ID,"acked":[...],"unknown":[...]} / {"op":"nacked","id":ID,"nacked":[...],...}
    client: {"op":"unsubscribe","sub":S}   server: {"op":"unsubscribed","sub":S}
    server: {"op":"error","id":ID?,"sub":S?,"type","title","status","detail"}   (the REST problem's fields)

Credit is the server's only flow control; `mom.client.subscription` builds a prefetch window (unacked messages,
as AMQP's basic.qos) or a receive window (untaken messages) on it, and batches acks. A socket lasts as long as
the token it was opened with (the server closes it with 1008 when the token expires): a client with credentials
then opens a new one with a new token, as it does on another node when its node goes away, and subscribes again
there.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import httpx
import msgspec
from httpx_ws import AsyncWebSocketSession, HTTPXWSException, WebSocketUpgradeError, aconnect_ws
from tenacity import AsyncRetrying, retry_if_exception
from wsproto.utilities import LocalProtocolError

from mom import errors
from mom.client import _protocol as p
from mom.client.subscription import Subscription, Waiter
from mom.errors import InvalidInput, MomError, OutcomeUnknown, Overloaded, Unauthorized, Unavailable

STREAM_PATH = "/v1/stream"
_encoder = msgspec.json.Encoder()


def error_from_frame(frame: Mapping[str, Any]) -> MomError:
    """The `mom.errors` exception an error frame stands for (the same classes REST answers map to)."""
    status = int(frame.get("status") or 500)
    error = errors.class_for(status, frame.get("type"))(str(frame.get("detail") or frame.get("title") or "error"))
    if type(error) is MomError:
        error.status, error.title = status, str(frame.get("title") or error.title)
    if isinstance(error, Overloaded | Unavailable) and isinstance(frame.get("retry_after_s"), int | float):
        error.retry_after_s = float(frame["retry_after_s"])
    return error


class StreamClient:
    """One WebSocket to a node; every method may be awaited from many tasks at once (pipelining).

    Publish, ack and nack answered 429/503 (no leader at the moment, overload) are retried `retries` times with
    backoff (and `retry_for_s`), as `AsyncClient` does, and as there every published message gets a `dedup_id`
    unless it has one (`dedup_ids=False` turns that off), so that a publish answered `OutcomeUnknown` is sent
    again only when that cannot store it twice. Every other error frame raises the matching `mom.errors`
    exception.

    `url` is one node's URL or several (a list, or separated by commas). When the socket breaks (its node
    died, restarted, or closed it when its token expired), the client opens one to the next node (with the same
    retry limits) and subscribes its subscriptions again there; a request in flight then raises
    `OutcomeUnknown` and is sent again only under the rule above.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        timeout: float = 30.0,
        retries: int | None = 5,
        retry_for_s: float | None = None,
        dedup_ids: bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        ca_file: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        """`http`: an open client to share (an `AsyncClient`'s, with its TLS settings); it is left open."""
        self._nodes = p.Nodes(url)
        self._retries = p.Retries(retries, retry_for_s)
        self._timeout = timeout
        self._dedup_ids = dedup_ids
        self._protocol = p.Protocol(
            timeout=timeout,
            token=token,
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
        )
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=timeout, transport=transport, verify=p.tls_verify(ca_file))
        self._stack = AsyncExitStack()
        self._ws: AsyncWebSocketSession | None = None
        self._up = anyio.Event()
        """Set while a socket is open; a new one while the client reconnects."""
        self._sockets = 0
        """How many sockets have been open (the current one's number)."""
        self._ids = itertools.count(1)
        self._waiters: dict[int, Waiter] = {}
        self._subs: dict[str, Subscription] = {}
        self._closed: MomError | None = None
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def url(self) -> str:
        """The node the stream is open to (or will reopen to)."""
        return self._nodes.current

    @property
    def timeout(self) -> float:
        """The base timeout of the client's operations, in seconds."""
        return self._timeout

    async def __aenter__(self) -> StreamClient:
        await self._stack.__aenter__()
        try:
            if self._own_http:
                await self._stack.enter_async_context(self._http)
            self._tasks = await self._stack.enter_async_context(anyio.create_task_group())
            await self._tasks.start(self._keep)
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._fail(Unavailable("the stream client is closed"))
        if self._tasks is not None:
            self._tasks.cancel_scope.cancel()
        await self._stack.aclose()

    # -- the socket, and another node's when it breaks

    async def _authorization(self, node: str) -> dict[str, str]:
        flow = self._protocol.authorization()
        try:
            request = next(flow)
            while True:
                request = flow.send(await self._http.request(**request.httpx_kwargs(node)))
        except StopIteration as done:
            headers: dict[str, str] = done.value
            return headers

    async def _open(self, stack: AsyncExitStack) -> AsyncWebSocketSession:
        """A socket (closed with `stack`) to the node in use or, if it cannot take one (unreachable, 429, 503),
        the next ones in turn; the last failure when no node does."""
        failure: MomError | None = None
        for _ in self._nodes.urls:
            node = self._nodes.current
            try:
                headers = await self._authorization(node)
                ws: AsyncWebSocketSession = await stack.enter_async_context(
                    aconnect_ws(node + STREAM_PATH, self._http, headers=headers)
                )
                return ws
            except WebSocketUpgradeError as exc:
                await exc.response.aread()
                failure = p.error_from(exc.response)
            except (httpx.TransportError, HTTPXWSException) as exc:
                failure = Unavailable(f"{node} cannot take a stream ({type(exc).__name__}: {exc})")
            self._nodes.failed(node, failure)
            if not p.moves_on(failure):
                raise failure
        assert failure is not None
        raise failure

    async def _keep(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open a socket (started once one is open: the caller gets the failure if none can be), read its
        frames, and when it breaks open one to another node (with back-off, `retries` rounds of the nodes) and
        subscribe again there. Requests in flight meanwhile end as `OutcomeUnknown`. Every socket is opened
        and closed in this task."""
        started = False
        while True:
            async with AsyncExitStack() as stack:
                ws: AsyncWebSocketSession
                try:
                    if started:
                        ws = await AsyncRetrying(sleep=anyio.sleep, **p.retry_policy(self._retries))(self._open, stack)
                    else:
                        ws = await self._open(stack)
                except MomError as exc:
                    if not started:
                        raise
                    self._fail(exc)
                    return
                if not started:
                    task_status.started()
                    started = True
                self._ws, self._sockets = ws, self._sockets + 1
                broken: Unavailable
                try:
                    for sub in list(self._subs.values()):
                        await sub.subscribe_on_socket(wait=False)
                except Unavailable as exc:  # broken at once
                    broken = exc
                else:
                    self._up.set()
                    broken = await self._read(ws)
                finally:
                    self._ws, self._up = None, anyio.Event()
            self._nodes.failed(self._nodes.current, broken)
            self._lost(broken)

    async def _read(self, ws: AsyncWebSocketSession) -> Unavailable:
        """Dispatch frames until the socket breaks; the error that says so."""
        try:
            while True:
                self._dispatch(msgspec.json.decode(await ws.receive_text()))
        except (HTTPXWSException, msgspec.DecodeError) as exc:
            return Unavailable(f"the stream closed ({type(exc).__name__}: {exc})")

    # -- frames out

    async def _wait_up(self) -> None:
        """Until a socket is open (bounded by the client's timeout), or the client closed."""
        with anyio.move_on_after(self._timeout):
            await self._up.wait()

    async def _send(self, frame: Mapping[str, Any], *, wait: bool = True) -> None:
        if self._closed is not None:
            raise self._closed
        assert self._tasks is not None, "use StreamClient in 'async with'"
        if wait:
            await self._wait_up()
        ws = self._ws
        if self._closed is not None:
            raise self._closed
        if ws is None:
            raise Unavailable("the stream is reconnecting; retry shortly")
        try:
            await ws.send_text(_encoder.encode(frame).decode())
        except (HTTPXWSException, LocalProtocolError) as exc:  # the latter: the socket is closing
            raise Unavailable(f"the stream is broken ({type(exc).__name__})") from exc

    async def _request(self, frame: dict[str, Any], *, repeatable: bool) -> dict[str, Any]:
        """Send `frame` and wait for its answer; a 429/503 is retried as the REST client does, on another node
        if the socket broke meanwhile (an `OutcomeUnknown` only if the frame is `repeatable`)."""
        policy = p.retry_policy(self._retries)

        def worth_retrying(exc: BaseException) -> bool:
            if self._closed is not None or not isinstance(exc, Overloaded | Unavailable):
                return False
            return repeatable or not isinstance(exc, OutcomeUnknown)

        policy["retry"] = retry_if_exception(worth_retrying)
        answer: dict[str, Any] = await AsyncRetrying(sleep=anyio.sleep, **policy)(self._request_once, frame)
        return answer

    async def _request_once(self, frame: dict[str, Any]) -> dict[str, Any]:
        ident = next(self._ids)
        waiter = self._waiters[ident] = Waiter()
        try:
            await self._send({**frame, "id": ident})
            return await waiter.result()
        finally:
            self._waiters.pop(ident, None)

    # -- frames in

    def _dispatch(self, frame: dict[str, Any]) -> None:
        op, ident, sub = frame.get("op"), frame.get("id"), frame.get("sub")
        error = error_from_frame(frame) if op == "error" else None
        if isinstance(ident, int) and ident in self._waiters:
            self._waiters[ident].settle(frame, error)
        elif isinstance(sub, str) and sub in self._subs:
            self._subs[sub].on_frame(op, frame, error)
        elif isinstance(error, Unauthorized) and self._protocol.can_fetch_token:
            pass  # the token expired: the server closes the socket, and the next one gets a new token
        elif error is not None:
            self._fail(error)

    def _lost(self, error: MomError) -> None:
        """The socket broke: a call waiting for its answer raises `OutcomeUnknown` when `error` is a 503, since
        what it sent may have been applied (its retry policy decides whether it is sent again)."""
        in_flight = error
        if isinstance(error, Unavailable) and not isinstance(error, OutcomeUnknown):
            in_flight = OutcomeUnknown(f"{error.detail}: a request in flight may or may not have been applied")
        for waiter in list(self._waiters.values()):
            waiter.settle(None, in_flight)

    def _fail(self, error: MomError) -> None:
        """The client is unusable (closed, or no node takes a stream): later calls raise `error`, and so do the
        subscriptions."""
        self._closed = self._closed or error
        self._up.set()
        self._lost(error)
        for sub in list(self._subs.values()):
            sub.on_frame("error", {}, error)

    # -- operations

    async def publish(
        self, messages: Sequence[Mapping[str, Any]], *, queue: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish `[{"body", "headers"?, "delay_s"?, "dedup_id"?}]`; answers `[{"id","offset","duplicate"}]`
        once durable. Bytes bodies travel as base64."""
        messages = p.with_dedup_ids(messages, self._dedup_ids)
        frame: dict[str, Any] = {"op": "publish", "messages": [p.encode_message(m) for m in messages]}
        frame.update(_target(queue=queue, topic=topic))
        answer = await self._request(frame, repeatable=p.all_deduplicated(messages))
        return list(answer["messages"])

    async def ack(
        self,
        receipts: Sequence[str],
        *,
        sub: str | None = None,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
    ) -> dict[str, Any]:
        """Settle receipts of the stream subscription `sub`, or of a queue / topic subscription given directly."""
        return await self._settle("ack", receipts, sub, queue, topic, subscription, 0.0)

    async def nack(
        self,
        receipts: Sequence[str],
        *,
        sub: str | None = None,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        delay_s: float = 0.0,
    ) -> dict[str, Any]:
        return await self._settle("nack", receipts, sub, queue, topic, subscription, delay_s)

    async def _settle(
        self,
        verb: str,
        receipts: Sequence[str],
        sub: str | None,
        queue: str | None,
        topic: str | None,
        subscription: str | None,
        delay_s: float,
    ) -> dict[str, Any]:
        frame: dict[str, Any] = {"op": verb, "receipts": list(receipts)}
        if sub is not None:
            frame["sub"] = sub
        else:
            frame.update(_target(queue=queue, topic=topic, subscription=subscription))
        if delay_s:
            frame["delay_s"] = delay_s
        answer = await self._request(frame, repeatable=True)
        return {key: value for key, value in answer.items() if key not in ("op", "id")}

    def subscribe(
        self,
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        prefetch: int | None = None,
        credit: int | None = None,
        visibility_timeout_s: float | None = None,
        ack_batch: int = 100,
        ack_linger_ms: float = 5.0,
    ) -> Subscription:
        """Deliveries of a queue or topic subscription, pushed with flow control (`mom.client.subscription`).

        `prefetch=N`: at most N messages delivered and not yet acked or nacked through the subscription (as
        AMQP's basic.qos). `credit=N` (the default, 100): at most N delivered and not yet taken from the iterator.
        Use it as `async with s.subscribe(...) as sub: async for message in sub: ...`; leaving the block sends
        the acks still queued by `sub.ack_nowait(...)`, then unsubscribes.
        """
        if prefetch is not None and credit is not None:
            raise InvalidInput("give prefetch (unacked messages) or credit (untaken messages), not both")
        target = _target(queue=queue, topic=topic, subscription=subscription, consuming=True)
        window = prefetch if prefetch is not None else (credit if credit is not None else 100)
        frame: dict[str, Any] = {"op": "subscribe", **target, "credit": window}
        if visibility_timeout_s is not None:
            frame["visibility_timeout_s"] = visibility_timeout_s
        return Subscription(
            self,
            f"s{next(self._ids)}",
            frame,
            prefetch=prefetch is not None,
            ack_batch=ack_batch,
            ack_linger_ms=ack_linger_ms,
        )


def _target(
    *, queue: str | None = None, topic: str | None = None, subscription: str | None = None, consuming: bool = False
) -> dict[str, str]:
    """The destination fields of a frame, checked as the REST client checks its paths."""
    if consuming or subscription is not None:
        p.consumer_path(queue, topic, subscription)
    else:
        p.publish_path(queue, topic)
    fields = {"queue": queue, "topic": topic, "subscription": subscription}
    return {key: value for key, value in fields.items() if value is not None}
