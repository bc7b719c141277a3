"""`mom dev-cluster`: N real nodes on this machine in one command, for development and demos.

It writes one cluster file, starts one `mom serve` process per node (REST on 8001.., replication on 50051..),
prefixes their output with the node id, prints the URLs and the admin credentials once every node answers, and
on Ctrl-C or SIGTERM stops them all with SIGTERM (kill after a grace period). A node that dies (say, one you
`kill -9` to watch a failover) is reported and left down; the others keep running.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from mom.client._protocol import tls_verify
from mom.config import Transport
from mom.security import CertsLayout, init_certs

STOP_GRACE_S = 15.0
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DevCluster:
    nodes: int
    transport: Transport
    data_dir: Path
    rest_base_port: int = 8001
    replication_base_port: int = 50051
    secure: bool = False
    """TLS (REST, gRPC) or CURVE (ZeroMQ) on every wire, with certificates generated into `certs_dir`."""

    @property
    def node_ids(self) -> list[str]:
        return [f"mom{i}" for i in range(1, self.nodes + 1)]

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"

    def rest_url(self, index: int) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://127.0.0.1:{self.rest_base_port + index}"

    def ensure_certs(self) -> None:
        """Generate the certificates on the first secure run; later runs (and restarts) reuse them."""
        if self.secure and not CertsLayout(self.certs_dir).ca.exists():
            init_certs(self.certs_dir, self.node_ids, ["127.0.0.1", "localhost"], progress=_say)

    def config_text(self) -> str:
        lines = ["[cluster]", f'transport = "{self.transport}"', f"replication_factor = {min(3, self.nodes)}", ""]
        if self.secure:
            lines += ["[security]", f"certs_dir = {json.dumps(str(self.certs_dir.resolve()))}", ""]
        for i, node_id in enumerate(self.node_ids):
            lines += [
                "[[cluster.nodes]]",
                f'id = "{node_id}"',
                f'rest = "127.0.0.1:{self.rest_base_port + i}"',
                f'replication = "127.0.0.1:{self.replication_base_port + i}"',
                "",
            ]
        return "\n".join(lines)

    def admin_password(self, env: dict[str, str]) -> str:
        """MOM_ADMIN_PASSWORD, else the one generated on the first run (kept 0600 so a restart can show it)."""
        if env.get("MOM_ADMIN_PASSWORD"):
            return env["MOM_ADMIN_PASSWORD"]
        path = self.data_dir / "admin-password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(18)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        return password


async def _pump(node_id: str, stream: trio.abc.ReceiveStream) -> None:
    """Copy a node's output to ours, each line prefixed with the node id, until the node closes it.

    Shielded from cancellation: a node that logs while shutting down would block on a full pipe if nobody read
    it. The stream ends when the process exits, and `_run_node` makes sure it does.
    """
    with trio.CancelScope(shield=True):
        await _copy_lines(node_id, stream)


async def _copy_lines(node_id: str, stream: trio.abc.ReceiveStream) -> None:
    buffer = b""
    async for chunk in stream:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            print(f"[{node_id}] {line.decode(errors='replace')}", flush=True)
    if buffer:
        print(f"[{node_id}] {buffer.decode(errors='replace')}", flush=True)


def _say(line: str) -> None:
    print(f"[dev-cluster] {line}", flush=True)


async def _wait_ready(cluster: DevCluster) -> bool:
    verify = tls_verify(str(CertsLayout(cluster.certs_dir).ca) if cluster.secure else None)
    with trio.move_on_after(READY_TIMEOUT_S):
        async with httpx.AsyncClient(timeout=1.0, verify=verify) as http:
            for i in range(cluster.nodes):
                while True:
                    try:
                        if (await http.get(cluster.rest_url(i) + "/readyz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.2)
        return True
    return False


async def _run_node(cluster: DevCluster, node_id: str, env: dict[str, str], nursery: trio.Nursery) -> None:
    command = [
        sys.executable, "-m", "mom", "serve",
        "--config", str(cluster.data_dir / "cluster.toml"),
        "--node-id", node_id,
        "--data-dir", str(cluster.data_dir / node_id),
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert process.stdout is not None
    nursery.start_soon(_pump, node_id, process.stdout)
    try:
        code = await process.wait()
        print(f"[dev-cluster] {node_id} exited with status {code}; the other nodes keep running", flush=True)
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
                with trio.move_on_after(STOP_GRACE_S):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def run_dev_cluster(cluster: DevCluster) -> None:
    """Run the cluster until SIGINT or SIGTERM."""
    cluster.data_dir.mkdir(parents=True, exist_ok=True)
    cluster.ensure_certs()
    (cluster.data_dir / "cluster.toml").write_text(cluster.config_text())
    env = dict(os.environ)
    password = cluster.admin_password(env)
    env["MOM_ADMIN_PASSWORD"] = password
    env.pop("MOM_REST", None)
    env.pop("MOM_NODE_ID", None)
    env.pop("MOM_DATA_DIR", None)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            for node_id in cluster.node_ids:
                nursery.start_soon(_run_node, cluster, node_id, env, nursery)
            if await _wait_ready(cluster):
                print("\n[dev-cluster] ready:", flush=True)
                for i, node_id in enumerate(cluster.node_ids):
                    print(f"  {node_id}: {cluster.rest_url(i)}", flush=True)
                print(f"  transport: {cluster.transport}; config: {cluster.data_dir / 'cluster.toml'}", flush=True)
                print(f"  dashboard: {cluster.rest_url(0)}/ui (any node serves it)", flush=True)
                print(f"  admin user: admin, password: {password}", flush=True)
                if cluster.secure:
                    ca = CertsLayout(cluster.certs_dir).ca
                    print(f"  TLS: the cluster CA is {ca} (use mom --ca-file {ca}, or MOM_CA_FILE)", flush=True)
                    print(f"  try: curl --cacert {ca} {cluster.rest_url(0)}/healthz", flush=True)
                print("  stop with Ctrl-C\n", flush=True)
            else:
                print(f"[dev-cluster] not every node answered within {READY_TIMEOUT_S:.0f} s", flush=True)
            async for signum in signals:
                print(f"[dev-cluster] {signal.Signals(signum).name}: stopping all nodes", flush=True)
                nursery.cancel_scope.cancel()
                break
