"""A start line for the processes of one latency point: every schedule begins only once all of them are ready.

Spawning a process and connecting it takes seconds on a busy machine; a schedule fixed before the processes exist
would count that start-up as latency. Each process, once connected, writes the time it got ready into a file
of a shared directory and waits for the others; all of them then read the same files and so compute the same
start time (the last arrival, plus a short lead), without any process acting as coordinator.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

LEAD_S = 0.5
"""From the last process ready to the first scheduled send."""


@dataclass(frozen=True)
class Barrier:
    directory: str
    parties: int
    timeout_s: float = 120.0

    async def meet(self) -> float:
        """Wait until every party is ready; returns the common start time (monotonic clock, shared on one host)."""
        folder = Path(self.directory)
        _arrive(folder)
        give_up = time.monotonic() + self.timeout_s
        while True:
            arrivals = _arrivals(folder)
            if len(arrivals) >= self.parties:
                return max(arrivals) + LEAD_S
            if time.monotonic() > give_up:
                raise TimeoutError(f"only {len(arrivals)} of {self.parties} load processes got ready")
            await asyncio.sleep(0.01)


def _arrive(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    mine = folder / f"{os.getpid()}.ready"
    draft = mine.with_suffix(".tmp")
    draft.write_text(repr(time.monotonic()))
    draft.rename(mine)  # atomic: a reader never sees a half-written time


def _arrivals(folder: Path) -> list[float]:
    return [float(path.read_text()) for path in folder.glob("*.ready")]
