"""The Raft driver of one group (RaftGroup) over real storage, on one node: what it does when things go wrong."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from mom.broker import Broker
from mom.broker.commands import DeclareQueue, Entry, NewMessage, Publish, QueueAttrs, QueueRef, Result
from mom.config import Address, StorageSection
from mom.errors import InvalidInput
from mom.log.disk import Disk
from mom.replication.group import RaftGroup
from mom.replication.router import Router
from mom.transports.base import TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport

STORAGE = StorageSection(fsync="always", segment_bytes=4096, snapshot_bytes=4096)


async def wait_for(predicate: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while True:
            if predicate():
                return
            await trio.sleep(0.01)


def single_voter(directory: Path, router: Router) -> RaftGroup:
    return RaftGroup(
        "q",
        "n1",
        ["n1"],
        directory,
        STORAGE,
        router.send,
        disk=Disk(),
        dedup_window_ms=60_000,
        clock_ms=lambda: 1_700_000_000_000,
        rng=random.Random(1),
        election_ticks=1,
    )


def failing_on_publish(broker: Broker, error: Exception) -> Callable[[Entry], Result]:
    """`broker.apply`, except that a Publish raises `error` after the broker began to change (a bug)."""
    apply = broker.apply

    def patched(entry: Entry) -> Result:
        if isinstance(entry.command, Publish):
            raise error
        return apply(entry)

    return patched


async def test_a_bug_while_applying_stops_the_node_with_a_clear_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Crash-only: state that may be half-mutated must not go on serving; the error leaves the node's nursery."""
    hub = MemoryHub(random.Random(0))
    transport = MemoryTransport(TransportSettings("n1", Address("127.0.0.1", 0), {}), hub)
    router = Router("n1", transport)
    group = single_voter(tmp_path, router)
    answers: list[BaseException] = []
    stopped_by: list[BaseException] = []

    async def publish() -> None:
        try:
            await group.submit(Publish(QueueRef("orders"), [NewMessage("m1", b'"x"')]))
        except Exception as exc:
            answers.append(exc)

    async def run_group(*, task_status: trio.TaskStatus[None]) -> None:
        try:
            await group.run(task_status=task_status)
        except BaseException as exc:
            stopped_by.append(exc)
            raise

    bug = KeyError("a bug")
    with (
        caplog.at_level(logging.CRITICAL, logger="mom.replication"),
        pytest.raises(BaseExceptionGroup) as raised,
        trio.fail_after(10),
    ):
        async with trio.open_nursery() as nursery:
            await nursery.start(transport.run)
            await nursery.start(router.run)
            await nursery.start(run_group)
            router.add_group(group)
            await wait_for(lambda: group.is_leader)
            await group.submit(DeclareQueue("orders", QueueAttrs(), "me"))
            group.broker.apply = failing_on_publish(group.broker, bug)  # type: ignore[method-assign]
            nursery.start_soon(publish)
            await trio.sleep_forever()
    assert [leaf for exc in stopped_by for leaf in _leaves(exc)] == [bug], "the group's driver stops on the bug"
    assert [exc for exc in _leaves(raised.value) if exc is bug] == [bug]
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
    assert any("group q" in line and "entry" in line and "stopping the node" in line for line in lines), lines
    assert len(answers) == 1 and not isinstance(answers[0], KeyError), "answered as stopping, not with the bug"


async def test_a_mom_error_while_applying_is_the_command_answer_and_the_group_goes_on(tmp_path: Path) -> None:
    hub = MemoryHub(random.Random(0))
    transport = MemoryTransport(TransportSettings("n1", Address("127.0.0.1", 0), {}), hub)
    router = Router("n1", transport)
    group = single_voter(tmp_path, router)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        await nursery.start(router.run)
        await nursery.start(group.run)
        router.add_group(group)
        await wait_for(lambda: group.is_leader)
        await group.submit(DeclareQueue("orders", QueueAttrs(), "me"))
        apply = group.broker.apply
        group.broker.apply = failing_on_publish(group.broker, InvalidInput("refused"))  # type: ignore[method-assign]
        with pytest.raises(InvalidInput, match="refused"):
            await group.submit(Publish(QueueRef("orders"), [NewMessage("m1", b'"x"')]))
        group.broker.apply = apply  # type: ignore[method-assign]
        await group.submit(Publish(QueueRef("orders"), [NewMessage("m2", b'"y"')]))
        assert group.broker.queue_info("orders", 1_700_000_000_000).messages == 1
        nursery.cancel_scope.cancel()


def _leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for inner in group.exceptions for leaf in _leaves(inner)]
    return [group]
