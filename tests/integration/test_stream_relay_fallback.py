"""A follower relays stream frames over one socket to the leader; when the leader refuses that socket (here: the
caller's stream quota there is used up), the frames travel as REST requests instead, with the same answers.

The relay does not depend on the replication transport, so this runs once (core)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mom.client.stream import StreamClient
from tests.integration.harness import Api, Cluster, new_user
from tests.integration.test_cluster import preferred_leader_leads, wait_for
from tests.integration.test_stream_api import open_sockets, rest_writes


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster", settings="[quotas]\nstreams = 1\n").start()
    yield running
    running.kill_all()


async def test_frames_go_over_rest_when_the_leader_refuses_the_relay_socket(cluster: Cluster) -> None:
    _, bearer = new_user(cluster.nodes["mom1"].url)
    user = Api(cluster.nodes["mom1"].url, bearer)
    assert user.retrying("PUT", "/v1/queues/fallback").status_code == 201
    wait_for(lambda: preferred_leader_leads(cluster, "fallback"), what="preferred leader in charge")
    leader = cluster.leader_of("fallback")
    assert leader is not None
    follower = next(n for n in cluster.nodes if n != leader)
    leader_url = cluster.nodes[leader].url
    async with (
        StreamClient(leader_url, token=bearer) as at_leader,  # the caller's one stream on the leader
        StreamClient(cluster.nodes[follower].url, token=bearer) as stream,
    ):
        await at_leader.publish([{"body": "direct"}], queue="fallback")
        writes_before = rest_writes(leader_url)
        published = [m for i in range(5) for m in await stream.publish([{"body": i}], queue="fallback")]
        assert len({m["id"] for m in published}) == 5
        assert rest_writes(leader_url) == writes_before + 5, "each relayed frame became one REST publish"
        assert open_sockets(leader_url) == 1, "only the caller's own socket: the relay's was refused"
        got = []
        async with stream.subscribe(queue="fallback", credit=10) as sub:
            async for message in sub:
                got.append(message)
                if len(got) == 6:
                    break
            answer = await sub.ack([m["receipt"] for m in got])
        assert len(answer["acked"]) == 6
    assert sorted(str(m["body"]) for m in got) == ["0", "1", "2", "3", "4", "direct"]
    view = user.get("/v1/queues/fallback").json()
    assert (view["ready"], view["in_flight"]) == (0, 0)
