"""Publish coalescing: concurrent publishes to one destination become one log command.

Group commit one level up. Every log command costs the same fixed work (encoding, a Raft entry, an apply, a wake-
up) whatever it carries, so many small publishes in flight at once (one message per request or per WebSocket frame)
are cheaper as one command. Publishes that arrive while a command for their destination is being committed wait
for it and then go together as the next one.

Each caller still gets exactly its own answer: its slice of the merged result (offsets and ids in its order,
dedup applied as if the publishes had been sent one after another, which they are, within the merged command).

Bounds: a merged command holds at most what one client request may (`max_messages`, `max_bytes` of bodies;
one publish bigger than that still goes, alone), so merging never makes an entry the replication layer would
not otherwise see. The publishes waiting for the next turn are bounded too; beyond that a publish is refused
at once with `Overloaded` (429, Retry-After) instead of queueing without limit.

When a merged command fails, what each caller is told depends on what the failure says about the write:
- a refusal of the command's content (a queue that cannot take them all): each publish is tried again on its
  own, so a caller never inherits an error that its own publish would not have met;
- a failure of the group (no leader, overload, storage; a 503 or a 429 that is not `QueueFull`): every caller
  gets it, since each publish alone would meet it too;
- `OutcomeUnknown` (the leader went away after the command was proposed: it may still commit): every caller
  gets it and nothing is sent again, since a second copy without dedup ids would be stored twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

from mom.broker.commands import Publish, Published, Result
from mom.config import LimitsSection
from mom.errors import MomError, Overloaded, QueueFull, StorageError, Unavailable

Submit = Callable[[Publish], Awaitable[Result]]

WAITING_COMMANDS = 4
"""How many merged commands' worth of publishes may wait for their turn, per destination."""


@dataclass(frozen=True)
class CoalescerLimits:
    max_messages: int = 1000
    max_bytes: int = 10 * 1024 * 1024
    max_waiting_messages: int = WAITING_COMMANDS * 1000
    max_waiting_bytes: int = WAITING_COMMANDS * 10 * 1024 * 1024

    @classmethod
    def from_settings(cls, limits: LimitsSection) -> CoalescerLimits:
        """As large as one client request may be; `WAITING_COMMANDS` of those may wait."""
        return cls(
            max_messages=limits.max_batch_messages,
            max_bytes=limits.max_batch_bytes,
            max_waiting_messages=WAITING_COMMANDS * limits.max_batch_messages,
            max_waiting_bytes=WAITING_COMMANDS * limits.max_batch_bytes,
        )


@dataclass(eq=False)
class _Waiter:
    command: Publish
    size: int
    done: trio.Event = field(default_factory=trio.Event)
    flush_turn: bool = False
    result: Published | None = None
    error: BaseException | None = None

    @property
    def count(self) -> int:
        return len(self.command.messages)


class PublishCoalescer:
    """One per destination: at most one merged command in flight, the next one gathering meanwhile."""

    def __init__(self, submit: Submit, limits: CoalescerLimits | None = None) -> None:
        self._submit = submit
        self._limits = limits or CoalescerLimits()
        self._waiting: list[_Waiter] = []
        self._waiting_messages = 0
        self._waiting_bytes = 0
        self._flushing = False

    @property
    def idle(self) -> bool:
        return not self._flushing and not self._waiting

    async def publish(self, command: Publish) -> Published:
        waiter = _Waiter(command, sum(len(m.body) for m in command.messages))
        self._admit(waiter)
        if self._flushing:
            try:
                await waiter.done.wait()
            except trio.Cancelled:
                # Gone before its turn: never hand it the turn. (Already in a batch being committed: that publish
                # still happens, as a REST publish does when its client hangs up.)
                if waiter in self._waiting:
                    self._remove(waiter)
                if waiter.flush_turn:  # it was handed the turn just now: pass it on
                    self._hand_over()
                raise
            if not waiter.flush_turn:
                return _answer(waiter)
        self._flushing = True
        with trio.CancelScope(shield=True):  # a started flush ends: others wait on it (bounded by the commit)
            try:
                await trio.lowlevel.checkpoint()  # let publishes of the same moment join this command
                await self._commit(self._take())
            finally:
                self._hand_over()
        return _answer(waiter)

    def _admit(self, waiter: _Waiter) -> None:
        """Queue `waiter`, unless too much is waiting already (then 429: nothing was written)."""
        limits = self._limits
        if self._waiting and (
            self._waiting_messages + waiter.count > limits.max_waiting_messages
            or self._waiting_bytes + waiter.size > limits.max_waiting_bytes
        ):
            raise Overloaded(
                f"{self._waiting_messages} messages to this destination are waiting to be written; retry shortly"
            )
        self._waiting.append(waiter)
        self._waiting_messages += waiter.count
        self._waiting_bytes += waiter.size

    def _remove(self, waiter: _Waiter) -> None:
        self._waiting.remove(waiter)
        self._waiting_messages -= waiter.count
        self._waiting_bytes -= waiter.size

    def _take(self) -> list[_Waiter]:
        """The longest-waiting publishes that fit in one command (at least one, whatever its size)."""
        limits = self._limits
        batch: list[_Waiter] = []
        messages = size = 0
        for waiter in self._waiting:
            if batch and (messages + waiter.count > limits.max_messages or size + waiter.size > limits.max_bytes):
                break
            batch.append(waiter)
            messages += waiter.count
            size += waiter.size
        del self._waiting[: len(batch)]
        self._waiting_messages -= messages
        self._waiting_bytes -= size
        return batch

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
            if not isinstance(result, Published):
                raise MomError(f"a publish answered {type(result).__name__}")
        except MomError as exc:
            if _whole_group(exc):
                for waiter in batch:
                    waiter.error = exc
                    _finish(waiter)
            else:
                for waiter in batch:
                    await self._one(waiter)
            return
        except Exception as exc:  # a bug: every caller hears of it, none waits forever
            for waiter in batch:
                waiter.error = exc
                _finish(waiter)
            return
        start = 0
        for waiter in batch:
            end = start + waiter.count
            waiter.result = Published(result.messages[start:end])
            start = end
            _finish(waiter)

    async def _one(self, waiter: _Waiter) -> None:
        try:
            result = await self._submit(waiter.command)
            if not isinstance(result, Published):
                raise MomError(f"a publish answered {type(result).__name__}")
            waiter.result = result
        except Exception as exc:
            waiter.error = exc
        _finish(waiter)


def _whole_group(exc: MomError) -> bool:
    """A failure every publish to this group would meet now (or one whose write may still happen)."""
    return isinstance(exc, Unavailable | StorageError) or (
        isinstance(exc, Overloaded) and not isinstance(exc, QueueFull)
    )


def _finish(waiter: _Waiter) -> None:
    waiter.flush_turn = False
    waiter.done.set()


def _answer(waiter: _Waiter) -> Published:
    if waiter.error is not None:
        raise waiter.error
    if waiter.result is None:
        raise MomError("a coalesced publish ended without an answer")
    return waiter.result
