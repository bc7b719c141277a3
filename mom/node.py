"""One node: builds storage, the broker service, auth and the REST server from settings and runs them in one
nursery. Start-up order is explicit (each part is `nursery.start`ed and ready before the next), and shutdown is
the cancellation of that nursery.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from mom.api.app import create_app
from mom.api.auth import ADMIN_SCOPES, SigningKeys, TokenEndpoint, TokenService, hash_secret_async
from mom.api.context import ApiContext
from mom.api.metrics import Metrics
from mom.broker.commands import RegisterUser
from mom.config import AuthSection, Settings
from mom.errors import InvalidInput
from mom.replication.local import LocalGroup
from mom.service import BrokerService, wall_clock_ms

log = logging.getLogger("mom.node")

TOKEN_ISSUER = "urn:mom"
TOKEN_AUDIENCE = "mom"

Announce = Callable[[str], None]


@contextmanager
def data_dir_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data directory: two nodes writing one log would corrupt it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInput(f"another mom node is using the data directory {directory}") from None
        yield
    finally:
        os.close(fd)


async def bootstrap_admin(service: BrokerService, auth: AuthSection, announce: Announce) -> None:
    """Create the admin account on first start; a generated password is printed this once and never stored."""
    if service.broker.user(auth.admin_username) is not None:
        return
    password = auth.admin_password or secrets.token_urlsafe(18)
    await service.submit(RegisterUser(auth.admin_username, await hash_secret_async(password), list(ADMIN_SCOPES)))
    if auth.admin_password:
        announce(f"created admin user {auth.admin_username!r} with the password from MOM_ADMIN_PASSWORD")
    else:
        announce(f"created admin user {auth.admin_username!r}; password (shown once): {password}")


def _hypercorn_config(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [str(settings.rest)]
    config.accesslog = None
    config.errorlog = logging.getLogger("mom.http")
    config.graceful_timeout = 2.0
    return config


async def serve_node(
    settings: Settings,
    *,
    announce: Announce = print,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node until cancelled; `task_status.started` receives the REST URLs once it accepts requests."""
    data_dir = settings.data_dir
    with data_dir_lock(data_dir):
        group = LocalGroup(
            data_dir / "state",
            settings.storage,
            dedup_window_ms=round(settings.broker.dedup_window_s * 1000),
            clock_ms=wall_clock_ms,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(group.run)
            service = BrokerService(group)
            await nursery.start(service.run)
            keys = SigningKeys.load_or_create(data_dir / "keys")
            tokens = TokenService(keys, issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE, ttl_s=settings.auth.token_ttl_s)
            await bootstrap_admin(service, settings.auth, announce)
            context = ApiContext(
                settings=settings,
                service=service,
                keys=keys,
                tokens=tokens,
                token_endpoint=TokenEndpoint(service, tokens),
                metrics=Metrics(group.storage_stats),
                is_ready=lambda: True,
            )
            urls: list[str] = await nursery.start(partial(serve, create_app(context), _hypercorn_config(settings)))
            announce(f"mom node {settings.node_id} ready: REST on {', '.join(urls)}, data in {data_dir}")
            task_status.started(urls)


async def _main(settings: Settings) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
        await nursery.start(partial(serve_node, settings))


async def _cancel_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


def run_node(settings: Settings) -> None:
    """Run one node in the foreground until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    trio.run(_main, settings)
