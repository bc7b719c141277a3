"""The trio adapter for pyzmq sockets: it sleeps while idle and never misses messages behind an edge."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import trio
import zmq

from mom.transports._zmq_trio import TrioSocket


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    """A connected (sender, receiver) PUSH/PULL pair over TCP on 127.0.0.1, closed after the test."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    receiver = context.socket(zmq.PULL)
    port = receiver.bind_to_random_port("tcp://127.0.0.1")
    sender = context.socket(zmq.PUSH)
    sender.connect(f"tcp://127.0.0.1:{port}")
    yield sender, receiver
    context.destroy(linger=0)


async def settle(receiver: zmq.Socket[bytes], count: int) -> None:
    """Wait until `count` messages sit in `receiver`'s queue, without taking them (poll peeks at EVENTS only)."""
    with trio.fail_after(5):
        while True:
            if receiver.poll(0):
                break
            await trio.sleep(0.01)
    await trio.sleep(0.05 + count / 100_000)


async def test_idle_wait_sleeps_instead_of_spinning(pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    _, receiver = pair
    socket = TrioSocket(receiver)
    cpu_before = time.process_time()
    with trio.move_on_after(1.0) as scope:
        await socket.recv_multipart()
    assert scope.cancelled_caught
    assert socket.wakeups <= 2
    assert time.process_time() - cpu_before < 0.2


async def test_a_burst_already_queued_is_received_whole(pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]) -> None:
    """The FD signalled once for the whole burst: waiting on it between messages would hang here."""
    sender, receiver = pair
    for number in range(2000):
        sender.send(b"%d" % number)
    await settle(receiver, 2000)
    socket = TrioSocket(receiver)
    with trio.fail_after(5):
        received = [await socket.recv_multipart() for _ in range(2000)]
    assert received == [[b"%d" % number] for number in range(2000)]


async def test_messages_sent_while_waiting_wake_the_receiver(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    sender, receiver = pair
    socket = TrioSocket(receiver)
    received: list[list[bytes]] = []

    async def receive_all() -> None:
        while len(received) < 300:
            received.extend(await socket.recv_batch(7))

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_all)
            for round_ in range(3):
                await trio.sleep(0.05)
                for number in range(100):
                    sender.send_multipart([b"r%d" % round_, b"%d" % number])
    assert received == [[b"r%d" % r, b"%d" % n] for r in range(3) for n in range(100)]


async def test_recv_batch_takes_what_is_queued_up_to_the_limit(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    sender, receiver = pair
    for number in range(10):
        sender.send(b"%d" % number)
    await settle(receiver, 10)
    socket = TrioSocket(receiver)
    first = await socket.recv_batch(4)
    rest = await socket.recv_batch(100)
    assert first == [[b"0"], [b"1"], [b"2"], [b"3"]]
    assert rest == [[b"%d" % number] for number in range(4, 10)]


async def test_receive_is_a_checkpoint_even_when_a_message_is_ready(
    pair: tuple[zmq.Socket[bytes], zmq.Socket[bytes]],
) -> None:
    sender, receiver = pair
    sender.send(b"ready")
    await settle(receiver, 1)
    socket = TrioSocket(receiver)
    with trio.CancelScope() as scope:
        scope.cancel()
        await socket.recv_multipart()
    assert scope.cancelled_caught
    assert await socket.recv_multipart() == [b"ready"]
