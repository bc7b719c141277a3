"""Node-to-node transports behind one interface (`base.Transport`), chosen by name.

`open_transport` imports only the chosen implementation, so a node on gRPC never loads pyzmq and vice versa.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mom.transports.base import PeerStatus, Transport, TransportName, TransportSettings

if TYPE_CHECKING:
    from mom.transports.memory import MemoryHub

__all__ = ["PeerStatus", "Transport", "TransportName", "TransportSettings", "open_transport"]


def open_transport(name: TransportName, settings: TransportSettings, *, hub: MemoryHub | None = None) -> Transport:
    """Build the transport called `name`; `hub` is the in-process network the memory transport joins."""
    if name == "memory":
        from mom.transports.memory import MemoryHub, MemoryTransport

        return MemoryTransport(settings, hub if hub is not None else MemoryHub())
    if name == "grpc":
        from mom.transports.grpc import GrpcTransport

        return GrpcTransport(settings)
    if name == "zmq":
        from mom.transports.zmq import ZmqTransport

        return ZmqTransport(settings)
    raise ValueError(f"unknown transport {name!r}: choose grpc or zmq")
