"""The dashboard in a real browser: playwright-python driving the system Chromium against real nodes.

Chromium comes from the system (Debian's `chromium`, which `./dev.sh test` installs when it can), never from a
browser download. Where it is missing the tests skip and say so. Each test gets a fresh browser context (own
cookies and storage); the browser itself is shared by the tests of this package.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, token

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000
"""How long an expectation waits: generous, it only catches a dashboard that never gets there."""


def chromium_path() -> str | None:
    candidates = [os.environ.get("MOM_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).exists()), None)


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One browser for the browser tests, closed when they are done: playwright's sync API keeps an asyncio loop
    running in this thread while it is open, and later tests that call asyncio.run() must not meet it."""
    executable = chromium_path()
    if executable is None:
        pytest.skip(
            "no system Chromium: ./dev.sh test installs Debian's chromium package when run as root with apt; "
            "elsewhere install it (apt-get install chromium) or point MOM_CHROMIUM at a Chromium binary"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = NodeProcess(tmp_path_factory.mktemp("node") / "data").start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def admin(node: NodeProcess) -> Iterator[Api]:
    client = Api(node.url, token(node.url, "admin", ADMIN_PASSWORD))
    yield client
    client.http.close()


def log_in(page: Any, url: str, username: str = "admin", password: str = ADMIN_PASSWORD) -> None:
    from playwright.sync_api import expect

    page.goto(url + "/ui/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("[data-testid=login-form] button[type=submit]")
    expect(page.get_by_test_id("whoami")).to_have_text(username)


def register(admin: Api, username: str, password: str) -> None:
    """A new user, created by the admin (whether or not the node lets anyone register)."""
    answer = admin.post("/v1/auth/users", json={"username": username, "password": password})
    assert answer.status_code == 201, answer.text
