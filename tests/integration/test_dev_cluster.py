"""`mom dev-cluster` as a person uses it: one command gives a working local cluster that shows its nodes' PIDs and
leadership changes, takes `kill`/`stop`/`restart` typed on stdin or sent from another terminal, refuses data of
another shape, and stops every node on Ctrl-C / SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Api, free_port, token

PASSWORD = "dev-cluster-password"
BANNER_NODE = re.compile(r"^  (mom\d): (\S+)  pid (\d+)  replication (\S+)$", re.MULTILINE)


def _ports(count: int) -> int:
    """A base port with `count` free ports after it (checked, not reserved: good enough on a test machine)."""
    for _ in range(50):
        base = free_port()
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports found")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Whether `pid` is a live process (not a zombie waiting for its parent)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


@dataclass
class DevClusterRun:
    """One foreground `mom dev-cluster` with its stdin on a pipe (so lines written there are typed commands)."""

    directory: Path
    nodes: int
    transport: str = field(default_factory=lambda: os.environ.get("MOM_TRANSPORT", "grpc"))
    rest: int = field(default_factory=lambda: _ports(9))
    replication: int = field(default_factory=lambda: _ports(9))
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.directory / "dc"

    @property
    def log_path(self) -> Path:
        return self.directory / "dev-cluster.log"

    def args(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "mom", "dev-cluster", "--data-dir", str(self.data_dir),
                "--nodes", str(self.nodes), "--transport", self.transport,
                "--rest-port", str(self.rest), "--replication-port", str(self.replication), *extra]  # fmt: skip

    def start(self, *extra: str) -> DevClusterRun:
        env = {**os.environ, "MOM_ADMIN_PASSWORD": PASSWORD}
        mark = len(self.log()) if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args(*extra), stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        self.wait_for("stop with Ctrl-C", after=mark)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, *, after: int = 0, timeout_s: float = 60) -> re.Match[str]:
        """The first match of the regular expression `pattern` in the output from offset `after` on."""
        deadline = time.monotonic() + timeout_s
        while (found := re.search(pattern, self.log()[after:], re.MULTILINE)) is None:
            assert self.process is not None and self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"{pattern!r} not seen within {timeout_s} s:\n{self.log()}"
            time.sleep(0.2)
        return found

    def type(self, line: str) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def command(self, *args: str) -> str:
        """`mom dev-cluster --data-dir DIR ARGS` from another terminal; its output (it must succeed)."""
        command = [sys.executable, "-m", "mom", "dev-cluster", "--data-dir", str(self.data_dir), *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def api(self, index: int) -> Api:
        url = f"http://127.0.0.1:{self.rest + index}"
        return Api(url, token(url, "admin", PASSWORD))

    def pids(self) -> dict[str, int]:
        """Each node's PID, from the last banner."""
        return {m[0]: int(m[2]) for m in BANNER_NODE.findall(self.log())}

    def stop(self) -> None:
        """SIGTERM, as Ctrl-C would: every node stops and the dev cluster exits 0."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(60) == 0, self.log()


@pytest.mark.transport
def test_dev_cluster_shows_pids_and_leaders_kills_and_restarts_nodes_and_stops_them_all(tmp_path: Path) -> None:
    run = DevClusterRun(tmp_path, nodes=3)
    try:
        run.start()
        pids = run.pids()
        assert sorted(pids) == ["mom1", "mom2", "mom3"]
        for node_id, pid in pids.items():
            assert f"--node-id\0{node_id}\0" in Path(f"/proc/{pid}/cmdline").read_text(), "the PID of another process"
        assert re.search(r"^\[mom\d\] .*group meta: (mom\d) leads \(term \d+\)$", run.log(), re.MULTILINE)

        api = run.api(1)
        assert api.retrying("PUT", "/v1/queues/dev").status_code == 201
        api.publish("dev", "hello")
        other = run.api(2)
        got = other.receive("dev", wait_s=2)
        assert [m["body"] for m in got] == ["hello"]
        other.ack("dev", got[0]["receipt"])
        assert "[mom3]" in run.log()
        dashboard = f"http://127.0.0.1:{run.rest}/ui"
        assert f"dashboard: {dashboard} " in run.log()
        assert httpx.get(dashboard + "/", timeout=10).status_code == 200

        # The queue's leader said so in its log; kill it from another terminal and watch another replica take over.
        leader = api.get("/v1/queues/dev").json()["leader"]
        run.wait_for(rf"^\[{leader}\] .*group q\.dev(@\d+)?: {leader} leads \(term \d+\)$")
        mark = len(run.log())
        answer = run.command("kill", leader)
        assert answer.strip() == f"{leader} (pid {pids[leader]}) is down: killed by SIGKILL"
        assert not _alive(pids[leader])
        taken = run.wait_for(r"^\[(mom\d)\] .*group q\.dev(@\d+)?: \1 leads \(term (\d+)\)$", after=mark)
        assert taken[1] != leader
        survivor = run.api(next(i for i in range(3) if f"mom{i + 1}" != leader))
        survivor.publish("dev", "after the failover")

        # Bring it back by typing in the dev cluster's terminal.
        run.type(f"restart {leader}")
        back = run.wait_for(rf"{leader} restarted: pid (\d+), ready at http://127\.0\.0\.1:\d+$", after=mark)
        new_pid = int(back[1])
        assert new_pid != pids[leader] and _alive(new_pid)
        restarted = run.api(int(leader.removeprefix("mom")) - 1)
        assert [m["body"] for m in restarted.receive("dev", wait_s=5)] == ["after the failover"]

        # Stop a node cleanly (a number is enough), and ask for the status from another terminal.
        bystander = next(n for n in pids if n != leader)
        assert run.command("stop", bystander[-1]).strip().endswith("is down: exited cleanly")
        status = run.command("status")
        assert f"{bystander}  down  exited cleanly" in status
        assert re.search(rf"^{leader}  up    pid {new_pid} ", status, re.MULTILINE), status
    finally:
        run.stop()
    for i in range(3):
        try:
            httpx.get(f"http://127.0.0.1:{run.rest + i}/healthz", timeout=1)
        except httpx.TransportError:
            continue
        raise AssertionError(f"mom{i + 1} still answers after dev-cluster stopped")
    assert not (run.data_dir / "control.sock").exists()


def test_data_of_another_shape_is_refused_until_reset(tmp_path: Path) -> None:
    """One node keeps it quick: the shape check does not depend on the transport between nodes."""
    run = DevClusterRun(tmp_path, nodes=1, transport="grpc")
    try:
        run.start()
        assert run.api(0).retrying("PUT", "/v1/queues/old").status_code == 201
    finally:
        run.stop()
    recorded = (run.data_dir / "cluster.toml").read_bytes()

    # Every kind of difference, and a declined --reset, are in tests/unit/test_devcluster.py (no processes).
    refused = subprocess.run([*run.args(), "--nodes", "2"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "holds the data of a cluster of another shape:\n  nodes mom1 here, mom1, mom2 asked" in refused.stderr
    assert f"mom dev-cluster --data-dir {run.data_dir} --reset" in refused.stderr
    assert (run.data_dir / "cluster.toml").read_bytes() == recorded and not (run.data_dir / "mom2").exists()

    run.rest = _ports(1)
    try:
        run.start("--reset", "--yes")
        assert f"deleted cluster.toml, mom1 in {run.data_dir}" in run.log()
        assert run.api(0).get("/v1/queues/old").status_code == 404, "the old cluster's data is gone"
    finally:
        run.stop()
