"""Router: the messages of many groups leave as one frame per peer, and incoming frames reach their groups."""

from __future__ import annotations

from collections import Counter

import pytest
import trio
import trio.testing

from mom.config import Address
from mom.replication import router as router_module
from mom.replication._elections import ASK_EVERY_TICKS
from mom.replication.liveness import Liveness
from mom.replication.messages import (
    AppendEntries,
    AppendResponse,
    LeaderNews,
    LogEntry,
    Message,
    NodeHeartbeat,
    decode_messages,
    encode_messages,
)
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
        self.quiesced = False
        self._waiting_for_slot = False
        self.looked_at = 0
        """How many times the router read `waiting_for_slot`."""
        self.news: list[tuple[str, bool]] = []
        self.restarts: list[str] = []

    @property
    def waiting_for_slot(self) -> bool:
        self.looked_at += 1
        return self._waiting_for_slot

    @waiting_for_slot.setter
    def waiting_for_slot(self, value: bool) -> None:
        self._waiting_for_slot = value

    def peer_down(self, peer: str) -> None:
        self.news.append((peer, False))

    def peer_up(self, peer: str) -> None:
        self.news.append((peer, True))

    def peer_restarted(self, peer: str) -> None:
        self.restarts.append(peer)

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
        router.add_group(group)
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
    router.add_group(known)
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
        router.add_group(group)
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


def append(group: str, receiver: str, payload_bytes: int, number: int = 0) -> AppendEntries:
    return AppendEntries(group, 1, "n1", receiver, number, 1, [LogEntry(1, bytes([number % 256]) * payload_bytes)], 0)


def test_frames_to_a_peer_are_cut_at_the_frame_budget_in_order() -> None:
    transport = RecordingTransport()
    router = Router("n1", transport, max_frame_bytes=100_000)
    messages: list[Message] = [append(f"g{i % 7}", "n2", 30_000, i) for i in range(20)]
    messages.insert(5, append("big", "n2", 250_000, 99))  # larger than a frame: travels alone
    messages += [response(f"g{i}", "n1", "n3") for i in range(3)]
    router.send(messages)
    router.flush()
    to_n2 = [frame for peer, frame in transport.sent if peer == "n2"]
    assert all(len(frame) <= 100_000 for frame in to_n2 if len(decode_messages(frame)) > 1)
    assert [decode_messages(frame) for frame in to_n2 if len(frame) > 100_000] == [[messages[5]]]
    assert [m for frame in to_n2 for m in decode_messages(frame)] == messages[:-3], "order is kept across frames"
    assert len(to_n2) >= 7, "21 messages of 30 KB+ need at least 7 frames of 100 KB"
    assert [decode_messages(frame) for peer, frame in transport.sent if peer == "n3"] == [messages[-3:]]
    assert router.frames_sent == len(transport.sent)


def test_a_message_no_transport_could_carry_is_dropped_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(router_module, "WIRE_FRAME_LIMIT", 50_000)
    transport = RecordingTransport()
    router = Router("n1", transport, max_frame_bytes=10_000)
    router.send([append("g", "n2", 60_000), response("g", "n1", "n2")])
    router.flush()
    assert [decode_messages(frame) for _, frame in transport.sent] == [[response("g", "n1", "n2")]]
    assert router.oversized_messages == 1


async def test_after_a_stall_the_groups_get_one_tick_not_every_missed_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = RecordingTransport()
    lags: list[tuple[float, int]] = []
    router = Router("n1", transport, tick_interval_s=0.05, on_tick_lag=lambda lag, skipped: lags.append((lag, skipped)))
    group = FakeGroup("a")
    router.add_group(group)
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await trio.sleep(0.26)
        assert group.ticks == 5
        autojump_clock.jump(2.0)  # the loop could not run for 2 s: 40 tick deadlines passed
        await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()
        assert group.ticks == 6, "one tick after the stall, not 40 back to back"
        assert router.ticks_skipped == 39
        assert lags[-1][1] == 39 and 1.9 < lags[-1][0] < 2.05
        await trio.sleep(0.5)
        assert group.ticks == 16, "then every 50 ms again, on the grid"
        assert all(lag < 0.05 and skipped == 0 for lag, skipped in lags[-10:])
        nursery.cancel_scope.cancel()


async def test_quiesced_groups_are_not_ticked_until_a_message_or_a_send_wakes_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = RecordingTransport()
    router = Router("n2", transport, tick_interval_s=0.1)
    quiet, busy = FakeGroup("quiet"), FakeGroup("busy")
    for group in (quiet, busy):
        router.add_group(group)
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        await trio.sleep(0.25)
        quiet.quiesced = True
        await trio.sleep(1.0)
        assert quiet.ticks == 3 and busy.ticks == 12, "ticked once more, found quiet, then left alone"
        assert router.awake == 1
        transport.deliver("n1", encode_messages([response("quiet", "n1", "n2")]))  # stepped, stays quiet
        await trio.sleep(0.5)
        assert quiet.ticks == 3 and quiet.stepped
        quiet.quiesced = False  # a message woke it
        transport.deliver("n1", encode_messages([response("quiet", "n1", "n2")]))
        await trio.sleep(0.5)
        assert quiet.ticks == 8
        quiet.quiesced = True
        await trio.sleep(0.5)
        ticks = quiet.ticks
        router.send([response("quiet", "n2", "n1")])  # its proposal went out: it is awake again
        await trio.sleep(0.5)
        assert quiet.ticks == ticks + 1, "ticked again once, found quiet"
        nursery.cancel_scope.cancel()


async def test_a_group_refused_a_campaign_slot_is_ticked_only_every_few_ticks(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Thousands of groups waiting for a slot, each ticked every 50 ms to ask again, were 54 % of a survivor's CPU
    at 10,000 destinations (docs/cluster.md); they ask every `ASK_EVERY_TICKS` instead."""
    router = Router("n2", RecordingTransport(), tick_interval_s=0.1)
    waiting, other = FakeGroup("waiting"), FakeGroup("other")
    for group in (waiting, other):
        router.add_group(group)
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        waiting.waiting_for_slot = True
        await trio.sleep(0.1 * 3 * ASK_EVERY_TICKS + 0.05)
        assert other.ticks == 3 * ASK_EVERY_TICKS
        assert 3 <= waiting.ticks <= 4, "once per ASK_EVERY_TICKS ticks (and the tick that found it waiting)"
        looked_at = waiting.looked_at
        await trio.sleep(0.1 * ASK_EVERY_TICKS)
        assert waiting.looked_at - looked_at <= 2, "parked: not looked at in the ticks between its asks"
        ticks = waiting.ticks
        waiting.waiting_for_slot = False  # as a core that won an election on a vote's answer
        router.send([response("waiting", "n2", "n1")])
        await trio.sleep(0.1 * 5)
        assert waiting.ticks == ticks + 5, "every tick again once it no longer waits"
        nursery.cancel_scope.cancel()


async def test_node_liveness_heartbeats_each_peer_and_tells_every_group_of_deaths_and_returns(
    autojump_clock: trio.testing.MockClock,
) -> None:
    transport = RecordingTransport()
    transport.status = lambda peer: PeerStatus(connected=peer != "n3", last_seen=None)  # type: ignore[method-assign]
    router = Router("n1", transport, tick_interval_s=0.05, peers=["n1", "n2", "n3"], incarnation=7)
    groups = [FakeGroup("a"), FakeGroup("b")]
    for group in groups:
        group.quiesced = True
        router.add_group(group)
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        for _ in range(6):  # n2 speaks every 100 ms, n3 never
            transport.deliver("n2", encode_messages([NodeHeartbeat("", 3, "n2", "n1")]))
            await trio.sleep(0.1)
        assert all(g.news == [("n3", False)] for g in groups), "n3 silent for 10 ticks, link down: down for all"
        heartbeats = [m for _, frame in transport.sent for m in decode_messages(frame)]
        assert {(m.receiver, m.term) for m in heartbeats} == {("n2", 7), ("n3", 7)}
        assert 5 <= sum(m.receiver == "n2" for m in heartbeats) <= 7, "one per 2 ticks per peer, for all groups"
        transport.deliver("n3", encode_messages([response("a", "n3", "n1")]))
        await trio.testing.wait_all_tasks_blocked()
        assert all(g.news == [("n3", False), ("n3", True)] for g in groups)
        transport.deliver("n2", encode_messages([NodeHeartbeat("", 4, "n2", "n1")]))  # n2 restarted meanwhile
        await trio.testing.wait_all_tasks_blocked()
        assert groups[1].news[-2:] == [("n2", False), ("n2", True)]
        nursery.cancel_scope.cancel()


def test_a_peer_whose_link_stays_up_is_declared_dead_only_after_a_longer_silence() -> None:
    news: list[tuple[str, bool]] = []
    links = {"n2": True}
    liveness = Liveness(
        "n1", ["n1", "n2"], incarnation=1, on_change=lambda p, a: news.append((p, a)), link_up=lambda p: links[p]
    )
    for _ in range(39):
        liveness.tick()
    assert news == [], "a stalled but connected node is not dead after an election timeout"
    liveness.tick()
    assert news == [("n2", False)], "silent for 40 ticks: hung, or cut off with the connection still open"
    liveness.heard("n2")
    links["n2"] = False
    for _ in range(10):
        liveness.tick()
    assert news == [("n2", False), ("n2", True), ("n2", False)], "link down and 10 ticks silent: dead"


async def test_frames_waiting_in_a_starved_node_keep_their_senders_alive(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A frame counts as a sign of life once the transport has it, before the router handles it: a node too busy
    to read its queue for seconds must not declare the peers that keep sending dead (and start elections)."""
    transport = RecordingTransport()
    arrived = {"n2": 0.0}
    transport.status = lambda peer: PeerStatus(connected=True, last_seen=arrived.get(peer))  # type: ignore[method-assign]
    router = Router("n1", transport, tick_interval_s=0.05, peers=["n1", "n2"], incarnation=7)
    group = FakeGroup("a")
    group.quiesced = True
    router.add_group(group)
    async with trio.open_nursery() as nursery:
        await nursery.start(router.run)
        for _ in range(60):  # 3 s: n2's frames arrive, and wait unread in the transport
            arrived["n2"] = trio.current_time()
            await trio.sleep(0.05)
        assert group.news == [], "n2 kept sending: alive, although none of its frames was handled"
        await trio.sleep(3)  # now it is silent
        assert group.news == [("n2", False)]
        nursery.cancel_scope.cancel()


def test_a_node_removed_while_dead_and_added_back_is_news_of_life_for_the_groups() -> None:
    """The groups keep the peers declared dead (`RaftCore._down`) until told they are up, and a leader quiesces
    without them. A node removed from the cluster while dead and added back under the same id (a replaced machine)
    must be told up: otherwise, until this node restarts, every group that heard it die goes quiet without waiting
    for its replica there to catch up (a move onto it), and then retransmits nothing to it."""
    news: list[tuple[str, bool]] = []
    liveness = Liveness("n1", ["n1", "n2"], incarnation=1, on_change=lambda p, a: news.append((p, a)))
    for _ in range(40):
        liveness.tick()
    assert news == [("n2", False)]
    liveness.remove_peer("n2")
    liveness.add_peer("n2")
    assert news == [("n2", False), ("n2", True)]
    assert liveness.alive("n2")
