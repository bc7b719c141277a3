"""The broker as the REST layer sees it: submit commands, long-poll for messages, read the applied state.

Route handlers talk only to this object, so the cluster can later route a command to the group that owns its
destination (or forward it to the leader) without the API changing. Waiting costs nothing: a long-poll sleeps on
a trio.Event that the apply path sets when something it could receive appears, with a timeout at the moment a
delayed or leased message becomes visible.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from mom.broker import Broker
from mom.broker.commands import (
    ClientRecord,
    Command,
    DeleteQueue,
    DeleteSubscription,
    DeleteTopic,
    Delivery,
    Nack,
    Publish,
    QueueRef,
    Receive,
    Received,
    Result,
    Source,
    SubscriptionRef,
    Tick,
    TopicRef,
    UserRecord,
)
from mom.replication.local import LocalGroup

TICK_INTERVAL_S = 0.25
"""How often the housekeeping loop looks for due leases, TTLs and retention (only due work is written)."""


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


class BrokerService:
    """Commands in, results out; one instance per node, owned by the node's nursery."""

    def __init__(self, group: LocalGroup, *, clock_ms: Callable[[], int] = wall_clock_ms) -> None:
        self._group = group
        self._clock_ms = clock_ms
        self._signals: dict[Source, trio.Event] = {}
        group.add_listener(self._on_applied)

    @property
    def broker(self) -> Broker:
        """The applied state, for reads. Never mutate it: changes go through `submit`."""
        return self._group.broker

    def now_ms(self) -> int:
        return self._clock_ms()

    def user(self, username: str) -> UserRecord | None:
        return self.broker.user(username)

    def client(self, client_id: str) -> ClientRecord | None:
        return self.broker.client(client_id)

    def committed_index(self) -> int:
        return self._group.applied_index

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Housekeeping: append a Tick when the state machine says time-based work is due."""
        task_status.started()
        while True:
            await trio.sleep(TICK_INTERVAL_S)
            deadline = self.broker.next_deadline_ms()
            if deadline is not None and deadline <= self.now_ms():
                await self._group.submit(Tick())

    async def submit(self, command: Command) -> Result:
        return await self._group.submit(command)

    async def receive(
        self, source: Source, *, max_messages: int, wait_s: float, visibility_timeout_ms: int | None
    ) -> list[Delivery]:
        """Lease up to `max_messages`, waiting up to `wait_s` for the first one to become available."""
        deadline = trio.current_time() + wait_s
        while True:
            now = self.now_ms()
            ready_at = self.broker.ready_at(source, now)
            if ready_at is not None and ready_at <= now:
                result = await self._group.submit(Receive(source, max_messages, visibility_timeout_ms))
                assert isinstance(result, Received)
                if result.messages:
                    return result.messages
                continue
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                return []
            timeout = remaining if ready_at is None else min(remaining, (ready_at - now) / 1000)
            with trio.move_on_after(timeout):
                await self._signal(source).wait()

    def _signal(self, source: Source) -> trio.Event:
        event = self._signals.get(source)
        if event is None:
            event = self._signals[source] = trio.Event()
        return event

    def _wake(self, source: Source) -> None:
        event = self._signals.pop(source, None)
        if event is not None:
            event.set()

    def _wake_topic(self, topic: str) -> None:
        for source in [s for s in self._signals if isinstance(s, SubscriptionRef) and s.topic == topic]:
            self._wake(source)

    def _on_applied(self, command: Command) -> None:
        """Wake the long-polls that this command may have given something to receive (or ended)."""
        match command:
            case Publish(destination=QueueRef() as queue):
                self._wake(queue)
            case Publish(destination=TopicRef(name=topic)) | DeleteTopic(name=topic):
                self._wake_topic(topic)
            case Nack(source=source):
                self._wake(source)
            case DeleteQueue(name=name):
                self._wake(QueueRef(name))
            case DeleteSubscription(topic=topic, name=name):
                self._wake(SubscriptionRef(topic, name))
            case Tick():
                for source in list(self._signals):
                    self._wake(source)
            case _:
                pass
