"""A chaos run from start to verdict: cluster up, load on, N rounds of faults, heal, drain, check, write.

Each round: a calm stretch under load, the planned fault (held for its time, then healed), then a bounded wait
for the cluster to settle (`observe`); a node that exited on its own meanwhile is started again, and one that
refuses to start after its disk was damaged is replaced (its data directory wiped), as an operator would.
After the last round the producers stop, the cluster must settle once more, the consumers drain every
acknowledged message, the nodes stop cleanly and each replica's copy of the topic is read from its disk.

The plan (faults, hold times, targets by role, damage) follows the seed; the timing of real processes does not,
so a seed replays the same faults, not the same interleaving.
"""

from __future__ import annotations

import json
import random
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from mom.chaos import admin, checker, report, timeline
from mom.chaos.cluster import ChaosCluster
from mom.chaos.faults import KINDS, Nemesis, disk_delay_supported, plan
from mom.chaos.history import FaultRecord, History
from mom.chaos.observe import Observer, Role, Unsettled
from mom.chaos.replicas import replica_logs
from mom.chaos.workload import (
    TOPIC,
    USER,
    Workload,
    WorkloadSettings,
    destinations,
)

Say = Callable[[str], None]

START_TIMEOUT_S = 90.0
SETUP_TIMEOUT_S = 60.0
QUIET_S = 3.0
"""The drain ends once every acknowledged message arrived and nothing new came for this long."""
OPERATOR_ATTEMPTS = 3
"""Restarts of stuck leaders tried in one round (each may reveal the next group that does not move)."""
BURSTS_FINISH_S = 30.0
"""After the last round, bursts in flight get this long to finish (their calls retry through the heal)."""


@dataclass(frozen=True)
class ChaosOptions:
    out: Path
    rounds: int = 20
    transport: str = "grpc"
    nodes: int = 3
    seed: int | None = None
    faults: tuple[str, ...] = KINDS
    hold_s: tuple[float, float] = (2.0, 5.0)
    """Each fault lasts a seeded time in this range (a slow disk twice that)."""
    calm_s: float = 1.5
    """Normal load between a round's recovery and the next fault."""
    recovery_timeout_s: float = 30.0
    """A round whose cluster has not settled this long after the heal counts as not recovered."""
    stuck_timeout_s: float = 180.0
    """A round whose cluster has not settled this long after the heal is stuck: the engine restarts the leaders
    that do not move, as an operator would, and if that does not settle it within as long, the rounds end (more
    faults would go beyond what the guarantees cover: a second wiped disk before the first caught up loses a
    majority)."""
    final_timeout_s: float = 60.0
    """After the last round the cluster must settle within this, or the run reports a stuck node."""
    drain_timeout_s: float = 90.0
    workload: WorkloadSettings = field(default_factory=WorkloadSettings)
    plot: bool = True
    handle_signals: bool = False
    """SIGINT / SIGTERM stop the rounds and finish the run (heal, drain, check, write); a second one kills."""


@dataclass
class ChaosResult:
    options: ChaosOptions
    seed: int
    verdict: checker.Verdict
    results_path: Path
    summary: dict[str, Any]
    faults: list[FaultRecord]

    @property
    def passed(self) -> bool:
        return self.verdict.passed


async def run_chaos(options: ChaosOptions, say: Say = print) -> ChaosResult:
    """Run the whole thing; the results (JSON, timeline plot, history, node logs) land in `options.out`."""
    seed = options.seed if options.seed is not None else secrets.randbits(32)
    planned = plan(seed, options.rounds, options.faults, options.hold_s)
    commit = report.commit()
    out = options.out
    out.mkdir(parents=True, exist_ok=True)
    started = trio.current_time()
    wall_start = time.time()
    history = History(lambda: trio.current_time() - started)
    cluster = ChaosCluster(out / "cluster", options.nodes, options.transport, secrets.token_urlsafe(12))
    say(
        f"mom chaos: {options.nodes} nodes over {options.transport}, {options.rounds} rounds, seed {seed}, "
        f"output in {out}"
    )
    if "slow-disk" in options.faults and not disk_delay_supported():
        history.notes.append("slow-disk rounds did nothing: this build has no MOM_FAULT_DISK_DELAY_MS setting")
        say(f"note: {history.notes[-1]}")
    async with httpx.AsyncClient() as http, trio.open_nursery() as nursery:
        await nursery.start(cluster.run)
        run = _Run(options, seed, cluster, Observer(cluster, http), history, say)
        if options.handle_signals:
            nursery.start_soon(_interrupt_on_signal, run)
        try:
            inputs, extra = await run.go(planned)
        finally:
            nursery.cancel_scope.cancel()
    verdict = checker.check(inputs)
    extra["commit"] = commit
    command = {
        "rounds": options.rounds,
        "transport": options.transport,
        "nodes": options.nodes,
        "seed": seed,
        "faults": list(options.faults),
        "hold_s": list(options.hold_s),
    }
    summary = report.summary(command, kinds=[f.kind for f in history.faults], verdict=verdict, extra=extra)
    summary["duration_s"] = round(time.time() - wall_start, 1)
    history.write(out)
    windows = timeline.unavailability(history.requests)
    summary["unavailability"] = windows
    if options.plot:
        title = f"mom chaos: {options.nodes} nodes, {options.transport}, seed {seed}, {options.rounds} rounds"
        why = timeline.write_plot(out / "timeline.png", cluster.node_ids, history.faults, windows, title)
        if why is not None:
            history.notes.append(why)
    summary["notes"] = history.notes
    results = out / "results.json"
    results.write_text(json.dumps(summary, indent=2, default=str))
    for line in report.summary_lines(summary):
        say(line)
    return ChaosResult(options, seed, verdict, results, summary, history.faults)


class _Run:
    def __init__(
        self,
        options: ChaosOptions,
        seed: int,
        cluster: ChaosCluster,
        observer: Observer,
        history: History,
        say: Say,
    ) -> None:
        self.options = options
        self.seed = seed
        self.cluster = cluster
        self.observer = observer
        self.history = history
        self.say = say
        self.rounds = trio.CancelScope()

    async def go(self, planned: list[Any]) -> tuple[checker.Inputs, dict[str, Any]]:
        cluster, history, options = self.cluster, self.history, self.options
        for node_id in cluster.node_ids:
            await cluster.start(node_id)
        problem = await self._settle(None, START_TIMEOUT_S)
        if problem is not None:
            raise RuntimeError(f"the cluster did not come up within {START_TIMEOUT_S:.0f} s: {problem}")
        urls = {node_id: node.url for node_id, node in cluster.nodes.items()}
        user_password = secrets.token_urlsafe(16)
        await admin.declare(urls["mom1"], cluster.admin_password, user_password, SETUP_TIMEOUT_S)
        problem = await self._settle(None, SETUP_TIMEOUT_S)
        if problem is not None:
            raise RuntimeError(f"the destinations got no leaders within {SETUP_TIMEOUT_S:.0f} s: {problem}")
        workload = Workload(
            urls,
            history,
            options.workload,
            random.Random(self.seed ^ 0x5EED),
            username=USER,
            password=user_password,
        )
        names = [d.split(":", 1)[1] for d in destinations()]
        nemesis = Nemesis(cluster, self.observer, history, names, bursts=workload)
        extra: dict[str, Any] = {}
        async with trio.open_nursery() as consumers:
            consumers.start_soon(workload.run_consumers)
            async with trio.open_nursery() as bursts:
                workload.bursts = bursts
                async with trio.open_nursery() as producers:
                    producers.start_soon(workload.run_producers)
                    await trio.sleep(options.calm_s)
                    await self._rounds(planned, nemesis, workload, extra)
                    producers.cancel_scope.cancel()
                bursts.cancel_scope.deadline = trio.current_time() + BURSTS_FINISH_S
            history.round = len(planned) + 1
            final_problem = await self._settle(None, options.final_timeout_s)
            if final_problem is not None:
                self.say(f"the cluster did not settle after the last round: {final_problem}")
            expected = list((await self.observer.roles()).get(TOPIC, Role(None, tuple(cluster.node_ids))).replicas)
            drained = await self._drain(workload)
            extra["drain"] = drained
            left = await admin.left_on_server(urls["mom1"], cluster.admin_password)
            retained = await admin.replay(urls["mom1"], cluster.admin_password)
            consumers.cancel_scope.cancel()
        extra["consumer_errors"] = dict(workload.consumer_errors.most_common())
        extra["late_acks"] = dict(workload.late_acks)
        await workload.aclose()
        for node_id in cluster.node_ids:
            extra.setdefault("exit_codes", {})[node_id] = await cluster.stop(node_id)
        extra["log_errors"] = {n: node.log_errors() for n, node in cluster.nodes.items() if node.log_errors()}
        logs, errors = replica_logs({n: node.data_dir for n, node in cluster.nodes.items()}, TOPIC)
        extra["proxy"] = {
            "connections": {
                f"{link.client}->{link.server} {link.kind}": n for link, n in cluster.proxy.connections.items()
            },
            "bytes": {f"{a}->{b}": n for (a, b), n in cluster.proxy.bytes_forwarded.items()},
        }
        inputs = checker.Inputs(
            calls=history.calls,
            deliveries=history.deliveries,
            requests=history.requests,
            faults=history.faults,
            rounds=len(planned),
            retained={TOPIC: retained},
            replicas={TOPIC: logs},
            replica_errors=errors,
            expected_replicas={TOPIC: expected},
            final_problem=None if final_problem is None else str(final_problem),
            left_on_server=left,
            recovery_timeout_s=options.recovery_timeout_s,
        )
        return inputs, extra

    async def _rounds(self, planned: list[Any], nemesis: Nemesis, workload: Workload, extra: dict[str, Any]) -> None:
        """The fault rounds, until the plan ends, `interrupt()` is called, or the cluster stays unsettled."""
        options = self.options
        with self.rounds:
            for fault in planned:
                self.history.round = fault.round
                await trio.sleep(options.calm_s)
                record = await nemesis.run(fault)
                problem = await self._settle(record, options.recovery_timeout_s)
                if problem is not None:
                    problem = await self._settle(record, options.stuck_timeout_s - options.recovery_timeout_s)
                for _ in range(OPERATOR_ATTEMPTS):
                    if problem is None:
                        break
                    await self._operator(record, problem)
                    problem = await self._settle(record, options.stuck_timeout_s)
                self.say(report.round_line(fault.round, len(planned), record, problem, workload))
                if problem is not None:
                    self.say(f"stopping after round {fault.round}: the cluster did not settle ({problem})")
                    extra["stopped_after_round"] = fault.round
                    return
        if self.rounds.cancelled_caught:
            extra["stopped_after_round"] = self.history.round
            self.say(f"interrupted in round {self.history.round}: healing, draining and checking what ran")
            last = self.history.faults[-1] if self.history.faults else None
            if last is not None and last.recovered is None:
                await self._settle(last, options.recovery_timeout_s)

    def interrupt(self) -> None:
        """Stop injecting faults (the current one is healed) and finish the run with what happened so far."""
        self.rounds.cancel()

    async def _operator(self, record: FaultRecord, problem: Unsettled) -> None:
        """What an operator does about a cluster stuck after a fault: restart the leaders of the groups that do
        not move (a new leader starts its view of every follower afresh). The round counts as stuck."""
        roles = await self.observer.roles()
        leaders = sorted({role.leader for g in problem.groups if (role := roles.get(g)) and role.leader})
        actions = record.details.setdefault("operator", {"problem": str(problem), "restarted": []})
        actions["restarted"] += leaders
        self.say(f"  round {record.round} stuck ({problem}); restarting {', '.join(leaders) or 'nothing'}")
        for node_id in leaders:
            await self.cluster.stop(node_id)
            await self.cluster.start(node_id)

    async def _settle(self, record: FaultRecord | None, timeout_s: float) -> Unsettled | None:
        """Wait for the cluster to settle, restarting nodes that exited on their own (see the module docstring)."""
        problem: Unsettled | None = Unsettled("not checked")
        revived: set[str] = set()
        with trio.move_on_after(timeout_s):
            while True:
                for node_id, node in self.cluster.nodes.items():
                    if not node.running and node_id not in revived:
                        revived.add(node_id)
                        await self._revive(node_id, record)
                problem = await self.observer.unsettled()
                if problem is None:
                    break
                await trio.sleep(0.25)
        if record is not None:
            if problem is None:
                record.recovered = self.history.now()
            else:
                record.details["unsettled"] = str(problem)
        return problem

    async def _revive(self, node_id: str, record: FaultRecord | None) -> None:
        node = self.cluster.nodes[node_id]
        code = self.cluster.exited(node_id)
        note = {"exit_code": code, "log_tail": node.log_tail(15)}
        damaged = record is not None and record.kind in ("torn-tail", "bit-flip")
        if damaged:
            self.cluster.wipe(node_id)
            note["replaced"] = "refused to start on its damaged disk: data directory wiped, started as a new replica"
        if record is not None:
            record.details.setdefault("exited", {})[node_id] = note
        self.history.notes.append(f"round {record.round if record else '-'}: {node_id} exited with {code}")
        self.say(f"  {node_id} exited on its own (status {code}){'; replaced with an empty disk' if damaged else ''}")
        await self.cluster.start(node_id)

    async def _drain(self, workload: Workload) -> dict[str, Any]:
        """Let the consumers take everything acknowledged; ends when quiet, or at the drain timeout."""
        started = self.history.now()
        with trio.move_on_after(self.options.drain_timeout_s):
            while True:
                last = self.history.deliveries[-1].at if self.history.deliveries else 0.0
                if workload.pending() == 0 and self.history.now() - last >= QUIET_S:
                    break
                await trio.sleep(0.5)
        pending = workload.pending()
        self.say(f"drain: {self.history.now() - started:.1f} s, {pending} acknowledged messages not received")
        return {"seconds": round(self.history.now() - started, 1), "pending": pending}


async def _interrupt_on_signal(run: _Run) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            run.say(f"{signal.Signals(signum).name}: finishing the run early (send it again to kill it)")
            run.interrupt()
            break
