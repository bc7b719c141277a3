"""The node's state as Prometheus series, read at scrape time (a custom collector).

Per destination, only its leader exports series: the leader's applied state is the freshest, every replica holds
the same totals, and exporting from one node means a `sum by (queue)` over the cluster counts each queue once.
When leadership moves, the series move with it and the totals carry on from the replicated value.

Cardinality is bounded: destinations come from the catalog sorted by name and only the first
`max_destinations` get series (`mom_metrics_destinations_omitted` counts the others); Raft series are per led
group within the same cap; per-peer series grow with the cluster size only; HTTP routes are templates.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from mom.broker import Broker
from mom.broker.commands import DeclareQueue, QueueInfo, TopicInfo
from mom.errors import NotFound
from mom.replication.group import RaftGroup
from mom.replication.manager import GroupManager
from mom.replication.router import Router
from mom.service import BrokerService
from mom.transports.base import PeerStatus

_Led = tuple[str, str, RaftGroup]
"""(kind, name, group) of a destination this node leads."""
_TOTALS = ("published", "delivered", "acked", "nacked", "dead_lettered")


@dataclass(frozen=True)
class NodeParts:
    """What the collector reads: the running node's parts (nothing here is changed by a scrape)."""

    node_id: str
    transport: str
    service: BrokerService
    manager: GroupManager
    router: Router
    peer_status: Callable[[str], PeerStatus]
    peers: list[str]
    """The other nodes of the cluster by id."""
    data_dir: Path
    rest_port: int
    max_destinations: int


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class NodeCollector(Collector):
    def __init__(self, parts: NodeParts) -> None:
        self._parts = parts
        self._process = psutil.Process()

    def collect(self) -> Iterator[Metric]:
        shown, omitted = self._led()
        yield from self._node()
        yield from self._destinations(shown, omitted)
        yield from self._raft(shown)
        yield from self._transport()
        yield from self._storage()

    # -- the node as a whole ---------------------------------------------------------------------------------

    def _node(self) -> Iterator[Metric]:
        parts = self._parts
        info = _gauge("mom_node_info", "This node: its id and transport (always 1)", ["node", "transport"])
        info.add_metric([parts.node_id, parts.transport], 1)
        yield info
        waiting = _gauge("mom_long_polls_waiting", "Receives (long-polls, SSE, streams) waiting for a message")
        waiting.add_metric([], parts.service.waiting_receives)
        yield waiting
        connections = _gauge("mom_http_connections_open", "Established TCP connections to the REST port")
        connections.add_metric([], self._connections())
        yield connections

    def _connections(self) -> int:
        try:
            sockets = self._process.net_connections(kind="tcp")
        except psutil.Error:
            return 0
        port = self._parts.rest_port
        return sum(1 for s in sockets if s.status == psutil.CONN_ESTABLISHED and s.laddr and s.laddr.port == port)

    # -- destinations ----------------------------------------------------------------------------------------

    def _led(self) -> tuple[list[_Led], int]:
        """(kind, name, group) of the destinations this node leads within the cap, and how many it leaves out."""
        queues, topics = self._parts.service.catalog.destination_names()
        names = sorted(
            [("queue", name) for name in queues] + [("topic", name) for name in topics],
            key=lambda kind_name: (kind_name[1], kind_name[0]),
        )
        led: dict[str, _Led] = {}
        for group in self._parts.manager.groups()[1:]:
            declared = self._parts.manager.declared_in(group.group_id)
            if declared is not None and group.is_leader:
                kind = "queue" if isinstance(declared, DeclareQueue) else "topic"
                led[f"{kind}\x00{declared.name}"] = (kind, declared.name, group)
        shown = [
            led[key] for kind, name in names[: self._parts.max_destinations] if (key := f"{kind}\x00{name}") in led
        ]
        return shown, len(led) - len(shown)

    def _destinations(self, shown: list[_Led], omitted: int) -> Iterator[Metric]:
        now = self._parts.service.now_ms()
        queue_messages = _gauge("mom_queue_messages", "Messages a queue holds, by state", ["queue", "state"])
        queue_bytes = _gauge("mom_queue_bytes", "Body bytes a queue holds", ["queue"])
        queue_age = _gauge(
            "mom_queue_oldest_message_age_seconds", "Age of a queue's oldest message (0: empty)", ["queue"]
        )
        queue_totals = {
            what: _counter(f"mom_queue_{what}_messages", f"Messages {what.replace('_', '-')} since declared", ["queue"])
            for what in _TOTALS
        }
        topic_messages = _gauge("mom_topic_messages", "Messages a topic retains", ["topic"])
        topic_bytes = _gauge("mom_topic_bytes", "Body bytes a topic retains", ["topic"])
        topic_published = _counter("mom_topic_published_messages", "Messages published since declared", ["topic"])
        sub_labels = ["topic", "subscription"]
        lag = _gauge("mom_subscription_lag_messages", "Messages of the topic a subscription has not acked", sub_labels)
        lag_s = _gauge(
            "mom_subscription_lag_seconds", "Age of the oldest message a subscription has not acked", sub_labels
        )
        sub_messages = _gauge("mom_subscription_messages", "Deliverable and leased messages", [*sub_labels, "state"])
        sub_totals = {
            what: _counter(
                f"mom_subscription_{what}_messages", f"Messages {what.replace('_', '-')} since subscribed", sub_labels
            )
            for what in _TOTALS[1:]
        }
        for kind, name, group in shown:
            broker: Broker = group.broker
            try:
                if kind == "queue":
                    self._queue(broker.queue_info(name, now), queue_messages, queue_bytes, queue_age, queue_totals)
                    continue
                topic = broker.topic_info(name, now)
            except NotFound:  # declared in the catalog, not yet in its own group
                continue
            self._topic(topic, topic_messages, topic_bytes, topic_published)
            for sub in topic.subscriptions:
                labels = [name, sub.name]
                lag.add_metric(labels, sub.lag)
                lag_s.add_metric(labels, sub.lag_ms / 1000)
                sub_messages.add_metric([*labels, "ready"], sub.ready)
                sub_messages.add_metric([*labels, "in_flight"], sub.in_flight)
                for what, family in sub_totals.items():
                    family.add_metric(labels, getattr(sub.totals, what))
        yield from (queue_messages, queue_bytes, queue_age, *queue_totals.values())
        yield from (topic_messages, topic_bytes, topic_published, lag, lag_s, sub_messages, *sub_totals.values())
        left_out = _gauge(
            "mom_metrics_destinations_omitted",
            "Destinations led here that have no series (beyond [metrics] max_destinations)",
        )
        left_out.add_metric([], omitted)
        yield left_out

    @staticmethod
    def _queue(
        info: QueueInfo,
        messages: GaugeMetricFamily,
        size: GaugeMetricFamily,
        age: GaugeMetricFamily,
        totals: dict[str, CounterMetricFamily],
    ) -> None:
        for state in ("ready", "delayed", "in_flight"):
            messages.add_metric([info.name, state], getattr(info, state))
        size.add_metric([info.name], info.bytes)
        age.add_metric([info.name], (info.oldest_age_ms or 0) / 1000)
        for what, family in totals.items():
            family.add_metric([info.name], getattr(info.totals, what))

    @staticmethod
    def _topic(
        info: TopicInfo, messages: GaugeMetricFamily, size: GaugeMetricFamily, published: CounterMetricFamily
    ) -> None:
        messages.add_metric([info.name], info.messages)
        size.add_metric([info.name], info.bytes)
        published.add_metric([info.name], info.totals.published)

    # -- Raft ------------------------------------------------------------------------------------------------

    def _raft(self, shown: list[_Led]) -> Iterator[Metric]:
        manager = self._parts.manager
        roles = _gauge("mom_raft_groups", "Raft groups on this node by role", ["role"])
        counts = {"leader": 0, "follower": 0, "candidate": 0}
        for group in manager.groups():
            core = group.core
            if core is not None:
                counts[core.role] = counts.get(core.role, 0) + 1
        for role, count in counts.items():
            roles.add_metric([role], count)
        yield roles
        meta = manager.meta
        is_meta_leader = _gauge("mom_raft_metadata_leader", "1 if this node leads the metadata group")
        is_meta_leader.add_metric([], 1 if meta.is_leader else 0)
        yield is_meta_leader
        labels = ["kind", "name"]
        term = _gauge("mom_raft_term", "Current term of a group this node leads", labels)
        commit = _gauge("mom_raft_commit_index", "Commit index of a group this node leads", labels)
        lag = _gauge("mom_raft_replica_lag_entries", "Entries a replica lacks (groups led here)", [*labels, "replica"])
        worst: dict[str, int] = dict.fromkeys(self._parts.peers, 0)
        led: list[_Led] = [("metadata", "meta", meta)] if meta.is_leader else []
        for kind, name, group in led + shown:
            term.add_metric([kind, name], group.term)
            commit.add_metric([kind, name], group.commit_index)
            for replica, behind in group.replica_lag().items():
                lag.add_metric([kind, name, replica], behind)
        for group in manager.groups():
            for replica, behind in group.replica_lag().items():
                if replica in worst:
                    worst[replica] = max(worst[replica], behind)
        follower = _gauge(
            "mom_raft_follower_lag_max_entries", "Most entries a peer lacks in any group led here", ["peer"]
        )
        for peer, behind in worst.items():
            follower.add_metric([peer], behind)
        yield from (term, commit, lag, follower)

    # -- the wire --------------------------------------------------------------------------------------------

    def _transport(self) -> Iterator[Metric]:
        traffic = self._parts.router.traffic
        up = _gauge("mom_peer_up", "1 if the link to a peer is up", ["peer"])
        seen = _gauge("mom_peer_last_seen_seconds", "Seconds since the last frame from a peer (-1: never)", ["peer"])
        families = {
            field: _counter(f"mom_transport_{field}", f"Replication {field.replace('_', ' ')} per peer", ["peer"])
            for field in ("sent_frames", "sent_bytes", "received_frames", "received_bytes", "dropped_frames")
        }
        now = trio.current_time()
        for peer in self._parts.peers:
            status = self._parts.peer_status(peer)
            up.add_metric([peer], 1 if status.connected else 0)
            seen.add_metric([peer], -1 if status.last_seen is None else now - status.last_seen)
            counts = traffic.get(peer)
            for field, family in families.items():
                family.add_metric([peer], getattr(counts, field) if counts is not None else 0)
        yield from (up, seen, *families.values())
        router = self._parts.router
        alive = _gauge("mom_peer_alive", "1 while the node liveness hears from a peer's node", ["peer"])
        for peer in self._parts.peers:
            alive.add_metric([peer], 1 if router.liveness.alive(peer) else 0)
        quiesced = _gauge("mom_raft_groups_quiesced", "Raft groups on this node that are idle: no ticks, no heartbeats")
        quiesced.add_metric([], len(router.groups) - router.awake)
        awake = _gauge("mom_raft_groups_awake", "Raft groups on this node that are ticked (not quiesced)")
        awake.add_metric([], router.awake)
        gate = router.campaigns
        campaigning = _gauge("mom_raft_campaigns", "Elections of this node's groups under way (holding a slot)")
        campaigning.add_metric([], gate.campaigning)
        waiting = _gauge("mom_raft_campaigns_waiting", "This node's groups due to campaign, waiting for a slot")
        waiting.add_metric([], gate.waiting)
        limit = _gauge("mom_raft_campaign_limit", "How many of this node's groups may campaign at once (adaptive)")
        limit.add_metric([], gate.limit)
        dormant = _gauge("mom_raft_groups_dormant", "Raft groups placed here not yet recovered since the node started")
        dormant.add_metric([], self._parts.manager.dormant)
        yield from (alive, quiesced, awake, campaigning, waiting, limit, dormant)

    # -- storage ---------------------------------------------------------------------------------------------

    def _storage(self) -> Iterator[Metric]:
        totals = {"log_bytes": 0.0, "applied_index": 0.0, "snapshot_index": 0.0}
        for group in self._parts.manager.groups():
            for key, value in group.storage_stats().items():
                if key in totals:
                    totals[key] += value
        storage = _gauge("mom_storage", "Log size and positions, summed over the groups of this node", ["what"])
        for what, value in totals.items():
            storage.add_metric([what], value)
        yield storage
        disk = _gauge("mom_data_dir_bytes", "The data directory's file system: total and free bytes", ["what"])
        try:
            usage = shutil.disk_usage(self._parts.data_dir)
        except OSError:
            pass
        else:
            disk.add_metric(["total"], usage.total)
            disk.add_metric(["free"], usage.free)
        yield disk
