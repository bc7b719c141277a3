"""Accounts in the state machine: one case-insensitive namespace, scope changes, deletion and revocation."""

from __future__ import annotations

import pytest

from mom.broker import (
    Broker,
    DeclareQueue,
    DeclareTopic,
    DeleteAccount,
    DeleteQueue,
    Entry,
    GrantScopes,
    QueueAttrs,
    RegisterClient,
    RegisterUser,
    RevokeScopes,
    RevokeToken,
    ScopesChanged,
    TopicAttrs,
)
from mom.broker.accounts import REVOCATION_MARGIN_MS, parse_subject
from mom.errors import Conflict, DestinationQuota, InvalidInput, NotFound

T0 = 1_700_000_000_000


def apply(broker: Broker, command: object, now: int = T0) -> object:
    return broker.apply(Entry(now, command))  # type: ignore[arg-type]


def test_users_and_clients_share_one_case_insensitive_namespace() -> None:
    broker = Broker()
    apply(broker, RegisterUser("Alice", "h", []))
    assert broker.user("ALICE") is not None and broker.user("alice").username == "alice"  # type: ignore[union-attr]
    for command in (RegisterUser("alice", "h", []), RegisterClient("aLiCe", "s", [], "user:admin")):
        with pytest.raises(Conflict):
            apply(broker, command)
    apply(broker, RegisterClient("CI-Bot", "s", [], "user:admin"))
    with pytest.raises(Conflict):
        apply(broker, RegisterUser("ci-bot", "h", []))
    assert broker.accounts.account("client:ci-bot") is not None
    assert broker.accounts.account("user:ci-bot") is None


def test_grant_revoke_and_delete() -> None:
    broker = Broker()
    apply(broker, RegisterUser("bob", "h", ["mom.read:bob.*"]))
    assert apply(broker, GrantScopes("user:bob", ["mom.write:x", "mom.read:bob.*"])) == ScopesChanged(
        ["mom.read:bob.*", "mom.write:x"]
    )
    assert not broker.accounts.is_revoked("user:bob", T0, "j")
    assert apply(broker, RevokeScopes("user:bob", ["mom.write:x"]), T0 + 10) == ScopesChanged(["mom.read:bob.*"])
    assert broker.accounts.is_revoked("user:bob", T0 + 10 + REVOCATION_MARGIN_MS, "j")
    valid_from = broker.accounts.tokens_valid_from_ms("user:bob")
    assert valid_from is not None and not broker.accounts.is_revoked("user:bob", valid_from, "j")
    apply(broker, DeleteAccount("user:bob"), T0 + 20)
    assert broker.user("bob") is None
    with pytest.raises(NotFound):
        apply(broker, DeleteAccount("user:bob"))
    with pytest.raises(NotFound):
        apply(broker, GrantScopes("client:nobody", ["mom.read:x"]))
    with pytest.raises(InvalidInput):
        parse_subject("bob")


def test_revoked_tokens_are_forgotten_once_expired() -> None:
    broker = Broker()
    apply(broker, RevokeToken("j1", T0 + 1000))
    assert broker.accounts.is_revoked("user:x", 0, "j1")
    apply(broker, RevokeToken("j2", T0 + 5000), T0 + 2000)
    assert not broker.accounts.is_revoked("user:x", 0, "j1") and broker.accounts.is_revoked("user:x", 0, "j2")
    apply(broker, RevokeToken("old", T0), T0 + 3000)
    assert not broker.accounts.is_revoked("user:x", 0, "old")


def test_accounts_survive_a_snapshot() -> None:
    broker = Broker()
    apply(broker, RegisterUser("Carol", "h", ["mom.read:carol.*"]))
    apply(broker, RevokeScopes("user:carol", []), T0 + 1)
    apply(broker, RevokeToken("j", T0 + 9000))
    restored = Broker.restore(broker.snapshot())
    assert restored == broker and restored.accounts.is_revoked("user:carol", T0, "x")


def test_destination_quota_counts_queues_and_topics_of_the_owner() -> None:
    broker = Broker()
    apply(broker, DeclareQueue("a.q1", QueueAttrs(), "user:a", 2))
    apply(broker, DeclareTopic("a.t1", TopicAttrs(), "user:a", 2))
    with pytest.raises(DestinationQuota):
        apply(broker, DeclareQueue("a.q2", QueueAttrs(), "user:a", 2))
    apply(broker, DeclareQueue("a.q1", QueueAttrs(), "user:a", 2))  # the same declare again: no new destination
    apply(broker, DeclareQueue("b.q", QueueAttrs(), "user:b", 2))
    apply(broker, DeclareQueue("a.q3", QueueAttrs(), "user:a", None))  # no limit (an admin's declare)
    apply(broker, DeleteQueue("a.q1"))
    with pytest.raises(DestinationQuota):
        apply(broker, DeclareQueue("a.q2", QueueAttrs(), "user:a", 2))
