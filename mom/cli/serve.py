"""Running nodes: `mom serve` (one node) and `mom dev-cluster` (a local cluster)."""

from __future__ import annotations

import contextlib
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
@click.option(
    "--certs-dir",
    help="Folder from `mom certs init`: turns on TLS/CURVE on every wire (env MOM_CERTS_DIR).",
)
def serve(
    config_file: Path | None,
    node_id: str | None,
    data_dir: str | None,
    rest: str | None,
    transport: str | None,
    certs_dir: str | None,
) -> None:
    """Run one node until Ctrl-C or SIGTERM.

    \b
    Examples:
      mom serve                                   # single node on 127.0.0.1:8080
      mom serve --config cluster.toml --node-id mom2
      mom serve --config cluster.toml --node-id mom2 --certs-dir certs
    """
    from mom.config import load_settings
    from mom.security import load_node_security

    flags = {
        "node.id": node_id,
        "node.data_dir": data_dir,
        "node.rest": rest,
        "cluster.transport": transport,
        "security.certs_dir": certs_dir,
    }
    try:
        settings = load_settings(config_file, env=os.environ, flags=flags)
        load_node_security(settings)
    except InvalidInput as exc:
        _fail(exc.detail, code=2)
    from mom.node import run_node

    run_node(settings)


@main.command("dev-cluster")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9), help="How many nodes.")
@click.option(
    "--transport",
    type=click.Choice(["grpc", "zmq"]),
    envvar="MOM_TRANSPORT",
    default="grpc",
    show_default=True,
    help="Node-to-node transport.",
)
@click.option(
    "--data-dir",
    default="var/dev-cluster",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Holds cluster.toml and one data directory per node.",
)
@click.option("--rest-port", default=8001, show_default=True, type=click.IntRange(1, 65535), help="REST port of mom1.")
@click.option(
    "--replication-port",
    default=50051,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Replication port of mom1.",
)
@click.option(
    "--secure",
    is_flag=True,
    help="TLS/CURVE on every wire; certificates are generated into DATA_DIR/certs on the first run.",
)
def dev_cluster(
    nodes: int, transport: str, data_dir: Path, rest_port: int, replication_port: int, secure: bool
) -> None:
    """Run a local N-node cluster in the foreground (REST on 8001.., replication on 50051..).

    Prints the URLs and the admin credentials once every node answers; Ctrl-C stops all nodes cleanly.
    Kill one node (kill -9) to watch its destinations fail over.

    \b
    Examples:
      mom dev-cluster
      mom dev-cluster --nodes 5 --transport zmq
      mom dev-cluster --secure                     # https, mutual TLS / CURVE between nodes
    """
    import trio

    from mom.devcluster import DevCluster, run_dev_cluster

    cluster = DevCluster(
        nodes=nodes,
        transport="zmq" if transport == "zmq" else "grpc",
        data_dir=data_dir,
        rest_base_port=rest_port,
        replication_base_port=replication_port,
        secure=secure,
    )
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while the nodes stop
        trio.run(run_dev_cluster, cluster)
