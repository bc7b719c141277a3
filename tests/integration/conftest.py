from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ADMIN_PASSWORD, Api, NodeProcess, new_user, token


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One real broker process shared by a test module (tests use their own destinations)."""
    process = NodeProcess(tmp_path_factory.mktemp("node") / "data").start()
    yield process
    process.stop()


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[NodeProcess]:
    """A broker process of the test's own, for tests that kill or restart it."""
    process = NodeProcess(tmp_path / "data")
    yield process
    process.kill()


@pytest.fixture
def api(node: NodeProcess) -> Iterator[Api]:
    """A fresh user's authenticated client against the shared node."""
    _, bearer = new_user(node.url)
    client = Api(node.url, bearer)
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def admin(node: NodeProcess) -> Iterator[Api]:
    client = Api(node.url, token(node.url, "admin", ADMIN_PASSWORD))
    yield client
    client.http.close()
