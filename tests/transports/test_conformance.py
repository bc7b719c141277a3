"""Every transport passes the same conformance suite: memory (the simulation's), gRPC and ZeroMQ."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from mom.transports import TransportName, open_transport
from mom.transports.base import Transport, TransportSettings
from mom.transports.memory import MemoryHub, MemoryTransport
from tests.transports.conformance import CHECKS, Network


def _network(name: TransportName) -> Network:
    if name == "memory":
        hub = MemoryHub()

        def make(settings: TransportSettings) -> Transport:
            return MemoryTransport(settings, hub)

        return Network(make)
    return Network(lambda settings: open_transport(name, settings))


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", ["memory", "grpc", "zmq"])
async def test_conformance(name: TransportName, check: Callable[[Network], Awaitable[None]]) -> None:
    await check(_network(name))
