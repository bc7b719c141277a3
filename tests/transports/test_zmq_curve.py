"""ZeroMQ with CURVE: encrypted links, and the key is the identity: only the peers' public keys are admitted."""

from __future__ import annotations

import logging

import pytest
import trio
import zmq

from mom.security import CertsLayout, init_certs
from mom.transports.grpc import GrpcTransport
from mom.transports.zmq import CurveKeys, ZmqTransport
from tests.transports.test_grpc_tls import NODES, addresses, assert_refused, running, settings, wait_connected


@pytest.fixture(scope="module")
def cluster_certs(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory, NODES, ["127.0.0.1"], progress=lambda _: None)
    return CertsLayout(directory)


def keys(layout: CertsLayout, node_id: str, *, as_node: str | None = None) -> CurveKeys:
    """`node_id`'s key pair, with the public keys of the peers of `as_node` (default: the same node)."""
    me = as_node or node_id
    return CurveKeys(
        secret=layout.curve_secret(node_id).read_bytes().strip(),
        public=layout.curve_public(node_id).read_bytes().strip(),
        peers={peer: layout.curve_public(peer).read_bytes().strip() for peer in NODES if peer != me},
    )


async def test_nodes_with_known_keys_exchange_frames(cluster_certs: CertsLayout) -> None:
    where = addresses()
    one = ZmqTransport(settings("mom1", where), keys(cluster_certs, "mom1"))
    two = ZmqTransport(settings("mom2", where), keys(cluster_certs, "mom2"))
    async with running(one, two):
        await wait_connected(one, "mom2")
        await wait_connected(two, "mom1")
        assert one.send("mom2", b"over curve")
        assert two.send("mom1", b"and back")
        with trio.fail_after(5):
            assert await two.incoming.receive() == ("mom1", b"over curve")
            assert await one.incoming.receive() == ("mom2", b"and back")


async def test_an_unknown_key_is_refused_and_logged_once(
    cluster_certs: CertsLayout, caplog: pytest.LogCaptureFixture
) -> None:
    where = addresses()
    public, secret = zmq.curve_keypair()
    one = ZmqTransport(settings("mom1", where), keys(cluster_certs, "mom1"))
    stranger_keys = CurveKeys(secret=secret, public=public, peers=keys(cluster_certs, "mom2").peers)
    stranger = ZmqTransport(settings("mom2", where), stranger_keys)
    async with running(one, stranger):
        await assert_refused(stranger, one, "mom2", "mom1")
    refusals = [r.getMessage() for r in caplog.records if "is not the .curve.pub of any peer" in r.getMessage()]
    assert len(refusals) == 1 and public.decode() in refusals[0]


async def test_a_known_key_cannot_send_as_another_node(
    cluster_certs: CertsLayout, caplog: pytest.LogCaptureFixture
) -> None:
    where = addresses()
    one = ZmqTransport(settings("mom1", where), keys(cluster_certs, "mom1"))
    impostor = ZmqTransport(settings("mom2", where), keys(cluster_certs, "mom3", as_node="mom2"))
    async with running(one, impostor):
        await wait_connected(impostor, "mom1")  # the key is a peer's, so the handshake succeeds
        with trio.move_on_after(1.0):
            while True:
                impostor.send("mom1", b"injected")
                with trio.move_on_after(0.05):
                    raise AssertionError(f"an impostor delivered {await one.incoming.receive()!r}")
    assert one.status("mom2").last_seen is None and one.status("mom3").last_seen is None
    warnings = [r.getMessage() for r in caplog.records if "sent under the identity" in r.getMessage()]
    assert warnings == ["zmq: dropping messages of node 'mom3' sent under the identity of 'mom2'"]


async def test_a_clear_text_node_is_refused(cluster_certs: CertsLayout, caplog: pytest.LogCaptureFixture) -> None:
    where = addresses()
    one = ZmqTransport(settings("mom1", where), keys(cluster_certs, "mom1"))
    plain = ZmqTransport(settings("mom2", where))
    async with running(one, plain):
        await assert_refused(plain, one, "mom2", "mom1")
    assert any("another ZeroMQ security mechanism" in r.getMessage() for r in caplog.records)


async def test_a_bare_dealer_without_curve_delivers_nothing(cluster_certs: CertsLayout) -> None:
    where = addresses()
    one = ZmqTransport(settings("mom1", where), keys(cluster_certs, "mom1"))
    async with running(one):
        context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        try:
            dealer = context.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.setsockopt(zmq.IDENTITY, b"mom2")
            dealer.connect(f"tcp://{where['mom1']}")
            with trio.move_on_after(1.0):
                while True:
                    if dealer.poll(0, zmq.POLLOUT):
                        dealer.send(b"injected", zmq.NOBLOCK)
                    with trio.move_on_after(0.05):
                        raise AssertionError(f"a bare DEALER delivered {await one.incoming.receive()!r}")
        finally:
            context.destroy(linger=0)
    assert one.status("mom2").last_seen is None


async def test_a_zmq_node_names_a_peer_that_speaks_grpc(caplog: pytest.LogCaptureFixture) -> None:
    where = addresses()
    zmq_node = ZmqTransport(settings("mom1", where))
    grpc_node = GrpcTransport(settings("mom2", where))
    caplog.set_level(logging.WARNING, logger="mom.transports")
    async with running(zmq_node, grpc_node):
        await assert_refused(zmq_node, grpc_node, "mom1", "mom2")
    assert any(
        f"peer mom2 at {where['mom2']} accepted TCP but failed the ZeroMQ (ZMTP) handshake: does it run another "
        "transport (grpc)?" in r.getMessage()
        for r in caplog.records
    )
