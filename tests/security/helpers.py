"""Helpers of the security regression suite: nodes with chosen settings, and users with only default rights."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, token


def node_with(directory: Path, toml: str = "", **env: str) -> NodeProcess:
    """A node whose settings file holds `toml` (e.g. small quotas); started, with open registration."""
    directory.mkdir(parents=True, exist_ok=True)
    config = None
    if toml:
        config = directory / "node.toml"
        config.write_text(toml)
    return NodeProcess(directory / "data", config=config, env=dict(env)).start()


def register(url: str, username: str, password: str = "a-long-password", bearer: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    return httpx.post(
        url + "/v1/auth/users", json={"username": username, "password": password}, headers=headers, timeout=30
    )


def plain_user(url: str, prefix: str = "u") -> tuple[str, Api]:
    """A newly registered user with the rights registration gives and nothing more; (name, client)."""
    username = f"{prefix}{uuid.uuid4().hex[:10]}"
    assert register(url, username).status_code == 201
    return username, Api(url, token(url, username, "a-long-password"))


def admin(url: str) -> Api:
    return Api(url, token(url, "admin", ADMIN_PASSWORD))


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if slug is not None:
        assert body["type"].endswith("/" + slug), body
    return body
