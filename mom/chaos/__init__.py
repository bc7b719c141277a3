"""The nemesis suite's engine: real clusters, real faults, a recorded workload and a checker (`mom chaos`).

`run_chaos(ChaosOptions(...))` starts N `mom serve` processes behind a fault-injecting proxy, puts load on them,
runs rounds of seeded faults (kill -9, SIGSTOP, partitions, one-way loss, slow disk, torn tails, flipped bits,
wiped disks), drains, and checks what came out against what went in. docs/reliability.md explains the checks.
"""

from mom.chaos.engine import ChaosOptions, ChaosResult, run_chaos
from mom.chaos.faults import KINDS
from mom.chaos.workload import WorkloadSettings

__all__ = ["KINDS", "ChaosOptions", "ChaosResult", "WorkloadSettings", "run_chaos"]
