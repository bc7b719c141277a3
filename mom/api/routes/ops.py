"""Health, readiness, metrics and the cluster view."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, request
from quart_schema import tag

from mom.api.context import ForwardRequired, ctx, principal
from mom.api.errors import problem
from mom.api.views import json_response, rfc3339
from mom.broker.commands import QueueRef, TopicRef
from mom.errors import NotFound

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
    """This node can serve writes now: the cluster metadata has a leader it can reach."""
    if not ctx().is_ready():
        return problem(503, "Not ready", "the node is starting or the cluster has no quorum", slug="not-ready")
    return json_response({"status": "ok"})


@blueprint.get("/metrics")
@tag_ops
async def metrics() -> Response:
    return Response(ctx().metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


def _nodes() -> list[dict[str, Any]]:
    context = ctx()
    me, transport = context.settings.node_id, context.transport_status
    nodes = []
    for node_id, url in context.peer_urls.items():
        last_seen: str | None
        if node_id == me:
            state, last_seen = "up", rfc3339(context.service.now_ms())
        else:
            status = transport(node_id)
            state = "up" if status.connected else "unreachable"
            seen_ago = None if status.last_seen is None else trio.current_time() - status.last_seen
            last_seen = None if seen_ago is None else rfc3339(context.service.now_ms() - round(seen_ago * 1000))
        nodes.append({"id": node_id, "rest_url": url, "state": state, "last_seen": last_seen})
    return nodes


@blueprint.get("/v1/cluster")
@tag_ops
async def cluster() -> Response:
    """Nodes, the transport, and per destination its leader, replicas, commit index and replica lag.

    Leader, commit index and lag are as this node sees them: exact for the groups it replicates, null otherwise.
    `?node=ID` answers with that node's view instead (forwarded to it; 503 when it cannot be reached). Only the
    destinations the caller may read or configure are listed.
    """
    caller = await principal()
    wanted = request.args.get("node")
    if wanted is not None and wanted != ctx().settings.node_id:
        if wanted not in ctx().peer_urls:
            raise NotFound(f"node {wanted!r} is not in this cluster ({', '.join(ctx().peer_urls)})")
        raise ForwardRequired(wanted, ctx().peer_urls[wanted])
    service = ctx().service
    now = service.now_ms()
    refs: list[tuple[str, QueueRef | TopicRef]] = [
        ("queue", QueueRef(q.name)) for q in service.catalog.list_queues(now)
    ]
    refs += [("topic", TopicRef(t.name)) for t in service.catalog.list_topics(now)]
    refs = [(kind, ref) for kind, ref in refs if caller.can("read", ref.name) or caller.can("configure", ref.name)]
    destinations = []
    for kind, ref in refs:
        placement = service.manager.placement(ref)
        group = service.manager.group(placement.group_id)
        destinations.append(
            {
                "kind": kind,
                "name": ref.name,
                "group": placement.group_id,
                "leader": group.leader_id if group else None,
                "replicas": list(placement.replicas),
                "commit_index": group.commit_index if group else None,
                "replica_lag": group.replica_lag() if group and group.is_leader else None,
            }
        )
    meta = service.manager.meta
    return json_response(
        {
            "node_id": ctx().settings.node_id,
            "transport": ctx().settings.cluster.transport,
            "metadata_leader": meta.leader_id,
            "nodes": _nodes(),
            "destinations": destinations,
        }
    )
