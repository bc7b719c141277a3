"""The bookstore's processes for tests: the services of `launch.plan` as real processes next to a real mom
cluster, a shopper that talks to the gateway over HTTP, and read-only views of the services' databases (the
ground truth the assertions check)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from examples.bookstore.launch import Ports, Process, plan

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> int:
    """A base port with `count` free ports from it (checked, not reserved: good enough on a test machine)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            base = int(sock.getsockname()[1])
        if base + count < 65535 and all(_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no run of free ports found")


def wait_for(predicate: Any, timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, sqlite3.Error, KeyError, ValueError):
            pass
        time.sleep(interval_s)
    raise AssertionError(f"{what}: not reached within {timeout_s} s")


@dataclass
class ServiceProcess:
    spec: Process
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.spec.env}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.spec.argv(sys.executable), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        """kill -9."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass
class Services:
    """Every process of the plan, started against the given mom nodes, after provisioning them."""

    directory: Path
    mom_urls: tuple[str, ...]
    admin_password: str
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = Ports(gateway=free_ports(1), services=free_ports(4))
        for spec in plan(ports, self.data_dir, self.mom_urls, self.credentials_file):
            self.processes[spec.name] = ServiceProcess(spec, self.directory / f"{spec.name}.log")
        self.gateway_url = f"http://{self.processes['gateway-1'].spec.listen}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def credentials_file(self) -> Path:
        return self.directory / "credentials.json"

    def provision(self) -> str:
        """Run the provisioning command as compose does; returns its output."""
        env = {**os.environ, "MOM_ADMIN_PASSWORD": self.admin_password}
        command = [sys.executable, "-m", "examples.bookstore", "provision", "--mom-urls", ",".join(self.mom_urls),
                   "--credentials", str(self.credentials_file)]  # fmt: skip
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def start(self) -> Services:
        for process in self.processes.values():
            process.start()
        for process in self.processes.values():
            if process.spec.listen is not None:
                self._wait_healthy(process)
        return self

    def _wait_healthy(self, process: ServiceProcess) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert process.proc is not None
            if process.proc.poll() is not None:
                raise RuntimeError(f"{process.spec.name} exited:\n{process.log_tail()}")
            try:
                if httpx.get(f"http://{process.spec.listen}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{process.spec.name} not healthy:\n{process.log_tail()}")

    def stop(self) -> None:
        for process in self.processes.values():
            process.stop()

    def kill_all(self) -> None:
        for process in self.processes.values():
            process.kill()

    @contextmanager
    def db(self, service: str) -> Iterator[sqlite3.Connection]:
        """A read-only connection to a service's database."""
        uri = f"file:{self.data_dir / f'{service}.sqlite3'}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=30)) as conn:
            conn.row_factory = sqlite3.Row
            yield conn

    def rows(self, service: str, query: str, *args: Any) -> list[sqlite3.Row]:
        with self.db(service) as conn:
            return list(conn.execute(query, args).fetchall())


class Shopper:
    """A user of the shop, over the gateway's JSON API."""

    def __init__(self, gateway_url: str, username: str, password: str = "correct-horse-battery") -> None:
        self.http = httpx.Client(base_url=gateway_url, timeout=30)
        registered = self.http.post("/api/register", json={"username": username, "password": password})
        assert registered.status_code == 201, registered.text
        session = self.http.post("/api/login", json={"username": username, "password": password})
        assert session.status_code == 201, session.text
        self.http.headers["Authorization"] = f"Bearer {session.json()['token']}"
        self.username = username

    def close(self) -> None:
        self.http.close()

    def books(self) -> dict[int, dict[str, Any]]:
        answer = self.http.get("/api/books")
        assert answer.status_code == 200, answer.text
        return {book["id"]: book for book in answer.json()["books"]}

    def sell(self, title: str, stock: int, price_cents: int = 1000) -> dict[str, Any]:
        book = {"title": title, "author": "A. Author", "price_cents": price_cents, "stock": stock}
        answer = self.http.post("/api/books", json=book)
        assert answer.status_code == 201, answer.text
        return dict(answer.json())

    def buy(self, book_id: int, card: str = GOOD_CARD, address: str = "1 Library Lane", key: str | None = None) -> str:
        """Place an order (retrying, with the same Idempotency-Key, while the gateway answers 503)."""
        headers = {"Idempotency-Key": key} if key else {}
        body = {"book_id": book_id, "card": card, "address": address}
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = self.http.post("/api/orders", json=body, headers=headers)
                if answer.status_code == 202:
                    return str(answer.json()["order_id"])
                assert answer.status_code == 503 and key, answer.text
            except httpx.TransportError:
                assert key, "a purchase without an Idempotency-Key cannot be retried safely"
            assert time.monotonic() < deadline, "the gateway kept refusing the order"
            time.sleep(0.2)

    def order(self, order_id: str) -> dict[str, Any] | None:
        answer = self.http.get(f"/api/orders/{order_id}")
        if answer.status_code == 404:
            return None
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_final(self, order_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def final() -> bool:
            order = self.order(order_id)
            if order is not None:
                found.update(order)
            return order is not None and order["status"] in ("shipped", "cancelled")

        wait_for(final, timeout_s, f"order {order_id} in a final state (last seen: {found.get('status')})")
        return found
