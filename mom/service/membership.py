"""The node's side of cluster membership: record the seed members once, and follow the member list.

The metadata leader writes `SeedMembers` (from `[[cluster.nodes]]`) into a catalog that has none yet, so a
cluster started before membership was replicated state gets its member list on its first start with this code,
and nothing moves. Every node then follows the catalog's member list: `MemberWatch` tells the transport, the
router's liveness and the forwarder of each node added (connect to it) or removed (drop it).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import trio

from mom.broker.commands import MemberRecord, SeedMembers
from mom.config import Settings, parse_address
from mom.errors import Conflict, Overloaded, Unavailable

log = logging.getLogger("mom.membership")


def seed_members(settings: Settings) -> list[MemberRecord]:
    """The members `[[cluster.nodes]]` names (none for a node that runs alone)."""
    return [
        MemberRecord(n.id, str(parse_address(n.rest)), str(parse_address(n.replication)))
        for n in settings.cluster.nodes
    ]


Added = Callable[[MemberRecord], None]
Removed = Callable[[str], None]


class MemberWatch:
    """Keeps the node's parts in step with the catalog's member list (this node itself excluded): each is told
    every node added (or whose addresses changed: removed, then added) and every node removed."""

    def __init__(self, node_id: str, added: Sequence[Added], removed: Sequence[Removed]) -> None:
        self._node_id = node_id
        self._added = list(added)
        self._removed = list(removed)
        self._known: dict[str, MemberRecord] = {}

    def start(self, members: Sequence[MemberRecord]) -> None:
        """The members the parts were built with (the configured ones)."""
        self._known = {m.id: m for m in members if m.id != self._node_id}

    def update(self, members: Sequence[MemberRecord]) -> None:
        wanted = {m.id: m for m in members if m.id != self._node_id}
        for peer in sorted(set(self._known) - set(wanted)):
            log.info("node %s left the cluster: dropping it", peer)
            for removed in self._removed:
                removed(peer)
        for peer, member in sorted(wanted.items()):
            known = self._known.get(peer)
            if known is not None and (known.rest, known.replication) == (member.rest, member.replication):
                continue
            if known is not None:
                for removed in self._removed:
                    removed(peer)
            log.info("node %s joined the cluster (replication %s): connecting to it", peer, member.replication)
            for added in self._added:
                added(member)
        self._known = wanted


class Submitter(Protocol):
    def seeded(self) -> bool: ...

    async def submit_to_meta(self, command: SeedMembers) -> bool:
        """Submit if this node leads the metadata group; False if it does not."""
        ...


async def seed_once(service: Submitter, settings: Settings, *, poll_s: float = 0.1) -> None:
    """Until the catalog holds members: whenever this node leads the metadata group, write the seed."""
    members = seed_members(settings)
    if not members:
        return
    command = SeedMembers(members, settings.cluster.replication_factor)
    while not service.seeded():
        with contextlib.suppress(Conflict, Overloaded, Unavailable):  # passing refusals: ask again
            await service.submit_to_meta(command)
        await trio.sleep(poll_s)
