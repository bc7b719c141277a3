"""The verdict on a chaos run, computed from its history alone (pure: no I/O, so it can be re-run on files).

- **lost**: a payload whose publish was acknowledged (2xx) but that some consumer group never received by the
  end of the drain (a queue: its consumers; a topic: each of its subscriptions), or that is missing from the
  topic's retained log.
- **phantom**: a delivery of a payload never sent to that destination, or one whose body is not the one sent
  (`corrupt`, counted apart).
- **stored duplicates**: one payload stored under two or more message ids (seen in publish answers, deliveries
  and the retained log), split by mode (dedup ids given by the producer, or the client's defaults, under which
  the client gives every message a random dedup id of its own): either breaks the contract.
- **redeliveries**: the same message id delivered again to the same group; at-least-once allows them.
- **topic order**: every replica's copy of the topic must be a prefix of the longest one (same offsets, same
  message ids, same payloads); a replica that differs anywhere is `divergent`.
- **stuck**: a round whose cluster did not settle within the bound after the heal, and above all the end of the
  run: every node ready and every destination with an agreed leader.

Every count is also broken down by the fault kind of the round it happened in (round 0 is the warm-up before the
first fault; `drain` is after the last round).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from mom.chaos.history import Delivery, FaultRecord, PublishCall, RequestOutcome, is_failure
from mom.chaos.replicas import ReplicaLog
from mom.chaos.workload import consumer_groups

SAMPLES = 20
"""Examples kept per kind of finding, for the report."""


@dataclass
class Inputs:
    calls: list[PublishCall]
    deliveries: list[Delivery]
    requests: list[RequestOutcome]
    faults: list[FaultRecord]
    rounds: int
    retained: dict[str, ReplicaLog | None] = field(default_factory=dict)
    """Per topic, its log as replayed over REST at the end (None: the replay failed)."""
    replicas: dict[str, dict[str, ReplicaLog]] = field(default_factory=dict)
    """Per topic, each node's copy read from its disk."""
    replica_errors: dict[str, str] = field(default_factory=dict)
    expected_replicas: dict[str, list[str]] = field(default_factory=dict)
    """Per topic, the nodes that should hold a copy (its placement)."""
    final_problem: str | None = None
    """What kept the cluster from settling at the end (None: it settled)."""
    left_on_server: dict[str, int] = field(default_factory=dict)
    recovery_timeout_s: float = 30.0
    """A round that settled later than this after its heal counts as not recovered (its time is still shown)."""


@dataclass
class KindStats:
    rounds: int = 0
    acked: int = 0
    lost: int = 0
    phantom: int = 0
    corrupt: int = 0
    duplicates_dedup: int = 0
    duplicates_default: int = 0
    redeliveries: int = 0
    recovery_s: list[float] = field(default_factory=list)
    not_recovered: int = 0
    stuck: int = 0
    failed_requests: Counter[str] = field(default_factory=Counter)
    slowest_publish_s: float = 0.0
    """The longest a publish request took (to its answer or its failure): a hang shows here."""

    def as_json(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "acked": self.acked,
            "lost": self.lost,
            "phantom": self.phantom,
            "corrupt": self.corrupt,
            "duplicates_dedup": self.duplicates_dedup,
            "duplicates_default": self.duplicates_default,
            "redeliveries": self.redeliveries,
            "recovery_s_max": max(self.recovery_s) if self.recovery_s else None,
            "recovery_s_median": round(statistics.median(self.recovery_s), 2) if self.recovery_s else None,
            "not_recovered": self.not_recovered,
            "stuck": self.stuck,
            "failed_requests": dict(self.failed_requests.most_common()),
            "slowest_publish_s": self.slowest_publish_s,
        }


@dataclass
class Verdict:
    publish_calls: int = 0
    publish_calls_failed: int = 0
    acked: int = 0
    unknown: int = 0
    """Payloads published without an acknowledgement (the outcome is unknown to the producer)."""
    unknown_stored: int = 0
    """Of those, how many were stored anyway (delivered): allowed, since the producer was not told either way."""
    deliveries: int = 0
    lost: int = 0
    phantom: int = 0
    corrupt: int = 0
    duplicates_dedup: int = 0
    duplicates_default: int = 0
    duplicate_messages_default: int = 0
    """Extra stored copies behind `duplicates_default` (one payload stored three times counts two)."""
    redeliveries: int = 0
    divergent_replicas: int = 0
    lagging_replicas: int = 0
    """Copies of a topic that are missing or shorter than the longest at the end, when all were caught up."""
    replica_lengths: dict[str, dict[str, int]] = field(default_factory=dict)
    rounds_not_recovered: list[int] = field(default_factory=list)
    rounds_stuck: list[int] = field(default_factory=list)
    """Rounds the cluster settled after only with an operator's restart (or not at all)."""
    final_problem: str | None = None
    by_kind: dict[str, KindStats] = field(default_factory=dict)
    samples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    left_on_server: dict[str, int] = field(default_factory=dict)
    replica_errors: dict[str, str] = field(default_factory=dict)

    @property
    def stuck(self) -> bool:
        return self.final_problem is not None or bool(self.rounds_stuck)

    @property
    def passed(self) -> bool:
        """Every guarantee held: what `mom chaos` exits non-zero on when False."""
        return not (
            self.lost
            or self.phantom
            or self.corrupt
            or self.duplicates_dedup
            or self.duplicates_default
            or self.divergent_replicas
            or self.lagging_replicas
            or self.stuck
            or self.replica_errors
        )

    def sample(self, what: str, item: dict[str, Any]) -> None:
        if len(self.samples[what]) < SAMPLES:
            self.samples[what].append(item)

    def as_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "publish_calls": self.publish_calls,
            "publish_calls_failed": self.publish_calls_failed,
            "acked": self.acked,
            "unknown": self.unknown,
            "unknown_stored": self.unknown_stored,
            "deliveries": self.deliveries,
            "lost": self.lost,
            "phantom": self.phantom,
            "corrupt": self.corrupt,
            "duplicates_dedup": self.duplicates_dedup,
            "duplicates_default": self.duplicates_default,
            "duplicate_messages_default": self.duplicate_messages_default,
            "redeliveries": self.redeliveries,
            "divergent_replicas": self.divergent_replicas,
            "lagging_replicas": self.lagging_replicas,
            "replica_lengths": self.replica_lengths,
            "replica_errors": self.replica_errors,
            "rounds_not_recovered": self.rounds_not_recovered,
            "rounds_stuck": self.rounds_stuck,
            "stuck": self.stuck,
            "final_problem": self.final_problem,
            "left_on_server": self.left_on_server,
            "by_kind": {kind: stats.as_json() for kind, stats in self.by_kind.items()},
            "samples": dict(self.samples),
        }


class _Rounds:
    """Maps a round number or a moment to the fault kind of its round."""

    def __init__(self, faults: list[FaultRecord], rounds: int) -> None:
        self._starts = [(f.started, f.round) for f in sorted(faults, key=lambda f: f.started)]
        self._kinds = {f.round: f.kind for f in faults}
        self._last = rounds

    def kind(self, number: int) -> str:
        if number == 0:
            return "warm-up"
        if number > self._last:
            return "drain"
        return self._kinds.get(number, "unplanned")

    def at(self, moment: float) -> int:
        number = 0
        for started, round_number in self._starts:
            if started > moment:
                break
            number = round_number
        return number


def check(inputs: Inputs) -> Verdict:
    verdict = Verdict(final_problem=inputs.final_problem, left_on_server=dict(inputs.left_on_server))
    verdict.replica_errors = dict(inputs.replica_errors)
    rounds = _Rounds(inputs.faults, inputs.rounds)

    def stats(number: int) -> KindStats:
        return verdict.by_kind.setdefault(rounds.kind(number), KindStats())

    for fault in inputs.faults:
        kind_stats = stats(fault.round)
        kind_stats.rounds += 1
        if fault.recovered is not None and fault.healed is not None:
            kind_stats.recovery_s.append(round(fault.recovered - fault.healed, 2))
        if (
            fault.recovered is None
            or fault.healed is None
            or fault.recovered - fault.healed > inputs.recovery_timeout_s
        ):
            kind_stats.not_recovered += 1
            verdict.rounds_not_recovered.append(fault.round)
        if "operator" in fault.details or fault.recovered is None:
            kind_stats.stuck += 1
            verdict.rounds_stuck.append(fault.round)

    attempted: dict[str, dict[str, PublishCall]] = defaultdict(dict)
    acked: dict[str, set[str]] = defaultdict(set)
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    calls_of: dict[str, list[PublishCall]] = defaultdict(list)
    for call in inputs.calls:
        verdict.publish_calls += 1
        verdict.publish_calls_failed += not call.ok
        for i, pid in enumerate(call.pids):
            attempted[call.dest].setdefault(pid, call)
            calls_of[pid].append(call)
            if call.ok:
                acked[call.dest].add(pid)
                if call.ids is not None and i < len(call.ids):
                    ids[(call.dest, pid)].add(call.ids[i])
    for dest, pids in acked.items():
        verdict.acked += len(pids)
        for pid in pids:
            stats(attempted[dest][pid].round).acked += 1

    delivered: dict[str, set[str]] = defaultdict(set)
    seen_ids: set[tuple[str, str]] = set()
    for delivery in inputs.deliveries:
        verdict.deliveries += 1
        dest = _destination_of(delivery.group)
        if (delivery.group, delivery.id) in seen_ids:
            verdict.redeliveries += 1
            stats(delivery.round).redeliveries += 1
        seen_ids.add((delivery.group, delivery.id))
        if delivery.pid is None or delivery.pid not in attempted[dest]:
            verdict.phantom += 1
            stats(delivery.round).phantom += 1
            verdict.sample("phantom", _delivery_json(delivery))
            continue
        if not delivery.body_ok:
            verdict.corrupt += 1
            stats(delivery.round).corrupt += 1
            verdict.sample("corrupt", _delivery_json(delivery))
        delivered[delivery.group].add(delivery.pid)
        ids[(dest, delivery.pid)].add(delivery.id)

    in_log: dict[str, set[str]] = {}
    for topic, retained in inputs.retained.items():
        if retained is None:
            continue
        in_log[topic] = {stored for _, _, stored in retained if stored is not None}
        for _, message_id, stored in retained:
            if stored is not None and stored in attempted[f"topic:{topic}"]:
                ids[(f"topic:{topic}", stored)].add(message_id)

    for dest, pids in sorted(acked.items()):
        groups = consumer_groups(dest)
        name = dest.split(":", 1)[1] if dest.startswith("topic:") else None
        for pid in sorted(pids):
            missing = [g for g in groups if pid not in delivered[g]]
            if name is not None and name in in_log and pid not in in_log[name]:
                missing.append(f"retained log of {name}")
            if missing:
                verdict.lost += 1
                first = attempted[dest][pid]
                stats(first.round).lost += 1
                verdict.sample(
                    "lost", {"pid": pid, "dest": dest, "missing_from": missing, **_calls_json(calls_of[pid])}
                )

    for dest, calls in attempted.items():
        for pid in calls:
            if pid in acked[dest]:
                continue
            verdict.unknown += 1
            if any(pid in delivered[g] for g in consumer_groups(dest)):
                verdict.unknown_stored += 1

    for (dest, pid), copies in sorted(ids.items()):
        if len(copies) < 2:
            continue
        first = attempted[dest][pid]
        if first.mode == "dedup":
            verdict.duplicates_dedup += 1
            stats(first.round).duplicates_dedup += 1
        else:
            verdict.duplicates_default += 1
            verdict.duplicate_messages_default += len(copies) - 1
            stats(first.round).duplicates_default += 1
        item = {"pid": pid, "dest": dest, "mode": first.mode, "ids": sorted(copies), **_calls_json(calls_of[pid])}
        verdict.sample(f"duplicates_{first.mode}", item)

    for request in inputs.requests:
        kind_stats = stats(rounds.at(request.at))
        if is_failure(request.outcome):
            kind_stats.failed_requests[request.outcome] += 1
        if request.method == "POST" and request.path.endswith("/messages"):
            kind_stats.slowest_publish_s = max(kind_stats.slowest_publish_s, request.seconds)

    for topic, logs in inputs.replicas.items():
        verdict.replica_lengths[topic] = {node: len(log) for node, log in logs.items()}
        references: dict[str, ReplicaLog] = dict(logs)
        retained = inputs.retained.get(topic)
        if retained is not None:
            references["rest-replay"] = retained
        longest = max((len(log) for log in logs.values()), default=0)
        for node in sorted(set(inputs.expected_replicas.get(topic, [])) | set(logs)):
            if node in inputs.replica_errors:
                continue
            if node not in logs or len(logs[node]) < longest:
                verdict.lagging_replicas += 1
                held = len(logs[node]) if node in logs else None
                verdict.sample("lagging", {"topic": topic, "node": node, "messages": held, "longest": longest})
        for node, offset, theirs, ours in divergences(references):
            verdict.divergent_replicas += 1
            verdict.sample(
                "divergent", {"topic": topic, "node": node, "offset": offset, "theirs": theirs, "longest": ours}
            )
    return verdict


def divergences(logs: dict[str, ReplicaLog]) -> Iterable[tuple[str, int, Any, Any]]:
    """(node, offset, its entry, the longest log's entry) for each log that is not a prefix of the longest."""
    if not logs:
        return []
    longest = max(logs.values(), key=len)
    found = []
    for node, log in sorted(logs.items()):
        for position, entry in enumerate(log):
            if entry != longest[position]:
                found.append((node, entry[0], list(entry), list(longest[position])))
                break
    return found


def _destination_of(group: str) -> str:
    kind, name = group.split(":", 1)
    return group if kind == "queue" else f"topic:{name.split('/', 1)[0]}"


def _delivery_json(delivery: Delivery) -> dict[str, Any]:
    return {
        "group": delivery.group,
        "id": delivery.id,
        "pid": delivery.pid,
        "via": delivery.via,
        "node": delivery.node,
        "at": delivery.at,
        "round": delivery.round,
    }


def _calls_json(calls: list[PublishCall]) -> dict[str, Any]:
    return {
        "calls": [
            {
                "call": c.call,
                "round": c.round,
                "node": c.node,
                "started": c.started,
                "ended": c.ended,
                "ok": c.ok,
                "error": c.error,
                "batch": len(c.pids),
            }
            for c in calls
        ]
    }
