"""A client given several nodes stays on one while it answers and moves to the next when a retry is due there.

Against scripted nodes (httpx.MockTransport, by host). Whether a failure is retried at all follows the retry
rules (docs/api.md, "Outcomes and retries") whichever node the retry goes to: a request that may have been
applied is sent again, to any node, only when that cannot duplicate anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from mom.client import AsyncClient, Client, OutcomeUnknown
from mom.client import _protocol as p
from mom.errors import InvalidInput, NotFound

URLS = "http://n1.test:8080, http://n2.test:8080,http://n3.test:8080/"
Behaviour = Callable[[httpx.Request], httpx.Response]


def refuse(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def drop(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)


def unavailable(request: httpx.Request) -> httpx.Response:
    body = {"type": "https://mom.invalid/problems/unavailable", "title": "T", "status": 503, "detail": "no leader"}
    return httpx.Response(503, content=json.dumps(body), headers={"Retry-After": "0"})


def ok(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/messages"):
        return httpx.Response(201, json={"messages": [{"id": "m", "offset": 0, "duplicate": False}]})
    if request.method == "DELETE":
        return httpx.Response(204)
    return httpx.Response(200, json={"name": "q"})


class Cluster:
    """Scripted nodes: each host answers with its own behaviour (`ok` unless told otherwise)."""

    def __init__(self, **behaviours: Behaviour) -> None:
        self.behaviours = behaviours
        self.asked: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        node = request.url.host.removesuffix(".test")
        self.asked.append(node)
        return self.behaviours.get(node, ok)(request)


def test_urls_are_a_list_or_comma_separated() -> None:
    assert p.parse_urls(URLS) == ["http://n1.test:8080", "http://n2.test:8080", "http://n3.test:8080"]
    assert p.parse_urls(["http://a:1/", "http://b:2"]) == ["http://a:1", "http://b:2"]
    with pytest.raises(InvalidInput):
        p.parse_urls(" , ")


def test_an_unreachable_node_is_passed_over_and_the_next_one_kept() -> None:
    cluster = Cluster(n1=refuse)
    with Client(URLS, token="t", transport=httpx.MockTransport(cluster)) as client:
        client.publish({"n": 1}, queue="q")
        client.get_queue("q")
        assert client.url == "http://n2.test:8080"
    assert cluster.asked == ["n1", "n2", "n2"]


def test_a_503_is_retried_on_the_next_node_round_the_list() -> None:
    cluster = Cluster()
    with Client(URLS, token="t", transport=httpx.MockTransport(cluster)) as client:
        client.publish({"n": 1}, queue="q")
        cluster.behaviours.update(n1=unavailable, n2=refuse)
        client.publish({"n": 2}, queue="q")
        cluster.behaviours.update(n1=ok, n3=unavailable)
        client.publish({"n": 3}, queue="q")
    assert cluster.asked == ["n1", "n1", "n2", "n3", "n3", "n1"]


def test_a_write_that_may_have_been_applied_is_not_repeated_on_another_node() -> None:
    cluster = Cluster(n1=drop)
    with Client(URLS, token="t", transport=httpx.MockTransport(cluster)) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.delete_queue("q")
        assert cluster.asked == ["n1"], "a delete whose outcome is unknown is not sent again, to any node"
        client.delete_queue("q")
    assert cluster.asked == ["n1", "n2"], "the next request starts on the next node"


def test_a_deduplicated_publish_with_an_unknown_outcome_is_retried_on_the_next_node() -> None:
    cluster = Cluster(n1=drop)
    with Client(URLS, token="t", transport=httpx.MockTransport(cluster)) as client:
        client.publish({"n": 1}, queue="q")
    assert cluster.asked == ["n1", "n2"]


def test_an_answer_that_is_no_failure_of_the_node_keeps_the_client_there() -> None:
    def missing(request: httpx.Request) -> httpx.Response:
        body = {"type": "https://mom.invalid/problems/not-found", "title": "T", "status": 404, "detail": "no q"}
        return httpx.Response(404, content=json.dumps(body))

    cluster = Cluster(n1=missing)
    with Client(URLS, token="t", transport=httpx.MockTransport(cluster)) as client:
        with pytest.raises(NotFound):
            client.get_queue("q")
        assert client.url == "http://n1.test:8080"


async def test_the_async_client_fails_over_too() -> None:
    cluster = Cluster(n1=refuse, n2=unavailable)

    async def handler(request: httpx.Request) -> httpx.Response:
        return cluster(request)

    async with AsyncClient(URLS, token="t", transport=httpx.MockTransport(handler)) as client:
        await client.publish({"n": 1}, queue="q")
        assert client.urls == p.parse_urls(URLS) and client.url == "http://n3.test:8080"
    assert cluster.asked == ["n1", "n2", "n3"]


def test_outcome_unknown_answered_by_a_node_is_raised_for_a_write_without_dedup_ids() -> None:
    def unknown(request: httpx.Request) -> httpx.Response:
        body = {"type": "https://mom.invalid/problems/outcome-unknown", "title": "T", "status": 503, "detail": "?"}
        return httpx.Response(503, content=json.dumps(body), headers={"Retry-After": "0"})

    cluster = Cluster(n1=unknown)
    client = Client(URLS, token="t", dedup_ids=False, transport=httpx.MockTransport(cluster))
    with client, pytest.raises(OutcomeUnknown):
        client.publish({"n": 1}, queue="q")
    assert cluster.asked == ["n1"]
