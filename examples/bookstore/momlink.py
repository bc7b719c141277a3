"""A service's link to the mom cluster: the node URLs it knows, used in turn when one stops answering.

`mom.client.AsyncClient` talks to one URL. Any node of a cluster answers any request (it forwards to the
leader), so a service given every node's URL keeps working while one node is down: a request that could not
be answered (connection refused or broken, timeout, 503 while a new leader is elected, 429) is sent again to
the next node after a short backoff, until a deadline. Sending again is safe for everything the bookstore
does: publishes carry dedup ids, a lost receive is redelivered after the visibility timeout, and an ack is
idempotent.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
import trio

from examples.bookstore import messages as m
from mom.client import AsyncClient, MomError, Overloaded, Unavailable

T = TypeVar("T")
log = logging.getLogger("bookstore.mom")

REQUEST_TIMEOUT_S = 10.0
GIVE_UP_AFTER_S = 30.0
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError | Overloaded | Unavailable):
        return True
    return isinstance(exc, MomError) and exc.status >= 500


class MomLink:
    """Clients of every node (each with the service's credentials), and the one currently in use."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        credentials: dict[str, str],
        start: int = 0,
        ca_file: str | None = None,
        give_up_after_s: float = GIVE_UP_AFTER_S,
        rng: random.Random | None = None,
    ) -> None:
        if not urls:
            raise ValueError("MomLink needs at least one node URL")
        self._clients = [
            AsyncClient(
                url,
                retries=0,
                timeout=REQUEST_TIMEOUT_S,
                ca_file=ca_file,
                username=credentials.get("username"),
                password=credentials.get("password"),
                client_id=credentials.get("client_id"),
                client_secret=credentials.get("client_secret"),
            )
            for url in urls
        ]
        self._current = start % len(urls)
        self._give_up_after_s = give_up_after_s
        self._rng = rng or random.Random()

    async def __aenter__(self) -> MomLink:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with trio.CancelScope(shield=True):
            for client in self._clients:
                await client.aclose()

    @property
    def url(self) -> str:
        return self._clients[self._current].url

    async def call(self, op: Callable[[AsyncClient], Awaitable[T]]) -> T:
        """Run `op` on the current node; on a failure worth retrying, on the next one, until the deadline."""
        deadline = trio.current_time() + self._give_up_after_s
        attempt = 0
        while True:
            client = self._clients[self._current]
            try:
                return await op(client)
            except (httpx.TransportError, MomError) as exc:
                if not _worth_retrying(exc) or trio.current_time() >= deadline:
                    raise
                self._current = (self._current + 1) % len(self._clients)
                log.info("mom at %s: %s; trying %s", client.url, exc or type(exc).__name__, self.url)
            pause = min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2**attempt) * self._rng.uniform(0.5, 1.0)
            await trio.sleep(pause)
            attempt += 1

    async def publish(self, messages: Sequence[m.Message]) -> None:
        """Publish messages to where each kind goes, one request per destination, each with its dedup id."""
        batches: dict[tuple[m.Kind, str], list[dict[str, Any]]] = {}
        for message in messages:
            batches.setdefault(m.route(message), []).append({"body": m.encode(message), "dedup_id": m.key(message)})
        for (kind, name), batch in batches.items():
            await self._publish_batch({kind: name}, batch)

    async def _publish_batch(self, where: dict[str, str], batch: list[dict[str, Any]]) -> None:
        queue, topic = where.get("queue"), where.get("topic")
        await self.call(lambda c: c.publish_batch(batch, queue=queue, topic=topic))

    async def receive(self, where: dict[str, str], *, max_messages: int, wait_s: float) -> list[dict[str, Any]]:
        """Lease up to `max_messages` from `where` (`{"queue": q}` or `{"topic": t, "subscription": s}`)."""
        queue, topic, subscription = where.get("queue"), where.get("topic"), where.get("subscription")
        return await self.call(
            lambda c: c.receive(
                queue=queue, topic=topic, subscription=subscription, max_messages=max_messages, wait_s=wait_s
            )
        )

    async def ack(self, where: dict[str, str], receipts: Sequence[str]) -> None:
        queue, topic, subscription = where.get("queue"), where.get("topic"), where.get("subscription")
        await self.call(lambda c: c.ack(receipts, queue=queue, topic=topic, subscription=subscription))

    async def nack(self, where: dict[str, str], receipts: Sequence[str], *, delay_s: float) -> None:
        queue, topic, subscription = where.get("queue"), where.get("topic"), where.get("subscription")
        await self.call(
            lambda c: c.nack(receipts, queue=queue, topic=topic, subscription=subscription, delay_s=delay_s)
        )
