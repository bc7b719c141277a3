"""Carrying out one move with single-server membership changes, on a fake group that records its changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import trio

from mom.broker.commands import AddNode, DeclareQueue, Entry, MemberRecord, Move, QueueAttrs, SeedMembers, StartMove
from mom.broker.state import Broker
from mom.service.mover import Rebalancer, Reconfigurable, reconfigure


def member(n: int) -> MemberRecord:
    return MemberRecord(f"mom{n}", f"127.0.0.1:{8080 + n}", f"127.0.0.1:{9080 + n}")


@dataclass
class Config:
    voters: list[str]
    learners: list[str] = field(default_factory=list)


@dataclass
class FakeGroup:
    membership: Config
    ready_after: int = 3
    """`caught_up` answers True from this call on (a learner catching up)."""
    changes: list[str] = field(default_factory=list)
    asked: int = 0

    def caught_up(self, node: str) -> bool:
        self.asked += 1
        return self.asked >= self.ready_after

    async def add_learner(self, node: str) -> None:
        self.changes.append(f"learner {node}")
        self.membership.learners.append(node)

    async def promote(self, node: str) -> None:
        self.changes.append(f"promote {node}")
        self.membership.learners.remove(node)
        self.membership.voters.append(node)

    async def remove_member(self, node: str) -> None:
        self.changes.append(f"remove {node}")
        for members in (self.membership.voters, self.membership.learners):
            if node in members:
                members.remove(node)

    def transfer_leadership(self, to: str) -> None:
        self.changes.append(f"transfer {to}")


async def test_a_move_adds_a_learner_waits_promotes_then_removes() -> None:
    group = FakeGroup(Config(["a", "b", "c"]))
    assert isinstance(group, Reconfigurable)
    assert await reconfigure(group, "a", Move("q.x", "c", "d"), poll_s=0.01) == "done"
    assert group.changes == ["learner d", "promote d", "remove c"]
    assert group.asked == 3, "promoted only once caught up"
    assert sorted(group.membership.voters) == ["a", "b", "d"]


async def test_a_leader_that_leaves_hands_over_and_the_next_one_resumes() -> None:
    group = FakeGroup(Config(["a", "b", "c"]), ready_after=1)
    assert await reconfigure(group, "a", Move("q.x", "a", "d"), poll_s=0.01) == "handed_over"
    assert group.changes == ["learner d", "promote d", "transfer d"]
    with trio.fail_after(5):
        assert await reconfigure(group, "d", Move("q.x", "a", "d"), poll_s=0.01) == "done"
    assert group.changes[-1] == "remove a" and sorted(group.membership.voters) == ["b", "c", "d"]


async def test_resuming_a_finished_change_changes_nothing() -> None:
    group = FakeGroup(Config(["a", "b", "d"]))
    assert await reconfigure(group, "a", Move("q.x", "c", "d"), poll_s=0.01) == "done"
    assert group.changes == []


async def test_an_abandoned_move_takes_its_learner_out_again() -> None:
    group = FakeGroup(Config(["a", "b", "c"]), ready_after=10**9)  # the target never catches up
    wanted = True

    async def abandon_soon() -> None:
        nonlocal wanted
        await trio.sleep(0.05)
        wanted = False

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(abandon_soon)
            done = await reconfigure(group, "a", Move("q.x", "c", "d"), poll_s=0.01, wanted=lambda: wanted)
    assert done == "abandoned"
    assert group.changes == ["learner d", "remove d"]


async def test_a_promoted_target_is_kept_whatever_happens_next() -> None:
    group = FakeGroup(Config(["a", "b", "c"]), ready_after=1)
    outcome = await reconfigure(
        group, "a", Move("q.x", "c", "d"), poll_s=0.01, wanted=lambda: "promote d" not in group.changes
    )
    assert outcome == "done" and group.changes == ["learner d", "promote d", "remove c"]


async def test_a_target_another_leader_promoted_meanwhile_is_not_taken_out() -> None:
    """This leader added the learner, then lost leadership while it waited; the next leader promoted it (and
    finished the move, so it is no longer wanted here). When this node leads again, its waiting task must not
    remove what is now a voter of the group: the catalog lists it as a replica."""
    group = FakeGroup(Config(["a", "b", "c"]), ready_after=10**9)  # no progress is known while not leading
    wanted = True

    async def another_leader_finishes() -> None:
        nonlocal wanted
        await trio.sleep(0.05)
        group.membership = Config(["a", "b", "d"])  # d promoted, c removed, by the other leader
        wanted = False  # and the move recorded as done

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(another_leader_finishes)
            outcome = await reconfigure(group, "a", Move("q.x", "c", "d"), poll_s=0.01, wanted=lambda: wanted)
    assert group.changes == ["learner d"], "nothing more changed"
    assert sorted(group.membership.voters) == ["a", "b", "d"]
    assert outcome == "done"


async def test_resuming_an_abandoned_move_adds_no_learner_again() -> None:
    """The learner left already, but recording the abandoned move failed (the metadata leader was away): the
    retry must not add the unwanted target again (a drained or removed node) just to take it out once more."""
    group = FakeGroup(Config(["a", "b", "c"]))
    with trio.fail_after(5):
        outcome = await reconfigure(group, "a", Move("q.x", "c", "d"), poll_s=0.01, wanted=lambda: False)
    assert outcome == "abandoned" and group.changes == []


def test_a_joined_node_leading_the_metadata_plans_the_balancing_too() -> None:
    """mom4 was added, then restarted with its config naming the cluster's nodes and itself (`join` dropped, as
    docs/cluster.md says): its configured ids are the active members. Whether the members changed is a question
    for the catalog's recorded seed, or the new node gets no replicas while it leads the metadata group."""
    catalog = Broker()
    catalog.apply(Entry(1, SeedMembers([member(n) for n in (1, 2, 3)], 3)))
    for i in range(12):
        catalog.apply(Entry(2, DeclareQueue(f"q{i}", QueueAttrs(), "user:a")))
    catalog.apply(Entry(3, AddNode(member(4))))
    manager = SimpleNamespace(meta=SimpleNamespace(broker=catalog), seed_ids=["mom1", "mom2", "mom3", "mom4"])

    async def submit(command: StartMove) -> None:
        raise AssertionError("not called by planned()")

    rebalancer = Rebalancer(manager, submit, max_moves=2, replication_factor=3)  # type: ignore[arg-type]
    planned = rebalancer.planned()
    assert len(planned) == 2 and all(move.target == "mom4" for move in planned), planned
