"""gRPC between nodes with mutual TLS: only certificates of the cluster CA, each naming the node that uses it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio

from mom.config import Address
from mom.security import CertsLayout, init_certs
from mom.transports.base import Transport, TransportSettings
from mom.transports.grpc import GrpcCredentials, GrpcTransport
from mom.transports.zmq import ZmqTransport
from tests.transports.conformance import free_port

NODES = ("mom1", "mom2", "mom3")
REFUSED_FOR_S = 1.5
"""How long a refused link is watched: several reconnect attempts (backoff is capped at 1 s)."""


@pytest.fixture(scope="module")
def cluster_certs(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory, NODES, ["127.0.0.1"], progress=lambda _: None)
    return CertsLayout(directory)


@pytest.fixture(scope="module")
def foreign_certs(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    directory = tmp_path_factory.mktemp("foreign")
    init_certs(directory, NODES, ["127.0.0.1"], progress=lambda _: None)
    return CertsLayout(directory)


def credentials(layout: CertsLayout, node_id: str) -> GrpcCredentials:
    return GrpcCredentials.mutual_tls(
        layout.ca.read_bytes(), layout.cert(node_id).read_bytes(), layout.key(node_id).read_bytes()
    )


def addresses() -> dict[str, Address]:
    return {node: Address("127.0.0.1", free_port()) for node in NODES}


def settings(node: str, where: dict[str, Address]) -> TransportSettings:
    peers = {peer: address for peer, address in where.items() if peer != node}
    return TransportSettings(node_id=node, listen=where[node], peers=peers)


@asynccontextmanager
async def running(*transports: Transport) -> AsyncIterator[None]:
    async with trio.open_nursery() as nursery:
        for transport in transports:
            await nursery.start(transport.run)
        yield
        nursery.cancel_scope.cancel()


async def wait_connected(transport: Transport, peer: str) -> None:
    with trio.fail_after(5):
        while not transport.status(peer).connected:  # noqa: ASYNC110 (status has no event)
            await trio.sleep(0.01)


async def assert_refused(sender: Transport, receiver: Transport, sender_id: str, receiver_id: str) -> None:
    """For a while, `sender` keeps offering frames: none arrives and the link never counts as connected."""
    with trio.move_on_after(REFUSED_FOR_S):
        while True:
            sender.send(receiver_id, b"injected")
            with trio.move_on_after(0.05):
                item = await receiver.incoming.receive()
                raise AssertionError(f"a refused node delivered {item!r}")
            assert not sender.status(receiver_id).connected
    assert receiver.status(sender_id).last_seen is None


async def test_nodes_with_certificates_of_the_cluster_ca_exchange_frames(cluster_certs: CertsLayout) -> None:
    where = addresses()
    one = GrpcTransport(settings("mom1", where), credentials(cluster_certs, "mom1"))
    two = GrpcTransport(settings("mom2", where), credentials(cluster_certs, "mom2"))
    async with running(one, two):
        await wait_connected(one, "mom2")
        await wait_connected(two, "mom1")
        assert one.send("mom2", b"over tls")
        assert two.send("mom1", b"and back")
        with trio.fail_after(5):
            assert await two.incoming.receive() == ("mom1", b"over tls")
            assert await one.incoming.receive() == ("mom2", b"and back")


@pytest.mark.parametrize("intruder_trusts", ["its own CA", "the cluster CA"])
async def test_a_certificate_from_another_ca_cannot_connect(
    cluster_certs: CertsLayout, foreign_certs: CertsLayout, intruder_trusts: str
) -> None:
    """Whether the intruder refuses our server (its own CA) or we refuse its client certificate (it trusts ours)."""
    where = addresses()
    one = GrpcTransport(settings("mom1", where), credentials(cluster_certs, "mom1"))
    trusted = foreign_certs if intruder_trusts == "its own CA" else cluster_certs
    forged = GrpcCredentials.mutual_tls(
        trusted.ca.read_bytes(), foreign_certs.cert("mom2").read_bytes(), foreign_certs.key("mom2").read_bytes()
    )
    intruder = GrpcTransport(settings("mom2", where), forged)
    async with running(one, intruder):
        await assert_refused(intruder, one, "mom2", "mom1")
        assert not one.status("mom2").connected, "mom1 does not trust mom2's server certificate either"


async def test_a_valid_certificate_cannot_claim_another_node_id(
    cluster_certs: CertsLayout, caplog: pytest.LogCaptureFixture
) -> None:
    where = addresses()
    one = GrpcTransport(settings("mom1", where), credentials(cluster_certs, "mom1"))
    impostor = GrpcTransport(settings("mom2", where), credentials(cluster_certs, "mom3"))
    async with running(one, impostor):
        await assert_refused(impostor, one, "mom2", "mom1")
    refusals = [r.getMessage() for r in caplog.records if "refused a replication stream" in r.getMessage()]
    assert len(refusals) == 1, "logged once, however often the impostor retries"
    assert "certificate of 'mom3' claims to be 'mom2'" in refusals[0]


async def test_a_clear_text_node_cannot_connect_to_a_tls_node(cluster_certs: CertsLayout) -> None:
    where = addresses()
    one = GrpcTransport(settings("mom1", where), credentials(cluster_certs, "mom1"))
    plain = GrpcTransport(settings("mom2", where))
    async with running(one, plain):
        await assert_refused(plain, one, "mom2", "mom1")


async def test_a_grpc_node_names_a_peer_that_speaks_zmq(caplog: pytest.LogCaptureFixture) -> None:
    where = addresses()
    grpc_node = GrpcTransport(settings("mom1", where))
    zmq_node = ZmqTransport(settings("mom2", where))
    caplog.set_level(logging.WARNING, logger="mom.transports")
    async with running(grpc_node, zmq_node):
        await assert_refused(grpc_node, zmq_node, "mom1", "mom2")
    messages = [r.getMessage() for r in caplog.records if r.name == "mom.transports.grpc"]
    assert messages == [
        f"grpc: peer mom2 at {where['mom2']} does not speak grpc (it may run zmq): every node of a cluster "
        "must use the same transport, and this node uses grpc"
    ]
