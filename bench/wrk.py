"""Driving `wrk` (Debian's package): a C load generator that costs the shared CPU far less than a Python one.

Used for the request-rate scenarios (publish 1 and 100 per request, and the framework ceiling), so that mom and
the ceiling are measured by exactly the same client.
"""

from __future__ import annotations

import re
import resource
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60_000.0}
_LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {token}"
local f = io.open("{body_path}", "rb")
wrk.body = f:read("*a")
f:close()
"""


@dataclass(frozen=True)
class WrkOutcome:
    requests: int
    non_2xx: int
    socket_errors: int
    elapsed_s: float
    p50_ms: float | None
    p99_ms: float | None
    cpu_s: float


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def run_wrk(
    wrk: str, url: str, token: str, body: bytes, *, threads: int, connections: int, duration_s: float, workdir: Path
) -> WrkOutcome:
    """POST `body` to `url` for `duration_s` and parse wrk's summary; the CPU is that of the wrk process."""
    workdir.mkdir(parents=True, exist_ok=True)
    body_path = workdir / "body.json"
    body_path.write_bytes(body)
    script = workdir / "post.lua"
    script.write_text(_LUA.replace("{token}", token).replace("{body_path}", str(body_path)))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [
            wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(duration_s))}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=duration_s + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = done.stdout
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if total is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}\n{done.stderr}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    p50 = re.search(r"^\s+50%\s+(\S+)$", out, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)$", out, re.MULTILINE)
    return WrkOutcome(
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in sockets.groups()) if sockets else 0,
        elapsed_s=_ms(total.group(2) + total.group(3)) / 1000.0,
        p50_ms=_ms(p50.group(1)) if p50 else None,
        p99_ms=_ms(p99.group(1)) if p99 else None,
        cpu_s=(after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
    )
