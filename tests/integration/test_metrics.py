"""/metrics and the rates and lag in the destination views, against a real node."""

from __future__ import annotations

import json
import re
import threading
import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, token


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics by (name, sorted labels)."""
    response = httpx.get(url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], metric: str, /, **labels: str) -> float:
    return samples[metric, tuple(sorted(labels.items()))]


def test_queue_views_carry_totals_bytes_and_age(api: Api) -> None:
    name = f"stats-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/queues/{name}", json={}).status_code == 201
    api.publish(name, {"n": 1}, {"n": 2}, {"n": 3})
    received = api.receive(name, max_messages=2)
    api.ack(name, received[0]["receipt"])
    assert api.post(f"/v1/queues/{name}/nack", json={"receipts": [received[1]["receipt"]]}).status_code == 200

    queue = api.get(f"/v1/queues/{name}").json()
    assert queue["totals"] == {"published": 3, "delivered": 2, "acked": 1, "nacked": 1, "dead_lettered": 0}
    assert queue["bytes"] == len(b'{"n":2}') + len(b'{"n":3}')
    assert queue["oldest_age_s"] >= 0
    listed = next(q for q in api.get("/v1/queues").json()["queues"] if q["name"] == name)
    assert listed["totals"] == queue["totals"]


def test_subscription_lag_in_the_topic_view(api: Api) -> None:
    name = f"lag-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/topics/{name}", json={}).status_code == 201
    assert api.put(f"/v1/topics/{name}/subscriptions/s", json={"start": "earliest"}).status_code == 201
    assert (
        api.post(f"/v1/topics/{name}/messages", json={"messages": [{"body": i} for i in range(4)]}).status_code == 201
    )
    got = api.post(f"/v1/topics/{name}/subscriptions/s/receive", json={"max_messages": 1}).json()["messages"]
    api.post(f"/v1/topics/{name}/subscriptions/s/ack", json={"receipts": [got[0]["receipt"]]})
    topic = api.get(f"/v1/topics/{name}").json()
    sub = topic["subscriptions"][0]
    assert sub["lag"] == 3 and sub["lag_s"] >= 0
    assert sub["totals"]["delivered"] == 1 and sub["totals"]["acked"] == 1
    assert topic["totals"]["published"] == 4


def test_metrics_answer_the_operators_questions(node: NodeProcess, api: Api) -> None:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/queues/{name}", json={}).status_code == 201
    api.publish(name, "a", "b")
    api.receive(name, max_messages=1)
    assert api.put(f"/v1/topics/{name}", json={}).status_code == 201
    assert api.put(f"/v1/topics/{name}/subscriptions/audit", json={"start": "earliest"}).status_code == 201
    assert api.post(f"/v1/topics/{name}/messages", json={"body": 1}).status_code == 201
    assert api.get("/v1/queues/no-such-queue").status_code == 404

    samples = scrape(node.url)
    assert value(samples, "mom_queue_messages", queue=name, state="ready") == 1
    assert value(samples, "mom_queue_messages", queue=name, state="in_flight") == 1
    assert value(samples, "mom_queue_published_messages_total", queue=name) == 2
    assert value(samples, "mom_queue_delivered_messages_total", queue=name) == 1
    assert value(samples, "mom_queue_bytes", queue=name) == 2 * len(b'"a"')
    assert value(samples, "mom_queue_oldest_message_age_seconds", queue=name) >= 0
    assert value(samples, "mom_topic_published_messages_total", topic=name) == 1
    assert value(samples, "mom_subscription_lag_messages", topic=name, subscription="audit") == 1
    assert value(samples, "mom_subscription_lag_seconds", topic=name, subscription="audit") >= 0
    # routes are templates, never raw paths: a made-up name adds no label value
    routes = {dict(labels).get("route") for (metric, labels) in samples if metric == "mom_http_requests_total"}
    assert "/v1/queues/<name>" in routes and "/v1/queues/<name>/messages" in routes
    assert not any(name in route or "no-such-queue" in route for route in routes if route)
    assert (
        value(samples, "mom_http_request_duration_seconds_count", method="POST", route="/v1/queues/<name>/messages")
        >= 1
    )
    assert value(samples, "mom_fsync_duration_seconds_count") >= 1
    assert value(samples, "mom_group_commit_entries_count") >= 1
    assert value(samples, "mom_raft_metadata_leader") == 1
    assert value(samples, "mom_raft_term", kind="queue", name=name) >= 1
    assert value(samples, "mom_raft_commit_index", kind="queue", name=name) >= 1
    assert value(samples, "mom_raft_elections_total") >= 1
    assert value(samples, "mom_data_dir_bytes", what="free") > 0
    assert value(samples, "process_open_fds") > 0
    assert value(samples, "process_resident_memory_bytes") > 0
    assert value(samples, "mom_http_connections_open") >= 1
    assert value(samples, "mom_long_polls_waiting") >= 0


def test_long_polls_are_counted_while_they_wait(node: NodeProcess, api: Api) -> None:
    name = f"poll-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/queues/{name}", json={}).status_code == 201
    with httpx.Client(base_url=node.url, headers=api.http.headers, timeout=30) as other:
        waiting = threading.Thread(
            target=other.post, args=(f"/v1/queues/{name}/receive",), kwargs={"json": {"wait_s": 3}}
        )
        waiting.start()
        try:
            for _ in range(100):
                if value(scrape(node.url), "mom_long_polls_waiting") >= 1:
                    break
                threading.Event().wait(0.05)
            else:
                raise AssertionError("the waiting receive never showed in mom_long_polls_waiting")
        finally:
            waiting.join()


def test_per_destination_series_stop_at_the_configured_cap(tmp_path: Path) -> None:
    config = tmp_path / "mom.toml"
    config.write_text("[metrics]\nmax_destinations = 2\n")
    node = NodeProcess(tmp_path / "data", config=config).start()
    try:
        admin = Api(node.url, token(node.url, "admin", ADMIN_PASSWORD))
        for name in ("c-queue", "a-queue", "b-queue"):
            assert admin.put(f"/v1/queues/{name}", json={}).status_code == 201
        samples = scrape(node.url)
        shown = {dict(labels)["queue"] for (metric, labels) in samples if metric == "mom_queue_bytes"}
        assert shown == {"a-queue", "b-queue"}
        assert value(samples, "mom_metrics_destinations_omitted") == 1
    finally:
        node.stop()


def test_every_series_the_grafana_dashboard_queries_is_exported(node: NodeProcess, api: Api) -> None:
    name = f"grafana-{uuid.uuid4().hex[:8]}"  # a queue, a topic and a subscription, so that every family has series
    assert api.put(f"/v1/queues/{name}", json={}).status_code == 201
    assert api.put(f"/v1/topics/{name}", json={}).status_code == 201
    assert api.put(f"/v1/topics/{name}/subscriptions/s", json={}).status_code == 201
    text = httpx.get(node.url + "/metrics", timeout=30).text
    exported = set()  # every family, with or without samples yet (one node has no peers), and its sample names
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        exported |= {family.name + suffix for suffix in suffixes}
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "deploy/grafana/mom.json").read_text())
    queried = {
        word
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for word in re.findall(r"\b(?:mom|process)_[a-z_]+\b", target["expr"])
    }
    assert queried and queried <= exported, sorted(queried - exported)


def test_open_sse_streams_are_counted(node: NodeProcess, api: Api) -> None:
    name = f"sse-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/topics/{name}", json={}).status_code == 201
    assert api.put(f"/v1/topics/{name}/subscriptions/s", json={}).status_code == 201
    path = f"/v1/topics/{name}/subscriptions/s/events"
    with api.http.stream("GET", path) as events:
        assert events.status_code == 200
        chunks = events.iter_raw()  # kept: a dropped iterator would close the stream
        next(chunks)  # the stream is open once its first comment arrives
        assert value(scrape(node.url), "mom_streams_open", kind="sse") >= 1
        assert value(scrape(node.url), "mom_http_requests_in_progress") >= 2  # the stream and this scrape
