"""Trust in other nodes' signing keys: a token signed by a peer's key is accepted once its JWKS is fetched."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

from mom.api.auth import SigningKeys, TokenService
from mom.api.auth.peers import PeerKeys
from mom.errors import Unauthorized


async def test_a_key_fetch_cut_short_does_not_hold_back_the_next(autojump_clock: trio.testing.MockClock) -> None:
    """A request whose key fetch is cancelled (its client hung up) must not make the next request with a token of
    the same peer fail for the rate-limit interval: only a fetch that ran counts."""
    mine, theirs = SigningKeys.generate(), SigningKeys.generate()
    service = TokenService(mine, issuer="urn:mom", audience="mom", ttl_s=600)
    token = TokenService(theirs, issuer="urn:mom", audience="mom", ttl_s=600).issue("bob", [], "mom").access_token
    hang = trio.Event()

    async def jwks(request: httpx.Request) -> httpx.Response:
        if not hang.is_set():
            hang.set()
            await trio.sleep_forever()
        return httpx.Response(200, json=theirs.jwks())

    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        peers = PeerKeys(mine, service, {"n2": "http://n2.test"}, http)
        with trio.move_on_after(0.5):
            await peers.verify(token)
        assert hang.is_set()
        assert (await peers.verify(token)).subject == "bob"


async def test_a_token_of_an_unknown_key_is_refused_after_a_fetch(autojump_clock: trio.testing.MockClock) -> None:
    mine, stranger = SigningKeys.generate(), SigningKeys.generate()
    service = TokenService(mine, issuer="urn:mom", audience="mom", ttl_s=600)
    token = TokenService(stranger, issuer="urn:mom", audience="mom", ttl_s=600).issue("eve", [], "mom").access_token
    fetches = 0

    async def jwks(request: httpx.Request) -> httpx.Response:
        nonlocal fetches
        fetches += 1
        return httpx.Response(200, json={"keys": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        peers = PeerKeys(mine, service, {"n2": "http://n2.test"}, http)
        for _ in range(3):
            with pytest.raises(Unauthorized):
                await peers.verify(token)
    assert fetches == 1, "forged tokens in a row cost one fetch per interval"
