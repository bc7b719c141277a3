"""Running nodes: `mom serve` (one node) and `mom dev-cluster` (a local cluster)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from mom.cli._app import (
    _fail,
    main,
)
from mom.errors import InvalidInput, MomError

if TYPE_CHECKING:
    from mom.devcluster import DevCluster

_F = TypeVar("_F", bound=Callable[..., Any])
DEV_CLUSTER_DIR = Path("var/dev-cluster")


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


def _data_dir_option(default: Path | None) -> Callable[[_F], _F]:
    return click.option(
        "--data-dir",
        default=default,
        show_default=default is not None,
        type=click.Path(file_okay=False, path_type=Path),
        help="Holds cluster.toml, one data directory per node, and the control socket."
        if default is not None
        else "The running dev-cluster's --data-dir (default: the one given before the command, or var/dev-cluster).",
    )


@main.group("dev-cluster", invoke_without_command=True)
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 9), help="How many nodes.")
@click.option(
    "--transport",
    type=click.Choice(["grpc", "zmq"]),
    envvar="MOM_TRANSPORT",
    default="grpc",
    show_default=True,
    help="Node-to-node transport.",
)
@_data_dir_option(DEV_CLUSTER_DIR)
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
@click.option("--reset", is_flag=True, help="Delete the cluster in DATA_DIR first (asks unless --yes).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before --reset deletes.")
@click.pass_context
def dev_cluster(
    ctx: click.Context,
    nodes: int,
    transport: str,
    data_dir: Path,
    rest_port: int,
    replication_port: int,
    secure: bool,
    reset: bool,
    yes: bool,
) -> None:
    """Run a local N-node cluster in the foreground (REST on 8001.., replication on 50051..).

    Prints each node's URL and PID and the admin credentials once every node answers; Ctrl-C stops all nodes
    cleanly. Kill a node to watch its destinations fail over, then bring it back: type `kill mom3`, `restart mom3`,
    `stop mom3` or `status` in the dev-cluster's terminal, or run the commands below from another one.

    The data directory remembers the cluster's shape (node ids, ports, transport): starting another shape on it
    is refused, because the old data would land on the wrong nodes. Use another --data-dir, or --reset.

    \b
    Examples:
      mom dev-cluster
      mom dev-cluster --nodes 5 --transport zmq --data-dir var/five
      mom dev-cluster --secure                     # https, mutual TLS / CURVE between nodes
      mom dev-cluster --reset --yes                # delete the old cluster's data and start afresh
      mom dev-cluster kill mom3                    # from another terminal, while it runs
      mom dev-cluster --data-dir var/five restart mom3
    """
    if ctx.invoked_subcommand is not None:
        return
    import trio

    from mom.devcluster import DevCluster, ensure_not_running, run_dev_cluster

    cluster = DevCluster(
        nodes=nodes,
        transport="zmq" if transport == "zmq" else "grpc",
        data_dir=data_dir,
        rest_base_port=rest_port,
        replication_base_port=replication_port,
        secure=secure,
    )
    try:
        if reset:
            ensure_not_running(data_dir)
            _reset(cluster, ask=not yes)
        with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C while the nodes stop
            trio.run(run_dev_cluster, cluster)
    except MomError as exc:
        _fail(exc.detail, code=2)


def _reset(cluster: DevCluster, *, ask: bool) -> None:
    doomed = cluster.contents()
    if not doomed:
        return
    try:
        recorded = cluster.recorded_shape()
    except MomError:
        recorded = None
    what = f" ({recorded.describe()})" if recorded is not None else ""
    names = ", ".join(p.name for p in doomed)
    if ask:
        click.confirm(
            f"Delete the cluster in {cluster.data_dir}{what} with all its destinations, messages and users?",
            abort=True,
        )
    cluster.reset()
    click.echo(f"[dev-cluster] deleted {names} in {cluster.data_dir}")


def _control(verb: str, help_text: str, *, takes_node: bool = True) -> None:
    """Register `mom dev-cluster VERB [NODE]`: sends the command to the dev-cluster running on --data-dir."""

    @_data_dir_option(None)
    @click.pass_context
    def command(ctx: click.Context, data_dir: Path | None, node: str | None = None) -> None:
        from mom.devcluster import send_command

        parent = ctx.parent.params.get("data_dir") if ctx.parent is not None else None
        directory = data_dir or parent or DEV_CLUSTER_DIR
        line = f"{verb} {node}" if node is not None else verb
        try:
            click.echo(send_command(directory, line))
        except MomError as exc:
            _fail(exc.detail)

    if takes_node:
        command = click.argument("node")(command)
    dev_cluster.command(verb, help=help_text)(command)


_control("restart", "Restart a node of the running dev-cluster (start it if it is down); waits until it is ready.")
_control("stop", "Stop a node of the running dev-cluster cleanly (SIGTERM).")
_control("kill", "Kill a node of the running dev-cluster (SIGKILL): no flush, no goodbye; watch the failover.")
_control(
    "status", "Show each node of the running dev-cluster: up with its PID and URL, or down and why.", takes_node=False
)
