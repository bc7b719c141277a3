"""Runs one service instance as a process: logging, the service's `run` in a nursery, stop on SIGINT/SIGTERM."""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import cast

import trio

from examples.bookstore.config import Settings

log = logging.getLogger("bookstore")

ServiceRun = Callable[..., Awaitable[None]]


def service_main(name: str) -> ServiceRun:
    module = importlib.import_module(f"examples.bookstore.services.{name}")
    return cast(ServiceRun, module.run)


async def _cancel_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("%s: stopping", signal.Signals(signum).name)
            scope.cancel()
            return


async def _serve(settings: Settings) -> None:
    run = service_main(settings.service)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
        await nursery.start(run, settings)
        where = f" on http://{settings.listen}" if settings.listen else ""
        log.info("%s ready%s", settings.name, where)


def run_instance(settings: Settings) -> None:
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s {settings.name} %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    for noisy in ("httpx", "httpcore", "hypercorn.error", "bookstore.hypercorn"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    trio.run(_serve, settings)
