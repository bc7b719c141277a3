"""The provisioning step, run once with mom's admin account before the services start: declare every queue,
topic and subscription of `topology`, and issue each service an OAuth client with its least-privilege scopes.

It is idempotent: declarations answer 200 when they already exist with the same attributes, and credentials
already in the credentials file are kept while they still work (a secret is shown by mom only once, so a
client whose secret was lost is replaced by a new one).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from examples.bookstore import topology as t
from examples.bookstore.config import load_credentials, save_credentials
from examples.bookstore.momlink import MomLink
from mom.client import AsyncClient, Conflict, Unauthorized

log = logging.getLogger("bookstore.provision")

Declaration = Callable[[AsyncClient], Awaitable[dict[str, Any]]]


async def _together(admin: MomLink, declarations: list[Declaration]) -> None:
    async with trio.open_nursery() as nursery:
        for declare in declarations:
            nursery.start_soon(admin.call, declare)


async def declare_topology(admin: MomLink) -> None:
    """Dead-letter queues and topics first (the others name them), each wave declared concurrently."""
    delivery: dict[str, Any] = {"visibility_timeout_s": t.VISIBILITY_TIMEOUT_S, "max_deliveries": t.MAX_DELIVERIES}
    first: list[Declaration] = [partial(AsyncClient.create_queue, name=dead) for dead in t.DEAD_LETTER_QUEUES]
    first += [
        partial(AsyncClient.create_topic, name=topic, retention_s=t.EVENT_RETENTION_S) for topic in t.EVENT_TOPICS
    ]
    then: list[Declaration] = [
        partial(AsyncClient.create_queue, name=queue, dead_letter_queue=t.dead_letter_queue(queue), **delivery)
        for queue in t.COMMAND_QUEUES
    ]
    then += [
        partial(AsyncClient.create_subscription, topic=sub.topic, name=sub.name, start="earliest",
                dead_letter_queue=t.EVENTS_DLQ, **delivery)
        for sub in t.SUBSCRIPTIONS
    ]  # fmt: skip
    await _together(admin, first)
    await _together(admin, then)


def _known(credentials_file: Path) -> dict[str, dict[str, str]]:
    try:
        return load_credentials(credentials_file)
    except FileNotFoundError:
        return {}


async def _still_valid(urls: tuple[str, ...], entry: dict[str, str], ca_file: str | None) -> bool:
    credentials = {"client_id": entry["client_id"], "client_secret": entry["client_secret"]}
    async with MomLink(urls, credentials=credentials, ca_file=ca_file) as link:
        try:
            await link.call(lambda c: c.token())
        except Unauthorized:
            return False
    return True


async def issue_credentials(
    admin: MomLink, urls: tuple[str, ...], credentials_file: Path, ca_file: str | None
) -> dict[str, dict[str, str]]:
    """One OAuth client per service with exactly the scopes of `topology.SCOPES`, saved to `credentials_file`."""
    known = _known(credentials_file)
    issued: dict[str, dict[str, str]] = {}
    for service, scopes in t.SCOPES.items():
        entry = known.get(service)
        if entry and entry.get("scopes") == " ".join(scopes) and await _still_valid(urls, entry, ca_file):
            issued[service] = entry
            continue
        client_id = f"bookstore-{service}"
        try:
            created = await admin.call(partial(AsyncClient.create_client, scopes=scopes, client_id=client_id))
        except Conflict:
            client_id = f"bookstore-{service}-{secrets.token_hex(3)}"
            created = await admin.call(partial(AsyncClient.create_client, scopes=scopes, client_id=client_id))
        issued[service] = {
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
            "scopes": " ".join(scopes),
        }
        log.info("issued client %s to %s: %s", created["client_id"], service, " ".join(scopes))
    save_credentials(credentials_file, issued)
    return issued


async def provision(
    urls: tuple[str, ...],
    admin_username: str,
    admin_password: str,
    credentials_file: Path,
    *,
    ca_file: str | None = None,
) -> dict[str, dict[str, str]]:
    admin_credentials = {"username": admin_username, "password": admin_password}
    async with MomLink(urls, credentials=admin_credentials, ca_file=ca_file) as admin:
        await declare_topology(admin)
        return await issue_credentials(admin, urls, credentials_file, ca_file)
