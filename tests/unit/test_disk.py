"""The node's storage workers: results and errors come back to the caller, a call not yet started can be
cancelled, a started one is waited for, and idle workers end."""

from __future__ import annotations

import threading
import time

import pytest
import trio

from mom.log import disk as disk_module
from mom.log.disk import Disk

HANG_S = 10.0
"""Only catches a hang; never a speed limit."""


async def test_calls_run_in_worker_threads_and_return_their_results() -> None:
    disk = Disk(threads=2)
    main = threading.get_ident()
    results: list[tuple[int, int]] = []

    def double(i: int) -> tuple[int, int]:
        return i * 2, threading.get_ident()

    with trio.fail_after(HANG_S):
        for i in range(50):
            results.append(await disk.run(double, i))
    assert [value for value, _ in results] == [i * 2 for i in range(50)]
    assert all(ident != main for _, ident in results)
    assert len({ident for _, ident in results}) <= 2


async def test_an_error_in_the_call_is_raised_to_the_caller() -> None:
    def fail() -> None:
        raise OSError("disk on fire")

    with trio.fail_after(HANG_S), pytest.raises(OSError, match="disk on fire"):
        await Disk(threads=1).run(fail)


async def test_concurrent_calls_share_at_most_the_thread_limit() -> None:
    disk = Disk(threads=3)
    running = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with lock:
            running -= 1

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(disk.run, work)
    assert most == 3


async def test_a_call_waiting_for_a_busy_worker_is_cancelled_and_never_runs() -> None:
    disk = Disk(threads=1)
    release = threading.Event()
    ran: list[str] = []

    def block() -> None:
        release.wait(HANG_S)
        ran.append("block")

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(disk.run, block)
            await trio.sleep(0.05)
            with trio.move_on_after(0.05) as waited:
                await disk.run(ran.append, "queued")
            assert waited.cancelled_caught
            release.set()
        assert await disk.run(lambda: "after") == "after"
    assert ran == ["block"]


async def test_a_started_call_is_waited_for_when_cancelled() -> None:
    disk = Disk(threads=1)
    started = trio.Event()
    token = trio.lowlevel.current_trio_token()
    done: list[bool] = []

    def slow() -> None:
        trio.from_thread.run_sync(started.set, trio_token=token)
        time.sleep(0.2)
        done.append(True)

    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def call() -> None:
                with scope:
                    await disk.run(slow)

            nursery.start_soon(call)
            await started.wait()
            scope.cancel()
        assert done == [True]  # the cancellation waited for the call instead of leaving it running


async def test_idle_workers_end_and_new_calls_start_them_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(disk_module, "IDLE_S", 0.05)
    disk = Disk(threads=4)

    def workers() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "mom-disk")

    before = workers()
    with trio.fail_after(HANG_S):
        async with trio.open_nursery() as nursery:
            for _ in range(4):
                nursery.start_soon(disk.run, time.sleep, 0.02)
        assert workers() > before
        for _ in range(int(HANG_S / 0.02)):
            if workers() <= before:
                break
            await trio.sleep(0.02)
        assert workers() <= before
        assert await disk.run(lambda: 7) == 7


async def test_inline_runs_on_the_trio_thread() -> None:
    assert await Disk.inline().run(threading.get_ident) == threading.get_ident()
