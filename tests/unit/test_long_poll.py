"""Long-polling receives on one in-process node (real groups and storage, virtual time).

Several consumers waiting on one queue must not all take a turn at the log for one message: each receive is a
replicated command (it leases what it returns), so a publish that woke every waiter used to cost one Receive per
waiter, all but one of them empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from mom.broker.commands import Command, QueueRef, Receive
from mom.service import BrokerService
from tests.unit.test_housekeeping import declare, here, one_node, publish, until

WAITERS = 4


def count_receives(service: BrokerService, monkeypatch: pytest.MonkeyPatch) -> list[Receive]:
    """The Receive commands the service submits from now on."""
    receives: list[Receive] = []
    submit = service.submit

    async def counting(handle: Any, command: Command, *args: Any) -> Any:
        if isinstance(command, Receive):
            receives.append(command)
        return await submit(handle, command, *args)

    monkeypatch.setattr(service, "submit", counting)
    return receives


async def test_one_message_costs_one_receive_however_many_consumers_wait(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(120):
        async with one_node(tmp_path) as service:
            await declare(service, "jobs")
            receives = count_receives(service, monkeypatch)
            got: list[int] = []

            async def consumer() -> None:
                deliveries = await service.receive(
                    here(service, "jobs"), QueueRef("jobs"), max_messages=10, wait_s=5, visibility_timeout_ms=None
                )
                got.append(len(deliveries))

            async with trio.open_nursery() as nursery:
                for _ in range(WAITERS):
                    nursery.start_soon(consumer)
                await until(lambda: service.waiting_receives == WAITERS, "every consumer waits")
                await publish(service, "jobs", b"one")
                await until(lambda: sum(got) == 1, "one consumer got the message")
                assert len(receives) == 1, f"{len(receives)} receives were committed for one message"
                nursery.cancel_scope.cancel()


async def test_messages_published_together_reach_waiting_consumers_without_waiting_out_the_poll(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Waiters serialised after a wake-up still each get what is left: nobody sleeps through a ready message."""
    with trio.fail_after(120):
        async with one_node(tmp_path) as service:
            await declare(service, "jobs")
            got: list[int] = []
            finished: list[float] = []

            async def consumer() -> None:
                deliveries = await service.receive(
                    here(service, "jobs"), QueueRef("jobs"), max_messages=1, wait_s=20, visibility_timeout_ms=None
                )
                got.append(len(deliveries))
                finished.append(trio.current_time())

            async with trio.open_nursery() as nursery:
                for _ in range(WAITERS):
                    nursery.start_soon(consumer)
                await until(lambda: service.waiting_receives == WAITERS, "every consumer waits")
                published = trio.current_time()
                for body in (b"a", b"b", b"c"):
                    await publish(service, "jobs", body)
                await until(lambda: sum(got) == 3, "three consumers got one each")
                assert max(finished) - published < 5, "a consumer slept through a ready message"
                nursery.cancel_scope.cancel()
