"""Per-principal limits on what one caller may hold open on this node at once: streams and long-polls.

A long-lived request costs the node a connection, a task and, for a long-poll, a wake-up registration; without
a bound one principal could hold them all. Counting is per node (these are per-node resources) and in memory:
a count is taken when the request starts and given back when it ends, however it ends. Admins are exempt (the
operator's own tools). The per-principal bound on destinations is cluster-wide instead, in the catalog.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Literal

from mom.api.auth import Principal
from mom.api.metrics import Metrics
from mom.config import QuotasSection
from mom.errors import LongPollQuota, QuotaExceeded, StreamQuota

Kind = Literal["streams", "long_polls"]


class Quotas:
    def __init__(self, limits: QuotasSection, metrics: Metrics) -> None:
        self._limits = limits
        self._metrics = metrics
        self._held: dict[tuple[Kind, str], int] = {}

    def held(self, kind: Kind, subject: str) -> int:
        return self._held.get((kind, subject), 0)

    @contextmanager
    def hold(self, kind: Kind, caller: Principal) -> Iterator[None]:
        """Count one `kind` for `caller` while the block runs; a QuotaExceeded subclass if at the limit."""
        release = self.acquire(kind, caller)
        try:
            yield
        finally:
            release()

    def acquire(self, kind: Kind, caller: Principal) -> Callable[[], None]:
        """Count one `kind` for `caller` until the returned function is called (calling it again does nothing)."""
        if caller.is_admin:
            return lambda: None
        key = (kind, caller.subject)
        limit: int = getattr(self._limits, kind)
        if self._held.get(key, 0) >= limit:
            self._metrics.quota_refusals.labels(kind).inc()
            error: QuotaExceeded = (
                StreamQuota(f"{caller.subject} has {limit} streams open on this node, the most allowed")
                if kind == "streams"
                else LongPollQuota(f"{caller.subject} has {limit} long-polls waiting on this node, the most allowed")
            )
            raise error
        self._held[key] = self._held.get(key, 0) + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            remaining = self._held[key] - 1
            if remaining:
                self._held[key] = remaining
            else:
                del self._held[key]

        return release
