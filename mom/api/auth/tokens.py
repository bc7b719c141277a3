"""JWT access tokens (RFC 9068 profile): issuing, and verifying on the hot path of every request.

A token is self-contained: any node holding the issuer's public key can check it without a lookup. Only
our algorithm, our token type and known keys are accepted, before any signature work, which shuts the
classic doors (`alg: none`, HS256 keyed with the public key, tokens of other profiles). Verified tokens are
cached until they expire, so a client reusing its token costs one signature check, not one per request.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from joserfc import jws, jwt
from joserfc.errors import JoseError

from mom.api.auth.keys import SigningKeys
from mom.api.auth.scopes import Principal
from mom.errors import Unauthorized

TOKEN_TYPE = "at+jwt"
CLOCK_SKEW_S = 30
"""Tolerance for `iat`/`nbf` slightly in the future: tokens from other nodes whose clocks run ahead."""

_HEADER_MEMBERS = frozenset({"alg", "typ", "kid"})
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
"""n of P-256: an ECDSA signature (r, s) is also valid as (r, n - s); only the low-S form (s <= n/2) counts."""
_STRING_CLAIMS = ("iss", "sub", "jti", "client_id", "scope")


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a successful token response (RFC 6749 §5.1)."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    scope: str


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires_at: float
    not_before: float


class TokenService:
    """Issues and verifies this cluster's access tokens. Not thread-safe for `verify` (one trio loop)."""

    def __init__(
        self,
        keys: SigningKeys,
        *,
        issuer: str,
        audience: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10_000,
    ) -> None:
        if ttl_s <= 0 or cache_size < 0:
            raise ValueError("ttl_s must be positive and cache_size not negative")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache_size = cache_size
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    def issue(
        self, subject: str, scopes: Sequence[str], client_id: str, *, not_before_ms: int | None = None
    ) -> IssuedToken:
        """A signed token; `not_before_ms` stamps `iat` no earlier than that (past a revocation of the subject,
        which covers tokens stamped up to a margin after it), at most a few seconds ahead of the clock."""
        now = int(self._clock())
        if not_before_ms is not None:
            now = max(now, -(-not_before_ms // 1000))
        scope = " ".join(scopes)
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": subject,
            "aud": self._audience,
            "exp": int(self._clock()) + self._ttl_s,
            "iat": now,
            "jti": secrets.token_urlsafe(16),
            "client_id": client_id,
            "scope": scope,
        }
        header = {"typ": TOKEN_TYPE, "alg": self._keys.alg, "kid": self._keys.kid}
        token = _low_s(jwt.encode(header, claims, self._keys.signing_key, algorithms=[self._keys.alg]))
        return IssuedToken(access_token=token, expires_in=self._ttl_s, scope=scope)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthorized, with the reason, for anything else.

        Expiry and not-before are checked against the clock on every call, cached or not.
        """
        verified = self._cache.get(token)
        if verified is None:
            verified = self._verify_uncached(token)
            if self._cache_size:
                self._cache[token] = verified
                if len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(token)
        now = self._clock()
        if now >= verified.expires_at:
            self._cache.pop(token, None)
            raise Unauthorized("token expired")
        if now + CLOCK_SKEW_S < verified.not_before:
            raise Unauthorized("token not yet valid")
        return verified.principal

    def _verify_uncached(self, token: str) -> _Verified:
        try:
            obj = jws.extract_compact(token.encode())
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise Unauthorized("malformed token: not a compact JWS") from None
        header = obj.headers()
        self._check_header(header)
        if _high_s(token):
            raise Unauthorized("token signature is not in canonical (low-S) form")
        key = self._keys.verification_key(header["kid"])
        if key is None:
            raise Unauthorized(f"token signed by an unknown key (kid {header['kid']!r})")
        try:
            valid = jws.validate_compact(obj, key, algorithms=[self._keys.alg])
        except JoseError:
            valid = False
        if not valid:
            raise Unauthorized("token signature is invalid")
        return self._check_claims(obj.payload)

    def _check_header(self, header: dict[str, Any]) -> None:
        alg, typ = header.get("alg"), header.get("typ")
        if alg != self._keys.alg:
            raise Unauthorized(f"token algorithm {alg!r} is not accepted (only {self._keys.alg})")
        if typ != TOKEN_TYPE:
            raise Unauthorized(f"token type {typ!r} is not accepted (only {TOKEN_TYPE})")
        if not isinstance(header.get("kid"), str):
            raise Unauthorized("token header lacks a key id (kid)")
        extra = set(header) - _HEADER_MEMBERS
        if extra:
            raise Unauthorized(f"token header has unsupported members: {', '.join(sorted(extra))}")

    def _check_claims(self, payload: bytes | None) -> _Verified:
        try:
            claims = json.loads(payload or b"")
        except ValueError:
            raise Unauthorized("malformed token: the payload is not JSON") from None
        if not isinstance(claims, dict):
            raise Unauthorized("malformed token: the payload is not a JSON object")
        for name in (*_STRING_CLAIMS, "aud", "exp", "iat"):
            if name not in claims:
                raise Unauthorized(f"token lacks the {name!r} claim")
        for name in _STRING_CLAIMS:
            if not isinstance(claims[name], str):
                raise Unauthorized(f"token claim {name!r} must be a string")
        expires_at, issued_at = _number(claims, "exp"), _number(claims, "iat")
        not_before = max(issued_at, _number(claims, "nbf") if "nbf" in claims else issued_at)
        if claims["iss"] != self._issuer:
            raise Unauthorized(f"token issuer {claims['iss']!r} is not accepted")
        audience = claims["aud"]
        if audience != self._audience and not (isinstance(audience, list) and self._audience in audience):
            raise Unauthorized(f"token audience {audience!r} is not accepted")
        principal = Principal(
            subject=claims["sub"],
            scopes=frozenset(claims["scope"].split()),
            client_id=claims["client_id"],
            issued_at=issued_at,
            token_id=claims["jti"],
            expires_at=expires_at,
        )
        return _Verified(principal, expires_at=expires_at, not_before=not_before)


def _signature_s(token: str) -> tuple[bytes, int] | None:
    """(r, s) of an ES256 token's signature (r as its 32 bytes), or None if it is not 64 bytes of base64url."""
    try:
        raw = base64.urlsafe_b64decode(token.rsplit(".", 1)[1] + "==")
    except (IndexError, ValueError):
        return None
    return (raw[:32], int.from_bytes(raw[32:], "big")) if len(raw) == 64 else None


def _high_s(token: str) -> bool:
    parts = _signature_s(token)
    return parts is not None and parts[1] > _P256_ORDER // 2


def _low_s(token: str) -> str:
    """The same token with its signature normalised to low-S (what verification accepts)."""
    parts = _signature_s(token)
    if parts is None or parts[1] <= _P256_ORDER // 2:
        return token
    r, s = parts
    signature = r + (_P256_ORDER - s).to_bytes(32, "big")
    return token.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(f"token claim {name!r} must be a number")
    return float(value)
