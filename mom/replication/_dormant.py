"""The groups placed on this node but not recovered yet since it started, and when each gets recovered.

A node with thousands of destinations must be ready in seconds, so at start-up the catalog's replay only places
its groups here (cheap: no storage read, no Raft core, no task), and each is recovered on the first of:

- a request for its destination through this node (`GroupManager.wake`: at once);
- a Raft message from a peer (`hurry`): at once while fewer than `RECOVERIES_AT_ONCE` such recoveries run, else
  first in the queue, since every leader heartbeats a restarted node's groups at once and thousands of recoveries
  at a time would starve the event loop (the message is dropped either way; Raft's sender retries);
- the background pass (`run`), `RECOVERIES_AT_ONCE` at a time, from the moment the catalog has caught up with the
  metadata leader (readiness and the replay first; `START_UP_GATE_S` at the latest, so that a node cut off from
  the metadata leader still recovers its groups to vote in them). From then on a group placed here is started at
  once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

import trio

log = logging.getLogger("mom.replication")

RECOVERIES_AT_ONCE = 16
"""Groups the background pass recovers at once (as many as the node's storage threads), and the bound on those
started by peers' messages."""
START_UP_GATE_S = 5.0
"""The background pass starts once the catalog caught up with the metadata leader, or this long after the start
at the latest."""

Launch = Callable[[str], "trio.Event | None"]
"""Starts the recovery of a dormant group; returns the event set once it is recovered (routed) or stopped, or
None if the group is no longer placed here."""


class DormantGroups:
    """The queue of dormant groups, in the order the background pass recovers them."""

    def __init__(self, launch: Launch) -> None:
        self._launch = launch
        self._queue: OrderedDict[str, None] = OrderedDict()
        self._queued = trio.Event()
        self.lazy = True
        """Start-up: placed groups wait here. False once the background pass started: they start at once."""
        self._hurried = 0
        """Recoveries started by a peer's message, still running."""

    def __len__(self) -> int:
        return len(self._queue)

    def __contains__(self, gid: str) -> bool:
        return gid in self._queue

    def add(self, gid: str) -> None:
        self._queue[gid] = None
        self._queued.set()

    def take(self, gid: str) -> bool:
        """Remove `gid` (it is started or stopped otherwise); whether it was dormant."""
        return self._queue.pop(gid, 0) is None

    def hurry(self, gid: str, nursery: trio.Nursery) -> None:
        """A peer sent a message for `gid` (a group this node may hold dormant): recover it now or next."""
        if gid not in self._queue:
            return
        if self._hurried >= RECOVERIES_AT_ONCE:
            self._queue.move_to_end(gid, last=False)
            return
        del self._queue[gid]
        settled = self._launch(gid)
        if settled is not None:
            self._hurried += 1
            nursery.start_soon(self._hurried_done, settled)

    async def _hurried_done(self, settled: trio.Event) -> None:
        try:
            await settled.wait()
        finally:
            self._hurried -= 1

    async def run(self, caught_up: Callable[[], bool]) -> None:
        """The background pass: waits for `caught_up` (or `START_UP_GATE_S`), then recovers every dormant group,
        `RECOVERIES_AT_ONCE` at a time, and any group placed later at once."""
        with trio.move_on_after(START_UP_GATE_S):
            while not caught_up():  # noqa: ASYNC110 - no event says so (it follows the metadata core's commit)
                await trio.sleep(0.05)
        self.lazy = False
        if self._queue:
            log.info("recovering %d groups in the background", len(self._queue))
        async with trio.open_nursery() as nursery:
            for _ in range(RECOVERIES_AT_ONCE):
                nursery.start_soon(self._recover)

    async def _recover(self) -> None:
        while True:
            while not self._queue:
                await self._queued.wait()
                self._queued = trio.Event()
            gid, _ = self._queue.popitem(last=False)
            settled = self._launch(gid)
            if settled is not None:
                await settled.wait()
