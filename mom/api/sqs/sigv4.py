"""AWS Signature Version 4 verification of header-signed requests (what boto3 and the AWS CLI send).

Framework-free: the route hands in the method, raw path and query, headers and body. The access key id names a
mom OAuth client; its SigV4 secret (kept only for clients created with `sigv4`) keys the HMAC. The signature
is recomputed exactly as the client did (canonical request, string to sign, derived key) and compared in
constant time. A request dated more than `MAX_SKEW_S` away from the server's clock is refused, so a captured
request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from mom.api.sqs.errors import (
    INCOMPLETE_SIGNATURE,
    INVALID_CLIENT_TOKEN_ID,
    SIGNATURE_DOES_NOT_MATCH,
    SqsError,
)

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_S = 15 * 60
SERVICE = "sqs"
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request\s*,\s*"
    r"SignedHeaders=([a-z0-9;_.-]+)\s*,\s*Signature=([0-9a-f]{64})\s*"
)
_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class Signed:
    """A verified request: who signed it and the region it was signed for (for ARNs in answers)."""

    access_key: str
    region: str


@dataclass(frozen=True)
class SignedRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: Mapping[str, str]
    """Lower-case names."""
    body: bytes


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret: str, date: str, region: str, service: str = SERVICE) -> bytes:
    key = _hmac(f"AWS4{secret}".encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def _canonical_query(raw_query: str) -> str:
    pairs = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def canonical_request(request: SignedRequest, signed_headers: list[str]) -> str:
    headers = "".join(f"{name}:{_SPACES.sub(' ', request.headers.get(name, '').strip())}\n" for name in signed_headers)
    payload = request.headers.get("x-amz-content-sha256") or hashlib.sha256(request.body).hexdigest()
    return "\n".join(
        [
            request.method.upper(),
            quote(request.raw_path or "/", safe="/~"),
            _canonical_query(request.raw_query),
            headers,
            ";".join(signed_headers),
            payload,
        ]
    )


def _request_time(headers: Mapping[str, str]) -> datetime:
    stamp = headers.get("x-amz-date")
    if stamp is None:
        raise SqsError(INCOMPLETE_SIGNATURE, "the request must carry an X-Amz-Date header")
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise SqsError(INCOMPLETE_SIGNATURE, f"X-Amz-Date {stamp!r} is not of the form 20250101T120000Z") from None


def verify(request: SignedRequest, secret_of: Callable[[str], str | None], now_s: float) -> Signed:
    """The signer, if the signature is valid and fresh; otherwise the SqsError a client expects."""
    match = _AUTH_RE.fullmatch(request.headers.get("authorization", "").strip())
    if match is None:
        raise SqsError(INCOMPLETE_SIGNATURE, "the Authorization header is not an AWS4-HMAC-SHA256 signature")
    access_key, date, region, service, signed, signature = match.groups()
    names = signed.split(";")
    if "host" not in names:
        raise SqsError(INCOMPLETE_SIGNATURE, "the signature must cover the Host header")
    when = _request_time(request.headers)
    if when.strftime("%Y%m%d") != date:
        raise SqsError(SIGNATURE_DOES_NOT_MATCH, "the credential scope's date is not the X-Amz-Date's")
    now = datetime.fromtimestamp(now_s, UTC)
    if abs((now - when).total_seconds()) > MAX_SKEW_S:
        raise SqsError(
            SIGNATURE_DOES_NOT_MATCH,
            f"Signature expired: {when:%Y%m%dT%H%M%SZ} is more than 15 minutes away from {now:%Y%m%dT%H%M%SZ}",
        )
    secret = secret_of(access_key)
    if secret is None:
        raise SqsError(INVALID_CLIENT_TOKEN_ID, "The security token included in the request is invalid.")
    if service != SERVICE:
        raise SqsError(SIGNATURE_DOES_NOT_MATCH, f"the credential scope names service {service!r}, not sqs")
    scope = f"{date}/{region}/{service}/aws4_request"
    digest = hashlib.sha256(canonical_request(request, names).encode()).hexdigest()
    to_sign = f"{ALGORITHM}\n{request.headers['x-amz-date']}\n{scope}\n{digest}"
    expected = hmac.new(signing_key(secret, date, region), to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SqsError(
            SIGNATURE_DOES_NOT_MATCH,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )
    return Signed(access_key, region)
