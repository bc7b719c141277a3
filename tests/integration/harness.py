"""Real `mom serve` processes on 127.0.0.1 for integration tests: start, kill -9, restart, talk over the wire."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_PASSWORD = "admin-password-for-tests"
START_TIMEOUT_S = 30.0


LISTEN_PORTS = range(20_000, 32_768)
"""Where the nodes' ports are picked: below Linux's ephemeral range (32768 to 60999 by default), from which the
kernel picks the source port of every outbound connection. A port the kernel chose (`bind(0)`) and we released
was sometimes given to a connection before the node bound it: "Address already in use" at a node's start."""


_HANDED_OUT: set[int] = set()
"""Ports this test process gave out already: a cluster's nodes must never be handed the same port twice."""


def free_port() -> int:
    while True:
        port = random.choice(LISTEN_PORTS)
        if port in _HANDED_OUT:
            continue
        _HANDED_OUT.add(port)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@dataclass
class NodeProcess:
    """One broker process; the data directory outlives the process so a restart recovers from it."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    config: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    ca_file: Path | None = None
    """Set for a node serving REST over TLS with a certificate of this CA: its URL is https."""

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_file else 'http'}://127.0.0.1:{self.port}"

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's `verify` for this node: its private CA, or the default trust store."""
        return verify_for(self.ca_file)

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    def start(self, *, wait: bool = True) -> NodeProcess:
        command = [
            sys.executable,
            "-m",
            "mom",
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--rest",
            f"127.0.0.1:{self.port}",
        ]
        if self.config is not None:
            command += ["--config", str(self.config)]
        env = {**os.environ, "MOM_ADMIN_PASSWORD": ADMIN_PASSWORD, "MOM_OPEN_REGISTRATION": "true", **self.env}
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {self.starts}: {' '.join(command)}\n".encode())
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1, verify=self.verify).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"node did not become ready in {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """kill -9: no chance to flush or clean up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise RuntimeError(f"node did not stop on SIGTERM:\n{self.log_tail()}") from None
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def verify_for(ca_file: Path | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True


def token(
    url: str, username: str, password: str, scope: str | None = None, *, verify: ssl.SSLContext | bool = True
) -> str:
    form = {"grant_type": "password", "username": username, "password": password}
    if scope:
        form["scope"] = scope
    response = httpx.post(url + "/v1/auth/token", data=form, timeout=30, verify=verify)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


ALL_DESTINATIONS = ["mom.read:*", "mom.write:*", "mom.configure:*"]


def new_user(url: str) -> tuple[str, str]:
    """Register a fresh user that may create and use destinations of any name; returns (username, bearer token).

    A new user may use only its own prefix (`<name>.*`); the admin grants this one every destination, as the
    tests of everything but least privilege need (tests/security has helpers for least-privilege users).
    """
    username = f"user-{uuid.uuid4().hex[:10]}"
    password = "a-long-password"
    response = httpx.post(url + "/v1/auth/users", json={"username": username, "password": password}, timeout=30)
    assert response.status_code == 201, response.text
    admin = {"Authorization": f"Bearer {token(url, 'admin', ADMIN_PASSWORD)}"}
    granted = httpx.post(
        f"{url}/v1/auth/users/{username}/grant", json={"scopes": ALL_DESTINATIONS}, headers=admin, timeout=30
    )
    assert granted.status_code == 200, granted.text
    return username, _token_with(url, username, password, " ".join(ALL_DESTINATIONS))


def _token_with(url: str, username: str, password: str, scope: str) -> str:
    """A token carrying `scope`, retried while the node asked has not yet applied the registration or grant
    (in a cluster it may lag the metadata leader that answered them by a few milliseconds)."""
    form = {"grant_type": "password", "username": username, "password": password, "scope": scope}
    deadline = time.monotonic() + 10
    while True:
        response = httpx.post(url + "/v1/auth/token", data=form, timeout=30)
        if response.status_code == 200 or time.monotonic() > deadline:
            assert response.status_code == 200, response.text
            return str(response.json()["access_token"])
        time.sleep(0.05)


class Api:
    """A thin httpx wrapper that keeps a token and a base URL, and returns raw responses for exact assertions."""

    def __init__(self, url: str, bearer: str, *, verify: ssl.SSLContext | bool = True) -> None:
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {bearer}"}, timeout=60, verify=verify)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def retrying(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """As a well-behaved client does: retry 503 (no leader at this moment) for a few seconds."""
        for _ in range(100):
            response = self.http.request(method, path, **kwargs)
            if response.status_code != 503:
                return response
            time.sleep(0.1)
        return response

    def publish(self, queue: str, *bodies: Any) -> list[dict[str, Any]]:
        response = self.retrying(
            "POST", f"/v1/queues/{queue}/messages", json={"messages": [{"body": b} for b in bodies]}
        )
        assert response.status_code == 201, response.text
        return list(response.json()["messages"])

    def receive(self, queue: str, **options: Any) -> list[dict[str, Any]]:
        response = self.retrying("POST", f"/v1/queues/{queue}/receive", json=options)
        assert response.status_code == 200, response.text
        return list(response.json()["messages"])

    def ack(self, queue: str, *receipts: str) -> dict[str, Any]:
        response = self.retrying("POST", f"/v1/queues/{queue}/ack", json={"receipts": list(receipts)})
        assert response.status_code == 200, response.text
        return dict(response.json())

    def drain(self, queue: str, expected: Collection[str], *, timeout_s: float = 60.0) -> Drained:
        """Receive and ack until every body in `expected` was delivered (or `timeout_s` passed), then until a
        receive comes back empty: what a test that counts what survived a fault must do.

        Stopping at the first empty receive is not enough: a receive is a write (it leases what it returns),
        and one answered 503 (its leader lost the lead or went away before answering) may have taken its lease
        all the same. Its messages are then in flight, invisible until the lease ends, not lost. Short leases
        (`DRAIN_LEASE_S`) bring them back soon; only what never comes back within `timeout_s` is missing.
        """
        drained = Drained()
        wanted = set(expected)
        deadline = time.monotonic() + timeout_s
        options = {"max_messages": 100, "wait_s": 1, "visibility_timeout_s": DRAIN_LEASE_S}
        while time.monotonic() < deadline:
            try:
                response = self.http.post(f"/v1/queues/{queue}/receive", json=options)
            except httpx.TransportError as exc:
                drained.refused.append(repr(exc))
                continue
            if response.status_code != 200:
                assert response.status_code == 503, response.text
                drained.refused.append(response.text)
                time.sleep(0.1)
                continue
            batch = response.json()["messages"]
            for message in batch:
                body = message["body"]
                key = body if isinstance(body, str) else json.dumps(body, sort_keys=True)
                drained.ids.setdefault(key, set()).add(message["id"])
            if batch:
                self.ack(queue, *[m["receipt"] for m in batch])
            elif wanted <= drained.ids.keys():
                break
        return drained


DRAIN_LEASE_S = 5.0
"""The lease of `Api.drain`'s receives: how long a receive whose answer was lost hides its messages."""


@dataclass
class Drained:
    """What `Api.drain` got: every body delivered (JSON for bodies that are not strings), with the ids of the
    messages that carried it."""

    ids: dict[str, set[str]] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    """The receives answered 503 (or not at all) on the way: leadership moving, outcome unknown."""

    def missing(self, expected: Collection[str]) -> list[str]:
        return sorted(set(expected) - self.ids.keys())

    def stored_twice(self) -> dict[str, set[str]]:
        """Bodies carried by more than one message: stored twice (a redelivery keeps its message's id)."""
        return {body: ids for body, ids in self.ids.items() if len(ids) > 1}


@dataclass
class Cluster:
    """N real nodes sharing one cluster file, each a NodeProcess with its own data directory."""

    directory: Path
    size: int = 3
    transport: str = field(default_factory=lambda: os.environ.get("MOM_TRANSPORT", "grpc"))
    nodes: dict[str, NodeProcess] = field(default_factory=dict)
    certs_dir: Path | None = None
    """A folder from `mom certs init` for mom1..momN: every wire secure (REST over https)."""
    settings: str = ""
    """More TOML for the cluster file (other sections than [cluster] and [security]), e.g. "[replication] ..."."""

    def __post_init__(self) -> None:
        config = self.directory / "cluster.toml"
        lines = [self.settings, "[cluster]", f'transport = "{self.transport}"', "replication_factor = 3", ""]
        ca_file = None
        if self.certs_dir is not None:
            lines += ["[security]", f'certs_dir = "{self.certs_dir}"', ""]
            ca_file = self.certs_dir / "ca.pem"
        for i in range(1, self.size + 1):
            node_id = f"mom{i}"
            node = NodeProcess(self.directory / node_id, config=config, env={"MOM_NODE_ID": node_id}, ca_file=ca_file)
            self.nodes[node_id] = node
            lines += ["[[cluster.nodes]]", f'id = "{node_id}"', f'rest = "127.0.0.1:{node.port}"',
                      f'replication = "127.0.0.1:{free_port()}"', ""]  # fmt: skip
        self.directory.mkdir(parents=True, exist_ok=True)
        config.write_text("\n".join(lines))

    def start(self) -> Cluster:
        """Start every node and wait until each is ready; if one is not, kill them all before raising (a fixture
        whose setup fails never reaches its teardown, and nodes left running load every later test)."""
        try:
            for node in self.nodes.values():
                node.start(wait=False)
            for node in self.nodes.values():
                node.wait_healthy()
        except BaseException:
            self.kill_all()
            raise
        return self

    def stop(self) -> None:
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                node.stop()

    def kill_all(self) -> None:
        for node in self.nodes.values():
            node.kill()

    def api(self, node_id: str = "mom1") -> Api:
        node = self.nodes[node_id]
        return Api(node.url, token(node.url, "admin", ADMIN_PASSWORD, verify=node.verify), verify=node.verify)

    def cluster_view(self, node_id: str) -> dict[str, Any]:
        return dict(self.api(node_id).get("/v1/cluster").json())

    def leader_of(self, name: str, via: str = "mom1") -> str | None:
        for entry in self.cluster_view(via)["destinations"]:
            if entry["name"] == name:
                return entry["leader"]  # type: ignore[no-any-return]
        return None
