"""Prometheus metrics of one node, in a registry of its own (no process-global state).

Two kinds live here. Events are counted as they happen, by the code that sees them: HTTP requests (by route
template, never the raw path, so the label set stays bounded), fsyncs and their batch sizes, elections and
leader changes. Everything that is a state (queue depths, totals of the replicated state, Raft positions,
transport traffic, process resources) is read at scrape time by the collector in `mom.api.node_metrics`, which
`watch` attaches once the node's parts exist. docs/operations.md lists every series.

To add a metric: an event counter is one more attribute here; a state read from the node belongs in the
collector.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
FSYNC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
UNMATCHED_ROUTE = "unmatched"
"""The route label of requests that matched no endpoint (404s of made-up paths share it)."""
LOOP_LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The node's metrics; also the `GroupObserver` its Raft groups report to."""

    def __init__(self, *, max_destinations: int = 1000) -> None:
        self.max_destinations = max_destinations
        registry = self.registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        self.requests = Counter(
            "mom_http_requests", "HTTP requests answered", ["method", "route", "status"], registry=registry
        )
        self.latency = Histogram(
            "mom_http_request_duration_seconds",
            "Time to answer an HTTP request (until the headers of a stream)",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "mom_http_requests_in_progress", "HTTP requests being served, streams included", registry=registry
        )
        self.streams = Gauge("mom_streams_open", "Open push streams: SSE and WebSocket", ["kind"], registry=registry)
        self.published = Counter(
            "mom_published_messages", "Messages accepted (durable) through this node", ["kind"], registry=registry
        )
        self.delivered = Counter(
            "mom_delivered_messages", "Deliveries handed to consumers through this node", registry=registry
        )
        self.acked = Counter("mom_acked_messages", "Deliveries acknowledged through this node", registry=registry)
        self.logins = Counter(
            "mom_login_attempts", "Token requests by outcome (ok, failed, throttled)", ["outcome"], registry=registry
        )
        self.quota_refusals = Counter(
            "mom_quota_refusals", "Requests refused by a per-principal quota", ["kind"], registry=registry
        )
        self.dead_letters_held = Counter(
            "mom_dead_letters_held",
            "Dead letters kept in their source's outbox because their dead-letter queue was full or missing "
            "(counted at each refused attempt)",
            ["reason"],
            registry=registry,
        )
        self.dead_letters_waiting = Gauge(
            "mom_dead_letters_waiting",
            "Dead letters in the outboxes of the groups this node leads",
            registry=registry,
        )
        self.fsync = Histogram(
            "mom_fsync_duration_seconds",
            "Time of one flush of a Raft log (fsync under fsync=always), one per group commit",
            buckets=FSYNC_BUCKETS,
            registry=registry,
        )
        self.commit_batch = Histogram(
            "mom_group_commit_entries",
            "Log entries made durable by one flush (group commit batch size)",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.elections = Counter(
            "mom_raft_elections",
            "Terms started in the Raft groups of this node (each is an election)",
            registry=registry,
        )
        self.leader_changes = Counter(
            "mom_raft_leader_changes",
            "Times a Raft group of this node learned of a new leader",
            ["group_kind"],
            registry=registry,
        )

        self.loop_lag = Histogram(
            "mom_event_loop_lag_seconds",
            "How late the replication tick woke: time the event loop could not run (blocking work, a stall)",
            buckets=LOOP_LAG_BUCKETS,
            registry=registry,
        )
        self.ticks_skipped = Counter(
            "mom_raft_ticks_skipped",
            "Raft ticks skipped after a stall instead of fired back to back",
            registry=registry,
        )

    def observe_loop_lag(self, lag_s: float, skipped_ticks: int) -> None:
        """The router's tick woke `lag_s` late and skipped `skipped_ticks` ticks."""
        self.loop_lag.observe(max(0.0, lag_s))
        if skipped_ticks:
            self.ticks_skipped.inc(skipped_ticks)

    def watch(self, collector: Collector) -> None:
        """Add a collector read at every scrape (the node's state: see mom.api.node_metrics)."""
        self.registry.register(collector)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, method: str, route: str | None, status: int, seconds: float) -> None:
        template = route or UNMATCHED_ROUTE
        self.requests.labels(method, template, str(status)).inc()
        self.latency.labels(method, template).observe(seconds)

    # GroupObserver

    def synced(self, seconds: float, entries: int) -> None:
        self.fsync.observe(seconds)
        if entries:
            self.commit_batch.observe(entries)

    def new_terms(self, count: int) -> None:
        self.elections.inc(count)

    def new_leader(self, group_id: str, leader: str) -> None:
        self.leader_changes.labels(_group_kind(group_id)).inc()


def _group_kind(group_id: str) -> str:
    """`metadata`, `queue` or `topic`: a bounded label (the group id itself is per destination)."""
    return {"q": "queue", "t": "topic"}.get(group_id.partition(".")[0], "metadata")


class InFlight:
    """ASGI middleware: requests in progress and open push streams, counted for their whole life (a stream's
    too, which per-request hooks cannot see end)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        stream = "websocket" if kind == "websocket" else "sse" if scope["path"].endswith("/events") else None
        gauges = [self._metrics.in_progress] + ([self._metrics.streams.labels(stream)] if stream else [])
        for gauge in gauges:
            gauge.inc()
        try:
            await self._app(scope, receive, send)
        finally:
            for gauge in gauges:
                gauge.dec()
