"""`python -m examples.bookstore up`: the whole shop on this machine in one command.

It runs `mom dev-cluster` (3 nodes) as a child process, waits until every node is ready, provisions the topology
and the services' credentials with the admin account, starts every service instance of `launch.plan`, prints
the gateway's URL, and on Ctrl-C or SIGTERM stops the services, then the cluster. A process that dies on its
own (say, an instance you `kill -9` to watch the other one take over) is reported and left down.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import trio

from examples.bookstore.launch import Ports, Process, plan
from examples.bookstore.provision import provision
from mom.errors import MomError

STOP_GRACE_S = 15.0
READY_TIMEOUT_S = 120.0
ADMIN_USERNAME = "admin"


@dataclass(frozen=True)
class Shop:
    data_dir: Path
    ports: Ports
    transport: str = "grpc"

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "credentials.json"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.gateway}"

    def processes(self) -> list[Process]:
        return plan(self.ports, self.data_dir / "services", self.ports.mom_urls(), self.credentials_file)

    def admin_password(self, env: dict[str, str]) -> str:
        """MOM_ADMIN_PASSWORD, else one generated on the first run and kept (0600) for the next."""
        if env.get("MOM_ADMIN_PASSWORD"):
            return env["MOM_ADMIN_PASSWORD"]
        path = self.data_dir / "mom-admin-password"
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(18)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        return password


def _say(line: str) -> None:
    print(f"[bookstore] {line}", flush=True)


async def _copy_lines(prefix: str, stream: trio.abc.ReceiveStream) -> None:
    """Copy a child's output to ours, line by line; shielded, so a child logging while it stops never blocks."""
    with trio.CancelScope(shield=True):
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                print(prefix + line.decode(errors="replace"), flush=True)
        if buffer:
            print(prefix + buffer.decode(errors="replace"), flush=True)


async def run_child(name: str, argv: list[str], env: dict[str, str], prefix: str = "") -> None:
    """Run one child until it exits or this task is cancelled; then SIGTERM it, and kill it after a grace period."""
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    assert process.stdout is not None
    async with trio.open_nursery() as pumps:
        pumps.start_soon(_copy_lines, prefix, process.stdout)
        try:
            code = await process.wait()
            _say(f"{name} exited with status {code}; everything else keeps running")
        finally:
            with trio.CancelScope(shield=True):
                if process.returncode is None:
                    process.send_signal(signal.SIGTERM)
                    with trio.move_on_after(STOP_GRACE_S):
                        await process.wait()
                if process.returncode is None:
                    process.kill()
                    await process.wait()


async def wait_until_ok(urls: list[str], timeout_s: float) -> bool:
    """Whether every URL answered 200 before the timeout."""
    with trio.move_on_after(timeout_s):
        async with httpx.AsyncClient(timeout=2.0) as http:
            for url in urls:
                while True:
                    try:
                        if (await http.get(url)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.2)
        return True
    return False


async def run_shop(shop: Shop) -> None:
    """Run everything until SIGINT or SIGTERM."""
    shop.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    password = shop.admin_password(env)
    env["MOM_ADMIN_PASSWORD"] = password
    dev_cluster = [
        sys.executable, "-m", "mom", "dev-cluster", "--nodes", str(shop.ports.mom_nodes),
        "--transport", shop.transport, "--data-dir", str(shop.data_dir / "mom"),
        "--rest-port", str(shop.ports.mom_rest), "--replication-port", str(shop.ports.mom_replication),
    ]  # fmt: skip
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as cluster:
            cluster.start_soon(run_child, "mom dev-cluster", dev_cluster, env)
            async with trio.open_nursery() as services:
                services.start_soon(_start_services, shop, env, password, services, cluster.cancel_scope)
                async for signum in signals:
                    _say(f"{signal.Signals(signum).name}: stopping the services, then mom")
                    services.cancel_scope.cancel()
                    break
            cluster.cancel_scope.cancel()
    _say("stopped")


async def _start_services(
    shop: Shop, env: dict[str, str], password: str, nursery: trio.Nursery, everything: trio.CancelScope
) -> None:
    mom_urls = shop.ports.mom_urls()
    if not await wait_until_ok([url + "/readyz" for url in mom_urls], READY_TIMEOUT_S):
        _say(f"mom did not become ready within {READY_TIMEOUT_S:.0f} s; stop with Ctrl-C and see its output above")
        return
    try:
        await provision(mom_urls, ADMIN_USERNAME, password, shop.credentials_file)
    except (MomError, httpx.HTTPError) as exc:
        _say(f"provisioning failed: {exc}; stopping")
        everything.cancel()
        return
    _say(f"provisioned the queues, topics and subscriptions, and credentials in {shop.credentials_file}")
    processes = shop.processes()
    for process in processes:
        nursery.start_soon(run_child, process.name, process.argv(), {**env, **process.env})
    health = [f"http://{p.listen}/healthz" for p in processes if p.listen]
    if not await wait_until_ok(health, READY_TIMEOUT_S):
        _say("not every service answered; see their output above")
        return
    _say("ready:")
    _say(f"  the shop:  {shop.gateway_url}  (the page; the JSON API is under /api)")
    _say(f"  mom:       {', '.join(mom_urls)}  (admin user {ADMIN_USERNAME!r}, password {password})")
    _say(f"  instances: {', '.join(p.name for p in processes)}")
    _say("  stop with Ctrl-C")
