"""Cluster membership (admins): list the members, add a node, drain one, remove one.

Every change is a command of the metadata log, checked by the catalog's state machine (mom.broker.members), so
two admins racing get one answer each and every node agrees on who is a member. What moves when, the rebalancer
on the metadata leader decides (docs/cluster.md, "Adding and removing nodes").
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from quart import Blueprint, Response
from quart_schema import document_request, tag

from mom.api import answers
from mom.api.context import ctx, meta_leader, principal, request_body
from mom.api.openapi import contract
from mom.api.schemas import AddNodeRequest, MoveDoneRequest, decode_body
from mom.api.views import json_response
from mom.broker.commands import (
    AddNode,
    DrainNode,
    FinishMove,
    MemberRecord,
    MembersChanged,
    Move,
    RemoveNode,
)
from mom.broker.state import Broker
from mom.config import parse_address
from mom.errors import Conflict, Forbidden, NotFound

blueprint = Blueprint("cluster", __name__, url_prefix="/v1/cluster")
tag_cluster = tag(["cluster"])


async def _admin() -> None:
    if not (await principal()).is_admin:
        raise Forbidden("only an admin may change the cluster's members (scope mom.admin)")


def _scheme() -> str:
    urls = list(ctx().peer_urls.values())
    return "https" if urls and urls[0].startswith("https:") else "http"


def replicas_held(catalog: Broker) -> Counter[str]:
    """How many destinations' replica sets name each node, in one pass over the catalog (placing every
    destination once per member instead took a quarter of a second at 10,000 destinations and 5 nodes)."""
    factor = ctx().settings.cluster.replication_factor
    seed = ctx().service.seed_ids
    return Counter(
        node for group, own in catalog.placed() for node in catalog.members.replicas(group, own or factor, seed=seed)
    )


def member_view(member: MemberRecord, held: Counter[str]) -> dict[str, Any]:
    return {
        "id": member.id,
        "rest_url": f"{_scheme()}://{member.rest}",
        "replication": member.replication,
        "state": member.state,
        "replicas": held[member.id],
    }


def move_view(move: Move) -> dict[str, Any]:
    return {"group": move.group, "source": move.source, "target": move.target}


def _address(text: str) -> str:
    """`host:port` of a `host:port` or `scheme://host:port[/]` text; InvalidInput (400) otherwise."""
    bare = text.split("://", 1)[1] if "://" in text else text
    return str(parse_address(bare.rstrip("/")))


def _known(node_id: str) -> None:
    """404 for a node that is not a member (before anything else is checked)."""
    catalog = ctx().service.catalog.members
    if catalog.member(node_id) is None and node_id != ctx().settings.node_id:
        names = ", ".join(m.id for m in catalog.members()) or ctx().settings.node_id
        raise NotFound(f"node {node_id!r} is not a member of this cluster ({names})")


def _grows() -> None:
    if not ctx().settings.cluster.nodes:
        raise Conflict(
            "this node runs alone (its config has no [[cluster.nodes]]): start a cluster from a config file to "
            "add nodes to it"
        )


@blueprint.get("/nodes")
@tag_cluster
@contract(200, 401, 403, body=answers.Members)
async def list_nodes() -> Response:
    """The cluster's members (admin only): addresses, active or draining, replicas held; and moves in progress."""
    await _admin()
    catalog = ctx().service.catalog
    settings = ctx().settings
    alone = [MemberRecord(settings.node_id, str(settings.rest), "")]
    members = catalog.members.members() or ctx().service.seed_members() or alone
    held = replicas_held(catalog)
    return json_response(
        {
            "nodes": [member_view(m, held) for m in members],
            "moves": [move_view(m) for m in catalog.members.moves()],
        }
    )


@blueprint.post("/nodes")
@tag_cluster
@document_request(AddNodeRequest)
@contract(200, 201, 400, 401, 403, 409, 413, 415, 503, body=answers.Member)
async def add_node() -> Response:
    """Add a node (admin only): it joins the metadata group and the rebalancer moves replicas onto it.

    Start the new node with a config naming the cluster's nodes and itself, and `join = true` in `[cluster]`.
    201 when added, 200 when it was a member with these addresses already; 409 for an id or address in use.
    """
    await _admin()
    body = decode_body(await request_body(), AddNodeRequest)
    record = MemberRecord(body.id, _address(body.rest), _address(body.replication))
    _grows()
    meta = meta_leader()
    result = await ctx().service.submit(meta, AddNode(record))
    assert isinstance(result, MembersChanged)
    return json_response(
        member_view(record, replicas_held(ctx().service.catalog)), status=201 if result.changed else 200
    )


@blueprint.post("/nodes/<node_id>/drain")
@tag_cluster
@contract(200, 401, 403, 404, 409, 503, body=answers.Member)
async def drain_node(node_id: str) -> Response:
    """Drain a node (admin only): the rebalancer moves every replica off it; then it can be removed.

    409 when the active nodes left would be fewer than the replication factor.
    """
    await _admin()
    _known(node_id)
    _grows()
    meta = meta_leader()
    await ctx().service.submit(meta, DrainNode(node_id))
    member = ctx().service.catalog.members.member(node_id)
    if member is None:  # pragma: no cover - removed by another admin in between
        raise NotFound(f"node {node_id!r} is not a member of this cluster")
    return json_response(member_view(member, replicas_held(ctx().service.catalog)))


@blueprint.delete("/nodes/<node_id>")
@tag_cluster
@contract(204, 401, 403, 404, 409, 503)
async def remove_node(node_id: str) -> Response:
    """Remove a node (admin only): it leaves the metadata group and every node forgets it.

    409 while it still holds replicas (drain it first, and wait for its moves), or when the nodes left would be
    fewer than the replication factor. Then stop its process.
    """
    await _admin()
    _known(node_id)
    _grows()
    meta = meta_leader()
    await ctx().service.submit(meta, RemoveNode(node_id))
    return Response(b"", status=204)


@blueprint.post("/moves")
@tag_cluster
@document_request(MoveDoneRequest)
@contract(200, 400, 401, 403, 413, 415, 503, body=answers.MoveDone)
async def move_done() -> Response:
    """Record a replica move as done (admin; the group's leader that carried it out sends it): the catalog's
    replica set of the group becomes `replicas`. A move that is not in progress changes nothing (`recorded`
    false); 400 for `replicas` that are neither the move done (the target in the source's place, in order) nor
    abandoned (the set unchanged)."""
    await _admin()
    body = decode_body(await request_body(), MoveDoneRequest)
    meta = meta_leader()
    move = Move(body.group, body.source, body.target)
    result = await ctx().service.submit(meta, FinishMove(move, list(body.replicas)))
    assert isinstance(result, MembersChanged)
    return json_response({"recorded": result.changed})
