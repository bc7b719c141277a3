"""A `StreamClient` with credentials outlives its token: when the server closes the socket at the token's expiry,
the client opens a new one with a new token and its subscription goes on. So does a subscription that a client
with credentials opened with `consume`, async or blocking (it used to hand the stream only its current token)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mom.client import AsyncClient, Client
from mom.client.consume import BlockingSubscription
from mom.client.stream import StreamClient
from tests.integration.harness import ADMIN_PASSWORD, NodeProcess

TOKEN_TTL_S = 10
"""The shortest a node allows."""


@pytest.fixture
def short_tokens(tmp_path: Path) -> Iterator[NodeProcess]:
    config = tmp_path / "mom.toml"
    config.write_text(f"[auth]\ntoken_ttl_s = {TOKEN_TTL_S}\n")
    node = NodeProcess(tmp_path / "data", config=config).start()
    yield node
    node.kill()


async def test_a_stream_subscription_goes_on_past_its_token(short_tokens: NodeProcess) -> None:
    with Client(short_tokens.url, username="admin", password=ADMIN_PASSWORD) as admin:
        admin.create_queue("renewed")
        admin.create_queue("consumed")
        admin.create_queue("consumed-blocking")
        with admin.consume(queue="consumed-blocking", prefetch=10) as blocking:
            await _goes_on_past_its_token(short_tokens, blocking)


async def _goes_on_past_its_token(short_tokens: NodeProcess, blocking: BlockingSubscription) -> None:
    """The blocking subscription is read from a worker thread, so the event loop keeps serving the others."""
    async with (
        StreamClient(short_tokens.url, username="admin", password=ADMIN_PASSWORD) as stream,
        stream.subscribe(queue="renewed", credit=10) as sub,
        AsyncClient(short_tokens.url, username="admin", password=ADMIN_PASSWORD) as client,
        client.consume(queue="consumed", prefetch=10) as consumed,
    ):
        await stream.publish([{"body": "before"}], queue="renewed")
        await stream.publish([{"body": "before"}], queue="consumed")
        await stream.publish([{"body": "before"}], queue="consumed-blocking")
        with trio.fail_after(20):
            first = await sub.__anext__()
            first_consumed = await consumed.__anext__()
            first_blocking = await trio.to_thread.run_sync(next, blocking, abandon_on_cancel=True)
        await sub.ack([first["receipt"]])
        await consumed.ack([first_consumed["receipt"]])
        await trio.to_thread.run_sync(blocking.ack, [first_blocking["receipt"]])
        await trio.sleep(TOKEN_TTL_S + 1)  # the server has closed both first sockets by now
        await stream.publish([{"body": "after"}], queue="renewed")
        await stream.publish([{"body": "after"}], queue="consumed")
        await stream.publish([{"body": "after"}], queue="consumed-blocking")
        with trio.fail_after(20):
            second = await sub.__anext__()
            second_consumed = await consumed.__anext__()
            second_blocking = await trio.to_thread.run_sync(next, blocking, abandon_on_cancel=True)
        await sub.ack([second["receipt"]])
        await consumed.ack([second_consumed["receipt"]])
        await trio.to_thread.run_sync(blocking.ack, [second_blocking["receipt"]])
    assert (first["body"], second["body"]) == ("before", "after")
    assert (first_consumed["body"], second_consumed["body"]) == ("before", "after")
    assert (first_blocking["body"], second_blocking["body"]) == ("before", "after")
