"""Server CPU from /proc: the CPU time of every process of a broker, all its nodes summed.

Every server the harness starts runs in a session of its own (`Managed` starts it with `start_new_session`), so
a broker's processes are exactly those whose session id is one of its nodes' pids: mom's Python process, or
RabbitMQ's beam.smp with its helpers and epmd, or nats-server. CPU time is user + system of each live process
plus what its reaped children used. Divided by the messages a step moved, it gives µs of broker CPU per message:
on a shared machine much less noisy than a rate, and it says where the cost is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def sessions_cpu_s(sessions: Iterable[int]) -> float:
    """Seconds of CPU used so far by all live processes of these sessions (and the children they reaped)."""
    wanted = set(sessions)
    if not wanted:
        return 0.0
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) in wanted:  # field 6: session id
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime stime cutime cstime
    return ticks / _TICKS


@dataclass
class CpuSample:
    seconds: float | None = None


@contextmanager
def measured(sessions: Iterable[int] | None) -> Iterator[CpuSample]:
    """The broker CPU used inside the block (`seconds` stays None when there are no sessions or no /proc)."""
    sample = CpuSample()
    ids = list(sessions or [])
    if not ids or not Path("/proc/self/stat").exists():
        yield sample
        return
    before = sessions_cpu_s(ids)
    yield sample
    sample.seconds = sessions_cpu_s(ids) - before
