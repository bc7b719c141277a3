"""Client retries that never duplicate: dedup ids by default, and which failures are sent again.

Against scripted answers (httpx.MockTransport). A publish may be sent again after an unknown outcome (a 503
`outcome-unknown`, a connection lost mid-request) only because every message carries a dedup id, the same on
every attempt; without dedup ids (`dedup_ids=False`) such a failure is raised, never retried.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio

from mom.client import AsyncClient, Client, OutcomeUnknown
from mom.client import _protocol as p
from mom.client.stream import StreamClient
from mom.errors import Overloaded, QueueFull, Unavailable

URL = "http://mom.test:8080"
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Script:
    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.answers, f"unexpected request {request.method} {request.url}"
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer

    def body(self, index: int) -> Any:
        return json.loads(self.requests[index].content)

    def dedup_ids(self, index: int) -> list[str | None]:
        return [m.get("dedup_id") for m in self.body(index)["messages"]]


def problem(status: int, slug: str, retry_after: str = "0") -> httpx.Response:
    payload = {"type": f"https://mom.invalid/problems/{slug}", "title": "T", "status": status, "detail": slug}
    headers = {"content-type": "application/problem+json", "Retry-After": retry_after}
    return httpx.Response(status, content=json.dumps(payload), headers=headers)


def published(count: int = 1) -> httpx.Response:
    return httpx.Response(
        201, json={"messages": [{"id": f"m{i}", "offset": i, "duplicate": False} for i in range(count)]}
    )


def dropped(request: httpx.Request) -> httpx.Response:
    """The server went away after reading the request: it may have applied it."""
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)


def unknown(request: httpx.Request) -> httpx.Response:
    """A fresh 503 outcome-unknown for each request (a Response object is read once)."""
    return problem(503, "outcome-unknown")


def client(script: Script, **kwargs: Any) -> Client:
    return Client(URL, token="t", transport=httpx.MockTransport(script), **kwargs)


def test_every_message_gets_a_dedup_id_unless_it_has_one() -> None:
    script = Script(published(), published(3))
    with client(script) as c:
        c.publish("one", queue="q")
        c.publish_batch([{"body": 1}, {"body": 2, "dedup_id": "mine"}, {"body": 3}], queue="q")
    [generated] = script.dedup_ids(0)
    first, given, third = script.dedup_ids(1)
    assert given == "mine"
    assert len({generated, first, third}) == 3 and all(len(str(i)) == 32 for i in (generated, first, third))


def test_dedup_ids_can_be_turned_off() -> None:
    script = Script(published(2))
    with client(script, dedup_ids=False) as c:
        c.publish_batch([{"body": 1}, {"body": 2, "dedup_id": "mine"}], queue="q")
    assert script.dedup_ids(0) == [None, "mine"]


@pytest.mark.parametrize("failure", [unknown, dropped], ids=["503-outcome-unknown", "connection-lost"])
def test_a_publish_with_an_unknown_outcome_is_retried_with_the_same_dedup_ids(failure: Answer) -> None:
    script = Script(failure, failure, published(2))
    with client(script) as c:
        assert [m["id"] for m in c.publish_batch([{"body": 1}, {"body": 2}], queue="q")] == ["m0", "m1"]
    assert len(script.requests) == 3
    assert script.dedup_ids(0) == script.dedup_ids(1) == script.dedup_ids(2)
    assert None not in script.dedup_ids(0)


@pytest.mark.parametrize("failure", [unknown, dropped], ids=["503-outcome-unknown", "connection-lost"])
def test_without_dedup_ids_an_unknown_outcome_is_raised_not_retried(failure: Answer) -> None:
    script = Script(failure)
    with client(script, dedup_ids=False) as c, pytest.raises((OutcomeUnknown, httpx.RemoteProtocolError)):
        c.publish("once", queue="q")
    assert len(script.requests) == 1


def test_outcome_unknown_is_its_own_class_and_still_an_unavailable() -> None:
    with client(Script(unknown), retries=0) as c, pytest.raises(OutcomeUnknown) as caught:
        c.publish("x", queue="q")
    assert isinstance(caught.value, Unavailable) and caught.value.status == 503


def test_a_delete_with_an_unknown_outcome_is_not_repeated() -> None:
    """Sending it again would answer 404 for a delete that happened: the caller must look."""
    script = Script(unknown)
    with client(script) as c, pytest.raises(OutcomeUnknown):
        c.delete_queue("q")
    assert len(script.requests) == 1


@pytest.mark.parametrize(
    "answer", [problem(503, "unavailable"), problem(429, "overloaded"), problem(429, "queue-full")]
)
def test_refusals_that_wrote_nothing_are_retried_even_without_dedup_ids(answer: httpx.Response) -> None:
    script = Script(answer, published())
    with client(script, dedup_ids=False) as c:
        c.publish("x", queue="q")
    assert len(script.requests) == 2


def test_retries_are_bounded_and_raise_the_last_refusal() -> None:
    full = problem(429, "queue-full")
    script = Script(full, full, full)
    with client(script, retries=2) as c, pytest.raises(QueueFull):
        c.publish("x", queue="q")
    assert len(script.requests) == 3


def test_idempotent_requests_are_repeated_after_an_unknown_outcome() -> None:
    info = httpx.Response(200, json={"name": "q"})
    script = Script(
        unknown,
        info,
        dropped,
        httpx.Response(201, json={"name": "q"}),
        unknown,
        httpx.Response(200, json={"acked": ["r"], "unknown": []}),
    )
    with client(script) as c:
        assert c.get_queue("q") == {"name": "q"}
        assert c.create_queue("q") == {"name": "q"}
        assert c.ack(["r"], queue="q")["acked"] == ["r"]
    assert len(script.requests) == 6


def test_the_retry_decision() -> None:
    def retried(exc: BaseException, repeatable: bool) -> bool:
        return p.worth_retrying(exc, repeatable=repeatable)

    request = httpx.Request("POST", URL)
    assert retried(Unavailable("x"), False) and retried(Overloaded("x"), False)
    assert retried(httpx.ConnectError("refused", request=request), False)
    assert not retried(OutcomeUnknown("x"), False) and retried(OutcomeUnknown("x"), True)
    assert not retried(httpx.ReadError("reset", request=request), False)
    assert retried(httpx.ReadError("reset", request=request), True)
    assert not retried(ValueError("bug"), True)


async def test_the_async_client_and_its_batcher_publish_with_dedup_ids() -> None:
    script = Script(unknown, published(2))
    client = AsyncClient(URL, token="t", transport=httpx.MockTransport(script))
    async with client, client.batcher(queue="q", linger_ms=50) as batcher, trio.open_nursery() as nursery:
        nursery.start_soon(batcher.publish, "a")
        nursery.start_soon(batcher.publish, "b")
    assert len(script.requests) == 2
    assert script.dedup_ids(0) == script.dedup_ids(1)
    assert None not in script.dedup_ids(0) and len(set(script.dedup_ids(0))) == 2


def test_the_blocking_batcher_publishes_with_dedup_ids() -> None:
    script = Script(dropped, published(1))
    with client(script) as c, c.batcher(queue="q", linger_ms=0) as batcher:
        assert batcher.publish("a").result(timeout=30)["id"] == "m0"
    assert script.dedup_ids(0) == script.dedup_ids(1) != [None]


async def test_the_stream_client_sends_dedup_ids_and_retries_only_what_is_repeatable() -> None:
    sent: list[dict[str, Any]] = []
    answers: list[Exception | dict[str, Any]] = []

    async def request_once(frame: dict[str, Any]) -> dict[str, Any]:
        sent.append(frame)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    for dedup_ids in (True, False):
        stream = StreamClient(URL, token="t", dedup_ids=dedup_ids)
        stream._request_once = request_once  # type: ignore[method-assign]
        sent.clear()
        answers[:] = [OutcomeUnknown("gone"), {"messages": [{"id": "m0", "offset": 0, "duplicate": False}]}]
        if dedup_ids:
            assert (await stream.publish([{"body": 1}], queue="q"))[0]["id"] == "m0"
            assert len(sent) == 2 and sent[0]["messages"][0]["dedup_id"] == sent[1]["messages"][0]["dedup_id"]
        else:
            with pytest.raises(OutcomeUnknown):
                await stream.publish([{"body": 1}], queue="q")
            assert len(sent) == 1 and "dedup_id" not in sent[0]["messages"][0]
        await stream._http.aclose()
