"""The async client (trio or asyncio): runs the shared flows of `_protocol` over an `httpx.AsyncClient`."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar

import anyio
import httpx
from tenacity import AsyncRetrying

from mom.client import _protocol as p
from mom.client.batching import AsyncBatcher, BatchSettings
from mom.client.stream import StreamClient
from mom.client.subscription import Subscription

T = TypeVar("T")


class AsyncClient:
    """The async twin of `mom.client.Client`, with the same methods as coroutines.

    With credentials and no token, it gets a token on first use and renews it as needed.

    Retries never duplicate a write. Every published message gets a `dedup_id` (a random UUID) unless it has one
    (`dedup_ids=False` turns that off), so a publish may be sent again when its outcome is unknown. A request
    refused with 429 or 503, or that could not connect, is retried `retries` times with exponential back-off and
    jitter, honouring Retry-After (with `retry_for_s`, only within that many seconds of the first attempt;
    `retries=None` then retries until that time is up); a 503 `OutcomeUnknown` or a connection lost mid-request is
    retried only when sending it again is safe (`Op.repeatable`: reads, declares, deduplicated publishes, acks,
    nacks, receives) and raised otherwise. Every other error answer raises the matching `mom.errors` exception.
    docs/api.md states the guarantee precisely.

    `url` is one node's URL, or several (a list, or separated by commas as `MOM_URL` takes them): any node of a
    cluster answers any request, so the client stays on one node while it answers and moves to the next on a
    failure it retries (the node cannot be reached, the connection broke, 429, 503). The retry rules above hold
    whichever node a retry goes to.
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
    ) -> None:
        self._nodes = p.Nodes(url)
        self._retries = p.Retries(retries, retry_for_s)
        self._dedup_ids = dedup_ids
        self._protocol = p.Protocol(
            timeout=timeout,
            token=token,
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
        )
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, verify=p.tls_verify(ca_file))

    @property
    def url(self) -> str:
        """The node in use now."""
        return self._nodes.current

    @property
    def urls(self) -> list[str]:
        return list(self._nodes.urls)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- running flows

    async def _send_once(self, request: p.Request) -> httpx.Response:
        node = self._nodes.current
        try:
            response = await self._http.request(**request.httpx_kwargs(node))
            p.check_retryable(request, response)
        except Exception as exc:
            self._nodes.failed(node, exc)
            raise
        return response

    async def _send(self, request: p.Request) -> httpx.Response:
        retrying = AsyncRetrying(
            sleep=anyio.sleep, **p.retry_policy(self._retries if request.retry else 0, repeatable=request.repeatable)
        )
        response: httpx.Response = await retrying(self._send_once, request)
        return response

    async def _drive(self, flow: p.Flow[T]) -> T:
        try:
            request = next(flow)
            while True:
                request = flow.send(await self._send(request))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _run(self, op: p.Op[T]) -> T:
        return await self._drive(self._protocol.call(op))

    # -- auth

    async def register_user(self, username: str, password: str) -> dict[str, Any]:
        return await self._run(p.register_user_op(username, password))

    async def create_client(self, scopes: Sequence[str], client_id: str | None = None) -> dict[str, Any]:
        """Create an OAuth client (admin only); the answer holds its `client_secret`, shown only this once."""
        return await self._run(p.create_client_op(scopes, client_id))

    async def create_user(self, username: str, password: str) -> dict[str, Any]:
        """Create a user as an admin (when open registration is off); it may use `<username>.*`."""
        return await self._run(p.create_user_op(username, password))

    async def list_accounts(self, kind: str = "users") -> list[dict[str, Any]]:
        """Every user (`kind` "users") or OAuth client ("clients") with its scopes (admin only)."""
        return await self._run(p.accounts_op(kind))

    async def grant(self, name: str, scopes: Sequence[str], *, kind: str = "users") -> dict[str, Any]:
        """Add scopes to a user or client (admin only); its next token carries them."""
        return await self._run(p.scopes_op(kind, name, "grant", scopes))

    async def revoke(self, name: str, scopes: Sequence[str], *, kind: str = "users") -> dict[str, Any]:
        """Take scopes from a user or client (admin only); its tokens issued so far stop working."""
        return await self._run(p.scopes_op(kind, name, "revoke", scopes))

    async def delete_account(self, name: str, *, kind: str = "users") -> None:
        """Delete a user or client (admin only); its tokens stop working on every node."""
        await self._run(p.delete_account_op(kind, name))

    async def revoke_token(self, token: str) -> None:
        """Revoke an access token (RFC 7009) on every node."""
        await self._run(p.revoke_token_op(token))

    async def token(self) -> dict[str, Any]:
        """Get a new token with the credentials; the client uses it from now on."""
        return await self._drive(self._protocol.fetch_token())

    # -- queues

    async def create_queue(self, name: str, **attrs: Any) -> dict[str, Any]:
        return await self._run(p.declare_op(p.queue_path(name), attrs))

    async def list_queues(self) -> list[dict[str, Any]]:
        return await self._run(p.list_op("/v1/queues", "queues"))

    async def get_queue(self, name: str) -> dict[str, Any]:
        return await self._run(p.get_op(p.queue_path(name)))

    async def delete_queue(self, name: str) -> None:
        await self._run(p.delete_op(p.queue_path(name)))

    # -- topics and subscriptions

    async def create_topic(self, name: str, **attrs: Any) -> dict[str, Any]:
        return await self._run(p.declare_op(p.topic_path(name), attrs))

    async def list_topics(self) -> list[dict[str, Any]]:
        return await self._run(p.list_op("/v1/topics", "topics"))

    async def get_topic(self, name: str) -> dict[str, Any]:
        return await self._run(p.get_op(p.topic_path(name)))

    async def delete_topic(self, name: str) -> None:
        await self._run(p.delete_op(p.topic_path(name)))

    async def create_subscription(
        self, topic: str, name: str, start: str | int | Mapping[str, int] = "latest", **attrs: Any
    ) -> dict[str, Any]:
        """Declare a durable subscription starting at `latest`, `earliest` or an offset."""
        return await self._run(p.subscription_op(topic, name, start, attrs))

    async def list_subscriptions(self, topic: str) -> list[dict[str, Any]]:
        return await self._run(p.list_op(p.topic_path(topic) + "/subscriptions", "subscriptions"))

    async def get_subscription(self, topic: str, name: str) -> dict[str, Any]:
        return await self._run(p.get_op(p.subscription_path(topic, name)))

    async def delete_subscription(self, topic: str, name: str) -> None:
        await self._run(p.delete_op(p.subscription_path(topic, name)))

    async def read_topic(self, topic: str, from_offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """Replay the retained log: `{"messages": [...], "next_offset": N}`."""
        return await self._run(p.read_topic_op(topic, from_offset, limit))

    # -- messages

    async def publish(
        self,
        body: Any,
        *,
        queue: str | None = None,
        topic: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0,
        dedup_id: str | None = None,
    ) -> dict[str, Any]:
        """Publish one message (bytes go as base64); answers `{"id", "offset", "duplicate"}` once durable."""
        message = p.make_message(body, headers, delay_s, dedup_id)
        return (await self._run(p.publish_op(queue, topic, [message], dedup_ids=self._dedup_ids)))[0]

    async def publish_batch(
        self, messages: Sequence[Mapping[str, Any]], *, queue: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish messages given as `{"body", "headers"?, "delay_s"?, "dedup_id"?}` in one request."""
        return await self._run(p.publish_op(queue, topic, messages, dedup_ids=self._dedup_ids))

    def batcher(
        self, *, queue: str | None = None, topic: str | None = None, linger_ms: float = 5, max_batch: int = 100
    ) -> AsyncBatcher:
        """Batch this client's publishes to one destination (see `mom.client.batching`); close it when done."""
        return AsyncBatcher(self, BatchSettings(queue, topic, linger_ms, max_batch))

    async def receive(
        self,
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        max_messages: int = 1,
        wait_s: float = 0,
        visibility_timeout_s: float | None = None,
    ) -> list[dict[str, Any]]:
        """Lease up to `max_messages`, waiting up to `wait_s` for the first; ack each by its `receipt`."""
        op = p.receive_op(queue, topic, subscription, max_messages, wait_s, visibility_timeout_s)
        return await self._run(op)

    async def ack(
        self,
        receipts: Sequence[str],
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
    ) -> dict[str, Any]:
        return await self._run(p.settle_op("ack", queue, topic, subscription, receipts))

    async def nack(
        self,
        receipts: Sequence[str],
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        delay_s: float = 0,
    ) -> dict[str, Any]:
        """Give the messages back for redelivery, after `delay_s`."""
        return await self._run(p.settle_op("nack", queue, topic, subscription, receipts, delay_s))

    async def events(self, topic: str, subscription: str) -> AsyncGenerator[dict[str, Any], None]:
        """Deliveries of a subscription pushed over Server-Sent Events, until the caller stops iterating. A stream
        that cannot be opened or breaks raises; the next call starts on the next node.

        Close it with `contextlib.aclosing` (or exhaust it) so the stream is released promptly.
        """
        renew = False
        while True:
            headers = await self._drive(self._protocol.authorization(renew=renew))
            request = self._protocol.events_request(topic, subscription, headers)
            node = self._nodes.current
            try:
                async with self._http.stream(**request.httpx_kwargs(node)) as response:
                    if response.status_code == 401 and not renew and self._protocol.can_fetch_token:
                        renew = True
                        continue
                    if response.is_error:
                        await response.aread()
                        raise p.error_from(response)
                    parser = p.SSEParser()
                    async for line in response.aiter_lines():
                        event = parser.feed(line)
                        delivery = p.delivery_from_event(event) if event else None
                        if delivery is not None:
                            yield delivery
                    return
            except Exception as exc:
                self._nodes.failed(node, exc)
                raise

    @asynccontextmanager
    async def consume(
        self,
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        prefetch: int = 100,
        visibility_timeout_s: float | None = None,
        ack_batch: int = 100,
        ack_linger_ms: float = 5.0,
    ) -> AsyncIterator[Subscription]:
        """Deliveries pushed over the streaming WebSocket, at most `prefetch` of them unacked at once.

        `async with client.consume(queue="orders") as sub: async for message in sub: sub.ack_nowait(...)`;
        see `mom.client.subscription`. The socket starts with the client's current token and, when the client
        has credentials, renews it; when its node goes away it reopens to another of the client's nodes and
        subscribes again there.
        """
        headers = await self._drive(self._protocol.authorization())
        bearer = headers.get("Authorization", "").removeprefix("Bearer ") or None
        credentials = self._protocol.credentials()
        stream = StreamClient(
            self._nodes.from_current(),
            # with credentials the stream fetches its own token, whose lifetime it knows, and renews it
            token=None if credentials else bearer,
            **credentials,
            timeout=self._protocol.timeout,
            retries=self._retries.count,
            retry_for_s=self._retries.for_s,
            http=self._http,
        )
        async with (
            stream,
            stream.subscribe(
                queue=queue,
                topic=topic,
                subscription=subscription,
                prefetch=prefetch,
                visibility_timeout_s=visibility_timeout_s,
                ack_batch=ack_batch,
                ack_linger_ms=ack_linger_ms,
            ) as sub,
        ):
            yield sub

    # -- operations

    async def cluster(self) -> dict[str, Any]:
        return await self._run(p.get_op("/v1/cluster"))

    async def health(self) -> bool:
        """Whether the node process answers (GET /healthz)."""
        return await self._run(p.probe_op("/healthz"))

    async def ready(self) -> bool:
        """Whether the node can serve writes (GET /readyz)."""
        return await self._run(p.probe_op("/readyz"))
