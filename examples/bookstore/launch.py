"""Which processes make up the shop, and how each one is started: the one plan that `up` runs, the tests start,
and compose.yaml mirrors (a test checks that it does).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from examples.bookstore import config as c

INSTANCES = {"auth": 1, "catalog": 1, "orders": 2, "payments": 2, "shipping": 1, "gateway": 1}
"""Two instances of orders and payments: they compete for their commands, and either one may die."""


@dataclass(frozen=True)
class Ports:
    gateway: int = 8000
    services: int = 8010
    """auth, catalog, then each orders instance, on consecutive ports from here."""
    mom_rest: int = 8001
    mom_replication: int = 50051
    mom_nodes: int = 3

    def mom_urls(self, host: str = "127.0.0.1") -> tuple[str, ...]:
        return tuple(f"http://{host}:{self.mom_rest + i}" for i in range(self.mom_nodes))


@dataclass(frozen=True)
class Process:
    service: str
    instance: int
    env: dict[str, str]
    """The BOOKSTORE_* variables this process needs (added to the inherited environment)."""

    @property
    def name(self) -> str:
        return f"{self.service}-{self.instance}"

    @property
    def listen(self) -> str | None:
        return self.env.get(c.ENV_LISTEN)

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "examples.bookstore", "run", self.service, "--instance", str(self.instance)]


def plan(
    ports: Ports, data_dir: Path, mom_urls: tuple[str, ...], credentials_file: Path, host: str = "127.0.0.1"
) -> list[Process]:
    """Every process of the shop, in start order."""
    listen: dict[str, list[str]] = {}
    next_port = ports.services
    for service in c.SERVES_HTTP:
        if service == "gateway":
            listen[service] = [f"{host}:{ports.gateway}"]
            continue
        listen[service] = [f"{host}:{next_port + i}" for i in range(INSTANCES[service])]
        next_port += INSTANCES[service]
    mom = {c.ENV_MOM_URLS: ",".join(mom_urls), c.ENV_CREDENTIALS: str(credentials_file)}
    gateway_env = {
        c.ENV_AUTH_URL: f"http://{listen['auth'][0]}",
        c.ENV_CATALOG_URL: f"http://{listen['catalog'][0]}",
        c.ENV_ORDERS_URLS: ",".join(f"http://{address}" for address in listen["orders"]),
    }
    processes = []
    for service in c.SERVICES:
        for instance in range(1, INSTANCES[service] + 1):
            env = {c.ENV_DATA_DIR: str(data_dir), c.ENV_INSTANCE: str(instance)}
            if service in c.USES_MOM:
                env.update(mom)
            if service in listen:
                env[c.ENV_LISTEN] = listen[service][instance - 1]
            if service == "gateway":
                env.update(gateway_env)
            processes.append(Process(service, instance, env))
    return processes
