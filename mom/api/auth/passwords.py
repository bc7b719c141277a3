"""Password and client-secret hashing with argon2id.

Hashes are computed on the node that accepts a registration and travel in the log (`RegisterUser`), so every
node verifies against the same string. Argon2 is deliberately slow (tens of ms, ~19 MiB each): the async
variants run it in a worker thread so the trio loop keeps serving, and a per-run limiter caps how many run at
once so a burst of logins costs CPU cores, not unbounded memory.
"""

from __future__ import annotations

import functools
import os
import secrets

import trio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
"""OWASP's minimum argon2id parameters; each hash records its own, so raising them later is safe."""

_LIMITER: trio.lowlevel.RunVar[trio.CapacityLimiter] = trio.lowlevel.RunVar("mom_auth_hashing_limiter")


def hash_secret(secret: str) -> str:
    """Return an argon2id hash of `secret` (PHC string format, salt and parameters included)."""
    return _HASHER.hash(secret)


def verify_secret(secret_hash: str, secret: str) -> bool:
    """True only if `secret` matches `secret_hash`; a malformed hash is a mismatch, not an error."""
    try:
        return _HASHER.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


def check_secret(secret_hash: str | None, secret: str) -> bool:
    """Verify `secret`, spending the same time when there is no account (`secret_hash` None).

    Verifying against a throw-away hash keeps an unknown name and a wrong password indistinguishable by
    response time, so the token endpoint does not reveal which usernames exist.
    """
    if secret_hash is None:
        verify_secret(_dummy_hash(), secret)
        return False
    return verify_secret(secret_hash, secret)


@functools.cache
def _dummy_hash() -> str:
    return hash_secret(secrets.token_urlsafe(16))


def hashing_limiter() -> trio.CapacityLimiter:
    """The limiter shared by all argon2 work of the current trio run (one slot per CPU)."""
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = trio.CapacityLimiter(os.cpu_count() or 1)
        _LIMITER.set(limiter)
        return limiter


async def hash_secret_async(secret: str) -> str:
    return await trio.to_thread.run_sync(hash_secret, secret, limiter=hashing_limiter())


async def verify_secret_async(secret_hash: str, secret: str) -> bool:
    return await trio.to_thread.run_sync(verify_secret, secret_hash, secret, limiter=hashing_limiter())
