"""Concurrent publishes to one destination share a log command, yet every caller gets exactly its own answer."""

from __future__ import annotations

import trio
import trio.testing

from mom.broker import Broker
from mom.broker.commands import (
    DeclareQueue,
    Entry,
    NewMessage,
    Publish,
    Published,
    QueueAttrs,
    QueueRef,
    Result,
)
from mom.coalesce import PublishCoalescer
from mom.errors import QueueFull


class FakeGroup:
    """Applies commands to a real Broker after a commit delay, counting the commands."""

    def __init__(self, max_length: int | None = None) -> None:
        self.broker = Broker()
        self.broker.apply(Entry(0, DeclareQueue("q", QueueAttrs(max_length=max_length), "me")))
        self.commands: list[int] = []

    async def submit(self, command: Publish) -> Result:
        await trio.sleep(0.01)
        self.commands.append(len(command.messages))
        return self.broker.apply(Entry(1, command))


def publish(*bodies: str, dedup: str | None = None) -> Publish:
    return Publish(QueueRef("q"), [NewMessage(f"id-{b}", b.encode(), dedup_id=dedup) for b in bodies])


async def test_concurrent_publishes_share_commands_and_get_their_own_slices() -> None:
    group = FakeGroup()
    coalescer = PublishCoalescer(group.submit)
    answers: dict[int, Published] = {}

    async def one(i: int) -> None:
        answers[i] = await coalescer.publish(publish(f"{i}a", f"{i}b"))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert sum(group.commands) == 40
    assert len(group.commands) < 20, group.commands
    for i, answer in answers.items():
        assert [m.id for m in answer.messages] == [f"id-{i}a", f"id-{i}b"]
    offsets = sorted(m.offset for a in answers.values() for m in a.messages)
    assert offsets == list(range(40))
    assert coalescer.idle


async def test_dedup_inside_a_merged_command_answers_like_sequential_publishes() -> None:
    group = FakeGroup()
    coalescer = PublishCoalescer(group.submit)
    answers: list[Published] = []

    async def one(body: str) -> None:
        answers.append(await coalescer.publish(publish(body, dedup="same")))

    async with trio.open_nursery() as nursery:
        for body in ("x", "y", "z"):
            nursery.start_soon(one, body)
    firsts = [a.messages[0] for a in answers]
    assert sum(not m.duplicate for m in firsts) == 1
    assert len({(m.id, m.offset) for m in firsts}) == 1


async def test_a_merged_command_that_fails_is_retried_publish_by_publish() -> None:
    group = FakeGroup(max_length=3)
    coalescer = PublishCoalescer(group.submit)
    outcomes: dict[int, str] = {}

    async def one(i: int) -> None:
        try:
            await coalescer.publish(publish(f"{i}a", f"{i}b"))
            outcomes[i] = "ok"
        except QueueFull:
            outcomes[i] = "full"

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(one, i)
    assert sorted(outcomes.values()) == ["full", "full", "ok"]
    assert group.broker.queue_info("q", 2).messages == 2


async def test_a_cancelled_waiter_neither_blocks_nor_loses_the_others() -> None:
    group = FakeGroup()
    coalescer = PublishCoalescer(group.submit)
    done: list[str] = []

    async def one(body: str) -> None:
        await coalescer.publish(publish(body))
        done.append(body)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one, "first")
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            scope.cancel()
            await coalescer.publish(publish("cancelled"))
        nursery.start_soon(one, "second")
        nursery.start_soon(one, "third")
    assert sorted(done) == ["first", "second", "third"]
    assert sum(group.commands) == 3, "the cancelled publish never reached the log"
    assert coalescer.idle
