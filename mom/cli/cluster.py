"""The cluster view and membership changes."""

from __future__ import annotations

import click

from mom.cli._app import (
    _client,
    _show,
    main,
)


@main.group()
def cluster() -> None:
    """Look at the cluster; add, drain and remove nodes (admin)."""


@cluster.command("status")
def cluster_status() -> None:
    """Show the nodes (up or not, active or draining), the transport, each destination's leader, replicas and
    lag, and the replica moves in progress."""
    _show(_client().cluster())


@cluster.command("nodes")
def cluster_nodes() -> None:
    """List the members (admin): addresses, active or draining, how many replicas each holds; and moves."""
    _show(_client().cluster_nodes())


@cluster.command("add-node")
@click.argument("node_id")
@click.option("--rest", required=True, help="The new node's REST address, e.g. http://127.0.0.1:8084.")
@click.option("--replication", required=True, help="The new node's replication address, e.g. 127.0.0.1:9084.")
def cluster_add_node(node_id: str, rest: str, replication: str) -> None:
    """Add a node to the cluster (admin); replicas are then moved onto it, a few at a time.

    Start the new node with a config that names the cluster's nodes and itself and sets `join = true` in
    `[cluster]`. Example: mom cluster add-node mom4 --rest http://127.0.0.1:8084 --replication 127.0.0.1:9084
    """
    _show(_client().add_node(node_id, rest, replication))


@cluster.command("drain")
@click.argument("node_id")
def cluster_drain(node_id: str) -> None:
    """Move every replica off a node (admin), before removing it. Example: mom cluster drain mom2"""
    _show(_client().drain_node(node_id))


@cluster.command("remove-node")
@click.argument("node_id")
def cluster_remove_node(node_id: str) -> None:
    """Remove a drained node that holds no replicas any more (admin); then stop its process.

    Example: mom cluster remove-node mom2
    """
    _client().remove_node(node_id)
    click.echo(f"removed {node_id}")
