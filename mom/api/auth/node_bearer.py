"""The admin token a node issues itself for what it asks other nodes on its own behalf (dead letters to a queue led
elsewhere, a finished replica move to the metadata leader): kept until a minute before it expires, then renewed."""

from __future__ import annotations

from mom.api.auth.tokens import TokenService

TOKEN_MARGIN_S = 60
"""Renew this long before expiry, so a token never expires on its way to the other node."""


class NodeBearer:
    def __init__(self, tokens: TokenService, node_id: str) -> None:
        self._tokens = tokens
        self._node_id = node_id
        self._token: tuple[str, float] | None = None

    def __call__(self, now_s: float) -> str:
        """The bearer token to send at `now_s` (seconds, the caller's clock)."""
        if self._token is None or self._token[1] - TOKEN_MARGIN_S < now_s:
            issued = self._tokens.issue(f"node:{self._node_id}", ["mom.admin"], client_id="mom-node")
            self._token = (issued.access_token, now_s + issued.expires_in)
        return self._token[0]
