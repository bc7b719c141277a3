"""Prometheus metrics of one node, in a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, storage_stats: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mom_http_requests", "HTTP requests answered", ["method", "status"], registry=self.registry
        )
        self.published = Counter(
            "mom_published_messages", "Messages accepted (durable)", ["kind"], registry=self.registry
        )
        self.delivered = Counter("mom_delivered_messages", "Deliveries handed to consumers", registry=self.registry)
        self.acked = Counter("mom_acked_messages", "Deliveries acknowledged", registry=self.registry)
        self.dead_letters_held = Counter(
            "mom_dead_letters_held",
            "Dead letters kept in their source's outbox because their dead-letter queue was full or missing "
            "(counted at each refused attempt)",
            ["reason"],
            registry=self.registry,
        )
        self.dead_letters_waiting = Gauge(
            "mom_dead_letters_waiting",
            "Dead letters in the outboxes of the groups this node leads",
            registry=self.registry,
        )
        storage = Gauge("mom_storage", "Log and snapshot positions and sizes", ["what"], registry=self.registry)
        for what in ("log_bytes", "applied_index", "snapshot_index"):
            storage.labels(what).set_function(_reader(storage_stats, what))
        self.loop_lag = Histogram(
            "mom_event_loop_lag_seconds",
            "How late the replication tick woke: time the event loop could not run (blocking work, a stall)",
            buckets=LOOP_LAG_BUCKETS,
            registry=self.registry,
        )
        self.ticks_skipped = Counter(
            "mom_raft_ticks_skipped",
            "Raft ticks skipped after a stall instead of fired back to back",
            registry=self.registry,
        )

    def observe_loop_lag(self, lag_s: float, skipped_ticks: int) -> None:
        """The router's tick woke `lag_s` late and skipped `skipped_ticks` ticks."""
        self.loop_lag.observe(max(0.0, lag_s))
        if skipped_ticks:
            self.ticks_skipped.inc(skipped_ticks)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reader(stats: Callable[[], dict[str, float]], key: str) -> Callable[[], float]:
    return lambda: stats()[key]
