"""A deterministic simulated network: every loss, delay, duplicate and reordering comes from one seeded RNG.

Time is the simulation's step counter. A message sent at step t is delivered at some step in [t + min_delay, t
+ max_delay] (messages due in the same step are delivered in random order), unless it is dropped on the way or
the link between its two ends is cut by a partition, at sending time or at delivery time.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from mom.replication.messages import Message


@dataclass
class Faults:
    """Probabilities and bounds of what can go wrong with each message."""

    drop: float = 0.0
    duplicate: float = 0.0
    max_delay: int = 0


@dataclass
class SimNetwork:
    rng: random.Random
    faults: Faults = field(default_factory=Faults)
    now: int = 0
    _in_flight: list[tuple[int, Message]] = field(default_factory=list)
    _side: dict[str, int] = field(default_factory=dict)
    """Partition: node -> side; nodes on different sides cannot talk. Empty: fully connected."""
    down: set[str] = field(default_factory=set)
    """Crashed nodes: whatever is addressed to them is lost."""
    delivered: Counter[str] = field(default_factory=Counter)
    """Messages delivered, by type name: lets scenarios assert that a path (e.g. InstallSnapshot) was taken.
    """

    def connected(self, a: str, b: str) -> bool:
        return self._side.get(a, 0) == self._side.get(b, 0)

    def partition(self, *sides: Iterable[str]) -> None:
        """Cut the cluster into `sides`; nodes not named are with the first side."""
        self._side = {node: number for number, side in enumerate(sides) for node in side}

    def heal(self) -> None:
        self._side = {}

    def send(self, messages: Iterable[Message]) -> None:
        for message in messages:
            if not self.connected(message.sender, message.receiver) or self.rng.random() < self.faults.drop:
                continue
            copies = 2 if self.rng.random() < self.faults.duplicate else 1
            for _ in range(copies):
                delay = self.rng.randint(1, max(1, self.faults.max_delay))
                self._in_flight.append((self.now + delay, message))

    def messages_on_the_way(self) -> list[tuple[int, Message]]:
        """The messages on the way, with the step each arrives at."""
        return list(self._in_flight)

    def advance(self) -> list[Message]:
        """Move time one step on; return the messages that arrive now, in a random order."""
        self.now += 1
        due = [item for item in self._in_flight if item[0] <= self.now]
        self._in_flight = [item for item in self._in_flight if item[0] > self.now]
        self.rng.shuffle(due)
        arrived = [m for _, m in due if m.receiver not in self.down and self.connected(m.sender, m.receiver)]
        self.delivered.update(type(m).__name__ for m in arrived)
        return arrived

    def drop_all(self) -> None:
        self._in_flight.clear()

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)
