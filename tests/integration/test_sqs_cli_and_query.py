"""The AWS CLI (v1, from PyPI) and the older query protocol (form-encoded Action=..., XML answers) against a node."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.integration.harness import NodeProcess
from tests.integration.sqs_support import sigv4_client

NS = {"sqs": "http://queue.amazonaws.com/doc/2012-11-05/"}
AWS = Path(sys.executable).parent / "aws"


@pytest.fixture(scope="module")
def creds(node: NodeProcess) -> tuple[str, str]:
    return sigv4_client(node.url)


def aws(node: NodeProcess, creds: tuple[str, str], *args: str) -> Any:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": creds[0],
        "AWS_SECRET_ACCESS_KEY": creds[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    done = subprocess.run(
        [str(AWS), "sqs", *args, "--endpoint-url", node.url, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout) if done.stdout.strip() else None


@pytest.mark.skipif(not AWS.exists(), reason="the AWS CLI (pip package awscli, in the test extra) is not installed")
def test_aws_cli_round_trip(node: NodeProcess, creds: tuple[str, str]) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    url = aws(node, creds, "create-queue", "--queue-name", name)["QueueUrl"]
    aws(node, creds, "send-message", "--queue-url", url, "--message-body", "hello from the cli")
    got = aws(node, creds, "receive-message", "--queue-url", url, "--wait-time-seconds", "2")
    (message,) = got["Messages"]
    assert message["Body"] == "hello from the cli"
    aws(node, creds, "delete-message", "--queue-url", url, "--receipt-handle", message["ReceiptHandle"])
    attrs = aws(node, creds, "get-queue-attributes", "--queue-url", url, "--attribute-names", "All")["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0"
    assert url in aws(node, creds, "list-queues")["QueueUrls"]
    aws(node, creds, "delete-queue", "--queue-url", url)


def query(node: NodeProcess, creds: tuple[str, str], params: dict[str, str], path: str = "/") -> httpx.Response:
    data = urlencode({"Version": "2012-11-05", **params})
    request = AWSRequest(
        method="POST",
        url=node.url + path,
        data=data,
        headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    SigV4Auth(Credentials(*creds), "sqs", "us-east-1").add_auth(request)
    return httpx.post(node.url + path, headers=dict(request.headers), content=data)


def test_query_protocol_answers_in_xml(node: NodeProcess, creds: tuple[str, str]) -> None:
    name = f"query-{uuid.uuid4().hex[:8]}"
    created = query(
        node,
        creds,
        {
            "Action": "CreateQueue",
            "QueueName": name,
            "Attribute.1.Name": "VisibilityTimeout",
            "Attribute.1.Value": "12",
        },
    )
    assert created.status_code == 200, created.text
    url = ElementTree.fromstring(created.content).findtext("sqs:CreateQueueResult/sqs:QueueUrl", namespaces=NS)
    assert url is not None and url.endswith(name)
    sent = query(
        node,
        creds,
        {
            "Action": "SendMessage",
            "QueueUrl": url,
            "MessageBody": "xml body",
            "MessageAttribute.1.Name": "k",
            "MessageAttribute.1.Value.DataType": "String",
            "MessageAttribute.1.Value.StringValue": "v",
        },
    )
    assert ElementTree.fromstring(sent.content).findtext(".//sqs:MD5OfMessageAttributes", namespaces=NS)
    path = "/" + url.split("/", 3)[3]
    received = query(node, creds, {"Action": "ReceiveMessage", "MessageAttributeName.1": "All"}, path=path)
    root = ElementTree.fromstring(received.content)
    assert root.findtext(".//sqs:Message/sqs:Body", namespaces=NS) == "xml body"
    assert root.findtext(".//sqs:MessageAttribute/sqs:Value/sqs:StringValue", namespaces=NS) == "v"
    attrs = query(node, creds, {"Action": "GetQueueAttributes", "QueueUrl": url, "AttributeName.1": "All"})
    values = {
        a.findtext("sqs:Name", namespaces=NS): a.findtext("sqs:Value", namespaces=NS)
        for a in ElementTree.fromstring(attrs.content).iterfind(".//sqs:Attribute", NS)
    }
    assert values["VisibilityTimeout"] == "12" and values["ApproximateNumberOfMessagesNotVisible"] == "1"
    missing = query(node, creds, {"Action": "GetQueueUrl", "QueueName": "no-such-queue"})
    assert missing.status_code == 400
    error = ElementTree.fromstring(missing.content)
    assert error.findtext("sqs:Error/sqs:Code", namespaces=NS) == "AWS.SimpleQueueService.NonExistentQueue"
    unknown = query(node, creds, {"Action": "Fly"})
    assert unknown.status_code == 400 and b"InvalidAction" in unknown.content
