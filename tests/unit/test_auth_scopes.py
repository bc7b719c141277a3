"""Scopes: glob checks, admin, parsing, and narrowing a token request to what its owner holds."""

from __future__ import annotations

import itertools
from fnmatch import fnmatchcase

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mom.api.auth import ADMIN_SCOPES, ALL_DESTINATIONS, Principal, narrow, parse_scopes, require
from mom.errors import Forbidden, InvalidInput


def principal(*scopes: str) -> Principal:
    return Principal(subject="alice", scopes=frozenset(scopes), client_id="mom")


def test_globs_per_action() -> None:
    alice = principal("mom.read:orders.*", "mom.write:orders.eu", "mom.configure:q?")
    assert alice.can("read", "orders.eu") and alice.can("read", "orders.")
    assert not alice.can("read", "orders") and not alice.can("read", "Orders.eu")
    assert alice.can("write", "orders.eu") and not alice.can("write", "orders.us")
    assert alice.can("configure", "q1") and not alice.can("configure", "q12") and not alice.can("configure", "q")
    assert not alice.can("configure", "orders.eu")
    assert not alice.is_admin


def test_default_user_scopes_allow_everything_but_admin() -> None:
    user = principal(*ALL_DESTINATIONS)
    assert all(user.can(action, "any.name-1") for action in ("read", "write", "configure"))
    assert not user.is_admin


def test_admin_can_everything() -> None:
    admin = principal("mom.admin")
    assert admin.is_admin and principal(*ADMIN_SCOPES).is_admin
    assert all(admin.can(action, "x") for action in ("read", "write", "configure"))


def test_no_scopes_no_access() -> None:
    assert not principal().can("read", "x")


def test_a_scope_of_another_action_does_not_leak() -> None:
    assert not principal("mom.read:*").can("write", "x")
    assert not principal("mom.readx:*", "mom.read*").can("read", "x")


def test_require() -> None:
    require(principal("mom.write:jobs"), "write", "jobs")
    with pytest.raises(Forbidden) as info:
        require(principal("mom.read:*"), "write", "jobs")
    assert info.value.detail == "token lacks scope mom.write:jobs"


def test_parse_scopes() -> None:
    assert parse_scopes("mom.read:a.* mom.admin  mom.read:a.*") == ["mom.read:a.*", "mom.admin"]
    assert parse_scopes(["mom.configure:x-1_?", "mom.write:*"]) == ["mom.configure:x-1_?", "mom.write:*"]
    assert parse_scopes("") == [] and parse_scopes([]) == []


@pytest.mark.parametrize(
    "scope",
    [
        "mom.delete:*",
        "mom.read:",
        "read:*",
        "mom.read:[ab]",
        "mom.read:a/b",
        "mom.admin:x",
        "MOM.read:*",
        "openid",
    ],
)
def test_parse_scopes_refuses(scope: str) -> None:
    with pytest.raises(InvalidInput, match="invalid scope"):
        parse_scopes(scope)


def test_parse_scopes_refuses_a_list_item_with_spaces() -> None:
    with pytest.raises(InvalidInput):
        parse_scopes(["mom.read:a mom.admin"])


def test_narrow_without_request_grants_all() -> None:
    granted = ["mom.read:*", "mom.write:orders.*"]
    assert narrow(granted, None) == granted
    assert narrow(granted, "  ") == granted


def test_narrow_to_a_subset() -> None:
    granted = ["mom.read:*", "mom.write:orders.*"]
    assert narrow(granted, "mom.write:orders.eu.* mom.read:x") == ["mom.write:orders.eu.*", "mom.read:x"]
    assert narrow(granted, "mom.write:orders.*") == ["mom.write:orders.*"]
    assert narrow(["mom.read:q?"], "mom.read:q1 mom.read:q?") == ["mom.read:q1", "mom.read:q?"]


def test_admin_may_request_anything() -> None:
    assert narrow(["mom.admin"], "mom.admin mom.write:x") == ["mom.admin", "mom.write:x"]


@pytest.mark.parametrize(
    ("granted", "requested"),
    [
        (["mom.read:orders.*"], "mom.read:*"),
        (["mom.read:*"], "mom.write:x"),
        (["mom.read:*", "mom.write:*"], "mom.admin"),
        (["mom.read:a?"], "mom.read:a*"),
        (["mom.read:orders.eu"], "mom.read:orders.?u"),
        ([], "mom.read:x"),
    ],
)
def test_narrow_refuses_more_than_granted(granted: list[str], requested: str) -> None:
    with pytest.raises(InvalidInput, match="exceeds"):
        narrow(granted, requested)


def test_narrow_refuses_malformed_requests() -> None:
    with pytest.raises(InvalidInput, match="invalid scope"):
        narrow(["mom.admin"], "mom.read:*,mom.write:*")


NAMES = ["".join(chars) for n in range(6) for chars in itertools.product("ab.", repeat=n)]
GLOB = st.text("ab.*?", min_size=1, max_size=4)


@st.composite
def near_globs(draw: st.DrawFn) -> tuple[str, str]:
    """A granted glob and a requested one, often a small edit of it (where a wrong check would slip)."""
    granted = draw(GLOB)
    edits = st.sampled_from(["", "a", ".", "*", "?", "**"])
    edited = "".join(c if draw(st.booleans()) else draw(edits) for c in granted)
    return granted, draw(st.one_of(st.just(edited or "a"), GLOB))


@settings(max_examples=400, deadline=None)
@given(near_globs())
def test_narrowing_never_widens(globs: tuple[str, str]) -> None:
    """Whenever a requested glob is accepted, every name it matches is matched by the granted glob."""
    granted, requested = globs
    try:
        narrow([f"mom.read:{granted}"], f"mom.read:{requested}")
    except InvalidInput:
        return
    widened = [n for n in NAMES if fnmatchcase(n, requested) and not fnmatchcase(n, granted)]
    assert widened == []
