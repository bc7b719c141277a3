"""Finding 7: a client that trickles a request body cannot hold a connection: it is answered 408 and closed."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.integration.harness import NodeProcess
from tests.security.helpers import node_with

SETTINGS = "[limits]\nbody_timeout_s = 2\n"


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = node_with(tmp_path_factory.mktemp("slow"), SETTINGS)
    yield process
    process.stop()


def _closed_within(sock: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing, if it closed within `seconds` while we trickled a byte a second."""
    sock.settimeout(1.0)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            try:
                sock.sendall(b"x")
            except OSError:
                return received
            continue
        except OSError:
            return received
        if not chunk:
            return received
        received += chunk
    return None


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/queues/slow"),
        ("PUT", "/v1/queues/slow"),
        ("GET", "/v1/queues/slow"),
        ("POST", "/v1/queues/slow/messages"),
    ],
)
def test_a_trickled_body_is_cut_off(impatient: NodeProcess, method: str, path: str) -> None:
    """Answered 408 and closed; the answer says `Connection: close`, so that a keep-alive client does not send its
    next request into the connection the server drops (the rest of the body is unread). The publish goes the
    lean path (mom.api.lean), the others Quart's."""
    sockets = []
    for _ in range(5):
        sock = socket.create_connection(("127.0.0.1", impatient.port), timeout=5)
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n{".encode()
        )
        sockets.append(sock)
    try:
        for sock in sockets:
            answer = _closed_within(sock, 15)
            assert answer is not None, "the server kept a trickling connection open"
            if method != "GET":
                assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
                head = answer.split(b"\r\n\r\n", 1)[0].lower()
                assert b"\r\nconnection: close" in head, head
    finally:
        for sock in sockets:
            sock.close()


def test_connection_close_closes_the_socket(impatient: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", impatient.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200")
