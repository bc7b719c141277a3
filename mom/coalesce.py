"""Publish coalescing: concurrent publishes to one destination become one log command.

Group commit one level up. Every log command costs the same fixed work (encoding, a Raft entry, an apply, a wake-
up) whatever it carries, so many small publishes in flight at once (one message per request or per WebSocket frame)
are cheaper as one command. Publishes that arrive while a command for their destination is being committed wait
for it and then go together as the next one.

Each caller still gets exactly its own answer: its slice of the merged result (offsets and ids in its order,
dedup applied as if the publishes had been sent one after another, which they are, within the merged command).
If a merged command fails (a queue that cannot take them all, a leadership change), every publish in it is tried
again on its own, so a caller never inherits an error that its own publish would not have met.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mom.broker.commands import Publish, Published, Result
from mom.errors import MomError

Submit = Callable[[Publish], Awaitable[Result]]


@dataclass(eq=False)
class _Waiter:
    command: Publish
    done: trio.Event = field(default_factory=trio.Event)
    flush_turn: bool = False
    result: Published | None = None
    error: BaseException | None = None


class PublishCoalescer:
    """One per destination: at most one merged command in flight, the next one gathering meanwhile."""

    def __init__(self, submit: Submit) -> None:
        self._submit = submit
        self._waiting: list[_Waiter] = []
        self._flushing = False

    @property
    def idle(self) -> bool:
        return not self._flushing and not self._waiting

    async def publish(self, command: Publish) -> Published:
        waiter = _Waiter(command)
        self._waiting.append(waiter)
        if self._flushing:
            try:
                await waiter.done.wait()
            except trio.Cancelled:
                # Gone before its turn: never hand it the turn. (Already in a batch being committed: that publish
                # still happens, as a REST publish does when its client hangs up.)
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                raise
            if not waiter.flush_turn:
                return _answer(waiter)
        self._flushing = True
        with trio.CancelScope(shield=True):  # a started flush ends: others wait on it (bounded by the commit)
            try:
                await trio.lowlevel.checkpoint()  # let publishes of the same moment join this command
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
            finally:
                self._hand_over()
        return _answer(waiter)

    def _hand_over(self) -> None:
        """Whoever waits longest flushes next; nobody flushes for others forever (bounded latency per caller)."""
        if self._waiting:
            successor = self._waiting[0]
            successor.flush_turn = True
            successor.done.set()
        else:
            self._flushing = False

    async def _commit(self, batch: list[_Waiter]) -> None:
        if len(batch) == 1:
            await self._one(batch[0])
            return
        merged = Publish(batch[0].command.destination, [m for w in batch for m in w.command.messages])
        try:
            result = await self._submit(merged)
        except MomError:
            for waiter in batch:
                await self._one(waiter)
            return
        assert isinstance(result, Published)
        start = 0
        for waiter in batch:
            end = start + len(waiter.command.messages)
            waiter.result = Published(result.messages[start:end])
            start = end
            _finish(waiter)

    async def _one(self, waiter: _Waiter) -> None:
        try:
            result = await self._submit(waiter.command)
            assert isinstance(result, Published)
            waiter.result = result
        except MomError as exc:
            waiter.error = exc
        _finish(waiter)


def _finish(waiter: _Waiter) -> None:
    waiter.flush_turn = False
    waiter.done.set()


def _answer(waiter: _Waiter) -> Published:
    if waiter.error is not None:
        raise waiter.error
    assert waiter.result is not None
    return waiter.result
