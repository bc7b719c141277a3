"""The benchmark harness behind `mom bench`: mom and its peers measured side by side, in one run, on one machine.

Numbers from different machines or different days do not compare; ratios measured in the same run do. So the
harness starts every system itself (mom as real processes, RabbitMQ, NATS, a framework ceiling and a naive
replication design), drives each with the same load generators, and writes one JSON file, a markdown table and a
plot. `run_bench` is the entry point; `BenchOptions` says what to run.
"""

from bench.runner import BenchOptions, run_bench
from bench.scale import ScaleOptions

__all__ = ["BenchOptions", "ScaleOptions", "run_bench"]
