"""Redrive: move dead letters back to the queue they died in (or to a queue of the caller's choice).

The dead-letter queue's leader leases a batch, publishes each letter to its target with a dedup id derived
from the letter's place in the dead-letter queue, and only then acks it. A redrive cut short (a crash, a lost
leadership, a full target) leaves the rest leased until their visibility timeout ends; running it again
re-sends at most the letters whose ack was lost, and the target drops those as duplicates within its dedup
window. Letters that cannot move (no `x-death` and no `to`, a target that is gone or not allowed) stay in the
dead-letter queue and are made visible again at the end.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from mom.broker.commands import Ack, ChangeVisibility, Delivery, NewMessage, QueueRef
from mom.errors import MomError, NotFound
from mom.service import BrokerService, Handle

BATCH = 100
LEASE_MS = 120_000
"""How long a letter being moved stays invisible in the dead-letter queue if the redrive stops halfway."""


@dataclass
class RedriveResult:
    moved: int = 0
    by_queue: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    """Letters left in the dead-letter queue: no source queue known, or one that is gone or not allowed."""


def source_of(delivery: Delivery) -> str | None:
    death = delivery.headers.get("x-death")
    queue = death.get("queue") if isinstance(death, dict) else None
    return queue if isinstance(queue, str) else None


def _letter(dlq: str, delivery: Delivery) -> NewMessage:
    incarnation, offset, _ = delivery.receipt.split(".")
    headers = {k: v for k, v in delivery.headers.items() if k != "x-death"}
    return NewMessage(
        id=str(uuid.uuid4()),
        body=delivery.body,
        binary=delivery.binary,
        headers=headers,
        dedup_id=f"redrive:{dlq}:{incarnation}.{offset}",
        group_id=delivery.group_id,
    )


async def redrive(
    service: BrokerService,
    group: Handle,
    dlq: str,
    *,
    limit: int | None,
    to: str | None,
    may_write: Callable[[str], bool],
) -> RedriveResult:
    """Move up to `limit` letters (None: all there are now) from `dlq`, which `group` (led here) holds."""
    source = QueueRef(dlq)
    result = RedriveResult()
    held = group.state.queue_info(dlq, service.now_ms()).messages
    budget = held if limit is None else min(limit, held)
    left: list[str] = []
    try:
        while result.moved + len(left) < budget:
            want = min(BATCH, budget - result.moved - len(left))
            batch = await service.receive(group, source, max_messages=want, wait_s=0, visibility_timeout_ms=LEASE_MS)
            if not batch:
                break
            by_target: dict[str, list[Delivery]] = {}
            for delivery in batch:
                target = to or source_of(delivery)
                if target is None or target == dlq or not may_write(target):
                    left.append(delivery.receipt)
                else:
                    by_target.setdefault(target, []).append(delivery)
            for target, deliveries in by_target.items():
                try:
                    await service.publish_to_queue(target, [_letter(dlq, d) for d in deliveries])
                except NotFound:
                    left.extend(d.receipt for d in deliveries)
                    continue
                await service.submit(group, Ack(source, [d.receipt for d in deliveries]))
                result.moved += len(deliveries)
                result.by_queue[target] = result.by_queue.get(target, 0) + len(deliveries)
    finally:
        if left:
            result.skipped = len(left)
            with contextlib.suppress(MomError):  # else they become visible when their lease ends anyway
                await service.submit(group, ChangeVisibility(source, left, [0] * len(left)))
    return result
