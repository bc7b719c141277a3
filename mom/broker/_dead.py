"""Dead letters: messages a queue or subscription gives up on, on their way to a dead-letter queue.

The source only produces them; the Broker routes them, because only it knows whether the dead-letter queue
still exists and whether it has room. In a cluster the dead-letter queue usually lives in another Broker (its
own replication group), which this one cannot write to: the letters then wait in a durable outbox until the
leader has published them there.
"""

from __future__ import annotations

from collections import deque
from itertools import islice
from typing import Any, Literal

from msgspec import Struct

from mom.broker.commands import OutboxLetter
from mom.errors import InvalidInput

Reason = Literal["max_deliveries", "expired"]


class DeadLetter(Struct, frozen=True):
    queue: str
    id: str
    body: bytes
    binary: bool
    headers: dict[str, Any]
    group_id: str | None = None


def dead_letter(
    queue: str,
    source: str,
    reason: Reason,
    id: str,
    body: bytes,
    binary: bool,
    headers: dict[str, Any],
    group_id: str | None = None,
) -> DeadLetter:
    """The message as the dead-letter queue will hold it: same id, body, headers and group, plus where and why."""
    death = {"queue": source, "reason": reason}
    return DeadLetter(queue, id, body, binary, {**headers, "x-death": death}, group_id)


class OutboxState(Struct, array_like=True):
    """The outbox as a snapshot holds it."""

    next_seq: int
    letters: list[OutboxLetter]


class Outbox:
    """Dead letters bound for queues of other Brokers, kept in order until the leader says they were sent.

    Letters leave only through `forwarded`, so a leader that crashes between publishing and acknowledging
    leaves them for the next leader, which re-sends them under the same seq (a duplicate at the target).
    """

    __slots__ = ("_letters", "next_seq")

    def __init__(self, state: OutboxState) -> None:
        self.next_seq = state.next_seq
        self._letters = deque(state.letters)

    def state(self) -> OutboxState:
        return OutboxState(self.next_seq, list(self._letters))

    def add(self, letter: DeadLetter) -> None:
        seq = self.next_seq
        self.next_seq += 1
        self._letters.append(
            OutboxLetter(seq, letter.queue, letter.id, letter.body, letter.binary, letter.headers, letter.group_id)
        )

    def forwarded(self, upto_seq: int) -> None:
        """Forget every letter with seq <= `upto_seq`.

        A stale or repeated acknowledgement forgets nothing more. One naming a seq not given out yet cannot
        come from a leader that read this outbox, so it is refused rather than trusted.
        """
        if upto_seq >= self.next_seq:
            raise InvalidInput(f"upto_seq {upto_seq} names no letter yet: the next seq is {self.next_seq}")
        letters = self._letters
        while letters and letters[0].seq <= upto_seq:
            letters.popleft()

    def letters(self, limit: int) -> list[OutboxLetter]:
        return list(islice(self._letters, limit))

    def __len__(self) -> int:
        return len(self._letters)
