"""The chaos checker on small, hand-made histories: each finding is counted once, in the right place."""

from __future__ import annotations

from typing import Any

from mom.chaos.checker import Inputs, check, divergences
from mom.chaos.history import Delivery, FaultRecord, Mode, PublishCall, RequestOutcome, body_for, read_body
from mom.chaos.workload import QUEUE_REST, SUBSCRIPTIONS, TOPIC

QUEUE = f"queue:{QUEUE_REST}"
TOPIC_DEST = f"topic:{TOPIC}"
SUB_GROUPS = [f"sub:{TOPIC}/{name}" for name in SUBSCRIPTIONS]


class Run:
    """Builds a history: rounds 1 (kill-leader) and 2 (pause), calls and deliveries placed in them."""

    def __init__(self) -> None:
        self.calls: list[PublishCall] = []
        self.deliveries: list[Delivery] = []
        self.requests: list[RequestOutcome] = []
        self.faults = [
            FaultRecord(1, "kill-leader", ["mom1"], 10.0, healed=12.0, recovered=13.0),
            FaultRecord(2, "pause", ["mom2"], 20.0, healed=22.0, recovered=60.0),
        ]
        self._ids = 0

    def publish(
        self, dest: str, pids: list[str], *, ok: bool = True, mode: Mode = "default", round: int = 1
    ) -> list[str]:
        ids = [self.new_id() for _ in pids] if ok else None
        self.calls.append(
            PublishCall(len(self.calls) + 1, dest, mode, pids, "mom1", 11.0, round, ok=ok, ids=ids, ended=11.1)
        )
        return ids or []

    def new_id(self) -> str:
        self._ids += 1
        return f"m{self._ids}"

    def deliver(self, group: str, message_id: str, pid: str | None, *, body: Any = None, round: int = 1) -> None:
        pid_read, ok = read_body(body if body is not None else body_for(pid or ""))
        self.deliveries.append(Delivery(15.0, group, "rest", "mom2", message_id, pid_read, 0, 1, ok, round))

    def inputs(self, **extra: Any) -> Inputs:
        return Inputs(self.calls, self.deliveries, self.requests, self.faults, rounds=2, **extra)


def test_a_clean_run_finds_nothing() -> None:
    run = Run()
    [qid] = run.publish(QUEUE, ["p1"])
    run.deliver(QUEUE, qid, "p1")
    [tid] = run.publish(TOPIC_DEST, ["t1"])
    for group in SUB_GROUPS:
        run.deliver(group, tid, "t1")
    verdict = check(run.inputs(retained={TOPIC: [(0, tid, "t1")]}))
    assert verdict.passed
    assert (verdict.acked, verdict.deliveries, verdict.lost, verdict.phantom) == (2, 4, 0, 0)
    assert verdict.by_kind["kill-leader"].acked == 2


def test_acknowledged_and_never_delivered_is_lost_in_the_round_it_was_published() -> None:
    run = Run()
    run.publish(QUEUE, ["p1"], round=2)
    [tid] = run.publish(TOPIC_DEST, ["t1"], round=1)
    for group in SUB_GROUPS[:2]:
        run.deliver(group, tid, "t1")
    verdict = check(run.inputs(retained={TOPIC: [(0, tid, "t1")]}))
    assert verdict.lost == 2 and not verdict.passed
    assert verdict.by_kind["pause"].lost == 1 and verdict.by_kind["kill-leader"].lost == 1
    lost_topic = next(s for s in verdict.samples["lost"] if s["pid"] == "t1")
    assert lost_topic["missing_from"] == [SUB_GROUPS[2]]


def test_missing_from_the_retained_log_is_lost_even_if_delivered() -> None:
    run = Run()
    [tid] = run.publish(TOPIC_DEST, ["t1"])
    for group in SUB_GROUPS:
        run.deliver(group, tid, "t1")
    assert check(run.inputs(retained={TOPIC: []})).lost == 1


def test_unacknowledged_publishes_are_not_lost_and_may_be_stored() -> None:
    run = Run()
    run.publish(QUEUE, ["p1", "p2"], ok=False)
    run.deliver(QUEUE, "m-stored", "p2")
    verdict = check(run.inputs())
    assert (verdict.lost, verdict.phantom, verdict.unknown, verdict.unknown_stored) == (0, 0, 2, 1)
    assert verdict.passed


def test_phantom_and_corrupt_deliveries() -> None:
    run = Run()
    [qid] = run.publish(QUEUE, ["p1"])
    run.deliver(QUEUE, qid, "p1")
    run.deliver(QUEUE, "m-x", "never-sent", round=2)
    run.deliver(QUEUE, "m-y", None, body={"something": "else"})
    run.deliver(QUEUE, qid, "p1", body={"pid": "p1", "sum": 0})
    [tid] = run.publish(TOPIC_DEST, ["t1"])
    run.deliver(QUEUE, tid, "t1")  # a topic's message out of a queue
    verdict = check(run.inputs())
    assert verdict.phantom == 3 and verdict.corrupt == 1
    assert verdict.by_kind["pause"].phantom == 1
    assert not verdict.passed


def test_stored_twice_is_a_duplicate_by_mode_and_delivered_twice_is_a_redelivery() -> None:
    run = Run()
    run.publish(QUEUE, ["d1"], mode="dedup", ok=False)
    [first] = run.publish(QUEUE, ["d1"], mode="dedup")
    run.deliver(QUEUE, first, "d1")
    run.deliver(QUEUE, "m-other", "d1")
    [second] = run.publish(QUEUE, ["c1"])
    run.deliver(QUEUE, second, "c1")
    run.deliver(QUEUE, "m-again", "c1")
    run.deliver(QUEUE, "m-again-2", "c1")
    run.deliver(QUEUE, second, "c1")
    verdict = check(run.inputs())
    assert verdict.duplicates_dedup == 1 and verdict.duplicates_default == 1
    assert verdict.duplicate_messages_default == 2
    assert verdict.redeliveries == 1
    assert not verdict.passed, "a duplicate despite a dedup id breaks the contract"
    [sample] = verdict.samples["duplicates_dedup"]
    assert sample["ids"] == sorted([first, "m-other"]) and len(sample["calls"]) == 2


def test_duplicates_under_client_defaults_fail_the_run() -> None:
    """The client gives every message a dedup id by default, so its own retries must never store one twice."""
    run = Run()
    [one] = run.publish(QUEUE, ["c1"])
    run.deliver(QUEUE, one, "c1")
    run.deliver(QUEUE, "m-again", "c1")
    verdict = check(run.inputs())
    assert verdict.duplicates_default == 1 and verdict.duplicates_dedup == 0 and not verdict.passed


def test_a_slow_round_is_not_recovered_but_only_an_operator_or_the_end_makes_it_stuck() -> None:
    run = Run()
    verdict = check(run.inputs())
    assert verdict.rounds_not_recovered == [2] and verdict.by_kind["pause"].recovery_s == [38.0]
    assert verdict.by_kind["kill-leader"].recovery_s == [1.0]
    assert not verdict.stuck and verdict.passed
    run.faults[0].details["operator"] = {"problem": "mom2 is not ready", "restarted": ["mom1"]}
    verdict = check(run.inputs())
    assert verdict.rounds_stuck == [1] and verdict.by_kind["kill-leader"].stuck == 1
    assert verdict.stuck and not verdict.passed
    verdict = check(Run().inputs(final_problem="mom2 is not ready"))
    assert verdict.stuck and not verdict.passed


def test_failed_requests_and_slow_publishes_are_counted_per_kind() -> None:
    run = Run()
    run.requests += [
        RequestOutcome(5.0, 0.01, "mom1", "GET", "/v1/cluster", "503"),
        RequestOutcome(10.5, 4.5, "mom1", "POST", f"/v1/queues/{QUEUE_REST}/messages", "ReadTimeout"),
        RequestOutcome(21.0, 0.2, "mom3", "POST", f"/v1/queues/{QUEUE_REST}/receive", "404"),
        RequestOutcome(21.0, 0.2, "mom3", "POST", f"/v1/queues/{QUEUE_REST}/receive", "200"),
    ]
    verdict = check(run.inputs())
    assert dict(verdict.by_kind["warm-up"].failed_requests) == {"503": 1}
    assert dict(verdict.by_kind["kill-leader"].failed_requests) == {"ReadTimeout": 1}
    assert verdict.by_kind["kill-leader"].slowest_publish_s == 4.5
    assert dict(verdict.by_kind["pause"].failed_requests) == {"404": 1}


def test_replicas_must_be_prefixes_of_the_longest() -> None:
    a = [(0, "m1", "t1"), (1, "m2", "t2"), (2, "m3", "t3")]
    assert divergences({"mom1": a, "mom2": a[:2], "mom3": []}) == []
    forked = [(0, "m1", "t1"), (1, "m9", "t9")]
    assert divergences({"mom1": a, "mom2": forked}) == [("mom2", 1, [1, "m9", "t9"], [1, "m2", "t2"])]
    run = Run()
    verdict = check(run.inputs(replicas={TOPIC: {"mom1": a, "mom2": forked}}))
    assert verdict.divergent_replicas == 1 and not verdict.passed
    assert verdict.replica_lengths == {TOPIC: {"mom1": 3, "mom2": 2}}


def test_a_missing_or_short_copy_of_the_topic_is_a_lagging_replica() -> None:
    a = [(0, "m1", "t1"), (1, "m2", "t2")]
    run = Run()
    verdict = check(
        run.inputs(replicas={TOPIC: {"mom1": a, "mom2": a[:1]}}, expected_replicas={TOPIC: ["mom1", "mom2", "mom3"]})
    )
    assert verdict.divergent_replicas == 0 and verdict.lagging_replicas == 2 and not verdict.passed
    assert {s["node"] for s in verdict.samples["lagging"]} == {"mom2", "mom3"}
