"""Housekeeping per group, on one in-process node (real groups and storage, virtual time).

Every group this node leads gets its own housekeeper, so one whose dead letters cannot be delivered (a slow or
hung dead-letter queue, a full one, a missing one) holds up nobody else's lease expiry and TTL, and never loses
a dead letter: it stays in the source's outbox until its dead-letter queue takes it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing

from mom.broker.commands import (
    DeclareQueue,
    DeleteQueue,
    NewMessage,
    Publish,
    QueueAttrs,
    QueueRef,
    Receive,
    Received,
)
from mom.config import Address, NodeSection, Settings, StorageSection
from mom.errors import NotFound, QueueFull
from mom.log.disk import Disk
from mom.log.fs import OS_FILES, FileSystem
from mom.replication.manager import GroupManager
from mom.replication.router import Router
from mom.service import BrokerService, Handle
from mom.transports import TransportSettings, open_transport

EPOCH_MS = 1_700_000_000_000


def clock_ms() -> int:
    return EPOCH_MS + int(trio.current_time() * 1000)


@asynccontextmanager
async def one_node(
    tmp_path: Path,
    held: list[tuple[str, int]] | None = None,
    *,
    storage: StorageSection | None = None,
    fs: FileSystem = OS_FILES,
) -> AsyncIterator[BrokerService]:
    storage = storage if storage is not None else StorageSection(fsync="never")
    settings = Settings(node=NodeSection(data_dir=str(tmp_path)), storage=storage)
    async with trio.open_nursery() as nursery:
        transport = open_transport("memory", TransportSettings("mom1", Address("127.0.0.1", 0), {}))
        await nursery.start(transport.run)
        router = Router("mom1", transport)
        await nursery.start(router.run)
        manager = GroupManager(settings, router, disk=Disk.inline(fs), clock_ms=clock_ms, rng=random.Random(1))
        await nursery.start(manager.run)
        on_held = None if held is None else lambda reason, count: held.append((reason, count))
        service = BrokerService(manager, clock_ms=clock_ms, on_dead_letters_held=on_held)
        await nursery.start(service.run)
        yield service
        nursery.cancel_scope.cancel()


async def until(predicate: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    with trio.move_on_after(timeout_s):
        while True:
            if predicate():
                return
            await trio.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout_s} virtual seconds")


async def declare(service: BrokerService, name: str, **attrs: Any) -> None:
    meta = service.locate_meta()
    while not hasattr(meta, "state"):
        await trio.sleep(0.05)
        meta = service.locate_meta()
    await service.submit(meta, DeclareQueue(name, QueueAttrs(**attrs), "admin"))  # type: ignore[arg-type]
    await until(lambda: service.serving_replica(QueueRef(name)) is not None, f"{name} served")
    await until(lambda: service.locate(QueueRef(name)).here is not None, f"{name} led here")


def here(service: BrokerService, name: str) -> Any:
    handle = service.locate(QueueRef(name)).here
    assert handle is not None
    return handle


async def publish(service: BrokerService, name: str, body: bytes) -> None:
    await service.submit(here(service, name), Publish(QueueRef(name), [NewMessage(body.decode(), body)]))


async def dead_letter_one(service: BrokerService, name: str) -> None:
    """Publish to `name` (max_deliveries 1), lease it and let the lease run out: it becomes a dead letter."""
    await publish(service, name, b"doomed")
    result = await service.submit(here(service, name), Receive(QueueRef(name), 1, 1000))
    assert isinstance(result, Received) and len(result.messages) == 1


def messages(service: BrokerService, name: str) -> int:
    return here(service, name).state.queue_info(name, clock_ms()).messages  # type: ignore[no-any-return]


def outbox(service: BrokerService, name: str) -> int:
    return here(service, name).state.outbox_size()  # type: ignore[no-any-return]


async def test_a_hung_dead_letter_queue_holds_up_no_other_group(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    hung: list[str] = []

    async def sender(queue: str, letters: list[NewMessage]) -> None:
        hung.append(queue)
        await trio.sleep_forever()

    with trio.fail_after(120):
        async with one_node(tmp_path) as service:
            service.set_dead_letter_sender(sender)
            await declare(service, "dlq")
            await declare(service, "source", max_deliveries=1, dead_letter_queue="dlq", visibility_timeout_s=1)
            await declare(service, "expiring", message_ttl_s=1)
            await dead_letter_one(service, "source")
            await until(lambda: bool(hung), "the dead-letter sender was called")
            await publish(service, "expiring", b"short-lived")
            assert messages(service, "expiring") == 1
            await until(lambda: messages(service, "expiring") == 0, "the TTL of another group expired")
            assert outbox(service, "source") == 1, "the letter that could not be sent is still kept"


def refusing(error: Callable[[str], Exception], calls: list[str]) -> Callable[[str, list[NewMessage]], Awaitable[None]]:
    async def sender(queue: str, letters: list[NewMessage]) -> None:
        calls.append(queue)
        raise error(f"dead-letter queue {queue} refused")

    return sender


async def test_a_full_or_missing_dead_letter_queue_keeps_the_letter_and_retries(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    calls: list[str] = []
    held: list[tuple[str, int]] = []
    with trio.fail_after(120):
        async with one_node(tmp_path, held) as service:
            service.set_dead_letter_sender(refusing(QueueFull, calls))
            await declare(service, "dlq")
            await declare(service, "source", max_deliveries=1, dead_letter_queue="dlq", visibility_timeout_s=1)
            await dead_letter_one(service, "source")
            await until(lambda: len(calls) >= 2, "the letter was offered again after a refusal")
            assert outbox(service, "source") == 1, "a full dead-letter queue must not lose the letter"
            assert held[:2] == [("full", 1), ("full", 1)], "the metric counts each refused attempt"
            assert service.dead_letters_waiting() == 1
            service.set_dead_letter_sender(refusing(NotFound, calls))
            tried = len(calls)
            await until(lambda: len(calls) > tried, "offered again")
            assert outbox(service, "source") == 1, "a missing dead-letter queue must not lose the letter"
            assert held[-1] == ("missing", 1)
            delivered: list[NewMessage] = []

            async def accepting(queue: str, letters: list[NewMessage]) -> None:
                delivered.extend(letters)

            service.set_dead_letter_sender(accepting)
            await until(lambda: outbox(service, "source") == 0, "the letter left once the queue took it")
            assert [m.body for m in delivered] == [b"doomed"]
            assert service.dead_letters_waiting() == 0
            assert delivered[0].headers["x-death"]["reason"] == "max_deliveries"


async def test_a_housekeeper_runs_exactly_while_its_group_is_led_here(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    # A deleted group's data is erased in a worker thread, which an instant virtual clock would not wait for
    # (it would jump to the deadline below): jump only once everything was idle for a moment of real time.
    mock_clock.autojump_threshold = 0.01
    with trio.fail_after(120):
        async with one_node(tmp_path) as service:
            housekeepers = service._housekeepers
            await declare(service, "short-lived")
            gid = here(service, "short-lived").group_id
            await until(lambda: gid in housekeepers.leading(), "a housekeeper for the new group")
            meta = service.locate_meta()
            assert isinstance(meta, Handle)
            await service.submit(meta, DeleteQueue("short-lived"))
            await until(lambda: gid not in housekeepers.leading(), "its housekeeper stopped with the group")
            assert "meta" in housekeepers.leading()
            await until(lambda: not (tmp_path / "groups" / gid).exists(), "the deleted group's data erased")
