"""auth: the shop's users and their sessions (the shop's own accounts, not mom's).

It needs no messaging: the gateway asks it, over HTTP, to register, log in and check a session. Passwords are
stored as scrypt hashes; a session is a random token with an expiry.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from typing import Annotated

import msgspec
import trio
from quart import Response
from quart_trio import QuartTrio

from examples.bookstore.config import Settings
from examples.bookstore.db import Database, open_database
from examples.bookstore.web import create_app, json_body, json_response, serve
from mom.errors import Conflict, NotFound, Unauthorized

SESSION_TTL_S = 12 * 3600.0
SCRYPT = {"n": 2**14, "r": 8, "p": 1}

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    password_hash BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    token TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES users(username),
    expires_at REAL NOT NULL
);
"""


class Credentials(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9._@-]{3,40}$")]
    password: Annotated[str, msgspec.Meta(min_length=8, max_length=200)]


def _hash(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, **SCRYPT)


def build_app(db: Database) -> QuartTrio:
    app = create_app("auth")

    @app.post("/users")
    async def register() -> Response:
        body = await json_body(Credentials)
        salt = secrets.token_bytes(16)
        digest = await trio.to_thread.run_sync(_hash, body.password, salt)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO users (username, salt, password_hash, created_at) VALUES (?, ?, ?, ?)",
                    (body.username, salt, digest, db.clock()),
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"the username {body.username!r} is taken") from None

        await db.write(insert)
        return json_response({"username": body.username}, status=201)

    @app.post("/sessions")
    async def login() -> Response:
        body = await json_body(Credentials)
        row = await db.read(
            lambda conn: conn.execute(
                "SELECT salt, password_hash FROM users WHERE username = ?", (body.username,)
            ).fetchone()
        )
        salt = row["salt"] if row is not None else secrets.token_bytes(16)  # same work for an unknown user
        digest = await trio.to_thread.run_sync(_hash, body.password, salt)
        if row is None or not hmac.compare_digest(digest, row["password_hash"]):
            raise Unauthorized("wrong username or password")
        token = secrets.token_urlsafe(32)
        expires_at = db.clock() + SESSION_TTL_S
        await db.write(
            lambda conn: conn.execute(
                "INSERT INTO sessions (token, username, expires_at) VALUES (?, ?, ?)",
                (token, body.username, expires_at),
            )
        )
        return json_response({"token": token, "username": body.username, "expires_in": SESSION_TTL_S}, status=201)

    @app.get("/sessions/<token>")
    async def check(token: str) -> Response:
        row = await db.read(
            lambda conn: conn.execute(
                "SELECT username FROM sessions WHERE token = ? AND expires_at > ?", (token, db.clock())
            ).fetchone()
        )
        if row is None:
            raise NotFound("no such session, or it expired")
        return json_response({"username": row["username"]})

    @app.delete("/sessions/<token>")
    async def logout(token: str) -> Response:
        await db.write(lambda conn: conn.execute("DELETE FROM sessions WHERE token = ?", (token,)))
        return Response(status=204)

    return app


async def run(settings: Settings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    db = open_database(settings.data_dir, "auth", SCHEMA)
    try:
        assert settings.listen is not None
        async with trio.open_nursery() as nursery:
            await nursery.start(serve, build_app(db), settings.listen)
            task_status.started()
    finally:
        db.close()
