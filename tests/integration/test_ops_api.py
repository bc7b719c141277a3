"""Health, readiness, metrics, OpenAPI and the cluster view of a single node."""

from __future__ import annotations

import httpx

from tests.integration.harness import Api, NodeProcess


def test_health_and_readiness(node: NodeProcess) -> None:
    assert httpx.get(node.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(node.url + "/readyz").status_code == 200


def test_metrics_are_prometheus_text(node: NodeProcess, api: Api) -> None:
    api.put("/v1/queues/metered")
    api.publish("metered", 1, 2, 3)
    text = httpx.get(node.url + "/metrics").text
    assert "# TYPE mom_published_messages_total counter" in text
    assert 'mom_published_messages_total{kind="queue"}' in text
    assert 'mom_storage{what="applied_index"}' in text
    assert "# TYPE mom_event_loop_lag_seconds histogram" in text
    ticks = next(line for line in text.splitlines() if line.startswith("mom_event_loop_lag_seconds_count"))
    assert float(ticks.split()[1]) > 0, "every replication tick reports how late it woke"


def test_openapi_describes_every_endpoint_and_docs_render(node: NodeProcess) -> None:
    spec = httpx.get(node.url + "/openapi.json").json()
    paths = spec["paths"]
    for path in [
        "/v1/queues/{name}",
        "/v1/queues/{name}/messages",
        "/v1/queues/{name}/receive",
        "/v1/queues/{name}/ack",
        "/v1/queues/{name}/nack",
        "/v1/topics/{name}",
        "/v1/topics/{name}/subscriptions/{sub}",
        "/v1/topics/{name}/subscriptions/{sub}/events",
        "/v1/topics/{name}/messages",
        "/v1/auth/token",
        "/v1/auth/users",
        "/v1/cluster",
        "/v1/queues/{name}/purge",
        "/v1/queues/{name}/visibility",
        "/v1/queues/{name}/redrive",
    ]:
        assert path in paths, path
    assert "patch" in paths["/v1/queues/{name}"]
    for path, operations in paths.items():
        for method, operation in operations.items():
            assert operation["summary"] and operation["responses"], (method, path)
    # The SQS endpoint speaks the AWS protocols, described in docs/sqs.md, not in this document.
    assert not {"/", "/sqs", "/sqs/", "/{account}/{queue}"} & set(paths)
    assert httpx.get(node.url + "/docs").status_code == 200


def test_cluster_view_names_this_node_as_leader(node: NodeProcess, api: Api) -> None:
    api.put("/v1/queues/viewed")
    view = api.get("/v1/cluster").json()
    assert view["transport"] in ("grpc", "zmq")
    assert [n["id"] for n in view["nodes"]] == [view["node_id"]]
    entry = next(d for d in view["destinations"] if d["name"] == "viewed")
    assert entry["leader"] == view["node_id"] and entry["commit_index"] > 0
