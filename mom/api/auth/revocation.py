"""Which tokens still count: a valid signature is not enough once an account is deleted or a token revoked.

Revocations are replicated state (the metadata group's accounts, see `mom.broker.accounts`), so every node
refuses a revoked token as soon as it has applied the entry, without a lookup elsewhere. Long-lived requests
(SSE, the WebSocket) hold a token past the moment they checked it: `AccountChanges` wakes them whenever an entry
that changes accounts is applied, so they can check again and close.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import trio

from mom.api.auth.scopes import Principal
from mom.broker.accounts import Accounts
from mom.broker.commands import (
    ClientRecord,
    Command,
    DeleteAccount,
    RevokeScopes,
    RevokeToken,
    UserRecord,
)
from mom.errors import Unauthorized, Unavailable

_ACCOUNT_CHANGES = (DeleteAccount, RevokeScopes, RevokeToken)
ACCOUNT_GONE = "the token's account no longer exists"


class LiveAccounts:
    """The accounts of the current catalog (the metadata group's state, which a snapshot restore replaces).

    `is_current` says whether that catalog is caught up (`BrokerService.metadata_current`): a node that restarts or
    rejoins with an empty disk replays or receives it for a moment, and an account it does not know then may well
    exist, so "no such account" is not said from it (503, which clients retry, instead of 401 or invalid_grant).
    """

    def __init__(self, current: Callable[[], Accounts], is_current: Callable[[], bool] = lambda: True) -> None:
        self._current = current
        self.is_current = is_current

    def user(self, username: str) -> UserRecord | None:
        return self._current().user(username)

    def client(self, client_id: str) -> ClientRecord | None:
        return self._current().client(client_id)

    def tokens_valid_from_ms(self, subject: str) -> int | None:
        return self._current().tokens_valid_from_ms(subject)

    def refusal(self, principal: Principal) -> str | None:
        """Why a verified token no longer counts (revoked, its account deleted), or None if it does."""
        accounts = self._current()
        if accounts.is_revoked(principal.subject, round(principal.issued_at * 1000), principal.token_id):
            return "the token was revoked"
        if principal.subject.startswith("node:"):
            return None  # the cluster's own nodes (dead-letter forwarding); only they hold the signing keys
        if accounts.account(principal.subject) is None:
            return ACCOUNT_GONE
        return None


class AccountChanges:
    """An event that fires (and is renewed) each time a revocation or an account deletion is applied here."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def on_applied(self, group_id: str, command: Command) -> None:
        if isinstance(command, _ACCOUNT_CHANGES):
            self._event.set()
            self._event = trio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class CheckedVerifier:
    """Token verification (signature, claims: `verify`) followed by the revocation check.

    A deletion revokes the account's earlier tokens, so "the account does not exist" without a revocation means,
    on a node whose catalog may lag (not the ready metadata leader: restarted and replaying, or not yet told of
    an account created elsewhere, as when a client fails over to it), that the account is not known *yet*: 503,
    retried, rather than a 401 that would end the client's session. `catalog_current` says whether this node's
    catalog holds every committed account change.
    """

    def __init__(
        self,
        verify: Callable[[str], Awaitable[Principal]],
        accounts: LiveAccounts,
        *,
        catalog_current: Callable[[], bool] = lambda: True,
    ) -> None:
        self._verify = verify
        self._accounts = accounts
        self._catalog_current = catalog_current

    async def __call__(self, token: str) -> Principal:
        principal = await self._verify(token)
        reason = self._accounts.refusal(principal)
        if reason == ACCOUNT_GONE and not (self._catalog_current() and self._accounts.is_current()):
            raise Unavailable("this node has not caught up with the token's account yet; retry shortly")
        if reason is not None:
            raise Unauthorized(reason)
        return principal
