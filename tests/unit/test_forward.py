"""Calls to a leader are bounded in time and their failures say what is known about the request's outcome."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
import trio
import trio.testing

from mom.api.forward import FORWARD_WAIT_S, call_leader
from mom.errors import OutcomeUnknown, Unavailable

URL = "http://n2.test/v1/queues/q/messages"
Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


async def call(handler: Handler, method: str = "POST", wait_s: float = 0.0) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        return await call_leader(http, method, URL, "n2", content=b"{}", wait_s=wait_s)


def failing(exc: type[httpx.TransportError]) -> Handler:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    return handler


async def hanging(request: httpx.Request) -> httpx.Response:
    await trio.sleep_forever()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
async def test_a_request_that_never_reached_the_leader_is_unavailable(exc: type[httpx.TransportError]) -> None:
    with pytest.raises(Unavailable) as caught:
        await call(failing(exc))
    assert type(caught.value) is Unavailable


@pytest.mark.parametrize("exc", [httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout, httpx.WriteError])
async def test_a_write_whose_leader_went_away_after_it_was_sent_has_an_unknown_outcome(
    exc: type[httpx.TransportError],
) -> None:
    with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
        await call(failing(exc))


async def test_a_read_whose_leader_went_away_is_only_unavailable() -> None:
    with pytest.raises(Unavailable) as caught:
        await call(failing(httpx.RemoteProtocolError), method="GET")
    assert type(caught.value) is Unavailable


async def test_a_leader_that_stops_answering_is_given_up_on_after_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started = trio.current_time()
    with pytest.raises(OutcomeUnknown, match="did not answer in time"):
        await call(hanging)
    assert trio.current_time() - started == pytest.approx(FORWARD_WAIT_S)


async def test_a_long_poll_gets_its_own_wait_on_top_of_the_bound(autojump_clock: trio.testing.MockClock) -> None:
    started = trio.current_time()
    with pytest.raises(OutcomeUnknown):
        await call(hanging, wait_s=20)
    assert trio.current_time() - started == pytest.approx(FORWARD_WAIT_S + 20)


async def test_an_answer_is_relayed_as_it_is() -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, json={"detail": "full"}, headers={"Retry-After": "2"})

    response = await call(answer)
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
