"""The admin token a node issues itself for requests to other nodes: reused while it lasts, renewed a minute
before it expires (the dead-letter sender and the move recorder share it)."""

from __future__ import annotations

from mom.api.auth import SigningKeys, TokenService
from mom.api.auth.node_bearer import TOKEN_MARGIN_S, NodeBearer

TTL_S = 600


def test_the_token_is_reused_until_a_minute_before_it_expires_then_renewed() -> None:
    tokens = TokenService(SigningKeys.generate(), issuer="urn:mom", audience="mom", ttl_s=TTL_S)
    bearer = NodeBearer(tokens, "mom2")
    first = bearer(1_000.0)
    assert bearer(1_000.0 + TTL_S - TOKEN_MARGIN_S - 1) == first
    renewed = bearer(1_000.0 + TTL_S - TOKEN_MARGIN_S + 1)
    assert renewed != first
    principal = tokens.verify(renewed)
    assert principal.subject == "node:mom2"
    assert "mom.admin" in principal.scopes
