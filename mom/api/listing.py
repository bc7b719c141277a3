"""Lists that span the cluster: a node shows destinations it holds no replica of as their replicas know them.

A node's view of a destination is exact only where a replica of it runs here: the catalog knows every
destination's attributes but not its depth, so on a cluster larger than the replication factor a list used to
show a quarter or more of the destinations with 0 messages (and the dashboard's depth column with it). A list
now asks each node that leads (or else replicates) the destinations missing here for its own list, once per
node and in parallel, and takes those entries from it. The inner request carries a hop count, which makes the
answering node list only what it serves itself, so a list never fans out twice. A node that does not answer
within `LIST_WAIT_S` leaves its destinations as the catalog knows them: a list is never refused for one slow
node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx
import trio
from quart import request

from mom.api.context import ctx
from mom.api.forward import HOPS_HEADER, ForwardRequired, hops
from mom.broker.commands import QueueRef, TopicRef
from mom.errors import MomError, NotFound

LIST_WAIT_S = 2.0
"""A bound on the other nodes' lists (each is one in-memory read there)."""

Kind = Literal["queues", "topics"]
View = Callable[[str], dict[str, Any]]


async def listed(kind: Kind, names: Sequence[str], view: View) -> list[dict[str, Any]]:
    """The entries of `names`, in order: from this node's replica where it has one, else from another node's."""
    service = ctx().service
    ref_of: Callable[[str], QueueRef | TopicRef] = QueueRef if kind == "queues" else TopicRef
    missing = [ref for ref in map(ref_of, names) if service.serving_replica(ref) is None]
    if hops() > 0:  # another node's list asking for what this node serves
        skip = {ref.name for ref in missing}
        return [view(name) for name in names if name not in skip]
    remote = await _from_replicas(kind, missing) if missing else {}
    entries = []
    for name in names:
        entry = remote.get(name)
        if entry is None:
            try:
                entry = view(name)
            except NotFound:
                continue  # deleted while the other nodes answered: a list leaves it out, it is no 404
        entries.append(entry)
    return entries


async def _from_replicas(kind: Kind, refs: Sequence[QueueRef | TopicRef]) -> dict[str, dict[str, Any]]:
    service = ctx().service
    wanted_from: dict[str, set[str]] = {}
    for ref in refs:
        placement, leader = service.whereabouts(ref)
        node = leader if leader in placement.replicas else placement.replicas[0]
        if node != service.node_id:
            wanted_from.setdefault(node, set()).add(ref.name)
    found: dict[str, dict[str, Any]] = {}
    headers = {HOPS_HEADER: str(hops() + 1)}
    if "authorization" in request.headers:
        headers["authorization"] = request.headers["authorization"]

    async def ask(node: str, wanted: set[str]) -> None:
        with trio.move_on_after(LIST_WAIT_S):
            try:
                answer = await ctx().forwarder.call(ForwardRequired([node]), "GET", f"/v1/{kind}", headers=headers)
                entries = answer.json()[kind] if answer.status_code == 200 else []
            except (MomError, httpx.HTTPError, ValueError, KeyError, TypeError):
                return  # left as the catalog knows them
            for entry in entries:
                if isinstance(entry, dict) and entry.get("name") in wanted:
                    found[entry["name"]] = entry

    async with trio.open_nursery() as nursery:
        for node, wanted in wanted_from.items():
            nursery.start_soon(ask, node, wanted)
    return found
