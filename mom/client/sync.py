"""The blocking client: runs the shared flows of `_protocol` over an `httpx.Client`."""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import httpx
from tenacity import Retrying

from mom.client import _protocol as p
from mom.client.batching import Batcher, BatchSettings
from mom.client.consume import BlockingSubscription
from mom.client.stream import StreamClient

T = TypeVar("T")


class Client:
    """A mom client. With credentials and no token, it gets a token on first use and renews it as needed.

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
        transport: httpx.BaseTransport | None = None,
        ca_file: str | None = None,
    ) -> None:
        self._nodes = p.Nodes(url)
        self._retries = p.Retries(retries, retry_for_s)
        self._ca_file = ca_file
        self._dedup_ids = dedup_ids
        self._protocol = p.Protocol(
            timeout=timeout,
            token=token,
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
        )
        self._http = httpx.Client(timeout=timeout, transport=transport, verify=p.tls_verify(ca_file))

    @property
    def url(self) -> str:
        """The node in use now."""
        return self._nodes.current

    @property
    def urls(self) -> list[str]:
        return list(self._nodes.urls)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- running flows

    def _send_once(self, request: p.Request) -> httpx.Response:
        node = self._nodes.current
        try:
            response = self._http.request(**request.httpx_kwargs(node))
            p.check_retryable(request, response)
        except Exception as exc:
            self._nodes.failed(node, exc)
            raise
        return response

    def _send(self, request: p.Request) -> httpx.Response:
        retrying = Retrying(**p.retry_policy(self._retries if request.retry else 0, repeatable=request.repeatable))
        return retrying(self._send_once, request)

    def _drive(self, flow: p.Flow[T]) -> T:
        try:
            request = next(flow)
            while True:
                request = flow.send(self._send(request))
        except StopIteration as done:
            result: T = done.value
            return result

    def _run(self, op: p.Op[T]) -> T:
        return self._drive(self._protocol.call(op))

    # -- auth

    def register_user(self, username: str, password: str) -> dict[str, Any]:
        return self._run(p.register_user_op(username, password))

    def create_client(self, scopes: Sequence[str], client_id: str | None = None) -> dict[str, Any]:
        """Create an OAuth client (admin only); the answer holds its `client_secret`, shown only this once."""
        return self._run(p.create_client_op(scopes, client_id))

    def create_user(self, username: str, password: str) -> dict[str, Any]:
        """Create a user as an admin (when open registration is off); it may use `<username>.*`."""
        return self._run(p.create_user_op(username, password))

    def list_accounts(self, kind: str = "users") -> list[dict[str, Any]]:
        """Every user (`kind` "users") or OAuth client ("clients") with its scopes (admin only)."""
        return self._run(p.accounts_op(kind))

    def grant(self, name: str, scopes: Sequence[str], *, kind: str = "users") -> dict[str, Any]:
        """Add scopes to a user or client (admin only); its next token carries them."""
        return self._run(p.scopes_op(kind, name, "grant", scopes))

    def revoke(self, name: str, scopes: Sequence[str], *, kind: str = "users") -> dict[str, Any]:
        """Take scopes from a user or client (admin only); its tokens issued so far stop working."""
        return self._run(p.scopes_op(kind, name, "revoke", scopes))

    def delete_account(self, name: str, *, kind: str = "users") -> None:
        """Delete a user or client (admin only); its tokens stop working on every node."""
        self._run(p.delete_account_op(kind, name))

    def revoke_token(self, token: str) -> None:
        """Revoke an access token (RFC 7009) on every node."""
        self._run(p.revoke_token_op(token))

    def token(self) -> dict[str, Any]:
        """Get a new token with the credentials; the client uses it from now on."""
        return self._drive(self._protocol.fetch_token())

    # -- queues

    def create_queue(self, name: str, **attrs: Any) -> dict[str, Any]:
        return self._run(p.declare_op(p.queue_path(name), attrs))

    def list_queues(self) -> list[dict[str, Any]]:
        return self._run(p.list_op("/v1/queues", "queues"))

    def get_queue(self, name: str) -> dict[str, Any]:
        return self._run(p.get_op(p.queue_path(name)))

    def delete_queue(self, name: str) -> None:
        self._run(p.delete_op(p.queue_path(name)))

    # -- topics and subscriptions

    def create_topic(self, name: str, **attrs: Any) -> dict[str, Any]:
        return self._run(p.declare_op(p.topic_path(name), attrs))

    def list_topics(self) -> list[dict[str, Any]]:
        return self._run(p.list_op("/v1/topics", "topics"))

    def get_topic(self, name: str) -> dict[str, Any]:
        return self._run(p.get_op(p.topic_path(name)))

    def delete_topic(self, name: str) -> None:
        self._run(p.delete_op(p.topic_path(name)))

    def create_subscription(
        self, topic: str, name: str, start: str | int | Mapping[str, int] = "latest", **attrs: Any
    ) -> dict[str, Any]:
        """Declare a durable subscription starting at `latest`, `earliest` or an offset."""
        return self._run(p.subscription_op(topic, name, start, attrs))

    def list_subscriptions(self, topic: str) -> list[dict[str, Any]]:
        return self._run(p.list_op(p.topic_path(topic) + "/subscriptions", "subscriptions"))

    def get_subscription(self, topic: str, name: str) -> dict[str, Any]:
        return self._run(p.get_op(p.subscription_path(topic, name)))

    def delete_subscription(self, topic: str, name: str) -> None:
        self._run(p.delete_op(p.subscription_path(topic, name)))

    def read_topic(self, topic: str, from_offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """Replay the retained log: `{"messages": [...], "next_offset": N}`."""
        return self._run(p.read_topic_op(topic, from_offset, limit))

    # -- messages

    def publish(
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
        return self._run(p.publish_op(queue, topic, [message], dedup_ids=self._dedup_ids))[0]

    def publish_batch(
        self, messages: Sequence[Mapping[str, Any]], *, queue: str | None = None, topic: str | None = None
    ) -> list[dict[str, Any]]:
        """Publish messages given as `{"body", "headers"?, "delay_s"?, "dedup_id"?}` in one request."""
        return self._run(p.publish_op(queue, topic, messages, dedup_ids=self._dedup_ids))

    def batcher(
        self, *, queue: str | None = None, topic: str | None = None, linger_ms: float = 5, max_batch: int = 100
    ) -> Batcher:
        """Batch this client's publishes to one destination (see `mom.client.batching`); close it when done."""
        return Batcher(self, BatchSettings(queue, topic, linger_ms, max_batch))

    def receive(
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
        return self._run(op)

    def ack(
        self,
        receipts: Sequence[str],
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
    ) -> dict[str, Any]:
        return self._run(p.settle_op("ack", queue, topic, subscription, receipts))

    def nack(
        self,
        receipts: Sequence[str],
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        delay_s: float = 0,
    ) -> dict[str, Any]:
        """Give the messages back for redelivery, after `delay_s`."""
        return self._run(p.settle_op("nack", queue, topic, subscription, receipts, delay_s))

    def events(self, topic: str, subscription: str) -> Generator[dict[str, Any], None, None]:
        """Deliveries of a subscription pushed over Server-Sent Events, until the caller stops iterating. A stream
        that cannot be opened or breaks raises; the next call starts on the next node."""
        renew = False
        while True:
            headers = self._drive(self._protocol.authorization(renew=renew))
            request = self._protocol.events_request(topic, subscription, headers)
            node = self._nodes.current
            try:
                with self._http.stream(**request.httpx_kwargs(node)) as response:
                    if response.status_code == 401 and not renew and self._protocol.can_fetch_token:
                        renew = True
                        continue
                    if response.is_error:
                        response.read()
                        raise p.error_from(response)
                    parser = p.SSEParser()
                    for line in response.iter_lines():
                        event = parser.feed(line)
                        delivery = p.delivery_from_event(event) if event else None
                        if delivery is not None:
                            yield delivery
                    return
            except Exception as exc:
                self._nodes.failed(node, exc)
                raise

    def consume(
        self,
        *,
        queue: str | None = None,
        topic: str | None = None,
        subscription: str | None = None,
        prefetch: int = 100,
        visibility_timeout_s: float | None = None,
        ack_batch: int = 100,
        ack_linger_ms: float = 5.0,
    ) -> BlockingSubscription:
        """Deliveries pushed over the streaming WebSocket, at most `prefetch` of them unacked at once.

        Use it in `with`; ack with `sub.ack_nowait(receipt)` (batched) or `sub.ack([...])`. The socket starts
        with the client's current token and, when the client has credentials, renews it (see
        `mom.client.consume`); when its node goes away it reopens to another of the client's nodes and
        subscribes again there.
        """
        headers = self._drive(self._protocol.authorization())
        bearer = headers.get("Authorization", "").removeprefix("Bearer ") or None
        credentials = self._protocol.credentials()
        connect = partial(
            StreamClient,
            self._nodes.from_current(),
            # with credentials the stream fetches its own token, whose lifetime it knows, and renews it
            token=None if credentials else bearer,
            **credentials,
            timeout=self._protocol.timeout,
            retries=self._retries.count,
            retry_for_s=self._retries.for_s,
            ca_file=self._ca_file,
        )
        return BlockingSubscription(
            connect,
            queue=queue,
            topic=topic,
            subscription=subscription,
            prefetch=prefetch,
            visibility_timeout_s=visibility_timeout_s,
            ack_batch=ack_batch,
            ack_linger_ms=ack_linger_ms,
        )

    # -- operations

    def cluster(self) -> dict[str, Any]:
        return self._run(p.get_op("/v1/cluster"))

    def health(self) -> bool:
        """Whether the node process answers (GET /healthz)."""
        return self._run(p.probe_op("/healthz"))

    def ready(self) -> bool:
        """Whether the node can serve writes (GET /readyz)."""
        return self._run(p.probe_op("/readyz"))
