"""The hand-back gate: how many of a node's leaders hand leadership back to their preferred node at once."""

from __future__ import annotations

from mom.replication._hand_backs import HandBackGate
from mom.replication.messages import AppendEntries, AppendResponse, TimeoutNow
from mom.replication.raft import RaftCore
from tests.unit.test_elections import elected_leader
from tests.unit.test_raft_core import flush


def test_the_gate_admits_up_to_its_limit_and_wakes_the_refused_in_order_as_slots_free() -> None:
    gate = HandBackGate(limit=2)
    assert gate.admit("g1") and gate.admit("g2")
    assert gate.admit("g1"), "a holder asking again keeps its slot"
    assert not gate.admit("g3") and not gate.admit("g4")
    assert not gate.admit("g3"), "asking again keeps its place"
    assert gate.due() == [], "no slot is free"
    gate.done("g1")
    assert gate.due() == ["g3"], "one free slot: the first refused"
    assert gate.admit("g3")
    gate.forget("g2")
    gate.forget("g3")
    assert gate.due() == ["g4"]
    assert gate.waiting == 0


def test_a_slot_held_too_long_is_taken_back() -> None:
    gate = HandBackGate(limit=1, expire_ticks=5)
    assert gate.admit("g1")
    for _ in range(6):
        gate.tick()
    assert gate.admit("g2"), "g1's slot expired"


def leader_of(group: str, gate: HandBackGate) -> RaftCore:
    """`a` leading term 2 of `group` (voters a, b, c; c preferred), hand-backs through `gate`."""
    return elected_leader(group, preferred_leader="c", hand_back_gate=gate)


def run(raft: RaftCore, ticks: int) -> list[TimeoutNow]:
    """`ticks` ticks of b and c acknowledging everything the leader sends; the hand-over messages it sent."""
    handed: list[TimeoutNow] = []
    for _ in range(ticks):
        for m in flush(raft).messages if raft.has_ready() else []:
            if isinstance(m, AppendEntries):
                raft.step(
                    AppendResponse(raft.group, 2, m.receiver, "a", True, m.prev_index + len(m.entries), 0, 1, False)
                )
            elif isinstance(m, TimeoutNow):
                handed.append(m)
        raft.tick()
    return handed


def test_a_leader_refused_a_hand_back_slot_quiesces_and_hands_back_once_woken_for_a_free_one() -> None:
    """Issue 10: a returning node got back the leadership of 3,300 groups at 100 to 250 a second, and the
    elections' writes filled every disk's queue (12 to 18 msg/s over 1,000 queues right after, against 182 on
    the settled cluster). With one slot, the second leader waits quiet until the first has handed back."""
    gate = HandBackGate(limit=1)
    first, second = leader_of("g1", gate), leader_of("g2", gate)
    assert run(first, 30), "the first hands back to c once c kept up for an election timeout"
    assert not run(second, 30), "the second is refused a slot"
    assert second.quiesced and second.role == "leader", "and waits for one quiet, like an idle leader"
    assert gate.due() == [], "the slot is still taken"
    first.step(AppendEntries("g1", 3, "c", "a", 2, 2, [], 2))  # c won: the first steps down
    assert first.role == "follower"
    assert gate.due() == ["g2"]
    second.retry_hand_back()
    assert not second.quiesced
    assert run(second, 5), "woken, it hands back at once: c had kept up all along"


def test_a_transfer_that_timed_out_gives_its_slot_to_the_next_leader() -> None:
    gate = HandBackGate(limit=1)
    first, second = leader_of("g1", gate), leader_of("g2", gate)
    assert run(first, 12), "c kept up for an election timeout: the first hands back"
    assert not run(second, 30) and second.quiesced
    run(first, 10)  # c never took over: the transfer expires after an election timeout
    assert gate.handing_back == 0 and gate.due() == ["g2"]
