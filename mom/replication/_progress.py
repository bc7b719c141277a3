"""What a leader knows about one follower's log, and how fast it may send to it (flow control).

A follower is in one of three states: `probe` (we do not know where its log ends: one AppendEntries at a time,
walking back after each rejection), `replicate` (it is caught up: stream entries optimistically, up to
`max_inflight` messages and `max_inflight_bytes` of entries ahead of the acknowledgements, like etcd's
MaxInflightMsgs and MaxInflightBytes) or `snapshot` (it needs entries we compacted: the driver streams it a
snapshot and nothing else is sent until the follower acknowledges it).

The byte bound is what makes a slow follower cheap: whatever the leader sends ahead of it waits in send queues,
so it costs the leader at most the window, whatever the size of the backlog.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

ProgressState = Literal["probe", "replicate", "snapshot"]


@dataclass(frozen=True)
class FollowerView:
    """A read-only copy of what the leader knows about a follower (for the cluster view and the driver)."""

    match: int
    next: int
    state: ProgressState
    inflight_messages: int
    inflight_bytes: int


class Progress:
    def __init__(self, next_index: int, max_inflight: int, max_inflight_bytes: int) -> None:
        self.match = 0
        self.next = next_index
        self.state: ProgressState = "probe"
        self.probe_sent = False
        """In probe: one AppendEntries is out, wait for its answer (or the next heartbeat) before another."""
        self.recent_active = False
        """Heard from within the current CheckQuorum period."""
        self.was_active = True
        """Heard from within the previous CheckQuorum period (a new leader assumes so)."""
        self.stalled_heartbeats = 0
        """Heartbeats since the follower last made progress while behind: lost messages are retried after two.
        """
        self.incarnation = 0
        """The follower's current run, from its responses (0: not heard from yet)."""
        self.learner = False
        """The follower says it lost data and does not vote until caught up."""
        self.catch_up_to = 0
        """For a learner: the leader's last index when it first heard from this incarnation; matching up to it
        earns the learner its vote back."""
        self._inflight: deque[tuple[int, int]] = deque()
        """(last index, payload bytes) of each AppendEntries sent and not yet acknowledged."""
        self.inflight_bytes = 0
        self._max_inflight = max_inflight
        self._max_inflight_bytes = max_inflight_bytes

    def view(self) -> FollowerView:
        return FollowerView(self.match, self.next, self.state, len(self._inflight), self.inflight_bytes)

    def can_send(self) -> bool:
        if self.state == "probe":
            return not self.probe_sent
        if self.state == "replicate":
            return len(self._inflight) < self._max_inflight and self.inflight_bytes < self._max_inflight_bytes
        return False

    def sent(self, last_index: int, size: int = 0) -> None:
        """An AppendEntries up to `last_index`, carrying `size` bytes of entries, went out."""
        if self.state == "replicate":
            if last_index >= self.next:
                self.next = last_index + 1
                self._inflight.append((last_index, size))
                self.inflight_bytes += size
        elif self.state == "probe":
            self.probe_sent = True

    def acknowledged(self, match: int) -> bool:
        """The follower matches us up to `match`; returns whether that is news."""
        self.probe_sent = False
        if match <= self.match:
            return False
        self.match = match
        self.next = max(self.next, match + 1)
        self.stalled_heartbeats = 0
        while self._inflight and self._inflight[0][0] <= match:
            self.inflight_bytes -= self._inflight.popleft()[1]
        if self.state == "probe":
            self.become_replicate()
        return True

    def become_probe(self, next_index: int) -> None:
        self.state = "probe"
        self.next = max(self.match + 1, next_index)
        self.probe_sent = False
        self.stalled_heartbeats = 0
        self._clear_inflight()

    def restarted(self, next_index: int) -> None:
        """The follower restarted and may have lost entries: nothing it acknowledged before counts any more."""
        self.match = 0
        self.state = "probe"
        self.next = next_index
        self.probe_sent = False
        self.stalled_heartbeats = 0
        self._clear_inflight()

    def become_replicate(self) -> None:
        self.state = "replicate"
        self.next = self.match + 1
        self._clear_inflight()

    def become_snapshot(self) -> None:
        self.state = "snapshot"
        self.stalled_heartbeats = 0
        self._clear_inflight()

    def _clear_inflight(self) -> None:
        self._inflight.clear()
        self.inflight_bytes = 0
