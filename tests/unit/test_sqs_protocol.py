"""The SQS edge without a server: SigV4 verification against botocore's signer, MD5s, the query protocol."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from mom.api.sqs import protocol
from mom.api.sqs.attributes import AttributeValue, attributes_to_headers, headers_to_attributes, parse_attributes
from mom.api.sqs.errors import SqsError
from mom.api.sqs.md5 import md5_of_attributes, md5_of_body
from mom.api.sqs.queue_attributes import to_changes
from mom.api.sqs.sigv4 import SignedRequest, verify

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def signed(url: str, body: bytes, *, secret: str = SECRET, headers: dict[str, str] | None = None) -> SignedRequest:
    request = AWSRequest(
        method="POST", url=url, data=body, headers=headers or {"Content-Type": "application/x-amz-json-1.0"}
    )
    SigV4Auth(Credentials("client-a", secret), "sqs", "eu-central-1").add_auth(request)
    host, _, rest = url.split("://", 1)[1].partition("/")
    path, _, query = rest.partition("?")
    sent = {k.lower(): v for k, v in request.headers.items()} | {"host": host}  # as the HTTP client sends it
    return SignedRequest("POST", "/" + path, query, sent, body)


def now_of(request: SignedRequest) -> float:
    return datetime.strptime(request.headers["x-amz-date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()


def secrets(key: str) -> str | None:
    return SECRET if key == "client-a" else None


def test_a_botocore_signature_verifies() -> None:
    request = signed("http://127.0.0.1:8080/", b'{"QueueName": "q"}')
    assert verify(request, secrets, now_of(request)).region == "eu-central-1"
    with_query = signed("http://127.0.0.1:8080/000000000000/q?Action=ListQueues&b=%20x", b"")
    assert verify(with_query, secrets, now_of(with_query)).access_key == "client-a"


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ("body", "SignatureDoesNotMatch"),
        ("secret", "SignatureDoesNotMatch"),
        ("key", "InvalidClientTokenId"),
        ("late", "SignatureDoesNotMatch"),
        ("garbled", "IncompleteSignature"),
    ],
)
def test_tampering_is_refused(change: str, code: str) -> None:
    request = signed("http://127.0.0.1:8080/", b"{}", secret=SECRET + "x" if change == "secret" else SECRET)
    headers = dict(request.headers)
    body = b'{"x": 1}' if change == "body" else request.body
    if change == "key":
        headers["authorization"] = headers["authorization"].replace("client-a", "client-b")
    if change == "garbled":
        headers["authorization"] = "AWS4-HMAC-SHA256 nonsense"
    now = now_of(request) + (16 * 60 if change == "late" else 0)
    with pytest.raises(SqsError) as caught:
        verify(SignedRequest(request.method, request.raw_path, request.raw_query, headers, body), secrets, now)
    assert caught.value.kind.shape == code


def test_md5s_match_the_documented_algorithm() -> None:
    assert md5_of_body("hello") == hashlib.md5(b"hello").hexdigest()
    attrs = {"b": AttributeValue("Binary", binary=b"\x01"), "a": AttributeValue("String", string="x")}
    expected = hashlib.md5(
        b"\x00\x00\x00\x01a\x00\x00\x00\x06String\x01\x00\x00\x00\x01x"
        b"\x00\x00\x00\x01b\x00\x00\x00\x06Binary\x02\x00\x00\x00\x01\x01"
    ).hexdigest()
    assert md5_of_attributes(attrs) == expected


def test_attributes_round_trip_through_headers() -> None:
    raw = {
        "s": {"DataType": "String", "StringValue": "x"},
        "n": {"DataType": "Number", "StringValue": "12"},
        "odd": {"DataType": "Number", "StringValue": "1e3"},
        "c": {"DataType": "String.custom", "StringValue": "y"},
        "bin": {"DataType": "Binary", "BinaryValue": "AAE="},
    }
    parsed = parse_attributes(raw)
    headers = attributes_to_headers(parsed)
    assert headers["s"] == "x" and headers["n"] == 12 and headers["odd"] == {"DataType": "Number", "StringValue": "1e3"}
    assert headers_to_attributes(headers) == parsed
    with pytest.raises(SqsError):
        parse_attributes({f"k{i}": {"DataType": "String", "StringValue": "v"} for i in range(11)})
    with pytest.raises(SqsError):
        parse_attributes({"AWS.x": {"DataType": "String", "StringValue": "v"}})


def test_query_parameters_become_the_json_shape() -> None:
    action, params = protocol.parse_query(
        "",
        b"Action=SendMessageBatch&QueueUrl=u&SendMessageBatchRequestEntry.2.Id=b&SendMessageBatchRequestEntry.2.MessageBody=2"
        b"&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=1"
        b"&SendMessageBatchRequestEntry.1.MessageAttribute.1.Name=k"
        b"&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.DataType=String"
        b"&SendMessageBatchRequestEntry.1.MessageAttribute.1.Value.StringValue=v&Version=2012-11-05",
    )
    assert action == "SendMessageBatch"
    assert params == {
        "QueueUrl": "u",
        "Entries": [
            {"Id": "a", "MessageBody": "1", "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}},
            {"Id": "b", "MessageBody": "2"},
        ],
    }
    with pytest.raises(SqsError):
        protocol.parse_query("", b"QueueName=x")
    with pytest.raises(SqsError):
        protocol.parse_json("DynamoDB_20120810.GetItem", b"{}")


def test_json_bodies_pass_the_text_checks_of_the_rest_api() -> None:
    """Deep nesting is a clear MissingParameter (it was a RecursionError, answered InternalFailure)."""
    for body in (b"[" * 100_000 + b"]" * 100_000, b'{"QueueName": "\xff"}'):
        with pytest.raises(SqsError) as refused:
            protocol.parse_json("AmazonSQS.CreateQueue", body)
        assert refused.value.kind.shape == "MissingParameter"


def test_non_ascii_digits_are_not_numbers() -> None:
    """'²' passes str.isdigit but not int(): it must be refused or ignored, never fail inside."""
    action, params = protocol.parse_query("", "Action=ReceiveMessage&AttributeName.²=All".encode())
    assert (action, params) == ("ReceiveMessage", {"AttributeNames": ["All"]})
    with pytest.raises(SqsError) as refused:
        to_changes({"DelaySeconds": "²"}, creating=True)
    assert refused.value.kind.shape == "InvalidAttributeValue"
