"""The JWT attacks that hold, kept held: alg none, key confusion, forged signatures, bad claims, high-S ECDSA.

Each is sent over the wire to a real node; claims attacks are signed with the node's own private key (read from
its data directory), so only the check under test can refuse them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from mom.api.auth.keys import KEY_FILE
from tests.integration.harness import NodeProcess
from tests.security.helpers import assert_problem, plain_user

P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def node_key(node: NodeProcess) -> ECKey:
    return ECKey.import_key(json.loads((node.data_dir / "keys" / KEY_FILE).read_text()))


def claims(**override: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": "urn:mom", "sub": "user:admin", "aud": "mom", "exp": now + 600, "iat": now, "jti": "j1",
            "client_id": "mom", "scope": "mom.admin"}  # fmt: skip
    return {k: v for k, v in (base | override).items() if v is not None}


def signed(node: NodeProcess, body: dict[str, Any], **header: Any) -> str:
    key = node_key(node)
    merged = {"typ": "at+jwt", "alg": "ES256", "kid": key.thumbprint()} | header
    return jwt.encode({k: v for k, v in merged.items() if v is not None}, body, key, algorithms=["ES256"])


def refused(node: NodeProcess, token: str) -> str:
    answer = httpx.get(node.url + "/v1/queues", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    return str(assert_problem(answer, 401)["detail"])


def test_alg_none(node: NodeProcess) -> None:
    kid = node_key(node).thumbprint()
    for alg in ("none", "None", "NONE"):
        assert "not accepted" in refused(node, f"{b64({'typ': 'at+jwt', 'alg': alg, 'kid': kid})}.{b64(claims())}.")


def test_hs256_keyed_with_the_public_key(node: NodeProcess) -> None:
    jwks = httpx.get(node.url + "/.well-known/jwks.json").json()["keys"][0]
    signing_input = f"{b64({'typ': 'at+jwt', 'alg': 'HS256', 'kid': jwks['kid']})}.{b64(claims())}"
    for secret in (json.dumps(jwks).encode(), node_key(node).as_pem(private=False)):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assert "HS256" in refused(node, f"{signing_input}.{b64(mac)}")


def test_forged_and_tampered_signatures(node: NodeProcess) -> None:
    _, user = plain_user(node.url)
    header, payload, signature = user.http.headers["Authorization"].split()[1].split(".")
    escalated = json.loads(unb64(payload)) | {"scope": "mom.admin"}
    assert "signature" in refused(node, f"{header}.{b64(escalated)}.{signature}")
    stranger = ECKey.generate_key("P-256", private=True)
    forged = jwt.encode(json.loads(unb64(header)), claims(), stranger, algorithms=["ES256"])
    assert "signature" in refused(node, forged)


def test_high_s_signatures_are_refused(node: NodeProcess) -> None:
    _, user = plain_user(node.url)
    bearer = user.http.headers["Authorization"].split()[1]
    head, _, signature = bearer.rpartition(".")
    raw = unb64(signature)
    r, s = raw[:32], int.from_bytes(raw[32:], "big")
    assert s <= P256_N // 2, "the node issues low-S signatures"
    mirrored = f"{head}.{b64(r + (P256_N - s).to_bytes(32, 'big'))}"
    assert "low-S" in refused(node, mirrored)
    assert user.get("/v1/queues").status_code == 200


@pytest.mark.parametrize(
    ("override", "reason"),
    [
        ({"exp": int(time.time()) - 5}, "expired"),
        ({"aud": "someone-else"}, "audience"),
        ({"iss": "urn:evil"}, "issuer"),
        ({"iat": int(time.time()) + 3600}, "not yet valid"),
        ({"sub": None}, "sub"),
        ({"scope": ["mom.admin"]}, "string"),
        ({"exp": "tomorrow"}, "number"),
    ],
)
def test_bad_claims(node: NodeProcess, override: dict[str, Any], reason: str) -> None:
    assert reason in refused(node, _low_s(signed(node, claims(**override))))


def test_foreign_headers(node: NodeProcess) -> None:
    assert "type" in refused(node, _low_s(signed(node, claims(), typ="JWT")))
    assert "unknown key" in refused(node, _low_s(signed(node, claims(), kid="other")))
    assert "unsupported" in refused(node, _low_s(signed(node, claims(), jku="https://evil.invalid/jwks")))


def test_a_token_for_a_subject_that_does_not_exist_is_refused(node: NodeProcess) -> None:
    assert "no longer exists" in refused(node, _low_s(signed(node, claims(sub="user:ghost"))))
    assert "no longer exists" in refused(node, _low_s(signed(node, claims(sub="admin"))))


def _low_s(token: str) -> str:
    from mom.api.auth.tokens import _low_s as normalise

    return normalise(token)
