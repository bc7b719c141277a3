"""Helpers for the SQS tests: SigV4 clients of a real node, and the MD5 of message attributes per AWS's docs."""

from __future__ import annotations

import hashlib
import struct
from typing import Any

import boto3
from botocore.config import Config

from tests.integration.harness import ADMIN_PASSWORD, Api, token

ALL_SCOPES = ["mom.read:*", "mom.write:*", "mom.configure:*"]


def sigv4_client(url: str, scopes: list[str] | None = None, *, sigv4: bool = True) -> tuple[str, str]:
    """A new OAuth client of the node (created by the admin); returns (client_id, client_secret)."""
    admin = Api(url, token(url, "admin", ADMIN_PASSWORD))
    answer = admin.retrying("POST", "/v1/auth/clients", json={"scopes": scopes or ALL_SCOPES, "sigv4": sigv4})
    admin.http.close()
    assert answer.status_code == 201, answer.text
    return answer.json()["client_id"], answer.json()["client_secret"]


def boto(url: str, key: str, secret: str, **config: Any) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=url,
        region_name="eu-west-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 8, "mode": "standard"}, **config),
    )


def expected_md5_of_attributes(attributes: dict[str, dict[str, Any]]) -> str:
    """The algorithm of the SQS developer guide, written here independently of mom's implementation."""

    def field(data: bytes) -> bytes:
        return struct.pack("!I", len(data)) + data

    buffer = b""
    for name in sorted(attributes):
        value = attributes[name]
        buffer += field(name.encode()) + field(value["DataType"].encode())
        if "BinaryValue" in value:
            raw = value["BinaryValue"]
            buffer += b"\x02" + field(raw if isinstance(raw, bytes) else raw.encode())
        else:
            buffer += b"\x01" + field(value["StringValue"].encode())
    return hashlib.md5(buffer).hexdigest()
