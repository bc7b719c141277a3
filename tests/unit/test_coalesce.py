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
from mom.errors import MomError, OutcomeUnknown, Overloaded, QueueFull, Unavailable
from mom.service.coalesce import CoalescerLimits, PublishCoalescer


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


async def test_a_cancelled_waiter_neither_blocks_nor_loses_the_others(autojump_clock: trio.testing.MockClock) -> None:
    """On the virtual clock: with real time, a loaded machine could let the first commit end before the
    cancelled publish arrived, which then found no flush in flight and went out (once seen in a full run)."""
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


class FailingGroup(FakeGroup):
    """Fails the first merged command with `error` (after a commit delay), as a leader that went away would."""

    def __init__(self, error: MomError) -> None:
        super().__init__()
        self.error = error
        self.submitted: list[Publish] = []

    async def submit(self, command: Publish) -> Result:
        self.submitted.append(command)
        if len(command.messages) > 1:
            await trio.sleep(0.01)
            raise self.error
        return await super().submit(command)


async def concurrently(coalescer: PublishCoalescer, count: int) -> dict[int, BaseException | Published]:
    outcomes: dict[int, BaseException | Published] = {}

    async def one(i: int) -> None:
        try:
            outcomes[i] = await coalescer.publish(publish(f"{i}"))
        except MomError as exc:
            outcomes[i] = exc

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return outcomes


async def test_a_merged_publish_with_an_unknown_outcome_is_not_sent_again() -> None:
    """Re-sending it message by message (without dedup ids) would store twice what the lost leader committed."""
    group = FailingGroup(OutcomeUnknown("the leader went away"))
    coalescer = PublishCoalescer(group.submit)
    outcomes = await concurrently(coalescer, 5)
    merged = [c for c in group.submitted if len(c.messages) > 1]
    assert merged, "the publishes were merged"
    in_merged = {m.body.decode() for c in merged for m in c.messages}
    for i, outcome in outcomes.items():
        if str(i) in in_merged:
            assert isinstance(outcome, OutcomeUnknown), outcome
    bodies = [m.body for c in group.submitted for m in c.messages]
    assert len(bodies) == len(set(bodies)), "no message was submitted twice"
    assert coalescer.idle


async def test_a_merged_publish_refused_before_it_was_written_fails_every_caller_alike() -> None:
    group = FailingGroup(Unavailable("no leader"))
    coalescer = PublishCoalescer(group.submit)
    outcomes = await concurrently(coalescer, 5)
    merged = {m.body.decode() for c in group.submitted if len(c.messages) > 1 for m in c.messages}
    assert merged
    assert all(type(outcomes[int(body)]) is Unavailable for body in merged)
    bodies = [m.body for c in group.submitted for m in c.messages]
    assert len(bodies) == len(set(bodies))


async def test_merged_commands_are_capped_by_count_and_bytes() -> None:
    group = FakeGroup()
    limits = CoalescerLimits(max_messages=5, max_bytes=12, max_waiting_messages=1000, max_waiting_bytes=10_000)
    sizes: list[tuple[int, int]] = []
    submit = group.submit

    async def measuring(command: Publish) -> Result:
        sizes.append((len(command.messages), sum(len(m.body) for m in command.messages)))
        return await submit(command)

    coalescer = PublishCoalescer(measuring, limits)
    answers: dict[int, Published] = {}

    async def one(i: int) -> None:
        answers[i] = await coalescer.publish(publish(f"{i:02}a", f"{i:02}b"))  # 2 messages, 6 bytes

    async with trio.open_nursery() as nursery:
        for i in range(30):
            nursery.start_soon(one, i)
    assert len(answers) == 30 and sum(n for n, _ in sizes) == 60
    assert max(n for n, _ in sizes) <= 5 and max(b for _, b in sizes) <= 12, sizes
    assert any(n > 2 for n, _ in sizes), "still merged within the caps"
    for i, answer in answers.items():
        assert [m.id for m in answer.messages] == [f"id-{i:02}a", f"id-{i:02}b"]


async def test_a_publish_larger_than_the_cap_still_goes_alone() -> None:
    group = FakeGroup()
    coalescer = PublishCoalescer(group.submit, CoalescerLimits(max_messages=2, max_bytes=4))
    answer = await coalescer.publish(publish("a", "b", "c", "dddddd"))
    assert len(answer.messages) == 4


async def test_beyond_the_waiting_bound_a_publish_is_refused_with_429() -> None:
    group = FakeGroup()
    limits = CoalescerLimits(max_messages=100, max_bytes=1000, max_waiting_messages=4, max_waiting_bytes=1000)
    coalescer = PublishCoalescer(group.submit, limits)
    outcomes = await concurrently(coalescer, 10)
    refused = [o for o in outcomes.values() if isinstance(o, Overloaded)]
    accepted = [o for o in outcomes.values() if isinstance(o, Published)]
    assert refused and accepted and len(refused) + len(accepted) == 10
    assert all(o.status == 429 and o.retry_after_s > 0 for o in refused)
    assert group.broker.queue_info("q", 2).messages == len(accepted), "a refused publish stored nothing"
    assert coalescer.idle
