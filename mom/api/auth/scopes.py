"""Authorization by token scopes, after RabbitMQ's OAuth 2.0 convention.

A scope `mom.<action>:<glob>` allows `action` on every destination whose name the glob matches
(`fnmatch.fnmatchcase`: `*` any run of characters, `?` one character); `mom.admin` allows everything.
Checks are pure functions of the token's scopes, so a node needs no lookup to authorize a request.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from mom.errors import Forbidden, InvalidInput

Action = Literal["read", "write", "configure"]

ADMIN_SCOPE = "mom.admin"
ALL_DESTINATIONS: tuple[str, ...] = ("mom.read:*", "mom.write:*", "mom.configure:*")
ADMIN_SCOPES: tuple[str, ...] = (ADMIN_SCOPE, *ALL_DESTINATIONS)


def own_prefix(username: str) -> str:
    """The destination-name prefix a user owns: `alice.` for alice (user names have no dots, so no user's
    prefix is inside another's, and every destination `alice.<anything>` is alice's alone)."""
    return f"{username.lower()}."


def default_user_scopes(username: str) -> list[str]:
    """Least privilege: a new user may read, write and configure the destinations of its own prefix only."""
    glob = own_prefix(username) + "*"
    return [f"mom.read:{glob}", f"mom.write:{glob}", f"mom.configure:{glob}"]


_SCOPE_RE = re.compile(r"mom\.admin|mom\.(read|write|configure):([A-Za-z0-9._*?-]{1,200})")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request and what their token allows."""

    subject: str
    """`user:NAME`, `client:ID` or (tokens nodes issue to each other) `node:ID`."""
    scopes: frozenset[str]
    client_id: str
    issued_at: float = 0.0
    token_id: str = ""
    expires_at: float = float("inf")

    @property
    def is_admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes

    def can(self, action: Action, name: str) -> bool:
        if self.is_admin:
            return True
        prefix = f"mom.{action}:"
        return any(s.startswith(prefix) and fnmatchcase(name, s[len(prefix) :]) for s in self.scopes)


def require(principal: Principal, action: Action, name: str) -> None:
    """Raise Forbidden unless the principal may do `action` on the destination `name`."""
    if not principal.can(action, name):
        raise Forbidden(f"token lacks scope mom.{action}:{name}")


def parse_scopes(text: str | Sequence[str]) -> list[str]:
    """Validate scopes given as a space-separated string or a list; duplicates are dropped, order kept."""
    items = text.split() if isinstance(text, str) else list(text)
    for scope in items:
        if not _SCOPE_RE.fullmatch(scope):
            raise InvalidInput(
                f"invalid scope {scope!r}: expected mom.admin or mom.read|write|configure:<glob> "
                "with a glob of 1 to 200 characters from [A-Za-z0-9._*?-]"
            )
    return list(dict.fromkeys(items))


def narrow(granted: Sequence[str], requested: str | None) -> list[str]:
    """The scopes a token request gets: all of `granted` when nothing is requested, else the requested ones.

    Every requested scope must be covered by a granted one (same action, and the granted glob matches every
    name the requested glob matches), or `mom.admin` must be granted; otherwise InvalidInput, so a token never
    carries more than its owner holds.
    """
    if requested is None or not requested.strip():
        return list(granted)
    wanted = parse_scopes(requested)
    if ADMIN_SCOPE in granted:
        return wanted
    for scope in wanted:
        if not any(_covers(have, scope) for have in granted):
            raise InvalidInput(f"scope {scope} exceeds the scopes granted: {' '.join(granted) or '(none)'}")
    return wanted


def _covers(granted: str, requested: str) -> bool:
    if requested == ADMIN_SCOPE or granted == ADMIN_SCOPE:
        return granted == ADMIN_SCOPE
    g_action, _, g_glob = granted.partition(":")
    r_action, _, r_glob = requested.partition(":")
    return g_action == r_action and _glob_covers(g_glob, r_glob)


def _glob_covers(granted: str, requested: str) -> bool:
    """True if every name that `requested` matches is also matched by `granted`.

    This is `fnmatchcase(requested, granted)` except that a granted `?` does not absorb a requested `*`
    (`a?` must not cover `a*`, which matches `abc`). The check may refuse some exotic equivalent globs; it
    never accepts a wider one.
    """
    parts = [".*" if c == "*" else "[^*]" if c == "?" else re.escape(c) for c in granted]
    return re.fullmatch("".join(parts), requested) is not None
