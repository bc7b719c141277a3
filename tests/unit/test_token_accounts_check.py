"""The account check after a token's signature: a node whose catalog has not caught up (it just restarted, or the
account was created a moment ago elsewhere) cannot say that the token's account does not exist."""

from __future__ import annotations

import pytest

from mom.api.auth.revocation import CheckedVerifier, LiveAccounts
from mom.api.auth.scopes import Principal
from mom.broker.accounts import Accounts, AccountsState
from mom.errors import Unauthorized, Unavailable

ALICE = Principal("user:alice", frozenset({"mom.read:alice.*"}), "alice", issued_at=100.0, token_id="t1")


async def verified(token: str) -> Principal:
    return ALICE


def checker(accounts: Accounts, *, current: bool) -> CheckedVerifier:
    return CheckedVerifier(verified, LiveAccounts(lambda: accounts), catalog_current=lambda: current)


async def test_an_unknown_account_is_unavailable_on_a_node_whose_catalog_may_lag() -> None:
    with pytest.raises(Unavailable) as refused:
        await checker(Accounts(), current=False)("token")
    assert not isinstance(refused.value, Unauthorized) and refused.value.status == 503


async def test_an_unknown_account_is_unauthorized_where_the_catalog_is_current() -> None:
    with pytest.raises(Unauthorized):
        await checker(Accounts(), current=True)("token")


async def test_a_deleted_accounts_token_is_unauthorized_wherever_the_deletion_was_applied() -> None:
    deleted = Accounts(AccountsState([], [], revoked_before={"user:alice": 200_000}))
    with pytest.raises(Unauthorized):
        await checker(deleted, current=False)("token")
