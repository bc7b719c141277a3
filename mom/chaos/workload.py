"""The load a chaos run puts on the cluster: producers and consumers that record everything they are told.

Producers publish single messages and batches to random nodes through `mom.client.AsyncClient`, in two modes
(`history.Mode`): `default` makes one call with the client's own retry defaults and accepts its outcome; `dedup`
gives every message a dedup id and calls again (another random node) until the publish is acknowledged. Consumers
cover every way out: REST receive/ack on a queue and on a topic subscription, Server-Sent Events (acked over
REST) and the streaming WebSocket on a queue and on a subscription. A consumer that fails, or hears nothing for a
while, reconnects to another random node, as a robust application would.

Bounded: producers stop when the engine cancels them or after `max_messages`; consumers run until cancelled.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from mom.chaos.history import Delivery, History, Mode, PublishCall, RecordingTransport, Via, body_for, read_body
from mom.client import AsyncClient
from mom.client.stream import StreamClient
from mom.errors import MomError

log = logging.getLogger("mom.chaos.workload")

USER = "chaos"
"""The workload runs as this user, created by the admin: like any tenant it may use only `chaos.*` and is held to
the quotas (destinations, streams, long-polls), unlike the admin, who is exempt from both."""
QUEUE_REST = f"{USER}.q-rest"
QUEUE_STREAM = f"{USER}.q-stream"
TOPIC = f"{USER}.t"
SUBSCRIPTIONS = {"sse": "sse", "rest": "rest", "stream": "stream"}
"""Subscription name → how it is consumed."""
VISIBILITY_TIMEOUT_S = 5
"""Short, so that a delivery whose ack was lost comes back within the drain."""
IDLE_RECONNECT_S = 8.0
"""A push consumer (SSE, stream) that got nothing for this long reconnects, possibly to another node."""
QUIESCE_S = 5.0
"""How long a fault waits for the publishes in flight to its destination to end, before it goes ahead anyway."""
BURST_GAP_S = 0.05
"""Between a burst's client-default batch and its dedup batch: the first is then the one the node commits first."""
ACK_BATCH = 100
ACK_FLUSH_S = 5.0
DEDUP_GIVE_UP_S = 120.0
"""A dedup-mode publish is retried this long at most; after that its outcome stays unknown (a producer that
waited forever on a destination that cannot take writes would stop the whole workload)."""
RECEIVE_WAIT_S = 2.0
RECEIVE_MAX = 50


def destinations() -> list[str]:
    return [f"queue:{QUEUE_REST}", f"queue:{QUEUE_STREAM}", f"topic:{TOPIC}"]


def consumer_groups(dest: str) -> list[str]:
    """Who must receive a message published to `dest`: its queue, or every subscription of its topic."""
    kind, name = dest.split(":", 1)
    if kind == "queue":
        return [dest]
    return [f"sub:{name}/{sub}" for sub in SUBSCRIPTIONS]


@dataclass(frozen=True)
class Source:
    """A destination to publish to (`queue:Q`, `topic:T`) or a consumer group to receive from (`sub:T/S`)."""

    group: str
    queue: str | None = None
    topic: str | None = None
    subscription: str | None = None

    @classmethod
    def of(cls, name: str) -> Source:
        kind, rest = name.split(":", 1)
        if kind == "queue":
            return cls(name, queue=rest)
        if kind == "topic":
            return cls(name, topic=rest)
        topic, subscription = rest.split("/", 1)
        return cls(name, topic=topic, subscription=subscription)


@dataclass(frozen=True)
class WorkloadSettings:
    producers: int = 3
    pause_s: tuple[float, float] = (0.05, 0.25)
    """Each producer sleeps a random time in this range between calls."""
    batch_share: float = 0.5
    """The share of calls that publish a batch (2..batch_max messages) instead of one message."""
    batch_max: int = 20
    dedup_share: float = 0.5
    """The share of calls made in `dedup` mode (the rest use the client's defaults)."""
    max_messages: int = 1_000_000
    weights: tuple[float, float, float] = (0.35, 0.35, 0.3)
    """How often each of `destinations()` is chosen."""
    burst: int = 8
    """Messages per batch of the burst sent at the node a fault aims at, right after it is injected."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MomError):
        return f"{getattr(exc, 'status', '?')} {type(exc).__name__}: {exc.detail}"[:300]
    return f"{type(exc).__name__}: {exc}"[:300]


class Workload:
    """Producers and consumers against `urls` (node id → REST URL), recording into `history`."""

    def __init__(
        self,
        urls: dict[str, str],
        history: History,
        settings: WorkloadSettings,
        rng: random.Random,
        *,
        username: str,
        password: str,
    ) -> None:
        self._urls = urls
        self._history = history
        self._settings = settings
        self._rng = rng
        self._username, self._password = username, password
        self._clients = {node: self._client(node) for node in urls}
        self._calls = 0
        self._published = 0
        self.acked: dict[str, set[str]] = {group: set() for d in destinations() for group in consumer_groups(d)}
        """Acknowledged payload ids by the consumer group that must receive them."""
        self.seen: dict[str, set[str]] = {group: set() for group in self.acked}
        self.consumer_errors: Counter[str] = Counter()
        self.recent_errors: Counter[str] = Counter()
        """Failed publish calls by error, since the engine last took them (per round)."""
        self.late_acks: Counter[str] = Counter()
        """Receipts an ack named that were no longer current (the lease had expired): they come again."""
        self._held: set[str] = set()
        self._in_flight: Counter[str] = Counter()
        self.bursts: trio.Nursery | None = None
        """Where bursts run (set by the engine): they outlive the producers' loops, to finish what they started."""
        self._bursts = 0
        self._burst_rng = random.Random(rng.getrandbits(64))

    def _client(self, node: str) -> AsyncClient:
        transport = RecordingTransport(node, self._history)
        return AsyncClient(self._urls[node], username=self._username, password=self._password, transport=transport)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()

    def pending(self) -> int:
        """Acknowledged messages some consumer group has not received yet."""
        return sum(len(self.acked[g] - self.seen[g]) for g in self.acked)

    # -- producers

    async def run_producers(self) -> None:
        async with trio.open_nursery() as nursery:
            for worker in range(self._settings.producers):
                nursery.start_soon(self._produce, worker, random.Random(self._rng.getrandbits(64)))

    def target(self, destination: str) -> str:
        """The workload destination a fault's target names (the metadata group stands for the first queue)."""
        return next((d for d in destinations() if d.split(":", 1)[1] == destination), destinations()[0])

    async def hold(self, dest: str) -> bool:
        """Stop starting publishes to `dest` and wait (bounded) until none is in flight: then a burst's first
        batch is the only publish the destination's leader can be committing when the fault bites. True if the
        destination went quiet in time."""
        self._held.add(dest)
        with trio.move_on_after(QUIESCE_S):
            while self._in_flight[dest]:  # noqa: ASYNC110 - the calls in flight end on their own
                await trio.sleep(0.01)
            return True
        return False

    def release(self, dest: str) -> None:
        self._held.discard(dest)

    def burst(self, node: str, dest: str) -> None:
        """Put a batch of `burst` client-default publishes in flight at `node`, then a batch with dedup ids just
        after it.

        The node merges concurrent publishes to one destination and commits one command at a time, so (with the
        destination held quiet) the first batch is the one in flight when the fault bites; the second shows what
        dedup ids do then. Their retries go anywhere, as usual."""
        if self.bursts is None:
            return
        self._bursts += 1
        self.bursts.start_soon(self._burst, dest, node, self._bursts, random.Random(self._burst_rng.getrandbits(64)))

    async def _burst(self, dest: str, node: str, number: int, rng: random.Random) -> None:
        async with trio.open_nursery() as nursery:
            for mode in ("default", "dedup"):
                pids = [f"{mode}-burst{number}.{i}" for i in range(self._settings.burst)]
                nursery.start_soon(self._publish, dest, mode, pids, random.Random(rng.getrandbits(64)), node)
                await trio.sleep(BURST_GAP_S)

    async def _produce(self, worker: int, rng: random.Random) -> None:
        settings = self._settings
        seq = 0
        while self._published < settings.max_messages:
            dest = rng.choices(destinations(), weights=settings.weights)[0]
            if dest in self._held:
                await trio.sleep(rng.uniform(*settings.pause_s))
                continue
            mode: Mode = "dedup" if rng.random() < settings.dedup_share else "default"
            count = rng.randint(2, settings.batch_max) if rng.random() < settings.batch_share else 1
            pids = [f"{mode}-{worker}.{seq + i}" for i in range(count)]
            seq += count
            self._published += count
            await self._publish(dest, mode, pids, rng)
            await trio.sleep(rng.uniform(*settings.pause_s))

    async def _publish(
        self, dest: str, mode: Mode, pids: list[str], rng: random.Random, first: str | None = None
    ) -> None:
        """One call (`default`), or calls until acknowledged (`dedup`); the first to `first` if given."""
        target = Source.of(dest)
        attempt = 0
        calls_started = self._history.now()
        while True:
            attempt += 1
            node = first if first is not None and attempt == 1 else rng.choice(list(self._urls))
            self._calls += 1
            call = PublishCall(
                self._calls, dest, mode, pids, node, self._history.now(), self._history.round, attempt=attempt
            )
            self._history.calls.append(call)
            self._in_flight[dest] += 1
            try:
                answers = await self._send(self._clients[node], pids, mode, target)
            except (MomError, httpx.HTTPError) as exc:
                call.ended, call.error = self._history.now(), _describe(exc)
                answers = None
            except BaseException:
                call.ended, call.error = self._history.now(), "cancelled"
                raise
            finally:
                self._in_flight[dest] -= 1
            if answers is not None:
                call.ended, call.ok = self._history.now(), True
                call.ids = [str(a["id"]) for a in answers]
                call.offsets = [int(a["offset"]) for a in answers]
                for group in consumer_groups(dest):
                    self.acked[group].update(pids)
                return
            self.recent_errors[(call.error or "").split(":", 1)[0]] += 1
            if mode == "default" or self._history.now() - calls_started > DEDUP_GIVE_UP_S:
                return
            await trio.sleep(rng.uniform(0.05, 0.5))
            while dest in self._held and first is None:  # noqa: ASYNC110 - until the burst's window closes
                await trio.sleep(0.05)

    @staticmethod
    async def _send(client: AsyncClient, pids: list[str], mode: Mode, target: Source) -> list[dict[str, Any]]:
        dedup = mode == "dedup"
        queue, topic = target.queue, target.topic
        if len(pids) == 1:
            dedup_id = pids[0] if dedup else None
            return [await client.publish(body_for(pids[0]), queue=queue, topic=topic, dedup_id=dedup_id)]
        messages = [{"body": body_for(pid), **({"dedup_id": pid} if dedup else {})} for pid in pids]
        return await client.publish_batch(messages, queue=queue, topic=topic)

    # -- consumers

    async def run_consumers(self) -> None:
        async with trio.open_nursery() as nursery:
            for i in range(2):
                nursery.start_soon(self._rest_consumer, Source.of(f"queue:{QUEUE_REST}"), self._fork(i))
            nursery.start_soon(self._stream_consumer, Source.of(f"queue:{QUEUE_STREAM}"), self._fork(2))
            nursery.start_soon(self._rest_consumer, Source.of(f"sub:{TOPIC}/rest"), self._fork(3))
            nursery.start_soon(self._stream_consumer, Source.of(f"sub:{TOPIC}/stream"), self._fork(4))
            nursery.start_soon(self._sse_consumer, Source.of(f"sub:{TOPIC}/sse"), self._fork(5))

    def _fork(self, salt: int) -> random.Random:
        return random.Random(self._rng.getrandbits(64) ^ salt)

    def _record(self, messages: Sequence[dict[str, Any]], group: str, via: Via, node: str) -> None:
        now, current = self._history.now(), self._history.round
        for message in messages:
            pid, body_ok = read_body(message.get("body"))
            offset = message.get("offset")
            self._history.deliveries.append(
                Delivery(
                    now,
                    group,
                    via,
                    node,
                    str(message.get("id")),
                    pid,
                    offset if isinstance(offset, int) else None,
                    int(message.get("deliveries") or 1),
                    body_ok,
                    current,
                )
            )
            if pid is not None and group in self.seen:
                self.seen[group].add(pid)

    def _failed(self, group: str, exc: BaseException) -> None:
        while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
            exc = exc.exceptions[0]
        self.consumer_errors[f"{group}: {type(exc).__name__}"] += 1

    async def _rest_consumer(self, source: Source, rng: random.Random) -> None:
        group, queue, topic, subscription = source.group, source.queue, source.topic, source.subscription
        while True:
            node = rng.choice(list(self._urls))
            client = self._clients[node]
            try:
                messages = await client.receive(
                    queue=queue, topic=topic, subscription=subscription, max_messages=RECEIVE_MAX, wait_s=RECEIVE_WAIT_S
                )
                self._record(messages, group, "rest", node)
                if messages:
                    receipts = [m["receipt"] for m in messages]
                    answer = await client.ack(receipts, queue=queue, topic=topic, subscription=subscription)
                    self.late_acks[group] += len(answer.get("unknown") or [])
            except Exception as exc:  # a consumer keeps consuming whatever one request did
                self._failed(group, exc)
                await trio.sleep(rng.uniform(0.1, 0.5))

    async def _sse_consumer(self, source: Source, rng: random.Random) -> None:
        group, topic, subscription = source.group, source.topic or "", source.subscription or ""
        while True:
            node = rng.choice(list(self._urls))
            client = self._clients[node]

            async def ack(receipts: list[str], client: AsyncClient = client) -> dict[str, Any]:
                return await client.ack(receipts, topic=topic, subscription=subscription)

            try:
                async with (
                    contextlib.aclosing(client.events(topic, subscription)) as events,
                    self._acker(group, ack) as receipts,
                ):
                    while (message := await _next_within(events, IDLE_RECONNECT_S)) is not None:
                        self._record([message], group, "sse", node)
                        receipts.send_nowait(message["receipt"])
            except Exception as exc:
                self._failed(group, exc)
            await trio.sleep(rng.uniform(0.1, 0.5))

    async def _stream_consumer(self, source: Source, rng: random.Random) -> None:
        group = source.group
        while True:
            node = rng.choice(list(self._urls))
            transport = RecordingTransport(node, self._history)
            try:
                async with (
                    StreamClient(
                        self._urls[node], username=self._username, password=self._password, transport=transport
                    ) as stream,
                    stream.subscribe(
                        queue=source.queue, topic=source.topic, subscription=source.subscription, credit=RECEIVE_MAX
                    ) as subscription,
                    self._acker(group, subscription.ack) as receipts,
                ):
                    while (message := await _next_within(subscription, IDLE_RECONNECT_S)) is not None:
                        self._record([message], group, "stream", node)
                        receipts.send_nowait(message["receipt"])
            except Exception as exc:
                self._failed(group, exc)
            await trio.sleep(rng.uniform(0.1, 0.5))

    @contextlib.asynccontextmanager
    async def _acker(
        self, group: str, ack: Callable[[list[str]], Awaitable[dict[str, Any]]]
    ) -> AsyncIterator[trio.MemorySendChannel[str]]:
        """A channel for receipts, acked in batches by a task of its own while the consumer reads on, as a
        pushed consumer must: acking one by one, in line, lets leases expire behind a backlog. On exit, what is
        queued is acked (bounded by `ACK_FLUSH_S`)."""
        send, receive = trio.open_memory_channel[str](math.inf)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._ack_batches, group, ack, receive)
            try:
                yield send
            finally:
                send.close()
                nursery.cancel_scope.deadline = trio.current_time() + ACK_FLUSH_S

    async def _ack_batches(
        self,
        group: str,
        ack: Callable[[list[str]], Awaitable[dict[str, Any]]],
        receipts: trio.MemoryReceiveChannel[str],
    ) -> None:
        async for first in receipts:
            batch = [first]
            while len(batch) < ACK_BATCH:
                try:
                    batch.append(receipts.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            try:
                answer = await ack(batch)
            except Exception as exc:  # the leases expire and the messages come again: at-least-once
                self._failed(group, exc)
                continue
            self.late_acks[group] += len(answer.get("unknown") or [])


async def _next_within(source: AsyncIterator[dict[str, Any]], seconds: float) -> dict[str, Any] | None:
    """The next item of `source`; None once it ends or gives nothing for `seconds`."""
    with trio.move_on_after(seconds):
        try:
            return await source.__anext__()
        except StopAsyncIteration:
            return None
    return None
