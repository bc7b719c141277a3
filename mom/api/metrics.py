"""Prometheus metrics of one node, in a registry of its own (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _reader(stats: Callable[[], dict[str, float]], key: str) -> Callable[[], float]:
    return lambda: stats()[key]
