"""What only the gRPC transport has: the Hello a server checks, and how failures turn into mom errors."""

from __future__ import annotations

import logging
import socket
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
import trio

from mom.config import Address
from mom.errors import Unavailable
from mom.transports._generated.replication_pb2 import Frame, Hello, PushSummary
from mom.transports._grpc_bridge import PUSH_PATH
from mom.transports.base import TransportSettings
from mom.transports.grpc import PROTOCOL_VERSION, GrpcTransport, check_hello
from tests.transports.conformance import free_port

SETTINGS = TransportSettings(
    node_id="n1",
    listen=Address("127.0.0.1", 0),
    peers={"n2": Address("127.0.0.1", 1)},
    cluster_id="prod",
)


def _hello(**changes: Any) -> Hello:
    fields: dict[str, Any] = {
        "cluster_id": "prod",
        "node_id": "n2",
        "transport": "grpc",
        "protocol_version": PROTOCOL_VERSION,
    }
    return Hello(**(fields | changes))


def test_a_hello_from_a_peer_of_the_same_cluster_is_accepted() -> None:
    assert check_hello(_hello(), SETTINGS) is None


@pytest.mark.parametrize(
    ("changes", "code", "words"),
    [
        ({"cluster_id": "staging"}, grpc.StatusCode.FAILED_PRECONDITION, ["'staging'", "'prod'"]),
        ({"node_id": "n9"}, grpc.StatusCode.PERMISSION_DENIED, ["'n9'", "not a peer"]),
        ({"protocol_version": 99}, grpc.StatusCode.FAILED_PRECONDITION, ["protocol 99", f"{PROTOCOL_VERSION}"]),
        ({"protocol_version": 2}, grpc.StatusCode.FAILED_PRECONDITION, ["protocol 2", "protocol 7"]),
        ({"protocol_version": 3}, grpc.StatusCode.FAILED_PRECONDITION, ["protocol 3", "protocol 7"]),
        ({"protocol_version": 4}, grpc.StatusCode.FAILED_PRECONDITION, ["protocol 4", "protocol 7"]),
        ({"protocol_version": 5}, grpc.StatusCode.FAILED_PRECONDITION, ["protocol 5", "protocol 7"]),
        ({"protocol_version": 6}, grpc.StatusCode.FAILED_PRECONDITION, ["protocol 6", "protocol 7"]),
        ({"transport": "zmq"}, grpc.StatusCode.FAILED_PRECONDITION, ["'zmq'"]),
    ],
)
def test_a_wrong_hello_is_refused_with_a_reason(
    changes: dict[str, object], code: grpc.StatusCode, words: list[str]
) -> None:
    refusal = check_hello(_hello(**changes), SETTINGS)
    assert refusal is not None
    assert refusal.code == code
    for word in words:
        assert word in refusal.detail


def _push(target: str, frames: list[Frame]) -> grpc.RpcError | PushSummary:
    """One raw Push stream, as a foreign client would open it; the error it ends with, or the summary."""
    with grpc.insecure_channel(target) as channel:
        push = channel.stream_unary(
            PUSH_PATH, request_serializer=Frame.SerializeToString, response_deserializer=PushSummary.FromString
        )
        try:
            summary: PushSummary = push(iter(frames), timeout=5)
        except grpc.RpcError as exc:
            return exc
        return summary


@pytest.mark.parametrize(
    ("frames", "code", "detail"),
    [
        ([Frame(hello=_hello(cluster_id="staging"))], grpc.StatusCode.FAILED_PRECONDITION, "'staging'"),
        ([Frame(hello=_hello(node_id="n9"))], grpc.StatusCode.PERMISSION_DENIED, "'n9'"),
        ([Frame(batch=b"no hello")], grpc.StatusCode.INVALID_ARGUMENT, "must start with a Hello"),
        ([Frame(hello=_hello()), Frame(hello=_hello())], grpc.StatusCode.INVALID_ARGUMENT, "first Frame"),
    ],
)
async def test_the_server_aborts_a_stream_it_refuses(
    frames: list[Frame], code: grpc.StatusCode, detail: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = TransportSettings(
        node_id="n1", listen=Address("127.0.0.1", free_port()), peers=SETTINGS.peers, cluster_id="prod"
    )
    transport = GrpcTransport(settings)
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(transport.run)
        with caplog.at_level(logging.WARNING, logger="mom.transports.grpc"):
            outcome = await trio.to_thread.run_sync(_push, str(bound), frames)
        nursery.cancel_scope.cancel()
    assert isinstance(outcome, grpc.RpcError)
    assert outcome.code() == code
    assert detail in outcome.details()
    if code != grpc.StatusCode.INVALID_ARGUMENT:
        assert any(detail in record.getMessage() for record in caplog.records), "a refusal is logged"


async def test_a_hello_accepted_then_batches_are_delivered_in_order() -> None:
    settings = TransportSettings(
        node_id="n1", listen=Address("127.0.0.1", free_port()), peers=SETTINGS.peers, cluster_id="prod"
    )
    transport = GrpcTransport(settings)
    batches = [b"one", b"", b"three"]
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(transport.run)
        frames = [Frame(hello=_hello()), *(Frame(batch=batch) for batch in batches)]
        summary = await trio.to_thread.run_sync(_push, str(bound), frames)
        received = [await transport.incoming.receive() for _ in batches]
        nursery.cancel_scope.cancel()
    assert isinstance(summary, PushSummary) and summary.frames == len(batches)
    assert received == [("n2", batch) for batch in batches]


async def test_a_port_in_use_is_unavailable_not_a_grpc_error() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        transport = GrpcTransport(
            TransportSettings(node_id="n1", listen=Address("127.0.0.1", port), peers=SETTINGS.peers)
        )
        with pytest.raises(Unavailable, match=f"127.0.0.1:{port}"):
            await transport.run()


async def test_a_peer_that_answers_as_another_node_is_not_connected(caplog: pytest.LogCaptureFixture) -> None:
    """n1 is told that n2 lives where n3 listens: the accepted-by check catches the wrong address."""
    n1_address, n3_address = Address("127.0.0.1", free_port()), Address("127.0.0.1", free_port())
    n1 = GrpcTransport(TransportSettings(node_id="n1", listen=n1_address, peers={"n2": n3_address}))
    n3 = GrpcTransport(TransportSettings(node_id="n3", listen=n3_address, peers={"n1": n1_address}))
    with caplog.at_level(logging.WARNING, logger="mom.transports.grpc"):
        async with trio.open_nursery() as nursery:
            await nursery.start(n3.run)
            await nursery.start(n1.run)
            with trio.move_on_after(1):
                while "answers as node 'n3'" not in caplog.text:
                    assert not n1.status("n2").connected
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert "answers as node 'n3'" in caplog.text
