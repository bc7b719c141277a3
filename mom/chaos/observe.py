"""Who leads what, and is the cluster whole again: what the nemesis aims at and what "recovered" means.

The cluster counts as settled when every node runs, answers `/readyz` with 200, all nodes name the same metadata
leader, every replica of every destination names the same leader for it, and every replica has committed at
least what its leader had committed a second earlier (`CATCH_UP_S`): a follower that lost entries it had
acknowledged and that its leader never sends again is not "recovered" just because it answers. "Stuck" is not
settling within a bound after a fault was healed.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from mom.chaos.cluster import ChaosCluster

CATCH_UP_S = 1.0
"""A replica counts as caught up when it has committed what its leader had committed this long ago."""

META = "meta"
"""The metadata group, named as a destination here (every node replicates it)."""


@dataclass(frozen=True)
class Unsettled:
    """What keeps the cluster from being settled, and which groups' leaders an operator would restart for it."""

    text: str
    groups: frozenset[str] = frozenset()
    """Destination names (or `META`) whose leader is not getting a replica up to date, or that have no leader."""

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Role:
    leader: str | None
    replicas: tuple[str, ...]


class Observer:
    """Asks the nodes (directly, never through the proxy) what they know; an admin token is fetched as needed."""

    def __init__(self, cluster: ChaosCluster, http: httpx.AsyncClient) -> None:
        self._cluster = cluster
        self._http = http
        self._token: str | None = None
        self._commits: deque[tuple[float, dict[str, int]]] = deque()
        """(when, each destination's commit index on its leader), the last few seconds of it."""

    async def _fetch_token(self, node_id: str) -> str | None:
        form = {"grant_type": "password", "username": "admin", "password": self._cluster.admin_password}
        try:
            response = await self._http.post(self._cluster.nodes[node_id].url + "/v1/auth/token", data=form, timeout=5)
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        token: str = response.json()["access_token"]
        return token

    async def view(self, node_id: str) -> dict[str, Any] | None:
        """One node's `GET /v1/cluster`, with a fresh token if the one held is refused (a wiped node's keys)."""
        for _ in range(2):
            if self._token is None:
                self._token = await self._fetch_token(node_id)
                if self._token is None:
                    return None
            node = self._cluster.nodes[node_id]
            if not node.running or node.paused:
                return None
            try:
                response = await self._http.get(
                    node.url + "/v1/cluster", headers={"Authorization": f"Bearer {self._token}"}, timeout=3.0
                )
            except httpx.HTTPError:
                return None
            if response.status_code == 401:
                self._token = None
                continue
            if response.status_code != 200:
                return None
            answer: dict[str, Any] = response.json()
            return answer
        return None

    async def views(self) -> dict[str, dict[str, Any]]:
        """The views of every node that answers, gathered concurrently."""
        found: dict[str, dict[str, Any]] = {}

        async def one(node_id: str) -> None:
            view = await self.view(node_id)
            if view is not None:
                found[node_id] = view

        async with trio.open_nursery() as nursery:
            for node_id in self._cluster.node_ids:
                nursery.start_soon(one, node_id)
        return found

    async def roles(self) -> dict[str, Role]:
        """Per destination (and `META`): the leader most replicas name (None if none does) and the replicas."""
        return roles_from(await self.views(), self._cluster.node_ids)

    async def unsettled(self) -> Unsettled | None:
        """None if the cluster is settled (see the module docstring), else what is still wrong."""
        problems: list[str] = []
        not_ready = False
        for node_id, node in self._cluster.nodes.items():
            if not node.running:
                problems.append(f"{node_id} is not running")
            elif node.paused:
                problems.append(f"{node_id} is paused")
            elif not await self._cluster.ready(self._http, node_id):
                problems.append(f"{node_id} is not ready")
                not_ready = True
        if problems:
            return Unsettled("; ".join(problems), frozenset({META}) if not_ready else frozenset())
        views = await self.views()
        missing = [n for n in self._cluster.node_ids if n not in views]
        if missing:
            return Unsettled(f"no cluster view from {', '.join(missing)}")
        problem = disagreement(views)
        now = trio.current_time()
        self._commits.append((now, leader_commits(views)))
        while len(self._commits) > 1 and self._commits[1][0] <= now - CATCH_UP_S:
            self._commits.popleft()
        if problem is not None:
            return problem
        then, committed = self._commits[0]
        if then > now - CATCH_UP_S:
            return Unsettled("checking that every replica keeps up with its leader")
        return lagging(views, committed)


def roles_from(views: dict[str, dict[str, Any]], node_ids: list[str]) -> dict[str, Role]:
    votes: dict[str, Counter[str]] = {}
    replicas: dict[str, tuple[str, ...]] = {META: tuple(node_ids)}
    for view in views.values():
        if view.get("metadata_leader"):
            votes.setdefault(META, Counter())[view["metadata_leader"]] += 1
        for entry in view.get("destinations", []):
            replicas[entry["name"]] = tuple(entry["replicas"])
            if entry.get("leader"):
                votes.setdefault(entry["name"], Counter())[entry["leader"]] += 1
    return {
        name: Role(votes[name].most_common(1)[0][0] if name in votes else None, reps) for name, reps in replicas.items()
    }


def disagreement(views: dict[str, dict[str, Any]]) -> Unsettled | None:
    """None if every node names the same metadata leader and every replica the same leader of its destinations."""
    meta = {node: view.get("metadata_leader") for node, view in views.items()}
    if None in meta.values() or len(set(meta.values())) > 1:
        return Unsettled(f"metadata leader: {meta}", frozenset({META}))
    leaders: dict[str, dict[str, str | None]] = {}
    for node, view in views.items():
        for entry in view.get("destinations", []):
            if node in entry["replicas"]:
                leaders.setdefault(entry["name"], {})[node] = entry.get("leader")
    for name, seen in sorted(leaders.items()):
        if None in seen.values() or len(set(seen.values())) > 1:
            return Unsettled(f"{name} leader: {seen}", frozenset({name}))
    return None


def leader_commits(views: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Each destination's commit index as its leader reports it (destinations whose leader answered)."""
    found: dict[str, int] = {}
    for node, view in views.items():
        for entry in view.get("destinations", []):
            if entry.get("leader") == node and entry.get("commit_index") is not None:
                found[entry["name"]] = int(entry["commit_index"])
    return found


def lagging(views: dict[str, dict[str, Any]], committed: dict[str, int]) -> Unsettled | None:
    """None if every replica's commit index reached what its leader had `committed` earlier, else who lags."""
    behind: list[str] = []
    groups: set[str] = set()
    for node, view in sorted(views.items()):
        for entry in view.get("destinations", []):
            name, index = entry["name"], entry.get("commit_index")
            if node in entry["replicas"] and name in committed and (index or 0) < committed[name]:
                behind.append(f"{node} at {index} in {name} (its leader had {committed[name]})")
                groups.add(name)
    return Unsettled(f"replicas behind their leader: {'; '.join(behind)}", frozenset(groups)) if behind else None
