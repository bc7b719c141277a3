"""boto3, unchanged, against a real mom node: SQS operations, semantics and errors.

Behaviours are those SQS documents (and moto's and ElasticMQ's tests check), written as our own tests.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import botocore.exceptions
import httpx
import pytest

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, token
from tests.integration.sqs_support import boto, expected_md5_of_attributes, sigv4_client


@pytest.fixture(scope="module")
def creds(node: NodeProcess) -> tuple[str, str]:
    return sigv4_client(node.url)


@pytest.fixture
def sqs(node: NodeProcess, creds: tuple[str, str]) -> Iterator[Any]:
    client = boto(node.url, *creds)
    yield client
    client.close()


def qname(suffix: str = "") -> str:
    return f"sqs-{uuid.uuid4().hex[:10]}{suffix}"


def code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response["Error"].get("QueryErrorCode") or error.response["Error"]["Code"])


# -- queues --------------------------------------------------------------------------------------------------


def test_create_get_list_delete(sqs: Any) -> None:
    name = qname()
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"]
    assert url.endswith(f"/000000000000/{name}")
    assert sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "7"})["QueueUrl"] == url
    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url, "naming no attributes matches any queue"
    with pytest.raises(sqs.exceptions.QueueNameExists):
        sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "8"})
    assert sqs.get_queue_url(QueueName=name)["QueueUrl"] == url
    assert url in sqs.list_queues(QueueNamePrefix=name[:12])["QueueUrls"]
    sqs.delete_queue(QueueUrl=url)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.get_queue_url(QueueName=name)
    with pytest.raises(sqs.exceptions.QueueDoesNotExist):
        sqs.send_message(QueueUrl=url, MessageBody="x")


def test_list_queues_paginates(sqs: Any) -> None:
    prefix = qname()
    for i in range(5):
        sqs.create_queue(QueueName=f"{prefix}-{i}")
    first = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2)
    assert len(first["QueueUrls"]) == 2 and first["NextToken"]
    seen = list(first["QueueUrls"])
    token_ = first["NextToken"]
    while token_:
        page = sqs.list_queues(QueueNamePrefix=prefix, MaxResults=2, NextToken=token_)
        seen += page["QueueUrls"]
        token_ = page.get("NextToken")
    assert [u.rsplit("/", 1)[1] for u in seen] == [f"{prefix}-{i}" for i in range(5)]
    paginator = sqs.get_paginator("list_queues")
    pages = list(paginator.paginate(QueueNamePrefix=prefix, PaginationConfig={"PageSize": 3}))
    assert sum(len(p["QueueUrls"]) for p in pages) == 5


def test_attributes_get_set_and_redrive_policy(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName=qname("-dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    assert dlq_arn.startswith("arn:aws:sqs:eu-west-1:000000000000:")
    url = sqs.create_queue(QueueName=qname(), Attributes={"DelaySeconds": "0", "MessageRetentionPeriod": "3600"})[
        "QueueUrl"
    ]
    policy = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": 3}}'
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={"RedrivePolicy": policy, "ReceiveMessageWaitTimeSeconds": "1", "VisibilityTimeout": "9"},
    )
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["VisibilityTimeout"] == "9" and attrs["ReceiveMessageWaitTimeSeconds"] == "1"
    assert attrs["MessageRetentionPeriod"] == "3600"
    assert '"maxReceiveCount":3' in attrs["RedrivePolicy"].replace(" ", "")
    assert sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"] == [url]
    with pytest.raises(botocore.exceptions.ClientError) as bad:
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "50000"})
    assert code(bad.value) == "InvalidAttributeValue"
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Colour"])
    assert code(unknown.value) == "InvalidAttributeName"


def test_tags(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname(), tags={"team": "a"})["QueueUrl"]
    sqs.tag_queue(QueueUrl=url, Tags={"env": "dev"})
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"team": "a", "env": "dev"}
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"env": "dev"}


# -- messages ------------------------------------------------------------------------------------------------


def test_send_receive_delete_with_md5s_and_attributes(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    attributes = {
        "text": {"DataType": "String", "StringValue": "héllo"},
        "count": {"DataType": "Number", "StringValue": "42"},
        "ratio": {"DataType": "Number", "StringValue": "1.50"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        "kind": {"DataType": "String.custom", "StringValue": "x"},
    }
    body = "plain text, not JSON ✓"
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    assert sent["MD5OfMessageBody"] == hashlib.md5(body.encode()).hexdigest()
    assert sent["MD5OfMessageAttributes"] == expected_md5_of_attributes(attributes)
    got = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["All"], AttributeNames=["All"])["Messages"]
    (message,) = got
    assert message["Body"] == body and message["MessageId"] == sent["MessageId"]
    assert message["MD5OfBody"] == sent["MD5OfMessageBody"]
    assert message["MessageAttributes"] == attributes
    assert message["MD5OfMessageAttributes"] == sent["MD5OfMessageAttributes"]
    assert message["Attributes"]["ApproximateReceiveCount"] == "1"
    assert abs(int(message["Attributes"]["SentTimestamp"]) - time.time() * 1000) < 60_000
    only = sqs.receive_message(QueueUrl=url, VisibilityTimeout=0, WaitTimeSeconds=0)
    assert "Messages" not in only or only["Messages"] == [], "the message is in flight"
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]), "deleting twice is fine"
    with pytest.raises(sqs.exceptions.ReceiptHandleIsInvalid):
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-receipt")
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"


def test_attribute_name_filters(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    attributes = {n: {"DataType": "String", "StringValue": n} for n in ("a.one", "a.two", "b")}
    sqs.send_message(QueueUrl=url, MessageBody="x", MessageAttributes=attributes)
    (message,) = sqs.receive_message(QueueUrl=url, MessageAttributeNames=["a.*"], VisibilityTimeout=0)["Messages"]
    assert set(message["MessageAttributes"]) == {"a.one", "a.two"}
    selected = {k: attributes[k] for k in ("a.one", "a.two")}
    assert message["MD5OfMessageAttributes"] == expected_md5_of_attributes(selected)
    (plain,) = sqs.receive_message(QueueUrl=url)["Messages"]
    assert "MessageAttributes" not in plain and "Attributes" not in plain


def test_batches_with_partial_failures(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    sent = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "ok1", "MessageBody": "one"},
            {
                "Id": "bad",
                "MessageBody": "x",
                "MessageAttributes": {"n": {"DataType": "Number", "StringValue": "nan?"}},
            },
            {"Id": "ok2", "MessageBody": "two", "DelaySeconds": 0},
        ],
    )
    assert sorted(e["Id"] for e in sent["Successful"]) == ["ok1", "ok2"]
    assert [(f["Id"], f["SenderFault"], f["Code"]) for f in sent["Failed"]] == [("bad", True, "InvalidParameterValue")]
    for entries, exception in (
        ([], "EmptyBatchRequest"),
        ([{"Id": str(i), "MessageBody": "x"} for i in range(11)], "TooManyEntriesInBatchRequest"),
        ([{"Id": "same", "MessageBody": "x"}, {"Id": "same", "MessageBody": "y"}], "BatchEntryIdsNotDistinct"),
        ([{"Id": "no spaces", "MessageBody": "x"}], "InvalidBatchEntryId"),
    ):
        with pytest.raises(getattr(sqs.exceptions, exception)):
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in messages] == ["one", "two"]
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": "a", "ReceiptHandle": messages[0]["ReceiptHandle"]}, {"Id": "b", "ReceiptHandle": "garbage"}],
    )
    assert [e["Id"] for e in deleted["Successful"]] == ["a"]
    assert [(f["Id"], f["Code"]) for f in deleted["Failed"]] == [("b", "ReceiptHandleIsInvalid")]
    changed = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "live", "ReceiptHandle": messages[1]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "gone", "ReceiptHandle": messages[0]["ReceiptHandle"], "VisibilityTimeout": 5},
        ],
    )
    assert [e["Id"] for e in changed["Successful"]] == ["live"]
    assert [(f["Id"], f["Code"]) for f in changed["Failed"]] == [("gone", "AWS.SimpleQueueService.MessageNotInflight")]
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url)["Messages"]] == ["two"]


def test_visibility_expiry_redelivers_and_change_visibility_keeps_the_receipt(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname(), Attributes={"VisibilityTimeout": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="again")
    first = sqs.receive_message(QueueUrl=url)["Messages"][0]
    time.sleep(1.3)
    second = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])["Messages"][0]
    assert second["Attributes"]["ApproximateReceiveCount"] == "2"
    assert second["ReceiptHandle"] != first["ReceiptHandle"]
    sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"], VisibilityTimeout=30)
    time.sleep(1.3)
    assert not sqs.receive_message(QueueUrl=url).get("Messages"), "the lease was extended"
    with pytest.raises(sqs.exceptions.MessageNotInflight):
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=5)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=second["ReceiptHandle"])
    assert (
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"][
            "ApproximateNumberOfMessagesNotVisible"
        ]
        == "0"
    )


def test_long_polling_waits_and_wakes(sqs: Any, node: NodeProcess, creds: tuple[str, str]) -> None:
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    started = time.monotonic()
    assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages")
    assert time.monotonic() - started >= 0.9
    import threading

    other = boto(node.url, *creds)
    threading.Timer(0.5, lambda: other.send_message(QueueUrl=url, MessageBody="late")).start()
    started = time.monotonic()
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=10)["Messages"]
    assert [m["Body"] for m in got] == ["late"] and time.monotonic() - started < 9


def test_delays_and_queue_delay(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname(), Attributes={"DelaySeconds": "1"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="queue-delayed")
    sqs.send_message(QueueUrl=url, MessageBody="now", DelaySeconds=0)
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
    assert attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"] == "1"
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]] == ["now"]
    got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    assert [m["Body"] for m in got] == ["queue-delayed"]


def test_dead_letters_after_max_receive_count_and_redrive_back(sqs: Any) -> None:
    dlq = sqs.create_queue(QueueName=qname("-dlq"))["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = f'{{"deadLetterTargetArn": "{dlq_arn}", "maxReceiveCount": "2"}}'
    url = sqs.create_queue(QueueName=qname(), Attributes={"RedrivePolicy": policy, "VisibilityTimeout": "1"})[
        "QueueUrl"
    ]
    sqs.send_message(QueueUrl=url, MessageBody="poison")
    for _ in range(2):
        (message,) = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    dead = sqs.receive_message(QueueUrl=dlq, WaitTimeSeconds=10, AttributeNames=["All"], VisibilityTimeout=0)[
        "Messages"
    ]
    assert [m["Body"] for m in dead] == ["poison"]
    assert dead[0]["Attributes"]["DeadLetterQueueSourceArn"].endswith(url.rsplit("/", 1)[1])
    source_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    task = sqs.start_message_move_task(SourceArn=dlq_arn)
    listed = sqs.list_message_move_tasks(SourceArn=dlq_arn)["Results"]
    assert listed[0]["TaskHandle"] == task["TaskHandle"] and listed[0]["Status"] == "COMPLETED"
    assert listed[0]["ApproximateNumberOfMessagesMoved"] == 1
    back = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=5)["Messages"]
    assert [m["Body"] for m in back] == ["poison"]
    assert source_arn.endswith(url.rsplit("/", 1)[1])


def test_purge(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname())["QueueUrl"]
    sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": str(i)} for i in range(3)])
    sqs.purge_queue(QueueUrl=url)
    assert not sqs.receive_message(QueueUrl=url).get("Messages")


# -- FIFO ----------------------------------------------------------------------------------------------------


def test_fifo_orders_groups_holds_in_flight_groups_and_dedups(sqs: Any) -> None:
    url = sqs.create_queue(QueueName=qname(".fifo"), Attributes={"FifoQueue": "true"})["QueueUrl"]
    with pytest.raises(botocore.exceptions.ClientError):
        sqs.create_queue(QueueName=qname(), Attributes={"FifoQueue": "true"})
    with pytest.raises(botocore.exceptions.ClientError) as missing:
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageDeduplicationId="d")
    assert code(missing.value) == "MissingParameter"
    with pytest.raises(botocore.exceptions.ClientError):
        sqs.send_message(QueueUrl=url, MessageBody="x", MessageGroupId="g")
    sent = [
        sqs.send_message(
            QueueUrl=url, MessageBody=f"{group}{i}", MessageGroupId=group, MessageDeduplicationId=f"{group}{i}"
        )
        for i in range(3)
        for group in ("a", "b")
    ]
    assert all(s["SequenceNumber"].isdigit() for s in sent)
    dup = sqs.send_message(QueueUrl=url, MessageBody="a0", MessageGroupId="a", MessageDeduplicationId="a0")
    assert dup["MessageId"] == sent[0]["MessageId"], "a duplicate within the window answers the first message"
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, AttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in first] == ["a0"] and first[0]["Attributes"]["MessageGroupId"] == "a"
    rest = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in rest] == ["b0", "b1", "b2"], "group a is held while a0 is in flight"
    assert not sqs.receive_message(QueueUrl=url).get("Messages")
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first[0]["ReceiptHandle"])
    assert [m["Body"] for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]] == ["a1", "a2"]


def test_fifo_content_based_deduplication(sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName=qname(".fifo"), Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    first = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    second = sqs.send_message(QueueUrl=url, MessageBody="same", MessageGroupId="g")
    assert first["MessageId"] == second["MessageId"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attrs["FifoQueue"] == "true" and attrs["ContentBasedDeduplication"] == "true"
    assert attrs["ApproximateNumberOfMessages"] == "1"


# -- one queue, two APIs -------------------------------------------------------------------------------------


def test_sqs_and_rest_see_the_same_queue(sqs: Any, node: NodeProcess) -> None:
    name = qname()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    rest = Api(node.url, token(node.url, "admin", ADMIN_PASSWORD))
    sqs.send_message(
        QueueUrl=url,
        MessageBody='{"order": 7}',
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "new"},
            "n": {"DataType": "Number", "StringValue": "3"},
        },
    )
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    got = rest.receive(name, max_messages=10)
    assert got[0]["body"] == {"order": 7} and got[0]["headers"] == {"kind": "new", "n": 3}
    assert got[1]["body_base64"] == "bm90IGpzb24="
    rest.ack(name, *[m["receipt"] for m in got])
    rest.publish(name, {"from": "rest"})
    rest.http.post(f"/v1/queues/{name}/messages", json={"body": [1], "headers": {"tag": "x", "n": 1.5, "flag": True}})
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])["Messages"]
    assert [m["Body"] for m in messages] == ['{"from":"rest"}', "[1]"]
    assert messages[1]["MessageAttributes"] == {
        "tag": {"DataType": "String", "StringValue": "x"},
        "n": {"DataType": "Number", "StringValue": "1.5"},
        "flag": {"DataType": "String.json", "StringValue": "true"},
    }
    assert rest.get(f"/v1/queues/{name}").json()["in_flight"] == 2
    rest.http.close()


# -- authentication and scopes -------------------------------------------------------------------------------


def test_signature_failures(node: NodeProcess, creds: tuple[str, str]) -> None:
    key, secret = creds
    with pytest.raises(botocore.exceptions.ClientError) as wrong:
        boto(node.url, key, secret + "x").list_queues()
    assert (
        code(wrong.value) == "SignatureDoesNotMatch"
        and wrong.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    )
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        boto(node.url, "client-nobody", secret).list_queues()
    assert code(unknown.value) == "InvalidClientTokenId"
    plain_key, plain_secret = sigv4_client(node.url, sigv4=False)
    with pytest.raises(botocore.exceptions.ClientError) as not_opted_in:
        boto(node.url, plain_key, plain_secret).list_queues()
    assert code(not_opted_in.value) == "InvalidClientTokenId"
    unsigned = httpx.post(
        node.url + "/",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "content-type": "application/x-amz-json-1.0"},
        content=b"{}",
    )
    assert unsigned.status_code == 403 and unsigned.json()["__type"].endswith("MissingAuthenticationToken")


def test_a_stale_signature_is_refused(
    node: NodeProcess, creds: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    import botocore.auth
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(
        method="POST",
        url=node.url + "/",
        data=b"{}",
        headers={"X-Amz-Target": "AmazonSQS.ListQueues", "Content-Type": "application/x-amz-json-1.0"},
    )
    signer = SigV4Auth(Credentials(*creds), "sqs", "eu-west-1")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: datetime.datetime(2020, 1, 1))
    signer.add_auth(request)
    answer = httpx.post(node.url + "/", headers=dict(request.headers), content=b"{}")
    assert answer.status_code == 403 and "expired" in answer.json()["message"]


def test_scopes_apply_as_over_rest(node: NodeProcess, sqs: Any) -> None:
    name = qname()
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    producer = boto(node.url, *sigv4_client(node.url, [f"mom.write:{name}"]))
    producer.send_message(QueueUrl=url, MessageBody="allowed")
    assert producer.get_queue_url(QueueName=name)["QueueUrl"] == url
    with pytest.raises(botocore.exceptions.ClientError) as denied:
        producer.receive_message(QueueUrl=url)
    assert code(denied.value) == "AccessDenied" and denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(botocore.exceptions.ClientError):
        producer.delete_queue(QueueUrl=url)
    assert producer.list_queues().get("QueueUrls", []) == []
