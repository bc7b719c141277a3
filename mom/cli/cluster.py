"""The cluster view."""

from __future__ import annotations

from mom.cli._app import (
    _client,
    _show,
    main,
)


@main.group()
def cluster() -> None:
    """Look at the cluster."""


@cluster.command("status")
def cluster_status() -> None:
    """Show the nodes, the transport, and each destination's leader, replicas and lag."""
    _show(_client().cluster())
