"""Client-side batching against a scripted server (httpx.MockTransport): when batches leave, who gets which id."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import trio

from mom.client import AsyncClient, Client
from mom.errors import InvalidInput, NotFound

URL = "http://mom.test:8080"
LONG_LINGER_MS = 60_000


class Server:
    """Answers each publish with one id per message, derived from its body, and records the batches."""

    def __init__(self, status: int = 201) -> None:
        self.status = status
        self.batches: list[list[Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/queues/orders/messages"
        bodies = [m["body"] for m in json.loads(request.content)["messages"]]
        self.batches.append(bodies)
        if self.status != 201:
            problem = {"type": "x/not-found", "title": "Not found", "status": self.status, "detail": "no queue"}
            return httpx.Response(self.status, json=problem)
        answers = [{"id": f"id-{body}", "offset": n, "duplicate": False} for n, body in enumerate(bodies)]
        return httpx.Response(201, json={"messages": answers})


def async_client(server: Server) -> AsyncClient:
    return AsyncClient(URL, token="t", transport=httpx.MockTransport(server), retries=0)


def sync_client(server: Server) -> Client:
    return Client(URL, token="t", transport=httpx.MockTransport(server), retries=0)


async def test_callers_within_the_linger_share_one_request_and_get_their_own_ids() -> None:
    server = Server()
    answers: dict[int, str] = {}
    async with async_client(server) as client, client.batcher(queue="orders", linger_ms=20) as batcher:

        async def publish(n: int) -> None:
            answers[n] = (await batcher.publish(n, headers={"h": "v"}))["id"]

        async with trio.open_nursery() as nursery:
            for n in range(5):
                nursery.start_soon(publish, n)
    assert [sorted(batch) for batch in server.batches] == [[0, 1, 2, 3, 4]]  # trio starts tasks in any order
    assert answers == {n: f"id-{n}" for n in range(5)}


async def test_a_full_batch_leaves_without_waiting_for_the_linger() -> None:
    server = Server()
    async with (
        async_client(server) as client,
        client.batcher(queue="orders", linger_ms=LONG_LINGER_MS, max_batch=3) as b,
    ):
        with trio.fail_after(5):
            async with trio.open_nursery() as nursery:
                for n in range(6):
                    nursery.start_soon(b.publish, n)
    assert [len(batch) for batch in server.batches] == [3, 3]
    assert sorted(server.batches[0] + server.batches[1]) == list(range(6))


async def test_an_error_reaches_every_caller_of_the_batch() -> None:
    server = Server(status=404)
    failures: list[BaseException] = []
    async with async_client(server) as client, client.batcher(queue="orders", linger_ms=10) as batcher:

        async def publish(n: int) -> None:
            try:
                await batcher.publish(n)
            except NotFound as exc:
                failures.append(exc)

        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(publish, n)
    assert len(server.batches) == 1 and len(failures) == 4


async def test_closing_sends_what_is_waiting() -> None:
    server = Server()
    answers: list[str] = []
    async with async_client(server) as client:
        async with trio.open_nursery() as nursery, client.batcher(queue="orders", linger_ms=LONG_LINGER_MS) as b:

            async def publish() -> None:
                answers.append((await b.publish("last"))["id"])

            nursery.start_soon(publish)
            await trio.sleep(0.01)
        assert answers == ["id-last"] and server.batches == [["last"]]


async def test_an_async_batcher_must_be_opened() -> None:
    async with async_client(Server()) as client:
        with pytest.raises(InvalidInput):
            await client.batcher(queue="orders").publish(1)


def test_blocking_batcher_lingers_then_sends_one_request() -> None:
    server = Server()
    with sync_client(server) as client, client.batcher(queue="orders", linger_ms=30) as batcher:
        started = time.monotonic()
        futures = [batcher.publish(n) for n in range(10)]
        ids = [f.result(timeout=5)["id"] for f in futures]
        waited = time.monotonic() - started
    assert ids == [f"id-{n}" for n in range(10)] and server.batches == [list(range(10))]
    assert 0.02 <= waited < 2


def test_blocking_batcher_sends_full_batches_at_once_and_flushes_on_close() -> None:
    server = Server()
    with sync_client(server) as client:
        batcher = client.batcher(queue="orders", linger_ms=LONG_LINGER_MS, max_batch=4)
        futures = [batcher.publish(n) for n in range(9)]
        assert [f.result(timeout=5)["id"] for f in futures[:8]] == [f"id-{n}" for n in range(8)]
        assert not futures[8].done()
        batcher.close()
        assert futures[8].result(timeout=0)["id"] == "id-8"
    assert server.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]
    with pytest.raises(InvalidInput):
        batcher.publish("after close")


def test_blocking_batcher_hands_the_error_to_every_future() -> None:
    server = Server(status=404)
    with sync_client(server) as client, client.batcher(queue="orders", linger_ms=5) as batcher:
        futures = [batcher.publish(n) for n in range(3)]
        for future in futures:
            with pytest.raises(NotFound):
                future.result(timeout=5)


def test_settings_are_checked_up_front() -> None:
    with sync_client(Server()) as client:
        with pytest.raises(InvalidInput):
            client.batcher(queue="orders", topic="news")
        with pytest.raises(InvalidInput):
            client.batcher(queue="orders", max_batch=0)
