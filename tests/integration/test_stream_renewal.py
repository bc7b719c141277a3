"""A `StreamClient` with credentials outlives its token: when the server closes the socket at the token's expiry,
the client opens a new one with a new token and its subscription goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mom.client import Client
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
    async with (
        StreamClient(short_tokens.url, username="admin", password=ADMIN_PASSWORD) as stream,
        stream.subscribe(queue="renewed", credit=10) as sub,
    ):
        await stream.publish([{"body": "before"}], queue="renewed")
        with trio.fail_after(20):
            first = await sub.__anext__()
        await sub.ack([first["receipt"]])
        await trio.sleep(TOKEN_TTL_S + 1)  # the server has closed the first socket by now
        await stream.publish([{"body": "after"}], queue="renewed")
        with trio.fail_after(20):
            second = await sub.__anext__()
        await sub.ack([second["receipt"]])
    assert (first["body"], second["body"]) == ("before", "after")
