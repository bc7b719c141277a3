"""Calls to a leader are bounded in time and their failures say what is known about the request's outcome; a
forwarder tries its candidates in turn, but only while nothing of the request was sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import httpx
import pytest
import trio
import trio.testing
from quart_trio import QuartTrio

from mom.api.forward import (
    DOWN_FOR_S,
    FORWARD_WAIT_S,
    LEADER_HEADER,
    Forwarder,
    ForwardRequired,
    NotReached,
    call_leader,
    parse_leader_header,
)
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
    with pytest.raises(NotReached) as caught:
        await call(failing(exc))
    assert not isinstance(caught.value, OutcomeUnknown)


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


# ---------------------------------------------------------------------------------------------------------
# The forwarder: candidates in turn


URLS = {f"n{i}": f"http://n{i}.test" for i in range(1, 5)}


class Nodes:
    """A mock network: some nodes refuse connections, some fail after reading the request, the rest answer."""

    def __init__(self, *, refusing: Iterable[str] = (), breaking: Iterable[str] = ()) -> None:
        self.refusing, self.breaking = set(refusing), set(breaking)
        self.asked: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        node = request.url.host.removesuffix(".test")
        self.asked.append(node)
        if node in self.refusing:
            raise httpx.ConnectError("refused", request=request)
        if node in self.breaking:
            raise httpx.ReadError("reset", request=request)
        return httpx.Response(201, json={"by": node}, headers={LEADER_HEADER: f"q.x@1 {node} 7"})


@asynccontextmanager
async def forwarder_over(
    nodes: Nodes,
    *,
    link_up: Callable[[str], bool] = lambda node: True,
    learned: list[tuple[str, str, int]] | None = None,
) -> AsyncIterator[Forwarder]:
    def on_leader(group: str, leader: str, term: int) -> None:
        if learned is not None:
            learned.append((group, leader, term))

    async with httpx.AsyncClient(transport=httpx.MockTransport(nodes)) as http:
        yield Forwarder(http, URLS, link_up=link_up, on_leader=on_leader)


async def post(forwarder: Forwarder, targets: list[str]) -> httpx.Response:
    return await forwarder.call(ForwardRequired(targets), "POST", "/v1/queues/x/messages", content=b"{}")


async def test_a_refused_candidate_is_passed_over_at_once_for_the_next() -> None:
    nodes = Nodes(refusing={"n3"})
    async with forwarder_over(nodes) as forwarder:
        answer = await post(forwarder, ["n3", "n1", "n2"])
    assert answer.json() == {"by": "n1"} and nodes.asked == ["n3", "n1"]


async def test_a_write_that_reached_a_candidate_is_never_sent_to_another() -> None:
    nodes = Nodes(breaking={"n3"})
    async with forwarder_over(nodes) as forwarder:
        with pytest.raises(OutcomeUnknown):
            await post(forwarder, ["n3", "n1"])
    assert nodes.asked == ["n3"]


async def test_when_no_candidate_can_be_reached_the_503_says_nothing_was_sent() -> None:
    async with forwarder_over(Nodes(refusing={"n1", "n2"})) as forwarder:
        with pytest.raises(NotReached, match="any of n1, n2 cannot be reached"):
            await post(forwarder, ["n1", "n2"])


async def test_nodes_that_look_down_are_tried_last(autojump_clock: trio.testing.MockClock) -> None:
    nodes = Nodes(refusing={"n1"})
    async with forwarder_over(nodes, link_up=lambda node: node != "n2") as forwarder:
        await post(forwarder, ["n1", "n2", "n3"])
        assert nodes.asked == ["n1", "n3"], "n1 refused, n2's replication link is down: n3 next"
        assert forwarder.order(["n1", "n2", "n3", "n4"]) == ["n3", "n4", "n1", "n2"]
        await trio.sleep(DOWN_FOR_S)
        assert forwarder.order(["n1", "n2", "n3"]) == ["n1", "n3", "n2"], "a refusal is held against n1 briefly"


async def test_the_leader_named_by_an_answer_is_learned() -> None:
    learned: list[tuple[str, str, int]] = []
    async with forwarder_over(Nodes(), learned=learned) as forwarder:
        await post(forwarder, ["n2"])
    assert learned == [("q.x@1", "n2", 7)]


@pytest.mark.parametrize("value", [None, "", "q.x@1 n2", "q.x@1 n2 seven", "a b c d"])
def test_a_malformed_leader_header_is_ignored(value: str | None) -> None:
    assert parse_leader_header(value) is None


async def test_a_node_removed_from_the_cluster_is_passed_over_as_unreachable() -> None:
    """A removed node can still be named as a leader for a moment (the metadata leader that was removed leads
    until its successor takes over): forwarding to it is a 503 that says nothing was sent, or the next
    candidate, never a KeyError (a 500 here; in the background task that records a move, the node's end)."""
    nodes = Nodes()
    async with forwarder_over(nodes) as forwarder:
        forwarder.remove_peer("n3")
        with pytest.raises(NotReached, match="n3 cannot be reached"):
            await post(forwarder, ["n3"])
        assert (await post(forwarder, ["n3", "n1"])).json() == {"by": "n1"}
        app = QuartTrio("forward-test")
        async with app.test_request_context("/v1/queues/x", method="PUT", data=b"{}"):
            with pytest.raises(NotReached, match="n3 cannot be reached"):
                await forwarder.forward(ForwardRequired(["n3"]))
        with pytest.raises(NotReached):
            forwarder.url("n3")  # a stream's relay opens its socket to this URL
    assert nodes.asked == ["n1"]
