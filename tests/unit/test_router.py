"""Router: the messages of many groups leave as one frame per peer, and incoming frames reach their groups."""

from __future__ import annotations

from collections import Counter

import trio
import trio.testing

from mom.config import Address
from mom.replication.messages import AppendResponse, LeaderNews, Message, decode_messages, encode_messages
from mom.replication.router import Router
from mom.transports.base import PeerStatus


class RecordingTransport:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self._in_send, self._in_receive = trio.open_memory_channel[tuple[str, bytes]](100)

    async def run(self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(Address("127.0.0.1", 0))

    def send(self, peer: str, frame: bytes) -> bool:
        self.sent.append((peer, frame))
        return peer != "unreachable"

    @property
    def incoming(self) -> trio.MemoryReceiveChannel[tuple[str, bytes]]:
        return self._in_receive

    def deliver(self, sender: str, frame: bytes) -> None:
        self._in_send.send_nowait((sender, frame))

    def status(self, peer: str) -> PeerStatus:
        return PeerStatus(connected=True, last_seen=None)


class FakeGroup:
    """Stands in for a RaftGroup: records what the router hands it, and answers every tick with messages."""

    def __init__(self, group_id: str, router: Router | None = None, peers: tuple[str, ...] = ()) -> None:
        self.group_id = group_id
        self.stepped: list[Message] = []
        self.ticks = 0
        self._router = router
        self._peers = peers

    def step(self, message: Message) -> None:
        self.stepped.append(message)

    def tick(self) -> None:
        self.ticks += 1
        if self._router is not None:
            self._router.send([response(self.group_id, "n1", peer) for peer in self._peers])


def response(group: str, sender: str, receiver: str) -> AppendResponse:
    return AppendResponse(group, 1, sender, receiver, True, 5, 0)


async def test_messages_of_many_groups_leave_as_one_frame_per_peer(autojump_clock: trio.testing.MockClock) -> None:
    transport = RecordingTransport()
    router = Router("n1", transport, tick_interval_s=0.05)
    groups = [FakeGroup(f"g{i}", router, ("n2", "n3")) for i in range(20)]
    for group in groups:
        router.add_group(group)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await trio.sleep(0.06)  # one tick: every group answers it
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert all(g.ticks == 1 for g in groups)
    assert Counter(peer for peer, _ in transport.sent) == {"n2": 1, "n3": 1}
    for peer, frame in transport.sent:
        messages = decode_messages(frame)
        assert sorted(m.group for m in messages) == sorted(g.group_id for g in groups)
        assert {m.receiver for m in messages} == {peer}


async def test_groups_sending_from_separate_tasks_share_the_frame() -> None:
    transport = RecordingTransport()
    router = Router("n1", transport)

    async def group_driver(group: str) -> None:
        await trio.lowlevel.checkpoint()
        router.send([response(group, "n1", "n2")])

    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        for i in range(10):
            nursery.start_soon(group_driver, f"g{i}")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert len(transport.sent) == 1
    assert len(decode_messages(transport.sent[0][1])) == 10


async def test_incoming_frames_reach_their_groups_and_unknown_groups_are_dropped() -> None:
    transport = RecordingTransport()
    router = Router("n2", transport)
    known = FakeGroup("queue-a")
    router.add_group(known)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        frame = encode_messages([response("queue-a", "n1", "n2"), response("gone", "n1", "n2")])
        transport.deliver("n1", frame)
        transport.deliver("n1", b"\xc1 not msgpack")
        await trio.testing.wait_all_tasks_blocked()
        router.remove_group("queue-a")
        transport.deliver("n1", encode_messages([response("queue-a", "n1", "n2")]))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert known.stepped == [response("queue-a", "n1", "n2")]
    assert router.unknown_group_messages == 2
    assert router.malformed_frames == 1


async def test_frames_the_transport_refuses_are_counted() -> None:
    transport = RecordingTransport()
    router = Router("n1", transport)
    router.send([response("g", "n1", "unreachable"), response("g", "n1", "n2")])
    router.flush()
    assert router.frames_dropped == 1 and router.frames_sent == 1


async def test_every_group_is_ticked_every_interval(autojump_clock: trio.testing.MockClock) -> None:
    transport = RecordingTransport()
    router = Router("n1", transport, tick_interval_s=0.1)
    groups = [FakeGroup("a"), FakeGroup("b")]
    for group in groups:
        router.add_group(group)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await trio.sleep(1.05)
        nursery.cancel_scope.cancel()
    assert [g.ticks for g in groups] == [10, 10]


async def test_leader_news_reaches_the_news_listeners_whatever_groups_run_here() -> None:
    transport = RecordingTransport()
    router = Router("n4", transport)
    heard: list[LeaderNews] = []
    router.add_news_listener(heard.append)
    news = LeaderNews("q.orders@1", 3, "n1", "n4")
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        transport.deliver("n1", encode_messages([news, response("q.orders@1", "n1", "n4")]))
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert heard == [news]
    assert router.unknown_group_messages == 1, "only the Raft message found no group"
