"""GET /v1/stream against real node processes: frames in and out, credit, errors, auth, and a 3-node cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketNetworkError, aconnect_ws
from wsproto.utilities import LocalProtocolError

from mom.api.routes.stream import MAX_BAD_FRAMES
from mom.client import AsyncClient, Client
from mom.client.stream import StreamClient
from mom.errors import Forbidden, NotFound, TooLarge
from tests.integration.harness import Api, Cluster, NodeProcess, new_user, token
from tests.integration.test_cluster import preferred_leader_leads, wait_for
from tests.integration.test_metrics import scrape

UPGRADE = {
    "connection": "upgrade",
    "upgrade": "websocket",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-version": "13",
}


def bearer_of(api: Api) -> str:
    return str(api.http.headers["Authorization"]).removeprefix("Bearer ")


@asynccontextmanager
async def socket(url: str, bearer: str) -> AsyncIterator[AsyncWebSocketSession]:
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_ws(url + "/v1/stream", http, headers={"Authorization": f"Bearer {bearer}"}) as ws,
    ):
        yield ws


async def send(ws: AsyncWebSocketSession, frame: dict[str, Any]) -> None:
    await ws.send_text(json.dumps(frame))


async def answer(ws: AsyncWebSocketSession) -> dict[str, Any]:
    return dict(json.loads(await ws.receive_text(timeout=10.0)))


def rest_writes(url: str) -> float:
    """The publish, ack and nack requests a node has answered over REST."""
    samples = scrape(url)
    return sum(
        count
        for (name, labels), count in samples.items()
        if name == "mom_http_requests_total"
        and dict(labels).get("method") == "POST"
        and dict(labels).get("route", "").endswith(("/messages", "/ack", "/nack"))
    )


def open_sockets(url: str) -> float:
    return scrape(url).get(("mom_streams_open", (("kind", "websocket"),)), 0.0)


def new_queue(api: Api) -> str:
    name = f"q-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/queues/{name}").status_code == 201
    return name


async def test_publish_over_the_socket_is_received_over_rest(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    async with StreamClient(node.url, token=bearer_of(api)) as stream:
        published = await stream.publish([{"body": {"n": 1}}, {"body": b"\x00raw", "headers": {"k": "v"}}], queue=queue)
    assert [m["offset"] for m in published] == [0, 1]
    got = api.receive(queue, max_messages=10)
    assert [m["id"] for m in got] == [m["id"] for m in published]
    assert got[0]["body"] == {"n": 1} and got[1]["body_base64"] == "AHJhdw==" and got[1]["headers"] == {"k": "v"}


async def test_rest_publish_is_consumed_and_acked_over_the_socket(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    sent = [m["id"] for m in api.publish(queue, "a", "b", "c")]
    async with StreamClient(node.url, token=bearer_of(api)) as stream, stream.subscribe(queue=queue, credit=2) as sub:
        got = []
        async for message in sub:
            got.append(message)
            if len(got) == 3:
                break
        settled = await sub.ack([m["receipt"] for m in got])
    assert [m["id"] for m in got] == sent and [m["body"] for m in got] == ["a", "b", "c"]
    assert sorted(settled["acked"]) == sorted(m["receipt"] for m in got) and settled["unknown"] == []
    view = api.get(f"/v1/queues/{queue}").json()
    assert (view["ready"], view["in_flight"]) == (0, 0)


async def test_topic_subscription_over_the_socket(node: NodeProcess, api: Api) -> None:
    topic = f"t-{uuid.uuid4().hex[:8]}"
    api.put(f"/v1/topics/{topic}")
    api.put(f"/v1/topics/{topic}/subscriptions/audit", json={"start": "earliest"})
    async with StreamClient(node.url, token=bearer_of(api)) as stream:
        await stream.publish([{"body": "event"}], topic=topic)
        async with stream.subscribe(topic=topic, subscription="audit") as sub:
            message = await sub.__anext__()
            assert message["body"] == "event"
            assert (await sub.nack([message["receipt"]]))["nacked"] == [message["receipt"]]
        with pytest.raises(NotFound):
            await stream.subscribe(topic=topic, subscription="missing").start()


async def test_a_thousand_pipelined_publishes_get_a_thousand_correlated_answers(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    async with socket(node.url, bearer_of(api)) as ws:
        for n in range(1000):
            await send(ws, {"op": "publish", "id": f"c{n}", "queue": queue, "messages": [{"body": n}]})
        answers = [await answer(ws) for _ in range(1000)]
    assert {a["op"] for a in answers} == {"published"}
    assert sorted(a["id"] for a in answers) == sorted(f"c{n}" for n in range(1000))
    assert len({a["messages"][0]["id"] for a in answers}) == 1000
    assert api.get(f"/v1/queues/{queue}").json()["ready"] == 1000


async def test_credit_bounds_what_is_delivered(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    api.publish(queue, *range(12))

    async def deliveries(ws: AsyncWebSocketSession, quiet_s: float) -> int:
        count = 0
        with trio.move_on_after(quiet_s):
            while True:
                frame = await answer(ws)
                assert frame["op"] == "deliver" and frame["sub"] == "w"
                count += len(frame["messages"])
        return count

    async with socket(node.url, bearer_of(api)) as ws:
        await send(ws, {"op": "subscribe", "sub": "w", "queue": queue, "credit": 5})
        assert await answer(ws) == {"op": "subscribed", "sub": "w"}
        assert await deliveries(ws, 0.7) == 5
        await send(ws, {"op": "credit", "sub": "w", "add": 3})
        assert await deliveries(ws, 0.7) == 3
        await send(ws, {"op": "unsubscribe", "sub": "w"})
        assert await answer(ws) == {"op": "unsubscribed", "sub": "w"}
    assert api.get(f"/v1/queues/{queue}").json()["in_flight"] == 8


async def test_bad_frames_get_error_frames_and_the_socket_stays_usable(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    oversize = {"body": "x" * (1024 * 1024 + 1)}
    bad: list[tuple[str | bytes | dict[str, Any], int, str | None]] = [
        ("not json", 400, None),
        (b"\x01binary", 400, None),
        ({"op": "bogus", "id": "b1"}, 400, "b1"),
        ({"op": "publish", "id": "b2", "queue": queue}, 400, "b2"),
        ({"op": "publish", "id": "b3", "queue": queue, "messages": []}, 400, "b3"),
        ({"op": "publish", "id": "b4", "queue": queue, "messages": [{"nobody": 1}]}, 400, "b4"),
        ({"op": "publish", "id": "b5", "queue": "no-such-queue", "messages": [{"body": 1}]}, 404, "b5"),
        ({"op": "publish", "id": "b6", "queue": "bad/name", "messages": [{"body": 1}]}, 400, "b6"),
        ({"op": "publish", "id": "b7", "queue": queue, "messages": [oversize]}, 413, "b7"),
        ({"op": "ack", "id": "b8", "sub": "none", "receipts": ["r"]}, 404, "b8"),
        ({"op": "ack", "id": "b9", "queue": queue, "topic": "t", "receipts": ["r"]}, 400, "b9"),
        ({"op": "credit", "sub": "none", "add": 1}, 404, None),
    ]
    async with socket(node.url, bearer_of(api)) as ws:
        for frame, status, ident in bad:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_text(frame if isinstance(frame, str) else json.dumps(frame))
            error = await answer(ws)
            assert (error["op"], error["status"], error.get("id")) == ("error", status, ident), (frame, error)
            assert error["title"] and error["detail"] and error["type"].startswith("https://")
        await send(ws, {"op": "publish", "id": 1, "queue": queue, "messages": [{"body": "fine"}]})
        assert (await answer(ws))["op"] == "published"
    assert [m["body"] for m in api.receive(queue, max_messages=10)] == ["fine"]


async def send_garbage(ws: AsyncWebSocketSession, count: int, pause_s: float) -> int:
    """Send `count` binary frames (pausing after MAX_BAD_FRAMES); how many went out before the connection closed.

    The server stops reading after MAX_BAD_FRAMES and closes: a client still sending then sees its write fail
    (a broken pipe or reset), or its WebSocket already closing. Either is the close this test expects.
    """
    for sent in range(count):
        if sent == MAX_BAD_FRAMES:
            await trio.sleep(pause_s)
        try:
            await ws.send_bytes(b"\xff")
        except (WebSocketNetworkError, LocalProtocolError):
            return sent
    return count


@pytest.mark.parametrize("pause_s", [0.0, 0.5], ids=["flood", "server-closes-while-the-client-sends"])
async def test_a_flood_of_non_json_frames_closes_the_socket(node: NodeProcess, api: Api, pause_s: float) -> None:
    async with socket(node.url, bearer_of(api)) as ws:
        sent = await send_garbage(ws, 40, pause_s)
        if sent < 40:
            # Closed under our feet: httpx_ws drops what it had not read yet once a write fails, so the close
            # frame is gone; what is left to check is that the server read every frame up to its limit.
            assert sent >= MAX_BAD_FRAMES
            return
        errors = 0
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                assert (await answer(ws))["op"] == "error"
                errors += 1
    assert closed.value.code == 1003 and errors >= 1


def test_missing_or_bad_token_is_refused_before_the_upgrade(node: NodeProcess, api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic abc"}):
        response = httpx.get(node.url + "/v1/stream", headers={**UPGRADE, **headers}, timeout=10)
        assert response.status_code == 401, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401


async def test_a_token_in_the_query_is_accepted(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    async with (
        httpx.AsyncClient(timeout=10) as http,
        aconnect_ws(f"{node.url}/v1/stream?access_token={bearer_of(api)}", http) as ws,
    ):
        await send(ws, {"op": "publish", "id": "q", "queue": queue, "messages": [{"body": 1}]})
        assert (await answer(ws))["op"] == "published"


async def test_scopes_are_enforced_per_frame(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    username, _ = new_user(node.url)
    reader = token(node.url, username, "a-long-password", scope="mom.read:*")
    writer = token(node.url, username, "a-long-password", scope="mom.write:*")
    async with StreamClient(node.url, token=reader) as stream:
        with pytest.raises(Forbidden):
            await stream.publish([{"body": 1}], queue=queue)
        async with stream.subscribe(queue=queue, credit=1):
            pass
    async with StreamClient(node.url, token=writer) as stream:
        assert len(await stream.publish([{"body": 1}], queue=queue)) == 1
        with pytest.raises(Forbidden):
            await stream.subscribe(queue=queue).start()
        with pytest.raises(Forbidden):
            await stream.ack(["r"], queue=queue)


async def next_within(sub: Any, seconds: float) -> dict[str, Any] | None:
    """The next delivery, or None if none comes within `seconds`."""
    with trio.move_on_after(seconds):
        return dict(await sub.__anext__())
    return None


async def eventually(holds: Any, what: str) -> None:
    for _ in range(200):
        if holds():
            return
        await trio.sleep(0.05)
    raise AssertionError(f"not within 10 s: {what}")


def counts(api: Api, queue: str) -> tuple[int, int]:
    view = api.get(f"/v1/queues/{queue}").json()
    return view["ready"], view["in_flight"]


async def test_prefetch_bounds_the_messages_delivered_and_not_yet_acked(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    api.publish(queue, *range(30))
    async with StreamClient(node.url, token=bearer_of(api)) as stream, stream.subscribe(queue=queue, prefetch=5) as sub:
        held = [await sub.__anext__() for _ in range(5)]
        assert await next_within(sub, 1.0) is None, "a sixth delivery while five are unacked"
        assert counts(api, queue) == (25, 5)
        assert (await sub.ack([held[0]["receipt"], held[1]["receipt"]]))["acked"]
        extra = [await sub.__anext__() for _ in range(2)]
        assert await next_within(sub, 0.7) is None, "two acks free exactly two slots"
        assert counts(api, queue) == (23, 5)
        for message in held[2:] + extra:
            sub.ack_nowait(message["receipt"])
        got = []
        async for message in sub:
            got.append(message["body"])
            sub.ack_nowait(message["receipt"])
            if len(got) == 23:
                break
    assert sorted([m["body"] for m in held + extra] + got) == list(range(30))
    assert counts(api, queue) == (0, 0), "closing sent the queued acks"


async def test_acks_queued_with_ack_nowait_leave_in_batches_and_settle(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    for start in range(0, 600, 200):
        api.publish(queue, *range(start, start + 200))
    async with StreamClient(node.url, token=bearer_of(api)) as stream:
        sent: list[dict[str, Any]] = []
        send = stream._send

        async def spy(frame: Any, *, wait: bool = True) -> None:
            sent.append(dict(frame))
            await send(frame, wait=wait)

        stream._send = spy  # type: ignore[method-assign]
        async with stream.subscribe(queue=queue, prefetch=200, ack_batch=100, ack_linger_ms=20) as sub:
            got = []
            async for message in sub:
                got.append(message["body"])
                sub.ack_nowait(message["receipt"])
                if len(got) == 600:
                    break
    acks = [len(f["receipts"]) for f in sent if f["op"] == "ack"]
    assert sum(acks) == 600 and len(acks) <= 30, acks
    assert max(acks) == 100, "full batches leave without waiting for the linger"
    assert sorted(got) == list(range(600))
    assert counts(api, queue) == (0, 0)


async def test_a_consumer_that_disconnects_gets_its_unacked_messages_again(node: NodeProcess, api: Api) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    assert api.put(f"/v1/queues/{queue}", json={"visibility_timeout_s": 2}).status_code == 201
    sent = [m["id"] for m in api.publish(queue, *range(10))]
    async with StreamClient(node.url, token=bearer_of(api)) as stream:
        sub = await stream.subscribe(queue=queue, prefetch=10).start()
        taken = [await sub.__anext__() for _ in range(3)]
        await sub.ack([taken[0]["receipt"]])
        await eventually(lambda: counts(api, queue)[1] == 9, "all ten delivered to us, one acked")
    # The socket is gone without unsubscribing: the nine unacked leases run out, then the messages come back.
    assert counts(api, queue) == (0, 9)
    async with StreamClient(node.url, token=bearer_of(api)) as stream, stream.subscribe(queue=queue) as again:
        back = [await again.__anext__() for _ in range(9)]
        await again.ack([m["receipt"] for m in back])
    assert sorted(m["id"] for m in back) == sorted(sent[1:])
    assert all(m["deliveries"] == 2 for m in back)
    assert counts(api, queue) == (0, 0)


async def test_closing_gives_back_what_was_delivered_and_not_taken(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    api.publish(queue, *range(8))
    async with StreamClient(node.url, token=bearer_of(api)) as stream, stream.subscribe(queue=queue, prefetch=8) as sub:
        first = await sub.__anext__()
        sub.ack_nowait(first["receipt"])
        await eventually(lambda: counts(api, queue)[1] == 8, "all eight delivered")
    assert counts(api, queue) == (7, 0), "the seven never taken are ready again at once"


async def test_the_async_client_consumes_over_the_stream(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    api.publish(queue, *range(40))
    async with AsyncClient(node.url, token=bearer_of(api)) as client, client.consume(queue=queue, prefetch=7) as sub:
        got = []
        async for message in sub:
            got.append(message["body"])
            sub.ack_nowait(message["receipt"])
            if len(got) == 40:
                break
    assert sorted(got) == list(range(40))
    assert counts(api, queue) == (0, 0)


def test_the_blocking_client_consumes_over_the_stream(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    api.publish(queue, *range(25))
    with Client(node.url, token=bearer_of(api)) as client, client.consume(queue=queue, prefetch=4) as sub:
        got = []
        for message in sub:
            got.append(message["body"])
            if message["body"] == 0 and message["deliveries"] == 1:
                assert sub.nack([message["receipt"]])["nacked"] == [message["receipt"]]
                continue
            sub.ack_nowait(message["receipt"])
            if len(got) == 26:
                break
    assert sorted(got) == [0, *range(25)], "the nacked message came back"
    assert counts(api, queue) == (0, 0)


def test_the_cli_follows_a_queue_over_the_stream(node: NodeProcess, api: Api) -> None:
    queue = new_queue(api)
    api.publish(queue, *range(12))
    command = [sys.executable, "-m", "mom", "--url", node.url, "--token", bearer_of(api), "consume"]
    done = subprocess.run(
        [*command, "--queue", queue, "--follow", "--max", "5"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["body"] for line in done.stdout.splitlines()] == [0, 1, 2, 3, 4]
    ready, in_flight = counts(api, queue)
    assert ready + in_flight == 7, "the five printed were acked"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


@pytest.mark.transport
async def test_a_node_that_does_not_lead_serves_the_stream(cluster: Cluster) -> None:
    admin = cluster.api()
    assert admin.retrying("PUT", "/v1/queues/work").status_code == 201
    wait_for(lambda: preferred_leader_leads(cluster, "work"), what="preferred leader in charge")
    leader = cluster.leader_of("work")
    follower = next(n for n in cluster.nodes if n != leader)
    url = cluster.nodes[follower].url
    assert leader is not None
    leader_url = cluster.nodes[leader].url
    writes_before = rest_writes(leader_url)
    async with StreamClient(url, token=bearer_of(cluster.api(follower))) as stream:
        published: list[dict[str, Any]] = []

        async def publish(first: int) -> None:
            published.extend(await stream.publish([{"body": first + i} for i in range(10)], queue="work"))

        async with trio.open_nursery() as nursery:
            for batch in range(5):
                nursery.start_soon(publish, batch * 10)
        assert len({m["id"] for m in published}) == 50
        with pytest.raises(TooLarge):  # the leader's own checks, its error relayed with its status and type
            await stream.publish([{"body": "x" * (1024 * 1024 + 1)}], queue="work")
        got: list[dict[str, Any]] = []
        async with stream.subscribe(queue="work", credit=20) as sub:
            async for message in sub:
                got.append(message)
                if len(got) == 50:
                    break
            assert len((await sub.ack([m["receipt"] for m in got[:25]]))["acked"]) == 25
            answer = await sub.ack([m["receipt"] for m in got[25:]] + [got[0]["receipt"]])  # the first one again
            assert (len(answer["acked"]), answer["unknown"]) == (25, [got[0]["receipt"]])
        # the follower relays publishes and acks over one socket to the leader, not as REST requests
        assert open_sockets(leader_url) == 1
        assert rest_writes(leader_url) == writes_before
    assert sorted(m["body"] for m in got) == list(range(50))
    view = admin.get("/v1/queues/work").json()
    assert (view["ready"], view["in_flight"]) == (0, 0)

    admin.publish("work", *range(100, 130))
    async with (
        AsyncClient(url, token=bearer_of(cluster.api(follower))) as client,
        client.consume(queue="work", prefetch=8, ack_linger_ms=20) as consumer,
    ):
        held = [await consumer.__anext__() for _ in range(8)]
        assert await next_within(consumer, 1.0) is None, "the prefetch window holds through a follower"
        assert counts(admin, "work") == (22, 8)
        more = [m["body"] for m in held]
        for message in held:
            consumer.ack_nowait(message["receipt"])
        async for message in consumer:
            more.append(message["body"])
            consumer.ack_nowait(message["receipt"])
            if len(more) == 30:
                break
    assert sorted(more) == list(range(100, 130))
    assert counts(admin, "work") == (0, 0)


@pytest.mark.transport
async def test_frames_relayed_through_a_follower_survive_their_leader_being_killed(cluster: Cluster) -> None:
    """The socket the follower relays over breaks with the leader: frames in flight are answered (503), the
    client's own socket stays up, and its retries reach the new leader; dedup ids keep every message once."""
    admin = cluster.api()
    assert admin.retrying("PUT", "/v1/queues/relay").status_code == 201
    wait_for(lambda: preferred_leader_leads(cluster, "relay"), what="preferred leader in charge")
    leader = cluster.leader_of("relay")
    assert leader is not None
    follower = next(n for n in cluster.nodes if n != leader)
    async with StreamClient(cluster.nodes[follower].url, token=bearer_of(cluster.api(follower)), retries=12) as s:
        answered = list(await s.publish([{"body": 0}], queue="relay"))
        cluster.nodes[leader].kill()

        async def publish(body: int) -> None:
            answered.extend(await s.publish([{"body": body}], queue="relay"))

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                for body in range(1, 21):
                    nursery.start_soon(publish, body)
    assert len({m["id"] for m in answered}) == 21
    survivor = cluster.api(follower)
    view = survivor.retrying("GET", "/v1/queues/relay").json()
    assert view["ready"] == 21
