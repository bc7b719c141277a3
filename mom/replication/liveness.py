"""Node liveness: one heartbeat per pair of nodes for all their groups, so idle groups need none of their own.

A quiesced Raft group (see `mom.replication.raft`) sends nothing, and its followers run no election timer: they
trust their leader for as long as the leader's *node* is alive. Whether it is, this module says, for all groups at
once, as CockroachDB's node liveness and TiKV's hibernated regions do. Every frame from a peer counts as a sign of
life, and every peer gets a `NodeHeartbeat` each `heartbeat_ticks` (in the frame that leaves anyway after the tick:
a few bytes per pair of nodes, whatever the number of groups). A peer is declared dead (its groups' followers
campaign, their leaders here wake) when it was not heard from for `dead_after_ticks` (an election timeout) while the
transport's link to it is down (a killed process's connections are reset at once), or for `silent_after_ticks`
whatever the link says (a hung process or a cut network keeps a connection open). A live node whose event loop
stalls for a moment (a busy machine) is thus not declared dead, which would wake every group it leads or follows for
nothing. Heard from again, it is declared up (leaders here heartbeat their groups at once, so it catches up). A
`NodeHeartbeat` names the sender's incarnation (new at each start): a peer that restarted faster than it could be
declared dead is reported down and up, since its groups forgot whom they followed; and any restart is reported
(`on_restart`): leaders here then need not wait for its groups to quiesce, as those ask once recovered.

Pure and clocked by `tick` like the Raft cores: the router ticks it and feeds it what arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from mom.replication.messages import Message, NodeHeartbeat

PeerNews = Callable[[str, bool], None]
"""Told (peer, alive) when the liveness of a peer's node changes."""


class Liveness:
    def __init__(
        self,
        node_id: str,
        peers: Iterable[str],
        *,
        incarnation: int,
        on_change: PeerNews,
        on_restart: Callable[[str], None] = lambda peer: None,
        link_up: Callable[[str], bool] = lambda peer: True,
        heartbeat_ticks: int = 2,
        dead_after_ticks: int = 10,
        silent_after_ticks: int = 40,
    ) -> None:
        self.node_id = node_id
        self._incarnation = incarnation
        self._on_change = on_change
        self._on_restart = on_restart
        self._heartbeat_ticks = heartbeat_ticks
        self._dead_after = dead_after_ticks
        self._silent_after = silent_after_ticks
        self._link_up = link_up
        self._now = 0
        self._heard: dict[str, int] = {}
        """Tick at which each peer was last heard from (peers start alive: a new node gives them time to speak)."""
        self._alive: dict[str, bool] = {}
        self._incarnations: dict[str, int] = {}
        for peer in peers:
            if peer != node_id:
                self._heard[peer] = 0
                self._alive[peer] = True

    def add_peer(self, peer: str) -> None:
        """A node added to the cluster: followed from now on, alive until it stays silent (like at start). The
        groups are told it is up: one removed while declared dead and added back under its id is alive again."""
        if peer != self.node_id and peer not in self._heard:
            self._heard[peer] = self._now
            self._alive[peer] = True
            self._on_change(peer, True)

    def remove_peer(self, peer: str) -> None:
        """A node removed from the cluster: forgotten (no news of it goes to the groups)."""
        self._heard.pop(peer, None)
        self._alive.pop(peer, None)
        self._incarnations.pop(peer, None)

    @property
    def peers(self) -> list[str]:
        return list(self._heard)

    def watches(self, nodes: Iterable[str]) -> bool:
        """Whether every one of `nodes` but this one is a peer whose liveness this module follows."""
        return all(node == self.node_id or node in self._heard for node in nodes)

    def alive(self, peer: str) -> bool:
        return self._alive.get(peer, False)

    def heard(self, peer: str) -> None:
        """Anything arrived from `peer`."""
        if peer not in self._heard:
            return
        self._heard[peer] = self._now
        if not self._alive[peer]:
            self._alive[peer] = True
            self._on_change(peer, True)

    def heartbeat_from(self, message: NodeHeartbeat) -> None:
        """A peer's heartbeat: a new incarnation restarted, whatever we thought of it meanwhile."""
        peer = message.sender
        if peer not in self._heard:
            return
        known = self._incarnations.get(peer)
        self._incarnations[peer] = message.term
        restarted = known is not None and known != message.term
        if restarted and self._alive[peer]:
            self._alive[peer] = False
            self._on_change(peer, False)
        self.heard(peer)
        if restarted:
            self._on_restart(peer)

    def tick(self) -> list[Message]:
        """Advance one tick: declare silent peers dead; returns the heartbeats due now."""
        self._now += 1
        for peer, heard in self._heard.items():
            silent = self._now - heard
            if not self._alive[peer] or silent < self._dead_after:
                continue
            if silent >= self._silent_after or not self._link_up(peer):
                self._alive[peer] = False
                self._on_change(peer, False)
        if self._now % self._heartbeat_ticks:
            return []
        return [NodeHeartbeat("", self._incarnation, self.node_id, peer) for peer in self._heard]
