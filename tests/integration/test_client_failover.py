"""The Python clients given every node of a real 3-node cluster keep working when the node they use dies.

`Client` and `StreamClient` get all three URLs, start on mom1, and lose it to `kill -9` mid-way: every publish
made with the defaults (dedup ids) is answered and stored once, and a stream subscription opened before the
kill goes on delivering, through another node, what is published after it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from mom.client import Client
from mom.client.stream import StreamClient
from tests.integration.harness import ADMIN_PASSWORD, Cluster

pytestmark = pytest.mark.transport


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


def urls(cluster: Cluster) -> list[str]:
    return [node.url for node in cluster.nodes.values()]


def drain(client: Client, queue: str) -> list[object]:
    bodies: list[object] = []
    while batch := client.receive(queue=queue, max_messages=100, wait_s=1):
        bodies += [m["body"] for m in batch]
        client.ack([m["receipt"] for m in batch], queue=queue)
    return bodies


def test_the_blocking_client_moves_to_another_node_when_its_node_dies(cluster: Cluster) -> None:
    with Client(urls(cluster), username="admin", password=ADMIN_PASSWORD, timeout=20) as client:
        client.create_queue("carried")
        for n in range(20):
            client.publish(n, queue="carried")
        assert client.url == cluster.nodes["mom1"].url
        cluster.nodes["mom1"].kill()
        for n in range(20, 60):
            client.publish(n, queue="carried")
        assert client.url != cluster.nodes["mom1"].url
        counts = Counter(drain(client, "carried"))
    assert sorted(counts) == list(range(60)) and set(counts.values()) == {1}


async def test_a_stream_reopens_on_another_node_and_its_subscription_goes_on(cluster: Cluster) -> None:
    with Client(urls(cluster)[1:], username="admin", password=ADMIN_PASSWORD) as admin:
        admin.create_queue("streamed", visibility_timeout_s=2)
    received: set[int] = set()
    async with StreamClient(urls(cluster), username="admin", password=ADMIN_PASSWORD, timeout=20) as stream:
        assert stream.url == cluster.nodes["mom1"].url
        async with stream.subscribe(queue="streamed", credit=50) as sub:
            for n in range(10):
                await stream.publish([{"body": n}], queue="streamed")
            cluster.nodes["mom1"].kill()
            for n in range(10, 30):
                await stream.publish([{"body": n}], queue="streamed")
            assert stream.url != cluster.nodes["mom1"].url
            with trio.fail_after(60):
                async for message in sub:
                    await sub.ack([message["receipt"]])
                    received.add(message["body"])
                    if received >= set(range(30)):
                        break
    assert received == set(range(30)), "what was delivered on the lost socket and not acked came back"
