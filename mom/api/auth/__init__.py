"""Authentication and authorization: argon2 secrets, the node's signing key, JWT access tokens, scopes,
and the OAuth 2.0 token endpoint. Framework-free; the REST layer wires these into routes."""

from mom.api.auth.keys import SigningKeys
from mom.api.auth.oauth import PUBLIC_CLIENT_ID, AccountLookup, TokenEndpoint
from mom.api.auth.passwords import hash_secret, hash_secret_async, verify_secret, verify_secret_async
from mom.api.auth.scopes import (
    ADMIN_SCOPES,
    ALL_DESTINATIONS,
    Action,
    Principal,
    default_user_scopes,
    narrow,
    own_prefix,
    parse_scopes,
    require,
)
from mom.api.auth.tokens import IssuedToken, TokenService

__all__ = [
    "ADMIN_SCOPES",
    "ALL_DESTINATIONS",
    "PUBLIC_CLIENT_ID",
    "AccountLookup",
    "Action",
    "IssuedToken",
    "Principal",
    "SigningKeys",
    "TokenEndpoint",
    "TokenService",
    "default_user_scopes",
    "hash_secret",
    "hash_secret_async",
    "narrow",
    "own_prefix",
    "parse_scopes",
    "require",
    "verify_secret",
    "verify_secret_async",
]
