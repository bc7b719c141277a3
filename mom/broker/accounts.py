"""Users and OAuth clients, replicated through the same log as messages so every node can issue tokens.

Only hashes are stored; hashing happens at the edge so that replay never needs a secret or a random salt.
"""

from __future__ import annotations

from msgspec import Struct

from mom.broker.commands import ClientRecord, RegisterClient, RegisterUser, UserRecord
from mom.errors import Conflict


class AccountsState(Struct, array_like=True):
    users: list[UserRecord]
    clients: list[ClientRecord]


class Accounts:
    __slots__ = ("_clients", "_users")

    def __init__(self, state: AccountsState | None = None) -> None:
        self._users = {user.username: user for user in state.users} if state else {}
        self._clients = {client.client_id: client for client in state.clients} if state else {}

    def state(self) -> AccountsState:
        return AccountsState(list(self._users.values()), list(self._clients.values()))

    def register_user(self, command: RegisterUser, now: int) -> None:
        if command.username in self._users:
            raise Conflict(f"user {command.username!r} already exists")
        self._users[command.username] = UserRecord(command.username, command.password_hash, list(command.scopes), now)

    def register_client(self, command: RegisterClient, now: int) -> None:
        if command.client_id in self._clients:
            raise Conflict(f"client {command.client_id!r} already exists")
        self._clients[command.client_id] = ClientRecord(
            command.client_id, command.secret_hash, list(command.scopes), command.owner, now, command.sigv4_secret
        )

    def user(self, username: str) -> UserRecord | None:
        return self._users.get(username)

    def client(self, client_id: str) -> ClientRecord | None:
        return self._clients.get(client_id)

    def user_count(self) -> int:
        return len(self._users)
