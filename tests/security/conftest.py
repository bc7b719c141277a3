from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.harness import NodeProcess


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """One broker process (open registration on) shared by a test module."""
    process = NodeProcess(tmp_path_factory.mktemp("node") / "data").start()
    yield process
    process.stop()
