"""mom under test: one `mom serve` process, or a 3-node cluster of them, started as a user would start them."""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from bench.procs import Managed, free_port

ADMIN_PASSWORD = "bench-admin-password"


def _ready(url: str) -> bool:
    return httpx.get(url + "/readyz", timeout=1).status_code == 200


@dataclass(frozen=True)
class Topology:
    """Where mom runs: `nodes` processes replicating over `transport` (irrelevant, and shown as "-", for one)."""

    nodes: int
    transport: str = "grpc"

    @property
    def label(self) -> str:
        return "1 node" if self.nodes == 1 else f"{self.nodes} nodes {self.transport}"


@dataclass
class MomDeployment:
    """The processes of one topology under `directory`; `urls` are the REST endpoints, node 1 first."""

    topology: Topology
    directory: Path
    urls: list[str] = field(default_factory=list)
    sessions: list[int] = field(default_factory=list)
    """Session ids of the nodes (each runs in a session of its own): whose CPU is the broker's."""
    extra_config: str = ""
    """TOML appended to the cluster file (the scale scenario raises a quota so)."""
    nodes: list[Managed] = field(default_factory=list)
    _stack: ExitStack = field(default_factory=ExitStack)

    def __enter__(self) -> MomDeployment:
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = [free_port() for _ in range(self.topology.nodes)]
        config = self._write_config(ports) if self.topology.nodes > 1 else None
        procs = []
        for i, port in enumerate(ports, start=1):
            command = [sys.executable, "-m", "mom", "serve", "--data-dir", str(self.directory / f"mom{i}")]
            command += ["--rest", f"127.0.0.1:{port}"]
            if config is not None:
                command += ["--config", str(config), "--node-id", f"mom{i}"]
            node = Managed(f"mom{i}", command, self.directory / f"mom{i}.log", {"MOM_ADMIN_PASSWORD": ADMIN_PASSWORD})
            procs.append(self._stack.enter_context(node))
            self.nodes.append(node)
            assert node.proc is not None
            self.sessions.append(node.proc.pid)
            self.urls.append(f"http://127.0.0.1:{port}")
        for node, url in zip(procs, self.urls, strict=True):
            node.wait_until(partial(_ready, url))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stack.close()

    def _write_config(self, ports: list[int]) -> Path:
        lines = [
            self.extra_config,
            "[cluster]",
            f'transport = "{self.topology.transport}"',
            "replication_factor = 3",
            "",
        ]
        for i, port in enumerate(ports, start=1):
            lines += ["[[cluster.nodes]]", f'id = "mom{i}"', f'rest = "127.0.0.1:{port}"']
            lines += [f'replication = "127.0.0.1:{free_port()}"', ""]
        path = self.directory / "cluster.toml"
        path.write_text("\n".join(lines))
        return path

    def token(self) -> str:
        """An admin bearer token; every node accepts a token issued by any node of the cluster."""
        form = {"grant_type": "password", "username": "admin", "password": ADMIN_PASSWORD}
        response = httpx.post(self.urls[0] + "/v1/auth/token", data=form, timeout=30)
        response.raise_for_status()
        return str(response.json()["access_token"])

    def request(self, method: str, path: str, token: str, json: Any = None) -> httpx.Response:
        """One admin call, retried while the cluster has no leader for the destination yet (503)."""
        deadline = time.monotonic() + 30
        while True:
            response = httpx.request(
                method, self.urls[0] + path, json=json, headers={"Authorization": f"Bearer {token}"}, timeout=30
            )
            if response.status_code != 503 or time.monotonic() > deadline:
                response.raise_for_status()
                return response
            time.sleep(0.1)
