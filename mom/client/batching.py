"""Client-side batching of publishes with a short linger, as Kafka's producer does.

One message per request is capped by what a server can answer per second; a batch of 100 costs the server
about as much as one message. A batcher collects the messages its callers publish to one destination for up
to `linger_ms` (or until `max_batch` are waiting), sends them as one batch request, and gives each caller its
own answer (`{"id", "offset", "duplicate"}`) once the batch is durable. If the batch fails, every caller of that
batch gets the error. Closing the batcher sends what is still waiting and waits for the answers.

    with client.batcher(queue="orders", linger_ms=5) as batcher:          # blocking client: futures
        futures = [batcher.publish({"n": n}) for n in range(1000)]
        ids = [f.result()["id"] for f in futures]

    async with aclient.batcher(queue="orders") as batcher:                # async client: call from many tasks
        answer = await batcher.publish({"n": 1})

The blocking twin sends from one background thread (one batch request at a time, while the next batch fills);
the async twin sends from tasks of its own task group, up to `max_in_flight` batches at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import anyio
import anyio.abc

from mom.client import _protocol as p
from mom.errors import InvalidInput, MomError

Answer = dict[str, Any]


class _PublishesBatches(Protocol):
    def publish_batch(
        self, messages: Sequence[Mapping[str, Any]], *, queue: str | None = None, topic: str | None = None
    ) -> Any: ...


@dataclass(frozen=True)
class BatchSettings:
    queue: str | None
    topic: str | None
    linger_ms: float
    max_batch: int

    def __post_init__(self) -> None:
        p.publish_path(self.queue, self.topic)
        if not 1 <= self.max_batch <= 1000:
            raise InvalidInput("max_batch must be from 1 to 1000 (the server's batch limit)")
        if self.linger_ms < 0:
            raise InvalidInput("linger_ms must not be negative")


@dataclass
class _Batch:
    """Messages waiting to be sent and, in the same order, how to hand each caller its answer."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    deliver: list[Callable[[Answer | None, BaseException | None], None]] = field(default_factory=list)

    def settle(self, answers: list[Answer] | None, error: BaseException | None) -> None:
        if error is None and (answers is None or len(answers) != len(self.deliver)):
            error = MomError(f"the server answered {len(answers or [])} ids for {len(self.deliver)} messages")
        for index, deliver in enumerate(self.deliver):
            deliver(None if error is not None or answers is None else answers[index], error)


# ---------------------------------------------------------------------------------------------------------
# Blocking


class Batcher:
    """Batches the publishes of a blocking `Client`; `publish` returns a Future of the message's answer."""

    def __init__(self, client: _PublishesBatches, settings: BatchSettings) -> None:
        self._client = client
        self._settings = settings
        self._batch = _Batch()
        self._first_at = 0.0
        self._closed = False
        self._changed = threading.Condition()
        self._sender = threading.Thread(target=self._send_loop, name="mom-batcher", daemon=True)
        self._sender.start()

    def __enter__(self) -> Batcher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def publish(
        self,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0,
        dedup_id: str | None = None,
    ) -> Future[Answer]:
        future: Future[Answer] = Future()

        def deliver(answer: Answer | None, error: BaseException | None) -> None:
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(answer or {})

        with self._changed:
            if self._closed:
                raise InvalidInput("the batcher is closed")
            if not self._batch.messages:
                self._first_at = time.monotonic()
            self._batch.messages.append(p.make_message(body, headers, delay_s, dedup_id))
            self._batch.deliver.append(deliver)
            self._changed.notify()
        return future

    def close(self) -> None:
        """Send what is waiting, wait for its answers, and stop the sender thread."""
        with self._changed:
            self._closed = True
            self._changed.notify()
        self._sender.join()

    def _next_batch(self) -> _Batch | None:
        """The batch to send once it is full, its linger is over or the batcher closes; None when done."""
        settings = self._settings
        with self._changed:
            while True:
                waiting = len(self._batch.messages)
                linger_left = self._first_at + settings.linger_ms / 1000 - time.monotonic()
                if waiting >= settings.max_batch or (waiting and (self._closed or linger_left <= 0)):
                    size = settings.max_batch
                    batch = _Batch(self._batch.messages[:size], self._batch.deliver[:size])
                    del self._batch.messages[:size], self._batch.deliver[:size]
                    self._first_at = time.monotonic()
                    return batch
                if self._closed:
                    return None
                self._changed.wait(linger_left if waiting else None)

    def _send_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                answers = self._client.publish_batch(
                    batch.messages, queue=self._settings.queue, topic=self._settings.topic
                )
            except Exception as exc:
                batch.settle(None, exc)
            else:
                batch.settle(list(answers), None)


# ---------------------------------------------------------------------------------------------------------
# Async


class AsyncBatcher:
    """Batches the publishes of an `AsyncClient`; `await publish(...)` answers once the batch is durable."""

    def __init__(self, client: _PublishesBatches, settings: BatchSettings, *, max_in_flight: int = 4) -> None:
        self._client = client
        self._settings = settings
        self._batch = _Batch()
        self._generation = 0
        self._slots = anyio.Semaphore(max_in_flight)
        self._lingering = anyio.CancelScope()
        self._tasks: anyio.abc.TaskGroup | None = None

    async def __aenter__(self) -> AsyncBatcher:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Send what is waiting and wait for every answer."""
        assert self._tasks is not None
        self._ship()
        tasks, self._tasks = self._tasks, None
        await tasks.__aexit__(exc_type, exc, tb)

    async def publish(
        self,
        body: Any,
        *,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0,
        dedup_id: str | None = None,
    ) -> Answer:
        if self._tasks is None:
            raise InvalidInput("use the batcher in 'async with' (it is not open)")
        done = anyio.Event()
        outcome: list[Any] = []

        def deliver(answer: Answer | None, error: BaseException | None) -> None:
            outcome.extend((answer, error))
            done.set()

        self._batch.messages.append(p.make_message(body, headers, delay_s, dedup_id))
        self._batch.deliver.append(deliver)
        if len(self._batch.messages) >= self._settings.max_batch:
            self._ship()
        elif len(self._batch.messages) == 1:
            self._tasks.start_soon(self._linger, self._generation)
        await done.wait()
        answer, error = outcome
        if error is not None:
            raise error
        return dict(answer)

    async def _linger(self, generation: int) -> None:
        """Ship batch `generation` when its linger is over, unless it left already (then this ends at once)."""
        if generation != self._generation:
            return
        with anyio.CancelScope() as self._lingering:
            await anyio.sleep(self._settings.linger_ms / 1000)
        if generation == self._generation:
            self._ship()

    def _ship(self) -> None:
        """Send the waiting messages now (in a task of their own) and start a new batch."""
        batch, self._batch = self._batch, _Batch()
        self._generation += 1
        self._lingering.cancel()
        if batch.messages and self._tasks is not None:
            self._tasks.start_soon(self._send, batch)

    async def _send(self, batch: _Batch) -> None:
        async with self._slots:
            try:
                answers = await self._client.publish_batch(
                    batch.messages, queue=self._settings.queue, topic=self._settings.topic
                )
            except Exception as exc:
                batch.settle(None, exc)
            else:
                batch.settle(list(answers), None)
