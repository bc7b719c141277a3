"""Health, readiness, metrics and the cluster view."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import tag

from mom.api.context import ctx, principal
from mom.api.errors import problem
from mom.api.views import json_response, rfc3339

blueprint = Blueprint("ops", __name__)
tag_ops = tag(["operations"])


@blueprint.get("/healthz")
@tag_ops
async def healthz() -> Response:
    """The process is alive and serving HTTP."""
    return json_response({"status": "ok"})


@blueprint.get("/readyz")
@tag_ops
async def readyz() -> Response:
    """This node can serve writes now."""
    if not ctx().is_ready():
        return problem(503, "Not ready", "the node is starting or has no quorum", slug="not-ready")
    return json_response({"status": "ok"})


@blueprint.get("/metrics")
@tag_ops
async def metrics() -> Response:
    return Response(ctx().metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


@blueprint.get("/v1/cluster")
@tag_ops
async def cluster() -> Response:
    """Nodes and, per destination, its leader, replicas and commit index."""
    principal()
    settings, service = ctx().settings, ctx().service
    node, now = settings.node_id, service.now_ms()
    commit_index = service.committed_index()
    destinations = [
        {
            "kind": kind,
            "name": name,
            "leader": node,
            "replicas": [node],
            "commit_index": commit_index,
            "replica_lag": {node: 0},
        }
        for kind, names in (
            ("queue", [q.name for q in service.broker.list_queues(now)]),
            ("topic", [t.name for t in service.broker.list_topics(now)]),
        )
        for name in names
    ]
    return json_response(
        {
            "node_id": node,
            "transport": settings.cluster.transport,
            "nodes": [{"id": node, "rest_url": f"http://{settings.rest}", "state": "up", "last_seen": rfc3339(now)}],
            "destinations": destinations,
        }
    )
