"""A service's link to the mom cluster: one `mom.client.AsyncClient` given every node's URL.

The client does the failover: it stays on a node while it answers and moves to the next one when a request
cannot be answered there (connection refused or broken, 503 while a new leader is elected, 429), retrying with
back-off within `give_up_after_s`. What it sends again follows mom's retry rules, which cover everything the
bookstore does: publishes carry dedup ids (here derived from the message, so a service that publishes again
after a crash is deduplicated too), a lost receive is redelivered after the visibility timeout, and acks and
nacks are idempotent. Services start on different nodes (`start`), so their load spreads over the cluster.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from examples.bookstore import messages as m
from mom.client import AsyncClient

T = TypeVar("T")

REQUEST_TIMEOUT_S = 10.0
GIVE_UP_AFTER_S = 30.0


class MomLink:
    """The service's client of mom, over every node, first `urls[start]`."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        credentials: dict[str, str],
        start: int = 0,
        ca_file: str | None = None,
        give_up_after_s: float = GIVE_UP_AFTER_S,
    ) -> None:
        if not urls:
            raise ValueError("MomLink needs at least one node URL")
        first = start % len(urls)
        self._client = AsyncClient(
            [*urls[first:], *urls[:first]],
            retries=None,
            retry_for_s=give_up_after_s,
            timeout=REQUEST_TIMEOUT_S,
            ca_file=ca_file,
            username=credentials.get("username"),
            password=credentials.get("password"),
            client_id=credentials.get("client_id"),
            client_secret=credentials.get("client_secret"),
        )

    async def __aenter__(self) -> MomLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            await self._client.aclose()

    @property
    def url(self) -> str:
        """The node in use now."""
        return self._client.url

    async def call(self, op: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run `op` with the client (which fails over between the nodes itself)."""
        return await op(self._client)

    async def publish(self, messages: Sequence[m.Message]) -> None:
        """Publish messages to where each kind goes, one request per destination, each with its dedup id."""
        batches: dict[tuple[m.Kind, str], list[dict[str, Any]]] = {}
        for message in messages:
            batches.setdefault(m.route(message), []).append({"body": m.encode(message), "dedup_id": m.key(message)})
        for (kind, name), batch in batches.items():
            queue, topic = (name, None) if kind == "queue" else (None, name)
            await self._client.publish_batch(batch, queue=queue, topic=topic)

    async def receive(self, where: dict[str, str], *, max_messages: int, wait_s: float) -> list[dict[str, Any]]:
        """Lease up to `max_messages` from `where` (`{"queue": q}` or `{"topic": t, "subscription": s}`)."""
        queue, topic, subscription = where.get("queue"), where.get("topic"), where.get("subscription")
        return await self._client.receive(
            queue=queue, topic=topic, subscription=subscription, max_messages=max_messages, wait_s=wait_s
        )

    async def ack(self, where: dict[str, str], receipts: Sequence[str]) -> None:
        queue, topic, subscription = where.get("queue"), where.get("topic"), where.get("subscription")
        await self._client.ack(receipts, queue=queue, topic=topic, subscription=subscription)

    async def nack(self, where: dict[str, str], receipts: Sequence[str], *, delay_s: float) -> None:
        queue, topic, subscription = where.get("queue"), where.get("topic"), where.get("subscription")
        await self._client.nack(receipts, queue=queue, topic=topic, subscription=subscription, delay_s=delay_s)
