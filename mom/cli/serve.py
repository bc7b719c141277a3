"""Running nodes: `mom serve` (one node) and `mom dev-cluster` (a local cluster)."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mom.cli._app import (
    _fail,
    main,
)
from mom.errors import InvalidInput


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="TOML file.")
@click.option("--node-id", help="This node's id (its entry in [[cluster.nodes]]).")
@click.option("--data-dir", help="Where the node keeps its log (default var/mom, or var/ID in a cluster).")
@click.option("--rest", help="HOST:PORT of the REST API (default 127.0.0.1:8080).")
@click.option("--transport", type=click.Choice(["grpc", "zmq"]), help="Node-to-node transport.")
def serve(
    config_file: Path | None,
    node_id: str | None,
    data_dir: str | None,
    rest: str | None,
    transport: str | None,
) -> None:
    """Run one node until Ctrl-C or SIGTERM.

    \b
    Examples:
      mom serve                                   # single node on 127.0.0.1:8080
      mom serve --config cluster.toml --node-id mom2
    """
    from mom.config import load_settings

    flags = {"node.id": node_id, "node.data_dir": data_dir, "node.rest": rest, "cluster.transport": transport}
    try:
        settings = load_settings(config_file, env=os.environ, flags=flags)
    except InvalidInput as exc:
        _fail(exc.detail, code=2)
    from mom.node import run_node

    run_node(settings)

