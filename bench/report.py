"""Writing a run down: results JSON, a markdown report, and the generated part of docs/performance.md."""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench.latency import complete, knee
from bench.results import Result
from bench.targets import Target, curve

BEGIN = "<!-- bench:begin (written by `mom bench`; edit outside these markers) -->"
END = "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "system": platform.platform()}


def write_json(path: Path, results: list[Result], targets: list[Target], meta: dict[str, Any]) -> None:
    document = {"meta": meta, "results": [r.as_json() for r in results], "targets": [asdict(t) for t in targets]}
    path.write_text(json.dumps(document, indent=2) + "\n")


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def markdown(results: list[Result], targets: list[Target], meta: dict[str, Any], plot: str) -> str:
    info = meta["machine"]
    lines = [
        f"Run of {meta['date']} on {info['cpus']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"{meta['duration_s']:g} s per measurement{' (smoke mode: numbers mean nothing)' if meta['smoke'] else ''}.",
        "",
        f"**Server and load generator share these {info['cpus']} cores**: every CPU-second the client uses (the "
        "client CPU column, in % of one core) is taken from the server, so absolute numbers are low and only the "
        "ratios measured in the same run are meaningful.",
        "",
        "Command:",
        "",
        "```sh",
        meta["command"],
        "```",
        "",
        "### Targets",
        "",
        "| target | goal | measured | verdict |",
        "| --- | --- | --- | --- |",
        *(f"| {t.name} | {t.goal} | {t.measured} | **{t.verdict}** |" for t in targets),
        "",
        "### Results",
        "",
        "server µs/msg: CPU time of all the broker's processes (all nodes summed, from /proc) per message moved.",
        "",
        "| system | scenario | topology | msgs/s | requests/s | p50 ms | p99 ms | p99.9 ms | server µs/msg | errors "
        "| client | client CPU % | notes |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results:
        if is_curve_point(r) and not r.skipped:
            continue
        if r.skipped:
            lines.append(f"| {r.system} | {r.scenario} | {r.topology} | skipped | | | | | | | | | {r.skipped} |")
            continue
        lines.append(
            f"| {r.system} | {r.scenario} | {r.topology} | {_num(r.msgs_per_s, 0)} | {_num(r.requests_per_s, 0)} "
            f"| {_num(r.p50_ms, 2)} | {_num(r.p99_ms, 2)} | {_num(r.p999_ms, 2)} | {_num(r.server_us_per_msg, 0)} "
            f"| {r.errors} | {r.client} | {r.client_cpu_pct:.0f} | {r.notes} |"
        )
    lines += ["", *curve_table(results), "", f"![throughput, latency and latency versus offered load]({plot})", ""]
    return "\n".join(lines)


def is_curve_point(result: Result) -> bool:
    return result.scenario.startswith("latency")


def curves(results: list[Result]) -> list[tuple[str, str, str]]:
    """(system, scenario, topology) of every latency curve in the run, in the order they ran."""
    seen: dict[tuple[str, str, str], None] = {}
    for r in results:
        if is_curve_point(r) and not r.skipped:
            seen[r.system, r.scenario, r.topology] = None
    return list(seen)


def curve_table(results: list[Result]) -> list[str]:
    """p50 / p99 (ms) at each offered rate, one row per curve, and its knee."""
    series = curves(results)
    if not series:
        return []
    rates = sorted({float(r.extra["offered_rate"]) for r in results if is_curve_point(r) and r.extra})
    lines = [
        "### Latency versus offered load",
        "",
        "End-to-end latency (publish to delivery, from the intended send time), p50 / p99 in ms, at rising offered "
        "rates until the system falls behind (less than 99 % delivered, or p99 over 1 s; marked *). The knee is "
        "the highest rate with p99 < 50 ms and every message delivered.",
        "",
        "| system | path | topology | knee msg/s | " + " | ".join(f"{rate:,.0f}/s" for rate in rates) + " |",
        "| --- | --- | --- | ---: | " + " | ".join("---:" for _ in rates) + " |",
    ]
    for system, scenario, topology in series:
        points = curve(results, system, scenario, topology)
        by_rate = {float(p.extra["offered_rate"]): p for p in points}
        cells = []
        for rate in rates:
            p = by_rate.get(rate)
            if p is None:
                cells.append("")
            else:
                mark = "" if complete(p) else "*"
                cells.append(f"{_num(p.p50_ms, 1)} / {_num(p.p99_ms, 1)}{mark}")
        found = knee(points)
        path = scenario.removeprefix("latency-") if scenario != "latency" else "-"
        lines.append(f"| {system} | {path} | {topology} | {_num(found, 0)} | " + " | ".join(cells) + " |")
    return lines


def update_docs(docs: Path, section: str, plot: Path) -> None:
    """Replace the generated section of `docs` (or create the file around it), and copy the plot beside it."""
    target_plot = docs.parent / "performance.png"
    if plot.resolve() != target_plot.resolve():
        shutil.copyfile(plot, target_plot)
    section = section.replace(f"]({plot.name})", f"]({target_plot.name})")
    text = docs.read_text() if docs.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    docs.write_text(f"{head}{BEGIN}\n{section}\n{END}{tail}")
