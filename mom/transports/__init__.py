"""Node-to-node transports behind one interface (`base.Transport`), chosen by name.

`open_transport` imports only the chosen implementation, so a node on gRPC never loads pyzmq and vice versa.
Each wire module exports `build` (a `base.TransportFactory`): it derives its own credentials from the node's
security material, so nothing outside it knows what a transport needs to be secure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mom.transports.base import PeerStatus, Transport, TransportFactory, TransportName, TransportSettings

if TYPE_CHECKING:
    from mom.security import NodeSecurity
    from mom.transports.memory import MemoryHub

__all__ = ["PeerStatus", "Transport", "TransportFactory", "TransportName", "TransportSettings", "open_transport"]


def open_transport(
    name: TransportName,
    settings: TransportSettings,
    *,
    security: NodeSecurity | None = None,
    hub: MemoryHub | None = None,
) -> Transport:
    """Build the transport called `name`, secured with `security` (None: clear text); `hub` is the in-process
    network the memory transport joins (it has no wire to secure)."""
    if name == "memory":
        from mom.transports.memory import MemoryHub, MemoryTransport

        return MemoryTransport(settings, hub if hub is not None else MemoryHub())
    return _factory(name)(settings, security)


def _factory(name: str) -> TransportFactory:
    if name == "grpc":
        from mom.transports import grpc

        return grpc.build
    if name == "zmq":
        from mom.transports import zmq

        return zmq.build
    raise ValueError(f"unknown transport {name!r}: choose grpc or zmq")
