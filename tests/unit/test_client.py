"""The Python client against scripted answers (httpx.MockTransport): what it sends, how it reads answers."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable, Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import trio
from tenacity import RetryCallState, Retrying

from mom.client import AsyncClient, Client
from mom.client import _protocol as p
from mom.errors import (
    Conflict,
    InvalidInput,
    MomError,
    NotFound,
    QueueFull,
    Unauthorized,
    Unavailable,
)

URL = "http://mom.test:8080"
Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class Script:
    """A fake server: answers requests in order from a script and records them."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert self.answers, f"unexpected request {request.method} {request.url}"
        answer = self.answers.pop(0)
        return answer(request) if callable(answer) else answer

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def form(self, index: int) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.requests[index].content.decode()).items()}

    def auth(self, index: int = -1) -> str | None:
        value: str | None = self.requests[index].headers.get("authorization")
        return value


def ok(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json=payload, headers=headers)


def problem(status: int, detail: str, slug: str = "x", headers: dict[str, str] | None = None) -> httpx.Response:
    payload = {"type": f"https://mom.dev/problems/{slug}", "title": "T", "status": status, "detail": detail}
    return httpx.Response(
        status,
        content=json.dumps(payload),
        headers={"content-type": "application/problem+json", **(headers or {})},
    )


def token_answer(token: str = "tok1", expires_in: int = 3600) -> httpx.Response:
    return ok({"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": "mom.admin"})


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def generated_ids_removed(body: Any) -> Any:
    """A publish body without the dedup ids the client generated (asserting each message has one)."""
    messages = []
    for message in body["messages"]:
        dedup_id = message.pop("dedup_id")
        assert isinstance(dedup_id, str) and len(dedup_id) == 32 and int(dedup_id, 16) >= 0, dedup_id
        messages.append(message)
    return {**body, "messages": messages}


def client(script: Script, **kwargs: Any) -> Client:
    kwargs.setdefault("token", "given")
    return Client(URL, transport=httpx.MockTransport(script), **kwargs)


# ---------------------------------------------------------------------------------------------------------
# Request shapes


def test_queue_requests_carry_path_json_and_bearer_token() -> None:
    info = {"name": "orders", "attributes": {"max_length": 10}, "ready": 0}
    script = Script(ok(info, 201), ok({"queues": [info]}), ok(info), httpx.Response(204))
    with client(script) as c:
        assert c.create_queue("orders", max_length=10) == info
        assert c.list_queues() == [info]
        assert c.get_queue("orders") == info
        c.delete_queue("orders")
    methods = [(r.method, r.url.path) for r in script.requests]
    assert methods == [
        ("PUT", "/v1/queues/orders"),
        ("GET", "/v1/queues"),
        ("GET", "/v1/queues/orders"),
        ("DELETE", "/v1/queues/orders"),
    ]
    assert script.body(0) == {"max_length": 10}
    assert all(r.headers["authorization"] == "Bearer given" for r in script.requests)


def test_publish_sends_one_message_with_its_options() -> None:
    script = Script(ok({"messages": [{"id": "m1", "offset": 0, "duplicate": False}]}, 201))
    with client(script) as c:
        result = c.publish({"n": 1}, queue="orders", headers={"k": "v"}, delay_s=2, dedup_id="d1")
    assert result == {"id": "m1", "offset": 0, "duplicate": False}
    assert script.requests[0].url.path == "/v1/queues/orders/messages"
    assert script.body() == {"messages": [{"body": {"n": 1}, "headers": {"k": "v"}, "delay_s": 2, "dedup_id": "d1"}]}


def test_publish_batch_to_a_topic() -> None:
    ids = [{"id": "a", "offset": 5, "duplicate": False}, {"id": "b", "offset": 6, "duplicate": False}]
    script = Script(ok({"messages": ids}, 201))
    with client(script) as c:
        assert c.publish_batch([{"body": 1}, {"body": "two", "headers": {"h": "1"}}], topic="events") == ids
    assert script.requests[0].url.path == "/v1/topics/events/messages"
    assert generated_ids_removed(script.body()) == {"messages": [{"body": 1}, {"body": "two", "headers": {"h": "1"}}]}


@pytest.mark.parametrize("kwargs", [{}, {"queue": "q", "topic": "t"}])
def test_publish_needs_exactly_one_destination(kwargs: dict[str, Any]) -> None:
    script = Script()
    with client(script) as c, pytest.raises(InvalidInput):
        c.publish("x", **kwargs)
    assert script.requests == []


@pytest.mark.parametrize(
    "kwargs", [{}, {"queue": "q", "topic": "t", "subscription": "s"}, {"topic": "t"}, {"subscription": "s"}]
)
def test_receive_needs_a_queue_or_a_subscription(kwargs: dict[str, Any]) -> None:
    script = Script()
    with client(script) as c, pytest.raises(InvalidInput):
        c.receive(**kwargs)
    assert script.requests == []


def test_receive_long_polls_with_a_read_timeout_beyond_the_wait() -> None:
    delivery = {"id": "m1", "offset": 0, "body": "hi", "headers": {}, "receipt": "r1", "deliveries": 1}
    script = Script(ok({"messages": [delivery]}))
    with client(script, timeout=5.0) as c:
        got = c.receive(queue="orders", max_messages=10, wait_s=20, visibility_timeout_s=60)
    assert got == [delivery]
    assert script.requests[0].url.path == "/v1/queues/orders/receive"
    assert script.body() == {"max_messages": 10, "wait_s": 20, "visibility_timeout_s": 60}
    assert script.requests[0].extensions["timeout"]["read"] == 25.0


def test_subscription_consuming_paths_and_settle_bodies() -> None:
    script = Script(ok({"messages": []}), ok({"acked": ["r1"], "unknown": []}), ok({"nacked": ["r2"], "unknown": []}))
    where: dict[str, Any] = {"topic": "events", "subscription": "audit"}
    with client(script) as c:
        assert c.receive(**where) == []
        assert c.ack(["r1"], **where) == {"acked": ["r1"], "unknown": []}
        assert c.nack(["r2"], delay_s=5, **where) == {"nacked": ["r2"], "unknown": []}
    base = "/v1/topics/events/subscriptions/audit"
    assert [r.url.path for r in script.requests] == [f"{base}/receive", f"{base}/ack", f"{base}/nack"]
    assert script.body(1) == {"receipts": ["r1"]}
    assert script.body(2) == {"receipts": ["r2"], "delay_s": 5}


def test_topics_subscriptions_and_replay() -> None:
    sub = {"topic": "events", "name": "audit", "next_offset": 7}
    script = Script(
        ok({"name": "events"}, 201),
        ok(sub, 201),
        ok({"subscriptions": [sub]}),
        ok({"messages": [{"id": "a", "offset": 7, "body": 1}], "next_offset": 8}),
    )
    with client(script) as c:
        c.create_topic("events", retention_s=60)
        assert c.create_subscription("events", "audit", start=7, max_deliveries=3) == sub
        assert c.list_subscriptions("events") == [sub]
        assert c.read_topic("events", from_offset=7, limit=1)["next_offset"] == 8
    assert script.body(0) == {"retention_s": 60}
    assert script.requests[1].method == "PUT"
    assert script.requests[1].url.path == "/v1/topics/events/subscriptions/audit"
    assert script.body(1) == {"start": {"offset": 7}, "max_deliveries": 3}
    assert script.requests[3].url.path == "/v1/topics/events/messages"
    assert dict(script.requests[3].url.params) == {"from_offset": "7", "limit": "1"}


def test_register_user_needs_no_token_and_health_reads_503_as_not_ready() -> None:
    script = Script(ok({"username": "alice", "scopes": []}, 201), ok({"status": "ok"}), problem(503, "no quorum"))
    with client(script, token=None) as c:
        assert c.register_user("alice", "pw")["username"] == "alice"
        assert c.health() is True
        assert c.ready() is False
    assert script.auth(0) is None
    assert script.body(0) == {"username": "alice", "password": "pw"}
    assert len(script.requests) == 3


# ---------------------------------------------------------------------------------------------------------
# Tokens


def test_token_is_fetched_on_first_use_with_the_password_grant_and_reused() -> None:
    script = Script(token_answer("tok1"), ok({"queues": []}), ok({"topics": []}))
    with client(script, token=None, username="alice", password="pw") as c:
        c.list_queues()
        c.list_topics()
    assert script.requests[0].url.path == "/v1/auth/token"
    assert script.requests[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert script.form(0) == {"grant_type": "password", "username": "alice", "password": "pw"}
    assert script.auth(1) == script.auth(2) == "Bearer tok1"


def test_client_credentials_grant_and_token_method() -> None:
    script = Script(token_answer("tok9"), ok({"queues": []}))
    with client(script, token=None, client_id="svc", client_secret="s3") as c:
        assert c.token()["access_token"] == "tok9"
        c.list_queues()
    assert script.form(0) == {"grant_type": "client_credentials", "client_id": "svc", "client_secret": "s3"}
    assert script.auth(1) == "Bearer tok9"


def test_token_without_credentials_is_a_clear_error() -> None:
    with client(Script()) as c, pytest.raises(InvalidInput, match="username and password"):
        c.token()


def test_a_401_fetches_a_new_token_once_and_retries() -> None:
    script = Script(token_answer("old"), problem(401, "expired"), token_answer("new"), ok({"queues": []}))
    with client(script, token=None, username="alice", password="pw") as c:
        assert c.list_queues() == []
    assert [script.auth(i) for i in (1, 3)] == ["Bearer old", "Bearer new"]


def test_a_second_401_is_raised() -> None:
    script = Script(token_answer("a"), problem(401, "no"), token_answer("b"), problem(401, "still no"))
    with (
        client(script, token=None, username="alice", password="pw") as c,
        pytest.raises(Unauthorized, match="still"),
    ):
        c.list_queues()


def test_a_401_with_a_given_token_and_no_credentials_is_raised_at_once() -> None:
    script = Script(problem(401, "bad token"))
    with client(script) as c, pytest.raises(Unauthorized, match="bad token"):
        c.list_queues()
    assert len(script.requests) == 1


def test_token_is_renewed_shortly_before_it_expires() -> None:
    now = [1000.0]
    protocol = p.Protocol(
        timeout=1,
        token=None,
        username="u",
        password="pw",
        client_id=None,
        client_secret=None,
        clock=lambda: now[0],
    )
    answers = [token_answer("t1", expires_in=600), token_answer("t2", expires_in=600)]

    def headers() -> dict[str, str]:
        flow = protocol.authorization()
        try:
            request = next(flow)
            assert request.path == "/v1/auth/token"
            flow.send(answers.pop(0))
        except StopIteration as done:
            result: dict[str, str] = done.value
            return result
        raise AssertionError("the flow asked for more than one request")

    assert headers() == {"Authorization": "Bearer t1"}
    now[0] += 500
    assert headers() == {"Authorization": "Bearer t1"}
    now[0] += 80
    assert headers() == {"Authorization": "Bearer t2"}


@pytest.mark.parametrize(
    ("answer", "error", "text"),
    [
        (
            ok({"error": "invalid_grant", "error_description": "bad password"}, 400),
            Unauthorized,
            "bad password",
        ),
        (ok({"error": "invalid_client", "error_description": "who?"}, 401), Unauthorized, "who?"),
        (ok({"error": "unsupported_grant_type"}, 400), InvalidInput, "unsupported_grant_type"),
    ],
)
def test_oauth_errors(answer: httpx.Response, error: type[MomError], text: str) -> None:
    with (
        client(Script(answer), token=None, username="u", password="p") as c,
        pytest.raises(error, match=text),
    ):
        c.list_queues()


# ---------------------------------------------------------------------------------------------------------
# Errors and retries


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (problem(404, "no queue orders"), NotFound),
        (problem(409, "different attributes"), Conflict),
        (problem(429, "queue orders is full", slug="queue-full", headers={"Retry-After": "0"}), QueueFull),
    ],
)
def test_problem_json_raises_the_class_of_its_status_with_the_detail(
    answer: httpx.Response, error: type[MomError]
) -> None:
    with client(Script(answer, answer, answer), retries=2) as c, pytest.raises(error) as caught:
        c.get_queue("orders")
    assert type(caught.value) is error
    assert caught.value.detail == answer.json()["detail"]


def test_an_unknown_status_falls_back_to_mom_error_with_the_server_title() -> None:
    answer = httpx.Response(502, json={"title": "Bad gateway", "status": 502, "detail": "upstream"})
    with client(Script(answer)) as c, pytest.raises(MomError) as caught:
        c.cluster()
    assert (type(caught.value), caught.value.status, caught.value.title) == (MomError, 502, "Bad gateway")
    assert caught.value.detail == "upstream"


def test_503_is_retried_after_retry_after_then_succeeds() -> None:
    busy = problem(503, "no quorum", headers={"Retry-After": "0"})
    script = Script(busy, busy, ok({"name": "orders"}))
    with client(script) as c:
        assert c.get_queue("orders") == {"name": "orders"}
    assert len(script.requests) == 3


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    busy = problem(503, "no quorum", headers={"Retry-After": "0"})
    script = Script(busy, busy, busy)
    with client(script, retries=2) as c, pytest.raises(Unavailable, match="no quorum") as caught:
        c.get_queue("orders")
    assert caught.value.retry_after_s == 0
    assert len(script.requests) == 3


def test_400_is_not_retried() -> None:
    script = Script(problem(400, "bad name"))
    with client(script) as c, pytest.raises(InvalidInput, match="bad name"):
        c.create_queue("b@d")
    assert len(script.requests) == 1


def test_connection_refused_is_retried() -> None:
    script = Script(refused, ok({"queues": []}))
    with client(script) as c:
        assert c.list_queues() == []
    assert len(script.requests) == 2


def test_a_read_timeout_is_not_retried_when_the_publish_could_be_stored_twice() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    script = Script(slow)
    with client(script, dedup_ids=False) as c, pytest.raises(httpx.ReadTimeout):
        c.publish(1, queue="q")
    assert len(script.requests) == 1


def _wait_after(exc: BaseException, attempt: int = 1) -> float:
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    wait: float = p.retry_policy(5)["wait"](state)
    return wait


def test_the_wait_honours_retry_after_up_to_a_cap_and_backs_off_otherwise() -> None:
    patient = Unavailable("x")
    patient.retry_after_s = 2.5
    assert 2.5 <= _wait_after(patient) <= 2.6
    stubborn = Unavailable("x")
    stubborn.retry_after_s = 3600
    assert _wait_after(stubborn) == p.RETRY_AFTER_CAP_S
    refusal = httpx.ConnectError("refused")
    assert all(0 <= _wait_after(refusal, 1) <= 0.1 for _ in range(20))
    assert all(0 <= _wait_after(refusal, 4) <= 0.8 for _ in range(20))


def test_retry_after_as_http_date() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    wait = p.parse_retry_after(later)
    assert wait is not None and 8 <= wait <= 10
    assert p.parse_retry_after("soon") is None
    assert p.parse_retry_after("-3") == 0


# ---------------------------------------------------------------------------------------------------------
# Bodies and events


def test_bytes_bodies_travel_as_base64_both_ways() -> None:
    raw = bytes(range(256))
    encoded = base64.b64encode(raw).decode()
    script = Script(
        ok({"messages": [{"id": "m", "offset": 0, "duplicate": False}]}, 201),
        ok({"messages": [{"id": "m", "body_base64": encoded, "receipt": "r"}]}),
    )
    with client(script) as c:
        c.publish(raw, queue="bin")
        [got] = c.receive(queue="bin")
    assert generated_ids_removed(script.body(0)) == {"messages": [{"body_base64": encoded}]}
    assert got == {"id": "m", "body": raw, "receipt": "r"}


def test_sse_parser_follows_the_event_stream_rules() -> None:
    parser = p.SSEParser()
    lines = [
        ": keep-alive",
        "",
        "event: message",
        'data: {"a":',
        "data: 1}",
        "id: 3",
        "",
        "event: ping",
        "data:",
        "",
    ]
    events = [e for e in map(parser.feed, lines) if e is not None]
    assert events == [("message", '{"a":\n1}'), ("ping", "")]
    assert p.delivery_from_event(events[0]) == {"a": 1}
    assert p.delivery_from_event(events[1]) is None


def sse(*deliveries: dict[str, Any]) -> httpx.Response:
    text = ": hello\n\n" + "".join(f"event: message\r\ndata: {json.dumps(d)}\r\n\r\n" for d in deliveries)
    return httpx.Response(200, content=text.encode(), headers={"content-type": "text/event-stream"})


def test_events_yields_deliveries_and_renews_the_token_after_a_401() -> None:
    deliveries: list[dict[str, Any]] = [
        {"id": "a", "receipt": "r1", "body": 1},
        {"id": "b", "receipt": "r2", "body_base64": "AAE="},
    ]
    script = Script(token_answer("t1"), problem(401, "expired"), token_answer("t2"), sse(*deliveries))
    with client(script, token=None, username="u", password="p") as c:
        events: Iterator[dict[str, Any]] = c.events("events", "audit")
        got = list(events)
    assert got == [deliveries[0], {"id": "b", "receipt": "r2", "body": b"\x00\x01"}]
    assert script.requests[3].url.path == "/v1/topics/events/subscriptions/audit/events"
    assert script.requests[3].headers["accept"] == "text/event-stream"
    assert script.auth(3) == "Bearer t2"
    assert script.requests[3].extensions["timeout"]["read"] is None


def test_events_raises_the_error_of_a_refused_stream() -> None:
    with client(Script(problem(404, "no subscription audit"))) as c, pytest.raises(NotFound, match="audit"):
        next(c.events("events", "audit"))


# ---------------------------------------------------------------------------------------------------------
# AsyncClient: the same core under trio (and asyncio)


def aclient(script: Script, **kwargs: Any) -> AsyncClient:
    kwargs.setdefault("token", "given")
    return AsyncClient(URL, transport=httpx.MockTransport(script), **kwargs)


async def test_async_request_shapes_and_token_refresh() -> None:
    delivery = {"id": "m", "body_base64": base64.b64encode(b"\xff").decode(), "receipt": "r"}
    script = Script(
        token_answer("t1"),
        ok({"messages": [{"id": "m", "offset": 0, "duplicate": False}]}, 201),
        problem(401, "expired"),
        token_answer("t2"),
        ok({"messages": [delivery]}),
        ok({"acked": ["r"], "unknown": []}),
    )
    async with aclient(script, token=None, username="u", password="p") as c:
        assert (await c.publish(b"\xff", queue="q"))["id"] == "m"
        [got] = await c.receive(queue="q", wait_s=1)
        assert got["body"] == b"\xff"
        await c.ack([got["receipt"]], queue="q")
    assert generated_ids_removed(script.body(1)) == {"messages": [{"body_base64": "/w=="}]}
    assert [script.auth(i) for i in (1, 2, 4, 5)] == ["Bearer t1", "Bearer t1", "Bearer t2", "Bearer t2"]
    assert script.body(5) == {"receipts": ["r"]}


async def test_async_errors_and_no_retry_on_400() -> None:
    script = Script(problem(404, "no queue q"), problem(400, "bad"))
    async with aclient(script) as c:
        with pytest.raises(NotFound, match="no queue q"):
            await c.get_queue("q")
        with pytest.raises(InvalidInput):
            await c.create_queue("q", visibility_timeout_s=-1)
    assert len(script.requests) == 2


async def test_async_retries_503_with_trio_sleep() -> None:
    busy = problem(503, "no quorum", headers={"Retry-After": "0.01"})
    script = Script(busy, refused, ok({"status": "ok"}))
    async with aclient(script) as c:
        start = trio.current_time()
        assert await c.cluster() == {"status": "ok"}
        assert trio.current_time() - start >= 0.01
    assert len(script.requests) == 3


async def test_async_events() -> None:
    script = Script(sse({"id": "a", "receipt": "r1"}, {"id": "b", "receipt": "r2"}))
    async with aclient(script) as c, aclosing(c.events("t", "s")) as events:
        got = [d["id"] async for d in events]
    assert got == ["a", "b"]


def test_async_client_runs_under_asyncio_too() -> None:
    busy = problem(429, "slow down", headers={"Retry-After": "0"})
    script = Script(busy, ok({"topics": [{"name": "t"}]}))

    async def main() -> list[dict[str, Any]]:
        async with aclient(script) as c:
            return await c.list_topics()

    assert asyncio.run(main()) == [{"name": "t"}]
    assert len(script.requests) == 2
