"""Trust in the other nodes' tokens: each node signs with its own key and publishes it at /.well-known/jwks.json.

A token signed by a key this node does not know (yet) makes it fetch the JWKS of its peers (the cluster file's
REST addresses) and verify again: the usual OAuth resource-server behaviour, with no key material replicated.
Fetches are rate-limited so that a stream of forged tokens cannot turn into a stream of requests. While a peer
did not answer the last fetch, a key still unknown may be that peer's, so the token is answered 503 (retry), not
401: a node that restarted (peers' keys are learnt, not stored) must not refuse valid tokens of a peer that is down.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping

import httpx
import trio

from mom.api.auth.keys import SigningKeys
from mom.api.auth.scopes import Principal
from mom.api.auth.tokens import TokenService
from mom.errors import InvalidInput, Unauthorized, Unavailable

log = logging.getLogger("mom.auth")

REFRESH_INTERVAL_S = 2.0


def _kid(token: str) -> str | None:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


class PeerKeys:
    def __init__(
        self, keys: SigningKeys, tokens: TokenService, peer_urls: Mapping[str, str], http: httpx.AsyncClient
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._peer_urls = dict(peer_urls)
        self._http = http
        self._last_refresh = -REFRESH_INTERVAL_S
        self._silent: set[str] = set()
        """The peers whose keys the last fetch did not get."""
        self._lock = trio.Lock()

    def add_peer(self, node_id: str, url: str) -> None:
        """A node added to the cluster: its signing keys are fetched like the others' (tokens it issues work here)."""
        self._peer_urls[node_id] = url
        self._last_refresh = -REFRESH_INTERVAL_S

    def remove_peer(self, node_id: str) -> None:
        self._peer_urls.pop(node_id, None)
        self._silent.discard(node_id)

    async def verify(self, token: str) -> Principal:
        """The token's principal; fetches the peers' keys once if it names a key not known here."""
        try:
            return self._tokens.verify(token)
        except Unauthorized:
            kid = _kid(token)
            if kid is None or not self._peer_urls or self._keys.verification_key(kid) is not None:
                raise
        await self._refresh()
        try:
            return self._tokens.verify(token)
        except Unauthorized:
            if self._silent and self._keys.verification_key(kid) is None:
                silent = ", ".join(sorted(self._silent))
                raise Unavailable(f"the token's signing key is not known here and {silent} did not answer") from None
            raise

    async def _refresh(self) -> None:
        async with self._lock:
            if trio.current_time() - self._last_refresh < REFRESH_INTERVAL_S:
                return
            started = trio.current_time()
            self._silent = set(self._peer_urls)
            for node_id, url in list(self._peer_urls.items()):
                try:
                    answer = await self._http.get(url + "/.well-known/jwks.json", timeout=2.0)
                    answer.raise_for_status()
                    for jwk in answer.json().get("keys", []):
                        if jwk.get("kid") != self._keys.kid and self._keys.verification_key(jwk["kid"]) is None:
                            self._keys.add_trusted(jwk)
                            log.info("trusting signing key %s of node %s", jwk["kid"], node_id)
                    self._silent.discard(node_id)
                except (httpx.HTTPError, ValueError, KeyError, InvalidInput) as exc:
                    log.warning("could not fetch the signing keys of %s: %s", node_id, exc)
            # Only a fetch that ran counts: one cut short (its request's client hung up) must not leave the
            # next token of that peer refused for the whole interval.
            self._last_refresh = started
