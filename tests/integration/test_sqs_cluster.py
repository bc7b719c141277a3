"""boto3 against a real 3-node cluster: any node answers SQS, forwarding to the queue's or the catalog's leader.

The SQS layer does not depend on the replication transport, so this runs once (the core env, over gRPC), not in
each transport's env."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mom.api.forward import FORWARD_WAIT_S
from tests.integration.harness import ADMIN_PASSWORD, Api, Cluster, token
from tests.integration.sqs_support import boto, sigv4_client


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


def eventually(check: Any, timeout_s: float = 20.0) -> Any:
    """Reads on a follower see a write a moment later (the catalog replicates, then the queue's group follows)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = check()
            if result:
                return result
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.1)


def test_every_node_speaks_sqs_for_every_queue(cluster: Cluster) -> None:
    creds = sigv4_client(cluster.nodes["mom1"].url)
    clients = {node_id: boto(node.url, *creds) for node_id, node in cluster.nodes.items()}
    name = f"cl-{uuid.uuid4().hex[:8]}"
    dlq_name = f"{name}-dlq"
    dlq = clients["mom2"].create_queue(QueueName=dlq_name)["QueueUrl"]
    dlq_arn = f"arn:aws:sqs:eu-west-1:000000000000:{dlq_name}"
    policy = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": 1}}'
    url = clients["mom3"].create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    assert url.startswith(cluster.nodes["mom3"].url), "queue URLs name the node the client called"
    for node_id, client in clients.items():
        client.send_message(QueueUrl=url, MessageBody=f"from {node_id}")
    seen: list[str] = []
    for client in clients.values():
        for message in client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=2).get(
            "Messages", []
        ):
            seen.append(message["Body"])
            if message["Body"] != "from mom1":
                client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
            else:
                client.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
    assert sorted(seen) == ["from mom1", "from mom2", "from mom3"]
    dead = eventually(lambda: clients["mom1"].receive_message(QueueUrl=dlq, WaitTimeSeconds=2).get("Messages"))
    assert [m["Body"] for m in dead] == ["from mom1"], "dead-lettered across groups after maxReceiveCount"
    clients["mom2"].set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "5"})
    eventually(
        lambda: (
            clients["mom1"].get_queue_attributes(QueueUrl=url, AttributeNames=["VisibilityTimeout"])["Attributes"][
                "VisibilityTimeout"
            ]
            == "5"
        )
    )
    admin = Api(cluster.nodes["mom1"].url, token(cluster.nodes["mom1"].url, "admin", ADMIN_PASSWORD))
    leader = admin.retrying("GET", f"/v1/queues/{name}").json()["leader"]
    follower = next(node_id for node_id in clients if node_id != leader)
    started = time.monotonic()
    answer = clients[follower].receive_message(QueueUrl=url, WaitTimeSeconds=int(FORWARD_WAIT_S) + 2)
    assert not answer.get("Messages") and answer["ResponseMetadata"]["RetryAttempts"] == 0
    assert time.monotonic() - started >= FORWARD_WAIT_S + 1.9, "a forwarded long poll waits its whole wait"


def test_fifo_order_per_group_through_any_node(cluster: Cluster) -> None:
    creds = sigv4_client(cluster.nodes["mom1"].url)
    clients = [boto(node.url, *creds) for node in cluster.nodes.values()]
    url = clients[0].create_queue(QueueName=f"f-{uuid.uuid4().hex[:8]}.fifo", Attributes={"FifoQueue": "true"})[
        "QueueUrl"
    ]
    for i in range(6):
        clients[i % 3].send_message(QueueUrl=url, MessageBody=str(i), MessageGroupId="g", MessageDeduplicationId=str(i))
    order: list[str] = []
    while len(order) < 6:
        client = clients[len(order) % 3]
        got = client.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=2).get("Messages", [])
        for message in got:
            order.append(message["Body"])
            client.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    assert order == [str(i) for i in range(6)]
