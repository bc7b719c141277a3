"""Finding 4: per-principal quotas on destinations (cluster-wide), streams and long-polls (per node): 429."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trio
from botocore.exceptions import ClientError

from tests.integration.harness import NodeProcess
from tests.integration.sqs_support import boto, sigv4_client
from tests.security.helpers import admin, assert_problem, node_with, plain_user

LIMITS = "[quotas]\ndestinations = 3\nstreams = 2\nlong_polls = 2\n"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = node_with(tmp_path_factory.mktemp("quotas"), LIMITS)
    yield process
    process.stop()


def test_destinations_per_principal(small: NodeProcess) -> None:
    name, user = plain_user(small.url)
    for i in range(2):
        assert user.put(f"/v1/queues/{name}.q{i}").status_code == 201
    assert user.put(f"/v1/topics/{name}.t").status_code == 201
    refused = user.put(f"/v1/queues/{name}.q9")
    assert_problem(refused, 429, "quota-destinations")
    assert int(refused.headers["Retry-After"]) >= 1
    assert user.put(f"/v1/queues/{name}.q0").status_code == 200  # a re-declare is not a new destination
    assert user.delete(f"/v1/queues/{name}.q0").status_code == 204
    assert user.put(f"/v1/queues/{name}.q9").status_code == 201
    boss = admin(small.url)
    for i in range(5):
        assert boss.put(f"/v1/queues/admin-owned-{i}").status_code == 201


async def test_long_polls_per_principal(small: NodeProcess) -> None:
    name, user = plain_user(small.url)
    assert user.put(f"/v1/queues/{name}.jobs").status_code == 201
    headers = dict(user.http.headers)
    statuses: list[int] = []
    async with httpx.AsyncClient(base_url=small.url, headers=headers, timeout=30) as http:

        async def poll() -> None:
            answer = await http.post(f"/v1/queues/{name}.jobs/receive", json={"wait_s": 3})
            statuses.append(answer.status_code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            nursery.start_soon(poll)
            await trio.sleep(1.0)
            refused = await http.post(f"/v1/queues/{name}.jobs/receive", json={"wait_s": 3})
            assert_problem(refused, 429, "quota-long-polls")
            assert (await http.post(f"/v1/queues/{name}.jobs/receive", json={"wait_s": 0})).status_code == 200
    assert statuses == [200, 200]


async def test_streams_per_principal(small: NodeProcess) -> None:
    name, user = plain_user(small.url)
    assert user.put(f"/v1/topics/{name}.news").status_code == 201
    assert user.put(f"/v1/topics/{name}.news/subscriptions/s").status_code == 201
    path = f"/v1/topics/{name}.news/subscriptions/s/events"
    async with httpx.AsyncClient(base_url=small.url, headers=dict(user.http.headers), timeout=30) as http:
        async with http.stream("GET", path) as first, http.stream("GET", path) as second:
            assert (first.status_code, second.status_code) == (200, 200)
            refused = await http.get(path)
            assert_problem(refused, 429, "quota-streams")
        for _ in range(100):  # the closed streams give their places back
            async with http.stream("GET", path) as again:
                if again.status_code == 200:
                    break
            await trio.sleep(0.1)
        assert again.status_code == 200


def test_sqs_destination_quota_is_over_limit_not_a_throttle(small: NodeProcess) -> None:
    """Over SQS the destination quota is SQS's OverLimit (403), which SDKs do not retry, not RequestThrottled."""
    key, secret = sigv4_client(small.url, ["mom.read:sq.*", "mom.write:sq.*", "mom.configure:sq.*"])
    sqs = boto(small.url, key, secret)
    for i in range(3):
        sqs.create_queue(QueueName=f"sq.{key}.{i}")
    with pytest.raises(ClientError) as refused:
        sqs.create_queue(QueueName=f"sq.{key}.9")
    assert refused.value.response["Error"]["Code"] == "OverLimit"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert refused.value.response["ResponseMetadata"]["RetryAttempts"] == 0
    assert len(sqs.list_queues(QueueNamePrefix=f"sq.{key}")["QueueUrls"]) == 3


async def test_sqs_long_polls_count_toward_the_quota(small: NodeProcess) -> None:
    """ReceiveMessage with a wait holds a long-poll place as REST receives do; beyond the quota: OverLimit."""
    key, secret = sigv4_client(small.url, ["mom.read:lp.*", "mom.write:lp.*", "mom.configure:lp.*"])
    sqs = boto(small.url, key, secret)
    url = sqs.create_queue(QueueName=f"lp.{key}")["QueueUrl"]
    answers: list[int] = []

    def poll() -> None:
        answer = boto(small.url, key, secret).receive_message(QueueUrl=url, WaitTimeSeconds=3)
        answers.append(answer["ResponseMetadata"]["HTTPStatusCode"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.to_thread.run_sync, poll)
        nursery.start_soon(trio.to_thread.run_sync, poll)
        await trio.sleep(1.5)
        with pytest.raises(ClientError) as refused:
            await trio.to_thread.run_sync(lambda: sqs.receive_message(QueueUrl=url, WaitTimeSeconds=3))
        assert refused.value.response["Error"]["Code"] == "OverLimit"
        assert sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answers == [200, 200]


def test_quota_settings_are_validated(tmp_path: Path) -> None:
    from mom.config import load_settings
    from mom.errors import InvalidInput

    bad = tmp_path / "bad.toml"
    bad.write_text("[quotas]\ndestinations = 0\n")
    with pytest.raises(InvalidInput):
        load_settings(bad)
