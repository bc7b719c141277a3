"""The nemesis: which fault each round brings (a seeded plan) and how each kind is done and undone.

Every kind aims at a destination picked by the seed (a queue, the topic or the metadata group) and, through it,
at a node by its role (the leader, a follower), because that is where faults hurt; when no leader is known at
that moment the node is picked by the seed instead. A fault is held for the planned time, then healed: killed
nodes restart from their (possibly damaged) disks, paused ones continue, the proxy forwards again.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import trio

from mom import config
from mom.chaos import disk
from mom.chaos.cluster import ChaosCluster
from mom.chaos.history import FaultRecord, History
from mom.chaos.observe import META, Observer, Role

KINDS = (
    "kill-leader",
    "kill-follower",
    "kill-two",
    "pause",
    "partition",
    "one-way",
    "slow-disk",
    "torn-tail",
    "bit-flip",
    "wipe",
)
"""Every fault kind, as `mom chaos --faults` names them."""

DISK_DELAY_ENV = "MOM_FAULT_DISK_DELAY_MS"
"""The setting that makes a node's storage slow (a test hook of the storage layer)."""
DISK_DELAY_MS = (20, 200)


def disk_delay_supported() -> bool:
    """Whether this build of mom knows the slow-disk setting; without it the `slow-disk` rounds do nothing."""
    return DISK_DELAY_ENV in config.ENV_KEYS


@dataclass(frozen=True)
class Target:
    """Whom a fault may aim at: `aim` (the destination's leader when known), its followers, every other node."""

    rng: random.Random
    aim: str
    followers: list[str]
    others: list[str]

    def leader_or_follower(self) -> str:
        return self.aim if self.rng.random() < 0.5 or not self.followers else self.rng.choice(self.followers)


@dataclass(frozen=True)
class PlannedFault:
    round: int
    kind: str
    hold_s: float
    seed: int
    """Seeds the choices made when the fault is injected (targets, damage)."""


def plan(seed: int, rounds: int, kinds: Sequence[str], hold_s: tuple[float, float]) -> list[PlannedFault]:
    """`rounds` faults from the seed: every kind once (in a seeded order) first, then kinds drawn at random."""
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {unknown}; choose from {', '.join(KINDS)}")
    rng = random.Random(seed)
    first = list(dict.fromkeys(kinds))
    rng.shuffle(first)
    planned = []
    for number in range(1, rounds + 1):
        kind = first[number - 1] if number <= len(first) else rng.choice(first)
        planned.append(PlannedFault(number, kind, round(rng.uniform(*hold_s), 2), rng.getrandbits(32)))
    return planned


Heal = Callable[[], Awaitable[None]]
"""Undoes an injected fault (restarts, SIGCONT, the proxy healed)."""


class Bursts(Protocol):
    """The workload's side of a fault: publishes put in flight exactly where it bites (see `Nemesis`)."""

    def target(self, destination: str) -> str: ...

    async def hold(self, dest: str) -> bool: ...

    def burst(self, node: str, dest: str) -> None: ...

    def release(self, dest: str) -> None: ...


class Nemesis:
    """Does the planned faults to a `ChaosCluster` and records each one in the history.

    With `bursts`, it first holds the destination's publishes until none is in flight, injects the fault, fires a
    burst of publishes at the node aimed at, and releases the destination once the fault is healed: so a known
    publish is in flight exactly where the fault bites (a leader that can no longer hear its followers holds
    writes that may yet commit: what a client does next decides whether they are stored twice).
    """

    def __init__(
        self,
        cluster: ChaosCluster,
        observer: Observer,
        history: History,
        destinations: list[str],
        bursts: Bursts | None = None,
    ) -> None:
        self._cluster = cluster
        self._observer = observer
        self._history = history
        self._destinations = [*destinations, META]
        self._bursts = bursts
        self._actions: dict[str, Callable[[FaultRecord, Target], Awaitable[Heal]]] = {
            "kill-leader": self._kill_leader,
            "kill-follower": self._kill_follower,
            "kill-two": self._kill_two,
            "pause": self._pause,
            "partition": self._partition,
            "one-way": self._one_way,
            "slow-disk": self._slow_disk,
            "torn-tail": self._torn_tail,
            "bit-flip": self._bit_flip,
            "wipe": self._wipe,
        }

    async def run(self, planned: PlannedFault) -> FaultRecord:
        """Inject the fault, hold it, heal it; the record says what was done (and `healed` when)."""
        rng = random.Random(planned.seed)
        target = rng.choice(self._destinations)
        fallback = rng.random()  # drawn whether needed or not, so later draws do not depend on the cluster's state
        roles = await self._observer.roles()
        role = roles.get(target, Role(None, tuple(self._cluster.node_ids)))
        running = [n for n in self._cluster.node_ids if self._cluster.nodes[n].running]
        leader = role.leader if role.leader in running else None
        aim = leader or running[int(fallback * len(running))]
        others = [n for n in running if n != aim]
        followers = [n for n in role.replicas if n != aim and n in running] or others
        record = FaultRecord(
            planned.round,
            planned.kind,
            [],
            self._history.now(),
            details={"destination": target, "leader": leader, "hold_s": planned.hold_s},
        )
        self._history.faults.append(record)
        dest = self._bursts.target(target) if self._bursts is not None else None
        if self._bursts is not None and dest is not None:
            record.details["quiet_before"] = await self._bursts.hold(dest)
        try:
            heal = await self._actions[planned.kind](record, Target(rng, aim, followers, others))
            try:
                if self._bursts is not None and dest is not None:
                    self._bursts.burst(aim, dest)
                await trio.sleep(planned.hold_s * (2 if planned.kind == "slow-disk" else 1))
            finally:
                with trio.CancelScope(shield=True):  # a run stopped early still heals what it broke
                    await heal()
                    record.healed = self._history.now()
        finally:
            if self._bursts is not None and dest is not None:
                self._bursts.release(dest)
        return record

    async def _kill_leader(self, record: FaultRecord, t: Target) -> Heal:
        return await self._kill(record, [t.aim])

    async def _kill_follower(self, record: FaultRecord, t: Target) -> Heal:
        return await self._kill(record, [t.rng.choice(t.followers)] if t.followers else [t.aim])

    async def _kill_two(self, record: FaultRecord, t: Target) -> Heal:
        return await self._kill(record, [t.aim, t.rng.choice(t.followers)] if t.followers else [t.aim])

    async def _kill(self, record: FaultRecord, targets: list[str]) -> Heal:
        record.targets = targets
        for node in targets:
            await self._cluster.kill(node)
        return partial(self._start, targets)

    async def _start(self, nodes: list[str], env: dict[str, str] | None = None) -> None:
        for node in nodes:
            await self._cluster.start(node, env)

    async def _pause(self, record: FaultRecord, t: Target) -> Heal:
        record.targets = [t.aim]
        self._cluster.pause(t.aim)

        async def resume() -> None:
            self._cluster.resume(t.aim)

        return resume

    async def _partition(self, record: FaultRecord, t: Target) -> Heal:
        minority = [t.aim]
        if len(self._cluster.nodes) >= 5 and t.others:
            minority.append(t.rng.choice(t.others))
        majority = [n for n in self._cluster.node_ids if n not in minority]
        record.targets = minority
        record.details["sides"] = [minority, majority]
        self._cluster.proxy.partition(minority, majority)
        return self._heal_network

    async def _one_way(self, record: FaultRecord, t: Target) -> Heal:
        """Lose what `aim` sends (it leads but nobody hears it), or what it is sent (it hears no answers, so
        it steps down while its followers hold its last entries), to every peer or to one."""
        peers = [n for n in self._cluster.node_ids if n != t.aim]
        chosen = peers if t.rng.random() < 0.5 else [t.rng.choice(peers)]
        record.targets = [t.aim]
        if t.rng.random() < 0.5:
            record.details.update(direction="from", lost_from=[t.aim], lost_to=chosen)
            self._cluster.proxy.one_way(t.aim, chosen)
        else:
            record.details.update(direction="to", lost_from=chosen, lost_to=[t.aim])
            for sender in chosen:
                self._cluster.proxy.block(sender, t.aim)
        return self._heal_network

    async def _heal_network(self) -> None:
        self._cluster.proxy.heal()

    async def _slow_disk(self, record: FaultRecord, t: Target) -> Heal:
        """Restart `aim` with a slow disk; the heal restarts it with its normal one."""
        record.targets = [t.aim]
        delay = t.rng.randint(*DISK_DELAY_MS)
        if not disk_delay_supported():
            record.details["skipped"] = f"this build of mom has no {DISK_DELAY_ENV} setting: nothing was done"
            return _nothing
        record.details["delay_ms"] = delay
        await self._cluster.stop(t.aim)
        await self._cluster.start(t.aim, {DISK_DELAY_ENV: str(delay)})

        async def restart() -> None:
            await self._cluster.stop(t.aim)
            await self._cluster.start(t.aim)

        return restart

    async def _torn_tail(self, record: FaultRecord, t: Target) -> Heal:
        return await self._damage(record, t, disk.tear_tail)

    async def _bit_flip(self, record: FaultRecord, t: Target) -> Heal:
        return await self._damage(record, t, disk.flip_bit)

    async def _damage(self, record: FaultRecord, t: Target, harm: disk.Harm) -> Heal:
        node = t.leader_or_follower()
        record.targets = [node]
        await self._cluster.kill(node)
        segment = disk.newest_segment(self._cluster.nodes[node].data_dir)
        if segment is None:
            record.details["skipped"] = "the node had written no log segment yet"
        else:
            record.details["damage"] = harm(segment, t.rng).as_json()
        return partial(self._start, [node])

    async def _wipe(self, record: FaultRecord, t: Target) -> Heal:
        node = t.leader_or_follower()
        record.targets = [node]
        await self._cluster.kill(node)
        self._cluster.wipe(node)
        return partial(self._start, [node])


async def _nothing() -> None:
    pass
