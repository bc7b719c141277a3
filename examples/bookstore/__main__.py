"""`python -m examples.bookstore up | run SERVICE | provision`, from the repository root."""

from __future__ import annotations

import contextlib
import os
import sys
from functools import partial
from pathlib import Path

import click
import trio

from examples.bookstore.config import SERVICES, USES_MOM, Settings
from mom.errors import InvalidInput


@click.group()
def main() -> None:
    """The bookstore: microservices talking through mom."""


@main.command()
@click.option(
    "--data-dir", default="var/bookstore", show_default=True, type=click.Path(file_okay=False, path_type=Path)
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="The gateway's port.")
@click.option("--service-port", default=8010, show_default=True, type=click.IntRange(1, 65535),
              help="First port of the internal services (auth, catalog, orders...).")  # fmt: skip
@click.option("--mom-port", default=8001, show_default=True, type=click.IntRange(1, 65535), help="REST port of mom1.")
@click.option("--mom-replication-port", default=50051, show_default=True, type=click.IntRange(1, 65535))
@click.option("--transport", type=click.Choice(["grpc", "zmq"]), envvar="MOM_TRANSPORT", default="grpc",
              show_default=True, help="mom's node-to-node transport.")  # fmt: skip
def up(data_dir: Path, port: int, service_port: int, mom_port: int, mom_replication_port: int, transport: str) -> None:
    """Run a 3-node mom cluster and every service; print the shop's URL; Ctrl-C stops it all.

    \b
    Example:
      python -m examples.bookstore up
      curl -s http://127.0.0.1:8000/api/books
    """
    from examples.bookstore.launch import Ports
    from examples.bookstore.up import Shop, run_shop

    ports = Ports(gateway=port, services=service_port, mom_rest=mom_port, mom_replication=mom_replication_port)
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while everything stops
        trio.run(run_shop, Shop(data_dir, ports, transport))


@main.command("run")
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--instance", type=int, help="Instance number (default BOOKSTORE_INSTANCE, or 1).")
@click.option("--listen", help="HOST:PORT of its HTTP API (default BOOKSTORE_LISTEN).")
def run_command(service: str, instance: int | None, listen: str | None) -> None:
    """Run one instance of one service, configured by BOOKSTORE_* variables (see README.md)."""
    from examples.bookstore.runner import run_instance

    try:
        settings = Settings.load(service, os.environ, instance=instance, listen=listen)
        if settings.service in USES_MOM:
            settings.credentials()
    except InvalidInput as exc:
        click.echo(f"error: {exc.detail}", err=True)
        sys.exit(2)
    run_instance(settings)


@main.command("provision")
@click.option("--mom-urls", envvar="BOOKSTORE_MOM_URLS", required=True, help="Comma-separated node URLs.")
@click.option("--admin-username", envvar="MOM_USERNAME", default="admin", show_default=True)
@click.option("--admin-password", envvar="MOM_ADMIN_PASSWORD", required=True)
@click.option("--credentials", envvar="BOOKSTORE_CREDENTIALS", required=True, type=click.Path(path_type=Path),
              help="Where to write the services' client credentials (0600).")  # fmt: skip
@click.option("--ca-file", envvar="MOM_CA_FILE", help="The cluster's CA, for mom over TLS.")
def provision_command(
    mom_urls: str, admin_username: str, admin_password: str, credentials: Path, ca_file: str | None
) -> None:
    """Declare the bookstore's queues, topics and subscriptions and issue each service its credentials."""
    from examples.bookstore.provision import provision

    urls = tuple(u.strip() for u in mom_urls.split(",") if u.strip())
    issued = trio.run(partial(provision, urls, admin_username, admin_password, credentials, ca_file=ca_file))
    for service, entry in issued.items():
        click.echo(f"{service}: {entry['client_id']} ({entry['scopes']})")


main()
