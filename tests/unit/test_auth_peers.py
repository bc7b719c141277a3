"""Trust in other nodes' signing keys: a token signed by a peer's key is accepted once its JWKS is fetched."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from mom.api.auth import SigningKeys, TokenService
from mom.api.auth.peers import PeerKeys
from mom.errors import Unauthorized, Unavailable


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


def _issued_by(keys: SigningKeys, subject: str) -> str:
    return TokenService(keys, issuer="urn:mom", audience="mom", ttl_s=600).issue(subject, [], "mom").access_token


async def test_a_restarted_node_trusts_its_peers_keys_without_reaching_them(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Peers busy catching a restarted node up answered its key fetch late, so it answered 503 to every token
    they had issued for 12 to 48 s; the keys it had learnt are now kept on disk."""
    mine, theirs = SigningKeys.generate(), SigningKeys.generate()
    service = TokenService(mine, issuer="urn:mom", audience="mom", ttl_s=600)
    store = tmp_path / "peer-keys.json"

    async def serves(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=theirs.jwks())

    async def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(serves)) as http:
        before = PeerKeys(mine, service, {"n2": "http://n2.test"}, http, store=store)
        assert (await before.verify(_issued_by(theirs, "bob"))).subject == "bob"
    restarted_keys = SigningKeys(mine.signing_key)
    restarted = TokenService(restarted_keys, issuer="urn:mom", audience="mom", ttl_s=600)
    async with httpx.AsyncClient(transport=httpx.MockTransport(unreachable)) as http:
        after = PeerKeys(restarted_keys, restarted, {"n2": "http://n2.test"}, http, store=store)
        assert (await after.verify(_issued_by(theirs, "bob"))).subject == "bob"
        forged = _issued_by(SigningKeys.generate(), "eve")
        with pytest.raises(Unavailable):  # n2 may have a new key: not refused for good while it is silent
            await after.verify(forged)


async def test_a_key_a_peer_no_longer_serves_is_no_longer_trusted(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    mine, old, new = SigningKeys.generate(), SigningKeys.generate(), SigningKeys.generate()
    service = TokenService(mine, issuer="urn:mom", audience="mom", ttl_s=600)
    served = [old]

    async def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=served[0].jwks())

    store = tmp_path / "peer-keys.json"
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        peers = PeerKeys(mine, service, {"n2": "http://n2.test"}, http, store=store)
        assert (await peers.verify(_issued_by(old, "bob"))).subject == "bob"
        served[0] = new  # n2's data was wiped: it signs with a new key and serves only that one
        await trio.sleep(3)
        assert (await peers.verify(_issued_by(new, "bob"))).subject == "bob"
        with pytest.raises(Unauthorized):
            await peers.verify(_issued_by(old, "bob"))
        peers.remove_peer("n2")
        with pytest.raises(Unauthorized):
            service.verify(_issued_by(new, "bob"))
    assert '"peers": {}' in store.read_text()


async def test_a_removed_peer_is_forgotten_though_the_others_trusted_its_key_too(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """In a cluster of three, n3 trusts n2's key as this node does. Had n3's JWKS listed the keys n3 trusts, this
    node would learn n2's key from n3 as well, and keep trusting it once n2 is removed (and n3 likewise, from this
    node's JWKS): a removed or compromised node's key would stay trusted everywhere, for good (it is kept on disk)."""
    mine, n2, n3 = SigningKeys.generate(), SigningKeys.generate(), SigningKeys.generate()
    n3.add_trusted(n2.jwks()["keys"][0])  # n3 fetched n2's key, as every node does
    service = TokenService(mine, issuer="urn:mom", audience="mom", ttl_s=600)

    async def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=(n2 if request.url.host == "n2.test" else n3).jwks())

    urls = {"n2": "http://n2.test", "n3": "http://n3.test"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        peers = PeerKeys(mine, service, urls, http, store=tmp_path / "peer-keys.json")
        assert (await peers.verify(_issued_by(n2, "bob"))).subject == "bob"
        assert (await peers.verify(_issued_by(n3, "carol"))).subject == "carol"
        peers.remove_peer("n2")
        with pytest.raises(Unauthorized):
            service.verify(_issued_by(n2, "bob"))
        assert (await peers.verify(_issued_by(n3, "carol"))).subject == "carol"


async def test_keys_that_cannot_be_kept_on_disk_are_still_trusted_and_forgotten(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The file only spares a restarted node a fetch: failing to write it (a full disk, say) must fail neither the
    request whose token made the node fetch (a 500) nor the removal of a peer, which runs as the catalog applies
    it (an exception there stops the node, and again at each restart as it replays the removal)."""
    mine, theirs = SigningKeys.generate(), SigningKeys.generate()
    service = TokenService(mine, issuer="urn:mom", audience="mom", ttl_s=600)

    async def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=theirs.jwks())

    store = tmp_path / "missing" / "peer-keys.json"  # no directory: every write fails
    async with httpx.AsyncClient(transport=httpx.MockTransport(jwks)) as http:
        peers = PeerKeys(mine, service, {"n2": "http://n2.test"}, http, store=store)
        assert (await peers.verify(_issued_by(theirs, "bob"))).subject == "bob"
        peers.remove_peer("n2")
        with pytest.raises(Unauthorized):
            service.verify(_issued_by(theirs, "bob"))
