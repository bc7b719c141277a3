"""Dead letters: messages a queue or subscription gives up on, on their way to a dead-letter queue.

The source only produces them; the Broker routes them, because only it knows whether the dead-letter queue
still exists and whether it has room.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import Struct

Reason = Literal["max_deliveries", "expired"]


class DeadLetter(Struct, frozen=True):
    queue: str
    id: str
    body: bytes
    binary: bool
    headers: dict[str, Any]


def dead_letter(
    queue: str, source: str, reason: Reason, id: str, body: bytes, binary: bool, headers: dict[str, Any]
) -> DeadLetter:
    """The message as the dead-letter queue will hold it: same id, body and headers, plus where and why."""
    return DeadLetter(queue, id, body, binary, {**headers, "x-death": {"queue": source, "reason": reason}})
