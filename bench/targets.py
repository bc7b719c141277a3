"""The issue's performance targets, judged from the results of one run (ratios, so the machine cancels out)."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import Result


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    met: bool | None
    """None: could not be judged in this run (a side is missing or the feature does not exist)."""

    @property
    def verdict(self) -> str:
        return {True: "met", False: "not met", None: "not measured"}[self.met]


def _find(results: list[Result], system: str, scenario: str, topology: str) -> Result | None:
    for result in results:
        if (result.system, result.scenario, result.topology) == (system, scenario, topology) and not result.skipped:
            return result
    return None


def _ratio(name: str, goal: str, top: Result | None, bottom: Result | None, minimum: float, what: str) -> Target:
    if top is None or bottom is None or bottom.msgs_per_s <= 0:
        return Target(name, goal, "a side of the ratio was not measured in this run", None)
    ratio = top.msgs_per_s / bottom.msgs_per_s
    measured = f"{ratio:.2f}x ({top.msgs_per_s:,.0f} vs {bottom.msgs_per_s:,.0f} {what})"
    return Target(name, goal, measured, ratio >= minimum)


def judge(results: list[Result], transport: str = "grpc") -> list[Target]:
    cluster = f"3 nodes {transport}"
    e2e = _find(results, "mom", "e2e-latency", cluster)
    if e2e is None or e2e.p99_ms is None:
        latency = Target("end-to-end p99, 3 nodes", "< 10 ms at 1,000 msg/s", "not measured in this run", None)
    else:
        offered = e2e.extra.get("offered_rate", 0)
        complete = e2e.extra.get("received") == e2e.extra.get("expected")
        measured = f"p99 {e2e.p99_ms:,.1f} ms at {offered:,.0f} msg/s offered ({e2e.extra.get('received')} received)"
        latency = Target(
            "end-to-end p99, 3 nodes",
            "< 10 ms at 1,000 msg/s",
            measured,
            e2e.p99_ms < 10.0 and offered >= 1000 and complete,
        )
    return [
        _ratio(
            "publish 1/request, 1 node, durable",
            ">= 80% of the framework ceiling's requests/s",
            _find(results, "mom", "publish-1", "1 node"),
            _find(results, "ceiling", "publish-1", "1 node"),
            0.8,
            "requests/s",
        ),
        _ratio(
            f"publish 100/request, {cluster}",
            ">= RabbitMQ confirmed-publish msgs/s",
            _find(results, "mom", "publish-100", cluster),
            _find(results, "rabbitmq", "publish-confirmed", "1 node"),
            1.0,
            "msgs/s",
        ),
        _ratio(
            "streaming endpoint, one client, 3 nodes",
            ">= RabbitMQ confirmed-publish msgs/s",
            _find(results, "mom", "publish-stream", cluster),
            _find(results, "rabbitmq", "publish-confirmed", "1 node"),
            1.0,
            "msgs/s, 10 messages per frame",
        ),
        _ratio(
            f"replication stream ({transport})",
            ">= 20x one unary gRPC call per message per replica",
            _find(results, "mom", "publish-100", cluster),
            _find(results, "unary-grpc", "replicate", "3 processes"),
            20.0,
            "msgs/s",
        ),
        latency,
    ]
