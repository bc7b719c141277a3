"""The signing key file and JWKS; access tokens: issue, verify, every way to refuse one, the cache."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws, jwt

from mom.api.auth import Principal, SigningKeys, TokenService
from mom.api.auth.tokens import _low_s as low_s
from mom.errors import InvalidInput, StorageError, Unauthorized

T0 = 1_700_000_000.0
ISSUER, AUDIENCE, TTL = "urn:mom", "mom", 600


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


@pytest.fixture(scope="module")
def keys() -> SigningKeys:
    return SigningKeys.generate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(keys: SigningKeys, clock: Clock) -> TokenService:
    return TokenService(keys, issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL, clock=clock)


def good_claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": AUDIENCE,
        "exp": int(T0) + TTL,
        "iat": int(T0),
        "jti": "j1",
        "client_id": "mom",
        "scope": "mom.read:*",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def signed(keys: SigningKeys, claims: dict[str, Any], **header: Any) -> str:
    """A token signed with `keys`' private key, with our header unless overridden."""
    merged = {"typ": "at+jwt", "alg": "ES256", "kid": keys.kid, **header}
    full = {k: v for k, v in merged.items() if v is not None}
    return low_s(jwt.encode(full, claims, keys.signing_key, algorithms=["ES256"], default_type=None))


def refused(service: TokenService, token: str) -> str:
    with pytest.raises(Unauthorized) as info:
        service.verify(token)
    return info.value.detail


# ---------------------------------------------------------------------------------------------------------
# The key file and the JWKS


def test_key_file_is_private_and_reloads_the_same_key(tmp_path: Path) -> None:
    directory = tmp_path / "data" / "keys"
    old_umask = os.umask(0)
    try:
        keys = SigningKeys.load_or_create(directory)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (key_file,) = directory.iterdir()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "d" in json.loads(key_file.read_text())
    again = SigningKeys.load_or_create(directory)
    assert again.kid == keys.kid
    assert again.jwks() == keys.jwks()


def test_reloaded_key_verifies_tokens_of_the_first(tmp_path: Path) -> None:
    first = TokenService(SigningKeys.load_or_create(tmp_path), issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL)
    token = first.issue("alice", ["mom.read:*"], "mom").access_token
    second = TokenService(SigningKeys.load_or_create(tmp_path), issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL)
    assert second.verify(token).subject == "alice"


def test_corrupt_key_file_is_a_storage_error(tmp_path: Path) -> None:
    SigningKeys.load_or_create(tmp_path)
    (key_file,) = tmp_path.iterdir()
    key_file.write_text("{not json")
    with pytest.raises(StorageError, match="signing key"):
        SigningKeys.load_or_create(tmp_path)


def test_jwks_is_public_with_thumbprint_kid(keys: SigningKeys) -> None:
    (jwk,) = keys.jwks()["keys"]
    assert "d" not in jwk
    assert jwk["kid"] == keys.kid and jwk["use"] == "sig" and jwk["alg"] == "ES256"
    required = {"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"]}
    canonical = json.dumps(required, separators=(",", ":"), sort_keys=True).encode()
    assert keys.kid == b64(hashlib.sha256(canonical).digest())


def test_trusted_key_of_another_node_is_accepted(clock: Clock) -> None:
    mine, theirs = SigningKeys.generate(), SigningKeys.generate()
    service = TokenService(mine, issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL, clock=clock)
    other_node = TokenService(theirs, issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL, clock=clock)
    token = other_node.issue("bob", ["mom.write:x"], "mom").access_token
    assert "unknown key" in refused(service, token)
    mine.add_trusted(theirs.jwks()["keys"][0])
    assert service.verify(token).subject == "bob"
    assert {k["kid"] for k in mine.jwks()["keys"]} == {mine.kid}, "the JWKS publishes this node's own key only"
    assert all("d" not in k for k in mine.jwks()["keys"])


@pytest.mark.parametrize(
    "mutate",
    [
        lambda jwk: {**jwk, "d": "AAAA"},
        lambda jwk: {**jwk, "kid": "not-the-thumbprint"},
        lambda jwk: {**jwk, "crv": "P-384"},
        lambda jwk: {**jwk, "x": "!!"},
        lambda jwk: {"kty": "oct", "k": "c2VjcmV0"},
    ],
)
def test_add_trusted_refuses_bad_keys(mutate: Callable[[dict[str, Any]], Any]) -> None:
    jwk = SigningKeys.generate().jwks()["keys"][0]
    with pytest.raises(InvalidInput):
        SigningKeys.generate().add_trusted(mutate(jwk))


# ---------------------------------------------------------------------------------------------------------
# Issue and verify


def test_issue_then_verify(service: TokenService, keys: SigningKeys) -> None:
    issued = service.issue("alice", ["mom.read:*", "mom.write:orders.*"], "web")
    assert issued.token_type == "Bearer" and issued.expires_in == TTL
    assert issued.scope == "mom.read:* mom.write:orders.*"
    header_segment, payload_segment, _ = issued.access_token.split(".")
    assert unb64(header_segment) == {"typ": "at+jwt", "alg": "ES256", "kid": keys.kid}
    claims = unb64(payload_segment)
    assert claims["iss"] == ISSUER and claims["aud"] == AUDIENCE and claims["sub"] == "alice"
    assert claims["iat"] == int(T0) and claims["exp"] == int(T0) + TTL
    assert claims["client_id"] == "web" and claims["scope"] == issued.scope and claims["jti"]
    assert service.verify(issued.access_token) == Principal(
        subject="alice",
        scopes=frozenset({"mom.read:*", "mom.write:orders.*"}),
        client_id="web",
        issued_at=int(T0),
        token_id=claims["jti"],
        expires_at=int(T0) + TTL,
    )


def test_each_token_has_its_own_jti(service: TokenService) -> None:
    first = service.issue("alice", [], "mom").access_token
    second = service.issue("alice", [], "mom").access_token
    assert unb64(first.split(".")[1])["jti"] != unb64(second.split(".")[1])["jti"]


def test_expired_token(service: TokenService, clock: Clock) -> None:
    token = service.issue("alice", [], "mom").access_token
    clock.now = T0 + TTL - 1
    assert service.verify(token).subject == "alice"
    clock.now = T0 + TTL
    assert refused(service, token) == "token expired"


def test_token_from_the_future(keys: SigningKeys, service: TokenService, clock: Clock) -> None:
    ahead = TokenService(keys, issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL, clock=Clock(T0 + 10))
    assert service.verify(ahead.issue("alice", [], "mom").access_token).subject == "alice"
    far_ahead = TokenService(keys, issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL, clock=Clock(T0 + 120))
    assert refused(service, far_ahead.issue("alice", [], "mom").access_token) == "token not yet valid"
    assert refused(service, signed(keys, good_claims(nbf=int(T0) + 120))) == "token not yet valid"


def test_tampered_payload(service: TokenService) -> None:
    header, payload, signature = service.issue("alice", ["mom.read:*"], "mom").access_token.split(".")
    forged = b64(unb64(payload) | {"scope": "mom.admin"})
    assert refused(service, f"{header}.{forged}.{signature}") == "token signature is invalid"


def test_signature_of_another_key_under_our_kid(service: TokenService, keys: SigningKeys) -> None:
    other = SigningKeys.generate()
    header = {"typ": "at+jwt", "alg": "ES256", "kid": keys.kid}
    token = low_s(jwt.encode(header, good_claims(), other.signing_key, algorithms=["ES256"]))
    assert refused(service, token) == "token signature is invalid"


def test_alg_none(service: TokenService, keys: SigningKeys) -> None:
    for alg in ("none", "None", "NONE"):
        header = b64({"typ": "at+jwt", "alg": alg, "kid": keys.kid})
        assert "not accepted" in refused(service, f"{header}.{b64(good_claims())}.")


def test_hs256_keyed_with_the_public_key(service: TokenService, keys: SigningKeys) -> None:
    """The algorithm-confusion attack: HMAC keyed with published key material must not verify."""
    public_jwk = keys.jwks()["keys"][0]
    for secret in (json.dumps(public_jwk).encode(), keys.signing_key.as_pem(private=False)):
        signing_input = f"{b64({'typ': 'at+jwt', 'alg': 'HS256', 'kid': keys.kid})}.{b64(good_claims())}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        detail = refused(service, f"{signing_input}.{b64(mac)}")
        assert detail == "token algorithm 'HS256' is not accepted (only ES256)"


def test_wrong_audience_and_issuer(keys: SigningKeys, service: TokenService, clock: Clock) -> None:
    elsewhere = TokenService(keys, issuer=ISSUER, audience="billing", ttl_s=TTL, clock=clock)
    assert "audience" in refused(service, elsewhere.issue("alice", [], "mom").access_token)
    impostor = TokenService(keys, issuer="urn:other", audience=AUDIENCE, ttl_s=TTL, clock=clock)
    assert "issuer" in refused(service, impostor.issue("alice", [], "mom").access_token)
    assert service.verify(signed(keys, good_claims(aud=["billing", AUDIENCE]))).subject == "alice"


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b.c", "..", "a.b", "a.b.c.d.e", "é.é.é", "e30.e30.e30", "x" * 200_000],
)
def test_garbage(service: TokenService, garbage: str) -> None:
    assert refused(service, garbage).startswith("malformed token")


def test_missing_and_mistyped_claims(service: TokenService, keys: SigningKeys) -> None:
    for claim in ("iss", "sub", "aud", "exp", "iat", "jti", "client_id", "scope"):
        detail = refused(service, signed(keys, good_claims(**{claim: None})))
        assert detail == f"token lacks the {claim!r} claim"
    assert "number" in refused(service, signed(keys, good_claims(exp="tomorrow")))
    assert "number" in refused(service, signed(keys, good_claims(iat=True)))
    assert "string" in refused(service, signed(keys, good_claims(scope=["mom.admin"])))


def test_header_must_be_ours(service: TokenService, keys: SigningKeys) -> None:
    assert "type" in refused(service, signed(keys, good_claims(), typ="JWT"))
    assert "type" in refused(service, signed(keys, good_claims(), typ=None))
    assert "unknown key" in refused(service, signed(keys, good_claims(), kid="someone-else"))
    assert "key id" in refused(service, signed(keys, good_claims(), kid=None))
    assert "unsupported" in refused(service, signed(keys, good_claims(), jku="https://evil.example/jwks"))
    assert service.verify(signed(keys, good_claims())).subject == "alice"


# ---------------------------------------------------------------------------------------------------------
# The verification cache


@pytest.fixture
def signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each signature verification that TokenService asks joserfc for."""
    calls: list[str] = []
    real = jws.validate_compact

    def spy(*args: Any, **kwargs: Any) -> bool:
        calls.append("check")
        return real(*args, **kwargs)

    monkeypatch.setattr(jws, "validate_compact", spy)
    return calls


def test_cache_verifies_a_signature_once_but_still_expires(
    service: TokenService, clock: Clock, signature_checks: list[str]
) -> None:
    token = service.issue("alice", ["mom.read:*"], "mom").access_token
    for _ in range(5):
        assert service.verify(token).subject == "alice"
    assert len(signature_checks) == 1
    clock.now = T0 + TTL
    assert refused(service, token) == "token expired"
    assert refused(service, token) == "token expired"
    assert len(signature_checks) == 2, "an expired token leaves the cache and is checked again"


def test_cache_is_bounded(keys: SigningKeys, clock: Clock, signature_checks: list[str]) -> None:
    service = TokenService(keys, issuer=ISSUER, audience=AUDIENCE, ttl_s=TTL, clock=clock, cache_size=2)
    a, b, c = (service.issue(name, [], "mom").access_token for name in "abc")
    for token in (a, b, a, c):
        service.verify(token)
    assert len(signature_checks) == 3
    service.verify(a)
    assert len(signature_checks) == 3, "a was used recently, so b was evicted, not a"
    service.verify(b)
    assert len(signature_checks) == 4


def test_refused_tokens_are_not_cached(service: TokenService, signature_checks: list[str]) -> None:
    header, payload, signature = service.issue("alice", [], "mom").access_token.split(".")
    forged = f"{header}.{b64(unb64(payload) | {'sub': 'root'})}.{signature}"
    refused(service, forged)
    refused(service, forged)
    assert len(signature_checks) == 2
