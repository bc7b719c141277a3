"""Trust in the other nodes' tokens: each node signs with its own key and publishes it at /.well-known/jwks.json.

A token signed by a key this node does not know (yet) makes it fetch the JWKS of its peers (the cluster file's
REST addresses) and verify again: the usual OAuth resource-server behaviour, with no key material replicated.
Fetches go to every peer at once and are rate-limited, so that a stream of forged tokens cannot turn into a
stream of requests. While a peer did not answer the last fetch, a key still unknown may be that peer's, so the
token is answered 503 (retry), not 401.

The keys learnt are kept in `peer-keys.json` beside the node's own key, per peer: a restarted node trusts its
peers' tokens at once, instead of answering 503 until peers busy catching it up answer a fetch (12 to 48 s at
3,000 to 5,000 destinations). Each successful fetch replaces what is kept for that peer, so a key a peer no
longer serves stops being trusted at the next fetch; a peer removed from the cluster is forgotten.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import trio

from mom.api.auth.keys import SigningKeys
from mom.api.auth.scopes import Principal
from mom.api.auth.tokens import TokenService
from mom.errors import InvalidInput, Unauthorized, Unavailable

log = logging.getLogger("mom.auth")

REFRESH_INTERVAL_S = 2.0
FETCH_TIMEOUT_S = 2.0
PEER_KEYS_FILE = "peer-keys.json"


def _kid(token: str) -> str | None:
    try:
        header = json.loads(base64.urlsafe_b64decode(token.split(".", 1)[0] + "=="))
    except (ValueError, UnicodeDecodeError):
        return None
    kid = header.get("kid") if isinstance(header, dict) else None
    return kid if isinstance(kid, str) else None


class PeerKeys:
    def __init__(
        self,
        keys: SigningKeys,
        tokens: TokenService,
        peer_urls: Mapping[str, str],
        http: httpx.AsyncClient,
        *,
        store: Path | None = None,
    ) -> None:
        self._keys = keys
        self._tokens = tokens
        self._peer_urls = dict(peer_urls)
        self._http = http
        self._store = store
        self._last_refresh = -REFRESH_INTERVAL_S
        self._silent: set[str] = set()
        """The peers whose keys the last fetch did not get."""
        self._lock = trio.Lock()
        self._by_peer: dict[str, list[dict[str, Any]]] = {}
        """The public JWKs trusted for each peer, as its last answered fetch gave them (and as kept on disk)."""
        for node_id, jwks in _load(store).items():
            if node_id in self._peer_urls:
                self._trust(node_id, jwks)

    def add_peer(self, node_id: str, url: str) -> None:
        """A node added to the cluster: its signing keys are fetched like the others' (tokens it issues work here)."""
        self._peer_urls[node_id] = url
        self._last_refresh = -REFRESH_INTERVAL_S

    def remove_peer(self, node_id: str) -> None:
        self._peer_urls.pop(node_id, None)
        self._silent.discard(node_id)
        if self._trust(node_id, []):
            _save(self._store, self._by_peer)

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
            fetched: dict[str, list[dict[str, Any]]] = {}
            async with trio.open_nursery() as nursery:
                for node_id, url in list(self._peer_urls.items()):
                    nursery.start_soon(self._fetch, node_id, url, fetched)
            changed = False
            for node_id, jwks in fetched.items():
                if node_id in self._peer_urls:
                    self._silent.discard(node_id)
                    changed |= self._trust(node_id, jwks)
            if changed and self._store is not None:
                await trio.to_thread.run_sync(_save, self._store, dict(self._by_peer))
            # Only a fetch that ran counts: one cut short (its request's client hung up) must not leave the
            # next token of that peer refused for the whole interval.
            self._last_refresh = started

    async def _fetch(self, node_id: str, url: str, into: dict[str, list[dict[str, Any]]]) -> None:
        try:
            answer = await self._http.get(url + "/.well-known/jwks.json", timeout=FETCH_TIMEOUT_S)
            answer.raise_for_status()
            keys = answer.json().get("keys", [])
            if not isinstance(keys, list):
                raise ValueError("the JWKS has no list of keys")
            into[node_id] = [jwk for jwk in keys if isinstance(jwk, dict) and jwk.get("kid") != self._keys.kid]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("could not fetch the signing keys of %s: %s", node_id, exc)

    def _trust(self, node_id: str, jwks: list[dict[str, Any]]) -> bool:
        """Trust exactly `jwks` for `node_id` (what it trusted before and no longer serves is dropped); whether
        anything changed."""
        accepted: list[dict[str, Any]] = []
        for jwk in jwks:
            try:
                known = self._keys.verification_key(str(jwk.get("kid")))
                self._keys.add_trusted(jwk)
            except InvalidInput as exc:
                log.warning("ignoring a signing key of %s: %s", node_id, exc)
                continue
            accepted.append(jwk)
            if known is None:
                log.info("trusting signing key %s of node %s", jwk.get("kid"), node_id)
        kept = {str(jwk.get("kid")) for jwk in accepted}
        for old in self._by_peer.get(node_id, []):
            if str(old.get("kid")) not in kept and not self._trusted_elsewhere(node_id, str(old.get("kid"))):
                self._keys.untrust(str(old.get("kid")))
                log.info("no longer trusting signing key %s of node %s", old.get("kid"), node_id)
        before = self._by_peer.get(node_id, [])
        if accepted:
            self._by_peer[node_id] = accepted
        else:
            self._by_peer.pop(node_id, None)
        return before != accepted

    def _trusted_elsewhere(self, node_id: str, kid: str) -> bool:
        return any(
            str(jwk.get("kid")) == kid for other, jwks in self._by_peer.items() if other != node_id for jwk in jwks
        )


def _load(store: Path | None) -> dict[str, list[dict[str, Any]]]:
    """The kept keys by peer; nothing when there is no file or it cannot be read (they are fetched again)."""
    if store is None or not store.exists():
        return {}
    try:
        data = json.loads(store.read_text())
        peers = data["peers"]
        return {str(node): [jwk for jwk in jwks if isinstance(jwk, dict)] for node, jwks in peers.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("ignoring the kept peer keys %s: %s", store, exc)
        return {}


def _save(store: Path | None, by_peer: Mapping[str, list[dict[str, Any]]]) -> None:
    """Written whole under a temporary name of its own (a save in a worker thread may overlap one from
    `remove_peer`), fsynced, then renamed over the old file. A failure is logged, not raised: the file only spares
    a restarted node a fetch, and `remove_peer` runs as the catalog applies a removal."""
    if store is None:
        return
    tmp = store.with_name(f".{store.name}.{secrets.token_hex(8)}.tmp")
    try:
        with tmp.open("w") as file:
            json.dump({"peers": dict(by_peer)}, file)
            file.flush()
            os.fsync(file.fileno())
        tmp.replace(store)
    except OSError as exc:
        log.warning("could not keep the peer keys in %s: %s", store, exc)
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
