"""argon2 secrets: round trip, malformed hashes, and hashing off the trio loop."""

from __future__ import annotations

import threading

import pytest
import trio

from mom.api.auth import passwords
from mom.api.auth.passwords import (
    check_secret,
    hash_secret,
    hash_secret_async,
    verify_secret,
    verify_secret_async,
)


def test_hash_round_trip() -> None:
    digest = hash_secret("correct horse")
    assert digest.startswith("$argon2id$") and "m=19456,t=2,p=1" in digest
    assert verify_secret(digest, "correct horse")
    assert not verify_secret(digest, "correct horsE")
    assert not verify_secret(digest, "")


def test_hashes_are_salted() -> None:
    first, second = hash_secret("same"), hash_secret("same")
    assert first != second
    assert verify_secret(first, "same") and verify_secret(second, "same")


@pytest.mark.parametrize("bad_hash", ["", "plain-text", "$argon2id$v=19$m=19456,t=2,p=1$AAAA", "$2b$12$abc"])
def test_malformed_hash_is_a_mismatch(bad_hash: str) -> None:
    assert verify_secret(bad_hash, "anything") is False


def test_check_secret_without_account_is_false() -> None:
    assert check_secret(None, "anything") is False
    assert check_secret(hash_secret("pw"), "pw") is True


async def test_async_round_trip() -> None:
    digest = await hash_secret_async("s3cret")
    assert await verify_secret_async(digest, "s3cret")
    assert not await verify_secret_async(digest, "other")
    assert not await verify_secret_async("garbage", "s3cret")


async def test_async_hashing_leaves_the_loop_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hash only finishes once another trio task has run: it would deadlock on the loop thread."""
    loop_ran = threading.Event()

    def hash_needing_the_loop(secret: str) -> str:
        assert loop_ran.wait(timeout=5), "the trio loop was blocked while hashing"
        return f"hashed:{secret}"

    async def other_task() -> None:
        await trio.sleep(0.01)
        loop_ran.set()

    monkeypatch.setattr(passwords, "hash_secret", hash_needing_the_loop)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(other_task)
        assert await hash_secret_async("pw") == "hashed:pw"
