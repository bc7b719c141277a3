"""Health, readiness, metrics and the cluster view."""

from __future__ import annotations

from typing import Any

import trio
from quart import Blueprint, Response, request
from quart_schema import tag

from mom.api import answers
from mom.api.context import ForwardRequired, ctx, principal
from mom.api.errors import problem
from mom.api.openapi import PUBLIC, contract
from mom.api.views import json_response, rfc3339
from mom.errors import NotFound

blueprint = Blueprint("ops", __name__)
tag_ops = tag(["operations"])


@blueprint.get("/healthz")
@tag_ops
@contract(200, security=PUBLIC, body=answers.Status)
async def healthz() -> Response:
    """The process is alive and serving HTTP."""
    return json_response({"status": "ok"})


@blueprint.get("/readyz")
@tag_ops
@contract(200, 503, security=PUBLIC, body=answers.Status)
async def readyz() -> Response:
    """This node can serve requests now.

    The cluster metadata has a leader, and the admin account exists here and can log in (with
    MOM_ADMIN_PASSWORD, if the node was given one): a script that waits for 200 can fetch a token next.
    """
    if not ctx().is_ready():
        return problem(
            503,
            "Not ready",
            "the node is starting, the admin account is not yet created, or the cluster has no quorum",
            slug="not-ready",
            headers={"Retry-After": "1"},
        )
    return json_response({"status": "ok"})


@blueprint.get("/metrics")
@tag_ops
@contract(200, security=PUBLIC, content_type="text/plain", body={"type": "string"})
async def metrics() -> Response:
    """Prometheus metrics of this node (text format 0.0.4)."""
    return Response(ctx().metrics.render(), content_type="text/plain; version=0.0.4; charset=utf-8")


def _nodes() -> list[dict[str, Any]]:
    context = ctx()
    me, transport = context.settings.node_id, context.transport_status
    states = {m.id: m.state for m in context.service.catalog.members.members()}
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
        member = states.get(node_id, "active")
        nodes.append({"id": node_id, "rest_url": url, "state": state, "last_seen": last_seen, "member": member})
    return nodes


@blueprint.get("/v1/cluster")
@tag_ops
@contract(200, 401, body=answers.Cluster)
async def cluster() -> Response:
    """Nodes, the transport, and per destination its leader, replicas, commit index and replica lag.

    Each node says whether it is an `active` member or `draining`; `moves` lists the replica moves in progress.

    Leader, commit index and lag are as this node sees them: exact for the groups it replicates, null otherwise.
    `?node=ID` answers with that node's view instead (forwarded to it; 503 when it cannot be reached). Only the
    destinations the caller may read or configure are listed.
    """
    caller = await principal()
    wanted = request.args.get("node")
    if wanted is not None and wanted != ctx().settings.node_id:
        if wanted not in ctx().peer_urls:
            raise NotFound(f"node {wanted!r} is not in this cluster ({', '.join(ctx().peer_urls)})")
        raise ForwardRequired([wanted])
    service = ctx().service
    destinations = [
        {
            "kind": d.kind,
            "name": d.name,
            "group": d.group,
            "leader": d.leader,
            "replicas": d.replicas,
            "commit_index": d.commit_index,
            "replica_lag": d.replica_lag,
        }
        for d in service.cluster_view()
        if caller.can("read", d.name) or caller.can("configure", d.name)
    ]
    return json_response(
        {
            "node_id": ctx().settings.node_id,
            "transport": ctx().settings.cluster.transport,
            "metadata_leader": service.metadata_leader,
            "nodes": _nodes(),
            "destinations": destinations,
            "moves": [
                {"group": m.group, "source": m.source, "target": m.target} for m in service.catalog.members.moves()
            ],
        }
    )
