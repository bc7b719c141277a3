"""The one way every service consumes: receive a batch, handle each message in its own database transaction
(recorded, with what it produced, under the message's business key), publish what it produced, then ack.

- Idempotent: a message whose key is already recorded is not applied again; what it produced the first time is
  published again (with the same dedup ids), which covers a crash between the commit and the publish.
- Ack after commit and after publish: a crash at any point leaves the message unacked, so mom delivers it again
  (to this or another instance) once its visibility timeout expires.
- A message that cannot be handled (malformed, or the handler fails) is nacked with a delay; after
  `max_deliveries` mom moves it to the dead-letter queue, which the orders service watches.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import httpx
import msgspec
import trio

from examples.bookstore import messages as m
from examples.bookstore.db import Database
from mom.client import MomError

log = logging.getLogger("bookstore.consumer")

BATCH = 10
WAIT_S = 5.0
NACK_DELAY_S = 0.5
PAUSE_AFTER_FAILURE_S = 0.5


@dataclass(frozen=True)
class Source:
    """Where to receive from: a queue, or a durable subscription of a topic."""

    queue: str | None = None
    topic: str | None = None
    subscription: str | None = None

    @property
    def where(self) -> dict[str, str]:
        if self.queue is not None:
            return {"queue": self.queue}
        assert self.topic is not None and self.subscription is not None
        return {"topic": self.topic, "subscription": self.subscription}

    def __str__(self) -> str:
        return self.queue or f"{self.topic}/{self.subscription}"


@dataclass(frozen=True)
class Delivery:
    """A received message, decoded."""

    message: m.Message
    id: str
    deliveries: int
    headers: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[sqlite3.Connection, Delivery, float], list[m.Message]]
"""Applies a message to the service's database inside the transaction (given the time), returns the messages
to send."""


class Link(Protocol):
    """What a consumer needs of mom (`MomLink` in the services; a fake in unit tests)."""

    async def receive(self, where: dict[str, str], *, max_messages: int, wait_s: float) -> list[dict[str, Any]]: ...
    async def publish(self, messages: Sequence[m.Message]) -> None: ...
    async def ack(self, where: dict[str, str], receipts: Sequence[str]) -> None: ...
    async def nack(self, where: dict[str, str], receipts: Sequence[str], *, delay_s: float) -> None: ...


class Rejected(Exception):
    """The message can never be handled (it does not decode): it goes back until it is dead-lettered."""


@dataclass
class Consumer:
    link: Link
    db: Database
    source: Source
    handler: Handler
    accepts: Any
    """The message type (or union of types) this source carries."""
    instance: str
    key_prefix: str = ""
    """Prefixed to business keys: a dead letter is handled apart from the command it carries."""
    batch: int = BATCH
    wait_s: float = WAIT_S
    handled: int = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.step()
            except (MomError, httpx.HTTPError) as exc:
                # mom unreachable past the link's deadline, or a refusal: whatever was not acked comes back.
                log.warning("%s: %s; retrying shortly", self.source, exc)
                await trio.sleep(PAUSE_AFTER_FAILURE_S)

    async def step(self) -> int:
        """Receive and settle one batch; returns how many messages were handled."""
        where = self.source.where
        received = await self.link.receive(where, max_messages=self.batch, wait_s=self.wait_s)
        done: list[str] = []
        failed: list[str] = []
        outgoing: list[m.Message] = []
        for raw in received:
            try:
                delivery = self._decode(raw)
                outgoing += await self.db.write(partial(self._handle_once, delivery))
            except Rejected as exc:
                log.warning("%s: message %s rejected (delivery %s): %s", self.source, raw["id"], raw["deliveries"], exc)
                failed.append(raw["receipt"])
                continue
            except Exception:
                log.exception("%s: handling message %s failed (delivery %s)", self.source, raw["id"], raw["deliveries"])
                failed.append(raw["receipt"])
                continue
            done.append(raw["receipt"])
        if outgoing:
            await self.link.publish(outgoing)
        if done:
            await self.link.ack(where, done)
        if failed:
            await self.link.nack(where, failed, delay_s=NACK_DELAY_S)
        self.handled += len(done)
        return len(done)

    def _decode(self, raw: dict[str, Any]) -> Delivery:
        try:
            message = m.decode(raw["body"], self.accepts)
        except (msgspec.ValidationError, KeyError) as exc:
            raise Rejected(str(exc)) from None
        return Delivery(message, str(raw["id"]), int(raw.get("deliveries", 1)), dict(raw.get("headers") or {}))

    def _handle_once(self, delivery: Delivery, conn: sqlite3.Connection) -> list[m.Message]:
        key = self.key_prefix + m.key(delivery.message)
        row = conn.execute("SELECT outcome FROM processed WHERE key = ?", (key,)).fetchone()
        if row is not None:
            log.info(
                "%s: %s seen before (delivery %s): sending its outcome again", self.source, key, delivery.deliveries
            )
            return [m.decode(body, m.AnyMessage) for body in json.loads(row["outcome"])]
        now = self.db.clock()
        outcome = self.handler(conn, delivery, now)
        conn.execute(
            "INSERT INTO processed (key, outcome, instance, at) VALUES (?, ?, ?, ?)",
            (key, json.dumps([m.encode(message) for message in outcome]), self.instance, now),
        )
        return outcome
