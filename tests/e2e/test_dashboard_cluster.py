"""The overview of a real 3-node cluster: every node green, a killed node red, and back.

Not marked `transport`: the browser tests run once (core env), over the default transport.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import log_in
from tests.integration.harness import Cluster


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


def test_the_overview_shows_the_cluster_and_a_killed_node_turns_red(page: Any, cluster: Cluster) -> None:
    api = cluster.api("mom1")
    for name in ("alpha", "beta", "gamma"):
        assert api.retrying("PUT", f"/v1/queues/{name}", json={}).status_code == 201

    log_in(page, cluster.nodes["mom1"].url)
    for node_id in ("mom1", "mom2", "mom3"):
        expect(page.get_by_test_id(f"node-{node_id}")).to_have_attribute("data-state", "up")
    for name in ("alpha", "beta", "gamma"):
        cells = page.get_by_test_id(f"replication-queue-{name}").locator("td")
        expect(cells.nth(2)).to_have_text(re.compile(r"^mom[123]$"))  # its leader
        for node_id in ("mom1", "mom2", "mom3"):
            expect(cells.nth(3)).to_contain_text(node_id)  # its replicas
        expect(cells.nth(5)).to_contain_text("entries")  # lag, from the leader's own view

    cluster.nodes["mom3"].kill()
    down = page.get_by_test_id("node-mom3")
    expect(down).to_have_attribute("data-state", "down")
    expect(down).to_have_class("node down")
    expect(page.get_by_test_id("node-mom1")).to_have_attribute("data-state", "up")

    cluster.nodes["mom3"].start()
    expect(down).to_have_attribute("data-state", "up")
