"""`run_dev_cluster`: the foreground process that starts the nodes, shows where they are, and takes commands."""

from __future__ import annotations

import os
import signal

import trio

from mom.devcluster._control import (
    ensure_not_running,
    parse_request,
    read_commands,
    serve_control,
    stdin_takes_commands,
)
from mom.devcluster._layout import DevCluster
from mom.devcluster._supervisor import READY_TIMEOUT_S, Supervisor
from mom.errors import InvalidInput
from mom.security import CertsLayout


def say(text: str) -> None:
    print("\n".join(f"[dev-cluster] {line}" for line in text.splitlines()), flush=True)


async def run_dev_cluster(cluster: DevCluster) -> None:
    """Run the cluster until SIGINT or SIGTERM.

    Raises Conflict, before starting anything, if another dev cluster runs on the data directory or its data was
    made for another shape.
    """
    ensure_not_running(cluster.data_dir)
    cluster.prepare(progress=say)
    env = dict(os.environ)
    password = cluster.admin_password(env)
    env["MOM_ADMIN_PASSWORD"] = password
    env.setdefault("MOM_OPEN_REGISTRATION", "true")  # a development cluster: anyone may register
    for inherited in ("MOM_REST", "MOM_NODE_ID", "MOM_DATA_DIR"):
        env.pop(inherited, None)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            supervisor = Supervisor(cluster, env, nursery, say)

            async def typed(line: str) -> str:
                return await supervisor.execute(parse_request(line, cluster.node_ids))

            async def sent(line: str) -> str:
                request = parse_request(line, cluster.node_ids)
                answer = await supervisor.execute(request)
                if request.node_id is not None:
                    say(f"`{line.strip()}` from another terminal: {answer}")
                return answer

            for node_id in cluster.node_ids:
                await supervisor.start(node_id)
            try:
                await nursery.start(serve_control, cluster.data_dir, sent)
                controlled = True
            except InvalidInput as exc:
                say(f"no control socket: {exc.detail}")
                controlled = False
            typing = stdin_takes_commands()
            if typing:
                nursery.start_soon(read_commands, typed, say)
            if await supervisor.wait_ready(cluster.node_ids):
                _banner(cluster, supervisor, password, controlled=controlled, typing=typing)
            else:
                say(f"not every node answered within {READY_TIMEOUT_S:.0f} s")
            async for signum in signals:
                say(f"{signal.Signals(signum).name}: stopping all nodes")
                nursery.cancel_scope.cancel()
                break


def _banner(cluster: DevCluster, supervisor: Supervisor, password: str, *, controlled: bool, typing: bool) -> None:
    lines = ["", "[dev-cluster] ready:"]
    for i, node_id in enumerate(cluster.node_ids):
        lines.append(
            f"  {node_id}: {cluster.rest_url(i)}  pid {supervisor.pid(node_id)}  "
            f"replication {cluster.replication_address(i)}"
        )
    lines.append(f"  transport: {cluster.transport}; config: {cluster.config_file}")
    lines.append(f"  dashboard: {cluster.rest_url(0)}/ui (any node serves it)")
    lines.append(f"  admin user: admin, password: {password}")
    if cluster.secure:
        ca = CertsLayout(cluster.certs_dir).ca
        lines.append(f"  TLS: the cluster CA is {ca} (use mom --ca-file {ca}, or MOM_CA_FILE)")
        lines.append(f"  try: curl --cacert {ca} {cluster.rest_url(0)}/healthz")
    last = cluster.node_ids[-1]
    if typing:
        lines.append(f"  type `kill {last}`, `restart {last}`, `stop {last}`, `status` or `help` here")
    if controlled:
        lines.append(f"  from another terminal: mom dev-cluster --data-dir {cluster.data_dir} restart {last}")
        lines.append("    (or kill, stop, status)")
    lines += ["  stop with Ctrl-C", ""]
    print("\n".join(lines), flush=True)
