"""Users and OAuth clients, replicated through the same log as messages so every node can issue tokens.

Only hashes are stored; hashing happens at the edge so that replay never needs a secret or a random salt.

Users and clients share one namespace of canonical (lower-case) names, so `Admin` is `admin` and a user can never
take the name of a client (or the other way round); a token names its principal as a *subject* that says which
kind it is (`user:alice`, `client:ci-bot`), and destinations record their owner as that subject. Revocation is
state here too, so every node refuses a revoked token as soon as it has applied the entry: a cut-off time per
subject (deleting an account or taking scopes away revokes every token issued before it) and a bounded list of
single revoked tokens (RFC 7009), each kept only until the token would have expired anyway.
"""

from __future__ import annotations

from msgspec import Struct, field, structs

from mom.broker.commands import (
    ClientRecord,
    DeleteAccount,
    GrantScopes,
    RegisterClient,
    RegisterUser,
    RevokeScopes,
    RevokeToken,
    UserRecord,
)
from mom.errors import Conflict, InvalidInput, NotFound

USER, CLIENT = "user", "client"

REVOCATION_MARGIN_MS = 5_000
"""A subject's revocation also covers tokens stamped up to this long after it: another node's clock may run
ahead. Tokens issued afterwards are stamped past the margin (see `tokens_valid_from_ms`), so they stay valid."""


def canonical(name: str) -> str:
    """The stored form of a user name or client id: names differ only by more than case."""
    return name.lower()


def user_subject(username: str) -> str:
    return f"{USER}:{canonical(username)}"


def client_subject(client_id: str) -> str:
    return f"{CLIENT}:{canonical(client_id)}"


def parse_subject(subject: str) -> tuple[str, str]:
    """(kind, canonical name) of `user:NAME` or `client:ID`; InvalidInput for anything else."""
    kind, sep, name = subject.partition(":")
    if not sep or kind not in (USER, CLIENT) or not name:
        raise InvalidInput(f"subject {subject!r} must be user:NAME or client:ID")
    return kind, canonical(name)


class RevokedToken(Struct, frozen=True, array_like=True):
    token_id: str
    expires_ms: int


class AccountsState(Struct, array_like=True):
    users: list[UserRecord]
    clients: list[ClientRecord]
    revoked_before: dict[str, int] = field(default_factory=dict)
    """subject -> time (ms) before which (plus the margin) its tokens are revoked."""
    revoked_tokens: list[RevokedToken] = field(default_factory=list)


class Accounts:
    __slots__ = ("_clients", "_revoked_before", "_revoked_tokens", "_users")

    def __init__(self, state: AccountsState | None = None) -> None:
        self._users: dict[str, UserRecord] = {}
        self._clients: dict[str, ClientRecord] = {}
        self._revoked_before: dict[str, int] = {}
        self._revoked_tokens: dict[str, int] = {}
        if state is not None:
            self._users = {
                canonical(u.username): structs.replace(u, username=canonical(u.username)) for u in state.users
            }
            self._clients = {
                canonical(c.client_id): structs.replace(c, client_id=canonical(c.client_id)) for c in state.clients
            }
            self._revoked_before = dict(state.revoked_before)
            self._revoked_tokens = {t.token_id: t.expires_ms for t in state.revoked_tokens}

    def state(self) -> AccountsState:
        return AccountsState(
            list(self._users.values()),
            list(self._clients.values()),
            dict(self._revoked_before),
            [RevokedToken(jti, exp) for jti, exp in self._revoked_tokens.items()],
        )

    # -- changes (each checks everything before it mutates) -----------------------------------------------

    def _check_free(self, name: str) -> None:
        if name in self._users or name in self._clients:
            kind = "user" if name in self._users else "client"
            raise Conflict(f"the name {name!r} is taken (a {kind} has it; names are case-insensitive)")

    def register_user(self, command: RegisterUser, now: int) -> None:
        name = canonical(command.username)
        self._check_free(name)
        self._users[name] = UserRecord(name, command.password_hash, list(command.scopes), now)

    def register_client(self, command: RegisterClient, now: int) -> None:
        client_id = canonical(command.client_id)
        self._check_free(client_id)
        self._clients[client_id] = ClientRecord(
            client_id, command.secret_hash, list(command.scopes), command.owner, now, command.sigv4_secret
        )

    def grant(self, command: GrantScopes, now: int) -> list[str]:
        scopes = list(dict.fromkeys([*self._scopes(command.subject), *command.scopes]))
        self._set_scopes(command.subject, scopes)
        return scopes

    def revoke_scopes(self, command: RevokeScopes, now: int) -> list[str]:
        removed = set(command.scopes)
        scopes = [s for s in self._scopes(command.subject) if s not in removed]
        self._set_scopes(command.subject, scopes)
        self._revoked_before[self._key(command.subject)] = now
        return scopes

    def delete(self, command: DeleteAccount, now: int) -> None:
        kind, name = parse_subject(command.subject)
        table: dict[str, UserRecord] | dict[str, ClientRecord] = self._users if kind == USER else self._clients
        if name not in table:
            raise NotFound(f"{kind} {name!r} does not exist")
        del table[name]
        self._revoked_before[f"{kind}:{name}"] = now

    def revoke_token(self, command: RevokeToken, now: int) -> None:
        for token_id in [t for t, exp in self._revoked_tokens.items() if exp <= now]:
            del self._revoked_tokens[token_id]
        if command.expires_ms > now:
            self._revoked_tokens[command.token_id] = command.expires_ms

    def _key(self, subject: str) -> str:
        kind, name = parse_subject(subject)
        return f"{kind}:{name}"

    def _scopes(self, subject: str) -> list[str]:
        record = self.account(subject)
        if record is None:
            kind, name = parse_subject(subject)
            raise NotFound(f"{kind} {name!r} does not exist")
        return list(record.scopes)

    def _set_scopes(self, subject: str, scopes: list[str]) -> None:
        kind, name = parse_subject(subject)
        if kind == USER:
            self._users[name] = structs.replace(self._users[name], scopes=scopes)
        else:
            self._clients[name] = structs.replace(self._clients[name], scopes=scopes)

    # -- lookups ------------------------------------------------------------------------------------------

    def user(self, username: str) -> UserRecord | None:
        return self._users.get(canonical(username))

    def client(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(canonical(client_id))

    def account(self, subject: str) -> UserRecord | ClientRecord | None:
        """The user or client a subject names; None if it does not exist (or the subject is of another kind)."""
        try:
            kind, name = parse_subject(subject)
        except InvalidInput:
            return None
        return self._users.get(name) if kind == USER else self._clients.get(name)

    def users(self) -> list[UserRecord]:
        return [self._users[name] for name in sorted(self._users)]

    def clients(self) -> list[ClientRecord]:
        return [self._clients[name] for name in sorted(self._clients)]

    def user_count(self) -> int:
        return len(self._users)

    def is_revoked(self, subject: str, issued_at_ms: int, token_id: str) -> bool:
        """True if this token (its subject, when it was issued, its jti) was revoked."""
        if token_id in self._revoked_tokens:
            return True
        cutoff = self._revoked_before.get(subject)
        return cutoff is not None and issued_at_ms <= cutoff + REVOCATION_MARGIN_MS

    def tokens_valid_from_ms(self, subject: str) -> int | None:
        """The earliest issue time a new token of `subject` may carry to be outside its last revocation."""
        cutoff = self._revoked_before.get(subject)
        return None if cutoff is None else cutoff + REVOCATION_MARGIN_MS + 1
