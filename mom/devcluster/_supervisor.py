"""The node processes of a dev cluster: one `mom serve` per node, its output prefixed, restarted or stopped on request.

Every process belongs to a task in the dev cluster's nursery; cancelling it stops every node (SIGTERM, then SIGKILL
after a grace period). A node that dies is reported and left down until someone asks for it back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import trio

from mom.client._protocol import tls_verify
from mom.devcluster._control import HELP, Request
from mom.devcluster._layout import DevCluster
from mom.errors import Conflict
from mom.security import CertsLayout

STOP_GRACE_S = 15.0
READY_TIMEOUT_S = 60.0

Say = Callable[[str], None]


@dataclass(eq=False)
class _Node:
    node_id: str
    url: str
    process: trio.Process | None = None
    exited: trio.Event = field(default_factory=trio.Event)
    """Set once the current process has ended (and set while there is none)."""
    asked_down: bool = False
    """The current process was stopped or killed on request: its end is no surprise."""
    lock: trio.Lock = field(default_factory=trio.Lock)
    """One command at a time per node: a restart must not race a kill."""

    def __post_init__(self) -> None:
        self.exited.set()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return "exited cleanly" if code == 0 else f"exited with status {code}"


class Supervisor:
    """Starts, restarts, stops and kills the node processes of one dev cluster, in the nursery it is given."""

    def __init__(self, cluster: DevCluster, env: dict[str, str], nursery: trio.Nursery, say: Say) -> None:
        self._cluster = cluster
        self._env = env
        self._nursery = nursery
        self._say = say
        self._nodes = {node_id: _Node(node_id, cluster.rest_url(i)) for i, node_id in enumerate(cluster.node_ids)}

    def pid(self, node_id: str) -> int | None:
        process = self._nodes[node_id].process
        return process.pid if process is not None and process.returncode is None else None

    async def start(self, node_id: str) -> None:
        """Start the node's process; returns once it is spawned (not yet ready)."""
        await self._nursery.start(self._run, self._nodes[node_id])

    async def wait_ready(self, node_ids: Sequence[str]) -> bool:
        """Whether every one of these nodes answered /readyz within READY_TIMEOUT_S."""
        cluster = self._cluster
        verify = tls_verify(str(CertsLayout(cluster.certs_dir).ca) if cluster.secure else None)
        with trio.move_on_after(READY_TIMEOUT_S):
            async with httpx.AsyncClient(timeout=1.0, verify=verify) as http:
                for node_id in node_ids:
                    while True:
                        try:
                            if (await http.get(self._nodes[node_id].url + "/readyz")).status_code == 200:
                                break
                        except httpx.TransportError:
                            pass
                        await trio.sleep(0.2)
            return True
        return False

    async def execute(self, request: Request) -> str:
        """Carry out one control request; its answer, or a MomError saying why not."""
        if request.verb == "help":
            return HELP
        if request.verb == "status":
            return self.status()
        assert request.node_id is not None
        node = self._nodes[request.node_id]
        async with node.lock:
            if request.verb == "restart":
                return await self._restart(node)
            if not node.running:
                raise Conflict(f"{node.node_id} is not running; `restart {node.node_id}` starts it")
            assert node.process is not None
            pid = node.process.pid
            code = await self._take_down(node, signal.SIGKILL if request.verb == "kill" else signal.SIGTERM)
            return f"{node.node_id} (pid {pid}) is down: {describe_exit(code)}"

    def status(self) -> str:
        lines = []
        for node in self._nodes.values():
            if node.running:
                assert node.process is not None
                lines.append(f"{node.node_id}  up    pid {node.process.pid:<7} {node.url}")
            elif node.process is not None and node.process.returncode is not None:
                lines.append(f"{node.node_id}  down  {describe_exit(node.process.returncode)}")
            else:
                lines.append(f"{node.node_id}  down  starting")
        return "\n".join(lines)

    async def _restart(self, node: _Node) -> str:
        if node.running:
            await self._take_down(node, signal.SIGTERM)
        await self._nursery.start(self._run, node)
        assert node.process is not None
        pid = node.process.pid
        if await self.wait_ready([node.node_id]):
            return f"{node.node_id} restarted: pid {pid}, ready at {node.url}"
        return f"{node.node_id} restarted: pid {pid}, but not ready at {node.url} after {READY_TIMEOUT_S:.0f} s"

    async def _take_down(self, node: _Node, signum: signal.Signals) -> int:
        """Signal the node's process and wait until it ended (SIGKILL after the grace period); its exit code."""
        process = node.process
        assert process is not None
        node.asked_down = True
        process.send_signal(signum)
        with trio.move_on_after(STOP_GRACE_S):
            await node.exited.wait()
        if not node.exited.is_set():
            process.kill()
            await node.exited.wait()
        assert process.returncode is not None
        return process.returncode

    async def _run(self, node: _Node, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        cluster = self._cluster
        command = [
            sys.executable, "-m", "mom", "serve",
            "--config", str(cluster.config_file),
            "--node-id", node.node_id,
            "--data-dir", str(cluster.data_dir / node.node_id),
        ]  # fmt: skip
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=self._env
        )
        assert process.stdout is not None
        node.process, node.exited, node.asked_down = process, trio.Event(), False
        self._nursery.start_soon(_pump, node.node_id, process.stdout)
        task_status.started()
        try:
            code = await process.wait()
            self._report_exit(node, code)
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(STOP_GRACE_S):
                        await process.wait()
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
            node.exited.set()

    def _report_exit(self, node: _Node, code: int) -> None:
        if node.asked_down:
            return  # the command that asked answers for it
        if code == 0:
            self._say(f"{node.node_id} stopped")
            return
        data_dir = self._cluster.data_dir
        self._say(
            f"{node.node_id} is down ({describe_exit(code)}); the other nodes keep running. Bring it back: type "
            f"`restart {node.node_id}` here, or run `mom dev-cluster --data-dir {data_dir} restart {node.node_id}`"
        )


async def _pump(node_id: str, stream: trio.abc.ReceiveStream) -> None:
    """Copy a node's output to ours, each line prefixed with the node id, until the node closes it.

    Shielded from cancellation: a node that logs while shutting down would block on a full pipe if nobody read
    it. The stream ends when the process exits, and `Supervisor._run` makes sure it does.
    """
    with trio.CancelScope(shield=True):
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                print(f"[{node_id}] {line.decode(errors='replace')}", flush=True)
        if buffer:
            print(f"[{node_id}] {buffer.decode(errors='replace')}", flush=True)
