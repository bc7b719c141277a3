"""The benchmark's arithmetic: knees, falling behind, the curve table, CPU per message, the start barrier."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from bench.barrier import LEAD_S, Barrier
from bench.cpu import measured, sessions_cpu_s
from bench.latency import behind, knee
from bench.report import curve_table
from bench.results import Result
from bench.targets import judge


def point(rate: float, p99: float, received: int | None = None, system: str = "mom") -> Result:
    expected = int(rate * 5)
    return Result(
        system,
        "latency-stream",
        "3 nodes grpc",
        p50_ms=p99 / 2,
        p99_ms=p99,
        extra={"offered_rate": rate, "expected": expected, "received": expected if received is None else received},
    )


def test_the_knee_is_the_highest_rate_with_p99_under_50_ms_and_nothing_lost() -> None:
    points = [point(250, 4), point(500, 9), point(1000, 30), point(2000, 49, received=9000), point(4000, 700)]
    assert knee(points) == 1000
    assert knee([point(250, 60)]) is None


def test_a_system_falls_behind_when_it_loses_messages_or_p99_passes_a_second() -> None:
    assert not behind(point(1000, 900))
    assert behind(point(1000, 1200))
    assert behind(point(1000, 10, received=4900))


def test_the_curve_table_has_a_column_per_rate_and_marks_incomplete_points() -> None:
    results = [point(250, 4), point(500, 80, received=10), point(250, 20, system="rabbitmq")]
    table = "\n".join(curve_table(results))
    assert "| knee msg/s | 250/s | 500/s |" in table
    assert "| mom | stream | 3 nodes grpc | 250 | 2.0 / 4.0 | 40.0 / 80.0* |" in table
    assert "| rabbitmq | stream | 3 nodes grpc | 250 | 10.0 / 20.0 |  |" in table


def test_targets_compare_like_topologies_and_judge_cpu_per_message() -> None:
    mom = Result("mom", "publish-stream-1", "3 nodes grpc", msgs_per_s=900, messages=900, server_cpu_s=0.27)
    rabbit = Result("rabbitmq", "publish-confirmed", "3 nodes", msgs_per_s=1000, messages=1000, server_cpu_s=0.2)
    lone = Result("rabbitmq", "publish-confirmed", "1 node", msgs_per_s=1, messages=1, server_cpu_s=1)
    verdicts = {t.name: t for t in judge([mom, rabbit, lone, point(1000, 8)])}
    assert verdicts["one client, 1 message per frame, 3 nodes grpc"].met is False  # 900 vs the 3-node 1,000
    cpu = verdicts["broker CPU per message, publish, 3 nodes grpc"]
    assert cpu.met is True and cpu.measured.startswith("1.50x (300 vs 200 µs/msg)")
    assert verdicts["end-to-end p99 at 1,000 msg/s, 3 nodes grpc, stream producer and consumer"].met is True
    assert verdicts["STREAM knee, 3 nodes grpc"].verdict == "reported"


def test_cpu_of_a_session_is_read_from_proc() -> None:
    session = os.getsid(0)
    with measured([session]) as sample:
        end = time.process_time() + 0.05
        while time.process_time() < end:
            pass
    assert sample.seconds is not None and sample.seconds >= 0.03
    assert sessions_cpu_s([]) == 0.0
    with measured(None) as nothing:
        pass
    assert nothing.seconds is None


def test_the_barrier_starts_every_party_at_the_last_arrival_plus_a_lead(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    folder.mkdir()
    later = time.monotonic() + 0.2
    (folder / "other.ready").write_text(repr(later))  # another party, which got ready after this one
    assert asyncio.run(Barrier(str(folder), parties=2).meet()) == later + LEAD_S
    with pytest.raises(TimeoutError):
        asyncio.run(Barrier(str(tmp_path / "c"), parties=2, timeout_s=0.2).meet())
