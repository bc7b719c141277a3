"""The cluster under test: N real `mom serve` processes on 127.0.0.1, each with a config file of its own.

A node's file gives its own entry its real ports and every peer's entry the port of the proxy link from this node
to that peer (replication and REST alike), so everything nodes say to each other crosses the `FaultProxy`;
clients reach every node directly. The controls are what an operator's worst day looks like: kill -9, SIGSTOP /
SIGCONT, a restart (with extra environment, e.g. a slow disk), a wiped data directory. Every process started
here is killed when `run` ends, however it ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

from mom.chaos.proxy import FaultProxy, Link
from mom.config import Address

log = logging.getLogger("mom.chaos.cluster")

STOP_GRACE_S = 10.0
_CLEARED_ENV = ("MOM_NODE_ID", "MOM_REST", "MOM_DATA_DIR", "MOM_TRANSPORT", "MOM_CERTS_DIR", "MOM_CONFIG")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ChaosNode:
    """One node: its ports, files and (while running) its process."""

    node_id: str
    rest: Address
    replication: Address
    directory: Path
    process: trio.Process | None = None
    paused: bool = False
    starts: int = 0
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the current incarnation (a fault's, e.g. a slow disk)."""

    @property
    def url(self) -> str:
        return f"http://{self.rest}"

    @property
    def data_dir(self) -> Path:
        return self.directory / self.node_id

    @property
    def config_path(self) -> Path:
        return self.directory / f"{self.node_id}.toml"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.node_id}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def log_errors(self, most: int = 10) -> dict[str, int]:
        """ERROR and CRITICAL lines of the node's log, by message and the exception that ended its traceback."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return {}
        found: Counter[str] = Counter()
        for i, line in enumerate(lines):
            level = next((lv for lv in (" ERROR ", " CRITICAL ") if lv in line), None)
            if level is None:
                continue
            message = line.split(level, 1)[1].strip()
            cause = ""
            for following in lines[i + 1 : i + 200]:
                if following[:4].isdigit() or following.startswith("==="):
                    break
                text = following.strip(" |+-")
                if text and not text.startswith(
                    ("File ", "Traceback", "^", "raise", "await", "async", "Exception Group")
                ):
                    cause = text
            found[f"{message} -> {cause}"[:300] if cause else message[:300]] += 1
        return dict(found.most_common(most))

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class ChaosCluster:
    """Starts, stops and hurts the nodes; `proxy` carries (and cuts) everything between them."""

    def __init__(self, directory: Path, size: int, transport: str, admin_password: str) -> None:
        self.directory = directory
        self.transport = transport
        self.admin_password = admin_password
        self.proxy = FaultProxy()
        self.nodes: dict[str, ChaosNode] = {}
        for i in range(1, size + 1):
            node_id = f"mom{i}"
            self.nodes[node_id] = ChaosNode(
                node_id, Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port()), directory
            )

    @property
    def node_ids(self) -> list[str]:
        return list(self.nodes)

    def links(self) -> list[Link]:
        return [
            Link(a, b, kind, self.nodes[b].replication if kind == "replication" else self.nodes[b].rest)
            for a in self.nodes
            for b in self.nodes
            if a != b
            for kind in ("replication", "rest")
        ]

    def config_text(self, node_id: str, ports: Mapping[Link, Address]) -> str:
        """The cluster file as `node_id` sees it: peers at the proxy `ports` of its links, itself at its real ones."""
        lines = ["[cluster]", f'transport = "{self.transport}"', f"replication_factor = {min(3, len(self.nodes))}"]
        for peer, node in self.nodes.items():
            rest, replication = node.rest, node.replication
            if peer != node_id:
                rest = ports[Link(node_id, peer, "rest", node.rest)]
                replication = ports[Link(node_id, peer, "replication", node.replication)]
            lines += ["", "[[cluster.nodes]]", f'id = "{peer}"', f'rest = "{rest}"', f'replication = "{replication}"']
        return "\n".join(lines) + "\n"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the proxy and write the config files; the nodes start with `start`. Kills every node on exit."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            async with trio.open_nursery() as nursery:
                ports = await nursery.start(self.proxy.run, self.links())
                for node_id, node in self.nodes.items():
                    node.config_path.write_text(self.config_text(node_id, ports))
                task_status.started()
        finally:
            with trio.CancelScope(shield=True):
                for node in self.nodes.values():
                    await self._kill(node)

    # -- process control

    async def start(self, node_id: str, env: Mapping[str, str] | None = None) -> None:
        """Start the node's process (it recovers from its data directory); returns without waiting for it."""
        node = self.nodes[node_id]
        if node.running:
            raise RuntimeError(f"{node_id} is already running")
        node.env = dict(env or {})
        node.starts += 1
        command = [
            sys.executable, "-m", "mom", "serve",
            "--config", str(node.config_path),
            "--node-id", node_id,
            "--data-dir", str(node.data_dir),
            "--transport", self.transport,
        ]  # fmt: skip
        child_env = {k: v for k, v in os.environ.items() if k not in _CLEARED_ENV}
        child_env.update({"MOM_ADMIN_PASSWORD": self.admin_password, **node.env})
        with node.log_path.open("ab") as out:
            out.write(f"\n=== start {node.starts} {' '.join(f'{k}={v}' for k, v in node.env.items())}\n".encode())
            out.flush()
            node.process = await trio.lowlevel.open_process(
                command, stdout=out, stderr=subprocess.STDOUT, env=child_env
            )
        node.paused = False

    async def kill(self, node_id: str) -> None:
        """kill -9: no flush, no goodbye."""
        await self._kill(self.nodes[node_id])

    async def _kill(self, node: ChaosNode) -> None:
        if node.process is not None and node.process.returncode is None:
            node.process.send_signal(signal.SIGKILL)
            await node.process.wait()
        node.paused = False

    async def stop(self, node_id: str) -> int | None:
        """SIGTERM and wait for a clean exit (SIGKILL after a grace period); the exit status."""
        node = self.nodes[node_id]
        process = node.process
        if process is None:
            return None
        if process.returncode is None:
            if node.paused:
                process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGTERM)
            with trio.move_on_after(STOP_GRACE_S):
                await process.wait()
            if process.returncode is None:
                log.warning("%s did not stop on SIGTERM within %.0f s: killing it", node_id, STOP_GRACE_S)
                await self._kill(node)
        node.paused = False
        return process.returncode

    def pause(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.running:
            assert node.process is not None
            node.process.send_signal(signal.SIGSTOP)
            node.paused = True

    def resume(self, node_id: str) -> None:
        node = self.nodes[node_id]
        if node.running and node.paused:
            assert node.process is not None
            node.process.send_signal(signal.SIGCONT)
        node.paused = False

    def wipe(self, node_id: str) -> None:
        """Remove the node's data directory (the node must be stopped): a replaced machine."""
        node = self.nodes[node_id]
        if node.running:
            raise RuntimeError(f"wipe {node_id} only while it is stopped")
        shutil.rmtree(node.data_dir, ignore_errors=True)

    def exited(self, node_id: str) -> int | None:
        """The exit status of a node whose process ended on its own (or was killed); None while it runs."""
        process = self.nodes[node_id].process
        return None if process is None else process.returncode

    # -- looking at it

    async def ready(self, http: httpx.AsyncClient, node_id: str) -> bool:
        node = self.nodes[node_id]
        if not node.running or node.paused:
            return False
        try:
            return (await http.get(node.url + "/readyz", timeout=2.0)).status_code == 200
        except httpx.HTTPError:
            return False
