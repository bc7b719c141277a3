"""`mom dev-cluster`: one command gives a working local cluster, and Ctrl-C / SIGTERM stops every node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Api, free_port, token

pytestmark = pytest.mark.transport


def _ports(count: int) -> int:
    """A base port with `count` free ports after it (checked, not reserved: good enough on a test machine)."""
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports found")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_dev_cluster_runs_three_nodes_and_stops_them_all(tmp_path: Path) -> None:
    rest, replication = _ports(3), _ports(3)
    env = {**os.environ, "MOM_ADMIN_PASSWORD": "dev-cluster-password"}
    command = [sys.executable, "-m", "mom", "dev-cluster", "--data-dir", str(tmp_path / "dc"),
               "--rest-port", str(rest), "--replication-port", str(replication)]  # fmt: skip
    log = (tmp_path / "dev-cluster.log").open("wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while b"admin user: admin" not in (tmp_path / "dev-cluster.log").read_bytes():
            assert process.poll() is None and time.monotonic() < deadline, (tmp_path / "dev-cluster.log").read_text()
            time.sleep(0.2)
        urls = [f"http://127.0.0.1:{rest + i}" for i in range(3)]
        api = Api(urls[1], token(urls[1], "admin", "dev-cluster-password"))
        assert api.put("/v1/queues/dev").status_code == 201
        api.publish("dev", "hello")
        other = Api(urls[2], token(urls[2], "admin", "dev-cluster-password"))
        assert [m["body"] for m in other.receive("dev", wait_s=2)] == ["hello"]
        printed = (tmp_path / "dev-cluster.log").read_text()
        assert "[mom3]" in printed
        assert f"dashboard: {urls[0]}/ui" in printed
        assert httpx.get(urls[0] + "/ui/", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
        log.close()
    for url in urls:
        try:
            httpx.get(url + "/healthz", timeout=1)
        except httpx.TransportError:
            continue
        raise AssertionError(f"{url} still answers after dev-cluster stopped")
