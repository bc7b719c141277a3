"""`mom certs`: the certificates and keys of a secure cluster."""

from __future__ import annotations

from pathlib import Path

import click

from mom.cli._app import _fail, main
from mom.errors import InvalidInput

DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@main.group()
def certs() -> None:
    """Certificates and keys for TLS (gRPC, REST) and CURVE (ZeroMQ)."""


@certs.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--nodes",
    default="mom1,mom2,mom3",
    show_default=True,
    help="Comma-separated node ids: one certificate and one CURVE key pair each.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="A host name or IP the nodes are reached at (repeat; default 127.0.0.1 and localhost).",
)
@click.option("--force", is_flag=True, help="Replace files that already exist (a new CA: every node needs new files).")
def init(directory: Path, nodes: str, hosts: tuple[str, ...], force: bool) -> None:
    """Generate a development CA, a certificate and key per node, and a CURVE key pair per node into DIRECTORY.

    Every node certificate names its node id and every --host, so clients can verify any node by the name or
    address they use. Private keys are written with mode 0600; README.txt in DIRECTORY says what each file is.

    \b
    Examples:
      mom certs init certs
      mom certs init certs --nodes a,b,c --host 10.0.0.1 --host 10.0.0.2 --host 10.0.0.3 --host mom.example.org
    """
    from mom.security import init_certs

    node_ids = [node.strip() for node in nodes.split(",") if node.strip()]
    try:
        init_certs(directory, node_ids, list(hosts or DEFAULT_HOSTS), force=force, progress=click.echo)
    except InvalidInput as exc:
        _fail(exc.detail, code=2)
    click.echo(f"done: point the nodes at it with [security] certs_dir = {str(directory)!r} (or --certs-dir)")
