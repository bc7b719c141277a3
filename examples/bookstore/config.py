"""A service instance's settings, built once from the environment (and the `run` command's flags).

The same variables configure a process started by `python -m examples.bookstore up` and a container of
compose.yaml, so both run the same code the same way.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from examples.bookstore.momlink import GIVE_UP_AFTER_S, MomLink
from mom.errors import InvalidInput

ENV_DATA_DIR = "BOOKSTORE_DATA_DIR"
ENV_MOM_URLS = "BOOKSTORE_MOM_URLS"
ENV_CREDENTIALS = "BOOKSTORE_CREDENTIALS"
ENV_AUTH_URL = "BOOKSTORE_AUTH_URL"
ENV_CATALOG_URL = "BOOKSTORE_CATALOG_URL"
ENV_ORDERS_URLS = "BOOKSTORE_ORDERS_URLS"
ENV_LISTEN = "BOOKSTORE_LISTEN"
ENV_INSTANCE = "BOOKSTORE_INSTANCE"
ENV_CA_FILE = "MOM_CA_FILE"

SERVICES = ("auth", "catalog", "orders", "payments", "shipping", "gateway")
"""Every service, in start order: the ones others call first, the public gateway last."""

USES_MOM = ("catalog", "orders", "payments", "shipping", "gateway")
SERVES_HTTP = ("auth", "catalog", "orders", "gateway")


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    service: str
    instance: int
    data_dir: Path
    listen: str | None
    mom_urls: tuple[str, ...]
    credentials_file: Path | None
    auth_url: str
    catalog_url: str
    orders_urls: tuple[str, ...]
    ca_file: str | None = None

    @property
    def name(self) -> str:
        """The instance's name in logs and in the `processed` tables: orders-1, orders-2, ..."""
        return f"{self.service}-{self.instance}"

    @classmethod
    def load(
        cls, service: str, env: Mapping[str, str], *, instance: int | None = None, listen: str | None = None
    ) -> Settings:
        if service not in SERVICES:
            raise InvalidInput(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
        settings = cls(
            service=service,
            instance=instance if instance is not None else int(env.get(ENV_INSTANCE, "1")),
            data_dir=Path(env.get(ENV_DATA_DIR, "var/bookstore/data")),
            listen=listen or env.get(ENV_LISTEN) or None,
            mom_urls=_list(env.get(ENV_MOM_URLS, "")),
            credentials_file=Path(env[ENV_CREDENTIALS]) if env.get(ENV_CREDENTIALS) else None,
            auth_url=env.get(ENV_AUTH_URL, ""),
            catalog_url=env.get(ENV_CATALOG_URL, ""),
            orders_urls=_list(env.get(ENV_ORDERS_URLS, "")),
            ca_file=env.get(ENV_CA_FILE) or None,
        )
        settings.check()
        return settings

    def check(self) -> None:
        """Refuse to start with a setting missing, with the variable to set."""
        missing: list[str] = []
        if self.service in SERVES_HTTP and not self.listen:
            missing.append(ENV_LISTEN)
        if self.service in USES_MOM:
            if not self.mom_urls:
                missing.append(ENV_MOM_URLS)
            if self.credentials_file is None:
                missing.append(ENV_CREDENTIALS)
        if self.service == "gateway":
            missing += [n for n, v in ((ENV_AUTH_URL, self.auth_url), (ENV_CATALOG_URL, self.catalog_url)) if not v]
            if not self.orders_urls:
                missing.append(ENV_ORDERS_URLS)
        if missing:
            raise InvalidInput(f"{self.service}: set {', '.join(missing)}")

    def credentials(self) -> dict[str, str]:
        """This service's OAuth client (client_id, client_secret), as the provisioning step wrote it."""
        assert self.credentials_file is not None
        try:
            entry = load_credentials(self.credentials_file)[self.service]
        except (OSError, ValueError, KeyError) as exc:
            raise InvalidInput(f"no credentials for {self.service} in {self.credentials_file}: {exc}") from None
        return {"client_id": entry["client_id"], "client_secret": entry["client_secret"]}


def mom_link(settings: Settings, *, give_up_after_s: float = GIVE_UP_AFTER_S) -> MomLink:
    """The service's link to mom: every node, its own credentials, instances starting on different nodes."""
    return MomLink(
        settings.mom_urls,
        credentials=settings.credentials(),
        start=settings.instance - 1,
        ca_file=settings.ca_file,
        give_up_after_s=give_up_after_s,
    )


def load_credentials(path: Path) -> dict[str, dict[str, str]]:
    loaded: dict[str, dict[str, str]] = json.loads(path.read_text())
    return loaded


def save_credentials(path: Path, credentials: Mapping[str, Mapping[str, str]]) -> None:
    """Write the services' client secrets readable by their owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(credentials, file, indent=2)
    temporary.replace(path)
