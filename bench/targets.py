"""The performance targets, judged from the results of one run (ratios, so the machine cancels out).

Peers are compared on the same topology: mom's 3-node rows (over `transport`) against RabbitMQ's 3-node cluster
with a quorum queue of 3 members, its 1-node rows against RabbitMQ's single node.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.latency import complete, knee
from bench.results import Result


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None
    """None: could not be judged in this run (a side is missing), or a number that is reported, not judged."""
    reported: bool = False

    @property
    def verdict(self) -> str:
        if self.reported:
            return "reported"
        return {True: "met", False: "not met", None: "not measured"}[self.met]


def find(results: list[Result], system: str, scenario: str, topology: str) -> Result | None:
    for result in results:
        if (result.system, result.scenario, result.topology) == (system, scenario, topology) and not result.skipped:
            return result
    return None


def curve(results: list[Result], system: str, scenario: str, topology: str) -> list[Result]:
    """The points of one latency curve, by rising offered rate."""
    points = [
        r
        for r in results
        if (r.system, r.scenario, r.topology) == (system, scenario, topology) and not r.skipped and r.extra
    ]
    return sorted(points, key=lambda r: float(r.extra["offered_rate"]))


def _ratio(name: str, goal: str, top: Result | None, bottom: Result | None, minimum: float, what: str) -> Target:
    if top is None or bottom is None or bottom.msgs_per_s <= 0:
        return Target(name, goal, "a side of the ratio was not measured in this run", None)
    ratio = top.msgs_per_s / bottom.msgs_per_s
    measured = f"{ratio:.2f}x ({top.msgs_per_s:,.0f} vs {bottom.msgs_per_s:,.0f} {what})"
    return Target(name, goal, measured, ratio >= minimum)


def _cpu(name: str, mom: Result | None, peer: Result | None, most: float) -> Target:
    goal = f"<= {most:g}x RabbitMQ's broker CPU per message"
    ours, theirs = (r.server_us_per_msg if r else None for r in (mom, peer))
    if ours is None or theirs is None or theirs <= 0:
        return Target(name, goal, "a side was not measured in this run", None)
    return Target(name, goal, f"{ours / theirs:.2f}x ({ours:,.0f} vs {theirs:,.0f} µs/msg)", ours <= most * theirs)


def _latency_at(results: list[Result], topology: str, rate: float) -> Target:
    name = f"end-to-end p99 at {rate:,.0f} msg/s, {topology}, stream producer and consumer"
    goal = "< 10 ms"
    at = [r for r in curve(results, "mom", "latency-stream", topology) if r.extra["offered_rate"] == rate]
    p99 = at[0].p99_ms if at else None
    if p99 is None:
        return Target(name, goal, "not measured in this run", None)
    r = at[0]
    measured = f"p99 {p99:,.1f} ms ({r.extra['received']:,} of {r.extra['expected']:,} received)"
    return Target(name, goal, measured, p99 < 10.0 and complete(r))


def _knee(results: list[Result], scenario: str, topology: str) -> Target:
    name = f"{scenario.removeprefix('latency-').upper()} knee, {topology}"
    points = curve(results, "mom", scenario, topology)
    if not points:
        return Target(name, "highest offered rate with p99 < 50 ms", "not measured in this run", None, reported=True)
    found = knee(points)
    measured = "below the lowest rate measured" if found is None else f"{found:,.0f} msg/s"
    return Target(name, "highest offered rate with p99 < 50 ms", measured, None, reported=True)


def judge(results: list[Result], transport: str = "grpc") -> list[Target]:
    cluster = f"3 nodes {transport}"

    def mom(scenario: str, topology: str) -> Result | None:
        return find(results, "mom", scenario, topology)

    def rabbit(scenario: str, nodes: str) -> Result | None:
        return find(results, "rabbitmq", scenario, nodes)

    one = "one client, 1 message per frame"
    return [
        _ratio(
            f"{one}, 1 node",
            ">= RabbitMQ confirmed publishes (1 node)",
            mom("publish-stream-1", "1 node"),
            rabbit("publish-confirmed", "1 node"),
            1.0,
            "msgs/s",
        ),
        _ratio(
            f"{one}, {cluster}",
            ">= RabbitMQ confirmed publishes (3-node quorum queue)",
            mom("publish-stream-1", cluster),
            rabbit("publish-confirmed", "3 nodes"),
            1.0,
            "msgs/s",
        ),
        _ratio(
            "streaming consume with acks, 1 node",
            ">= RabbitMQ manual-ack consume (1 node)",
            mom("consume-stream", "1 node"),
            rabbit("consume-ack", "1 node"),
            1.0,
            "msgs/s",
        ),
        _ratio(
            f"streaming consume with acks, {cluster}",
            ">= RabbitMQ manual-ack consume (3-node quorum queue)",
            mom("consume-stream", cluster),
            rabbit("consume-ack", "3 nodes"),
            1.0,
            "msgs/s",
        ),
        _cpu(
            f"broker CPU per message, publish, {cluster}",
            mom("publish-stream-1", cluster),
            rabbit("publish-confirmed", "3 nodes"),
            2.0,
        ),
        _cpu(
            f"broker CPU per message, consume, {cluster}",
            mom("consume-stream", cluster),
            rabbit("consume-ack", "3 nodes"),
            2.0,
        ),
        _latency_at(results, cluster, 1000.0),
        _knee(results, "latency-rest", "1 node"),
        _knee(results, "latency-rest", cluster),
        _knee(results, "latency-stream", "1 node"),
        _knee(results, "latency-stream", cluster),
        _ratio(
            "publish 1/request, 1 node, durable",
            ">= 80% of the framework ceiling's requests/s",
            mom("publish-1", "1 node"),
            find(results, "ceiling", "publish-1", "1 node"),
            0.8,
            "requests/s",
        ),
        _ratio(
            f"publish 100/request, {cluster}",
            ">= RabbitMQ confirmed publishes (3-node quorum queue)",
            mom("publish-100", cluster),
            rabbit("publish-confirmed", "3 nodes"),
            1.0,
            "msgs/s",
        ),
        _ratio(
            f"streaming endpoint, one client, 10 per frame, {cluster}",
            ">= RabbitMQ confirmed publishes (3-node quorum queue)",
            mom("publish-stream", cluster),
            rabbit("publish-confirmed", "3 nodes"),
            1.0,
            "msgs/s",
        ),
        _ratio(
            f"replication stream ({transport})",
            ">= 20x one unary gRPC call per message per replica",
            mom("publish-100", cluster),
            find(results, "unary-grpc", "replicate", "3 processes"),
            20.0,
            "msgs/s",
        ),
    ]
