"""Recording the seed members (mom.service.membership.seed_once): a background task of every node, so a passing
refusal of the metadata group must be retried, never end the node."""

from __future__ import annotations

import trio

from mom.broker.commands import SeedMembers
from mom.config import ClusterSection, NodeEntry, Settings
from mom.errors import Overloaded
from mom.service.membership import seed_once


class BusyMetadataLeader:
    """Leads the metadata group; its first proposal is refused (its uncommitted tail is over budget: 429)."""

    def __init__(self) -> None:
        self.written: list[SeedMembers] = []
        self.refused = 0

    def seeded(self) -> bool:
        return bool(self.written)

    async def submit_to_meta(self, command: SeedMembers) -> bool:
        if not self.refused:
            self.refused += 1
            raise Overloaded("group meta has 9 MiB waiting for its replicas to persist them; retry shortly")
        self.written.append(command)
        return True


async def test_an_overloaded_metadata_leader_is_asked_again() -> None:
    nodes = [NodeEntry(f"mom{n}", f"127.0.0.1:{8080 + n}", f"127.0.0.1:{9080 + n}") for n in (1, 2, 3)]
    settings = Settings(cluster=ClusterSection(nodes=nodes))
    leader = BusyMetadataLeader()
    with trio.fail_after(5):
        await seed_once(leader, settings, poll_s=0.01)
    assert leader.refused == 1
    assert [[m.id for m in command.nodes] for command in leader.written] == [["mom1", "mom2", "mom3"]]
