"""`mom bench --smoke` runs the whole harness end to end and writes well-formed outputs (not the numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "publish-1",
    "publish-100",
    "publish-stream",
    "publish-stream-1",
    "receive-ack",
    "consume-stream",
    "fanout-10",
    "latency-rest",
    "latency-stream",
}


def test_smoke_run_writes_results_report_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    docs = tmp_path / "performance.md"
    done = subprocess.run(
        [sys.executable, "-m", "mom", "bench", "--smoke", "--out", str(out), "--docs", str(docs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,  # catches a hang only: about 30 s idle, a minute or more on a shared machine
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mom [1 node]: publish-1" in done.stderr, "a progress line per step"

    document = json.loads((out / "results.json").read_text())
    assert document["meta"]["smoke"] is True
    assert document["meta"]["machine"]["cpus"] >= 1
    mom = {r["scenario"]: r for r in document["results"] if r["system"] == "mom"}
    assert set(mom) == SCENARIOS
    for result in mom.values():
        assert result["skipped"] is None, result
        assert result["topology"] == "1 node"
        assert result["msgs_per_s"] > 0
        assert result["client_cpu_s"] >= 0 and result["client_procs"] >= 1
        assert result["server_cpu_s"] > 0 and result["server_us_per_msg"] > 0, "the node's CPU, from /proc"
    for scenario, per_frame in (("publish-stream", 10), ("publish-stream-1", 1)):
        stream = mom[scenario]
        assert stream["errors"] == 0, stream
        assert stream["msgs_per_s"] == pytest.approx(stream["requests_per_s"] * per_frame), "frames carry messages"
        assert 0 < stream["p50_ms"] <= stream["p99_ms"], "latency per frame"
    for scenario in ("latency-rest", "latency-stream"):
        point = mom[scenario]
        assert point["extra"]["offered_rate"] == 50 and point["extra"]["expected"] == 50
        assert 0 < point["p50_ms"] <= point["p99_ms"] <= point["p999_ms"]
    consumed = mom["consume-stream"]
    assert consumed["messages"] == 300, "the preloaded queue drained over the stream"
    ceiling = [r for r in document["results"] if r["system"] == "ceiling"]
    assert len(ceiling) == 1 and ceiling[0]["requests_per_s"] > 0
    assert not any(r["system"] in {"rabbitmq", "nats", "unary-grpc"} for r in document["results"]), "no external peers"
    verdicts = {t["name"]: t["met"] for t in document["targets"]}
    assert verdicts["publish 1/request, 1 node, durable"] in {True, False}, "judged from mom and the ceiling"
    assert verdicts["one client, 1 message per frame, 1 node"] is None, "no RabbitMQ in a smoke run"

    report = (out / "report.md").read_text()
    assert "| system | scenario | topology | msgs/s |" in report
    assert "| mom | consume-stream | 1 node |" in report
    assert "### Latency versus offered load" in report and "| mom | stream | 1 node |" in report
    assert "![throughput, latency and latency versus offered load](plot.png)" in report
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not docs.exists(), "a smoke run leaves the docs alone"
