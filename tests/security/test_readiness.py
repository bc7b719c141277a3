"""Finding 9: a node is ready only when the admin can log in on it: start, wait for /readyz, log in."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.harness import ADMIN_PASSWORD, NodeProcess


def _started(directory: Path) -> NodeProcess:
    """A started node; another port if the chosen one was taken meanwhile (the machine is shared)."""
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        node = NodeProcess(directory / f"try{attempt}")
        try:
            return node.start()  # returns once /readyz is 200
        except RuntimeError as exc:
            if "Address already in use" not in str(exc):
                raise
    raise RuntimeError("no free port")


def test_ready_means_the_admin_can_log_in(tmp_path: Path) -> None:
    for attempt in range(3):
        node = _started(tmp_path / f"data{attempt}")
        try:
            form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
            answer = httpx.post(node.url + "/v1/auth/token", data=form, timeout=30)
            assert answer.status_code == 200, answer.text
        finally:
            node.stop()


def test_a_node_with_another_admin_password_is_not_ready(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "data").start()
    node.stop()
    node.env["MOM_ADMIN_PASSWORD"] = "not-the-admin-password"
    node.start(wait=False)
    try:
        for _ in range(40):
            if "does not match" in node.log_path.read_text():
                break
            import time

            time.sleep(0.25)
        answer = httpx.get(node.url + "/readyz", timeout=5)
        assert answer.status_code == 503 and answer.headers["content-type"].startswith("application/problem+json")
    finally:
        node.stop()
