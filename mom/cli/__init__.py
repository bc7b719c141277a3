"""The `mom` command: run a node (`mom serve`) or talk to one over the REST API with `mom.client.Client`."""

from mom.cli import accounts, bench, certs, chaos, cluster, destinations, messaging, serve
from mom.cli._app import CliState, main

__all__ = ["CliState", "main"]
_COMMANDS = (accounts, bench, certs, chaos, cluster, destinations, messaging, serve)
"""Importing these modules registers their commands on `main`."""
