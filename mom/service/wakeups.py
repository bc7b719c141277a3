"""Long-poll wake-ups: a receive that found nothing sleeps on an event that the apply path sets.

Waiting costs nothing: a long-poll sleeps on a `trio.Event` per (group, source) until a command applied in that
group may have given it something to receive (a publish, a nack, a lease or delay that ended with a Tick) or
ended it (a delete). The table holds only the events someone is waiting on.

An event wakes every waiter of its source, but a receive is a replicated command: if all of them went to the
log at once for one new message, all but one would commit an empty lease. So woken receives take turns per
source (`turn`): each looks again once the one before it has committed, and goes back to sleep if nothing is
left. A receive that finds messages on its first look does not queue.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from mom.broker.commands import (
    Ack,
    ChangeVisibility,
    Command,
    DeclareQueue,
    DeclareTopic,
    DeleteQueue,
    DeleteSubscription,
    DeleteTopic,
    Nack,
    Publish,
    QueueRef,
    Source,
    SubscriptionRef,
    Tick,
    TopicRef,
    UpdateQueue,
)


class WakeUps:
    """One event per (group id, source) that a long-poll waits on; `on_applied` sets the ones a command concerns."""

    def __init__(self) -> None:
        self._events: dict[tuple[str, Source], trio.Event] = {}
        self._turns: dict[tuple[str, Source], trio.Lock] = {}

    @asynccontextmanager
    async def turn(self, gid: str, source: Source) -> AsyncIterator[None]:
        """One woken receive of `source` at a time (see the module); the lock is dropped when nobody needs it."""
        key = (gid, source)
        lock = self._turns.setdefault(key, trio.Lock())
        try:
            async with lock:
                yield
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._turns.pop(key, None)

    def event(self, gid: str, source: Source) -> trio.Event:
        """The event to wait on for something to receive from `source` in group `gid`."""
        key = (gid, source)
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = trio.Event()
        return event

    def on_applied(self, gid: str, command: Command) -> None:
        """Wake the long-polls that this command may have given something to receive (or ended)."""
        match command:
            case Publish(destination=QueueRef() as queue):
                self._wake(gid, queue)
            case Publish(destination=TopicRef(name=topic)) | DeleteTopic(name=topic):
                self._wake_group(gid, topic)
            case Nack(source=source) | Ack(source=source) | ChangeVisibility(source=source):
                self._wake(gid, source)  # a settled or returned message may open a FIFO group
            case DeleteQueue(name=name):
                self._wake(gid, QueueRef(name))
            case DeleteSubscription(topic=topic, name=name):
                self._wake(gid, SubscriptionRef(topic, name))
            case Tick() | DeclareQueue() | DeclareTopic() | UpdateQueue():
                self._wake_group(gid)
            case _:
                pass

    def _wake(self, gid: str, source: Source) -> None:
        event = self._events.pop((gid, source), None)
        if event is not None:
            event.set()

    def _wake_group(self, gid: str, topic: str | None = None) -> None:
        for key in [k for k in self._events if k[0] == gid]:
            if topic is None or (isinstance(key[1], SubscriptionRef) and key[1].topic == topic):
                self._wake(*key)
