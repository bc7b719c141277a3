"""Driving a running dev cluster: restart, stop or kill one node, typed on its stdin or sent from another terminal.

The foreground `mom dev-cluster` listens on a Unix socket in its data directory (owner only), so
`mom dev-cluster restart mom3` finds it by the same `--data-dir` and nothing else: no PIDs to hunt. One command
per connection: the client sends a line and reads the answer, whose first line is `ok` or the error's slug. The
same lines typed on the foreground process's stdin (a terminal in the foreground, or a pipe) do the same.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import trio

from mom.errors import Conflict, InvalidInput, MomError, NotFound, Unavailable

SOCKET_FILE = "control.sock"
MAX_LINE = 1024
READ_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 120.0
"""How long a client waits for an answer: a restart stops the node (15 s at most) and waits until it is ready."""

Verb = Literal["restart", "stop", "kill", "status", "help"]
_VERBS: dict[str, Verb] = {
    "restart": "restart", "r": "restart",
    "stop": "stop", "s": "stop",
    "kill": "kill", "k": "kill",
    "status": "status", "ps": "status",
    "help": "help", "h": "help", "?": "help",
}  # fmt: skip
HELP = (
    "commands: restart NODE (r), stop NODE (s: SIGTERM), kill NODE (k: SIGKILL), status (ps), help (h); "
    "NODE is an id (mom3) or a number (3)"
)
_ERRORS: dict[str, type[MomError]] = {cls.slug: cls for cls in (InvalidInput, NotFound, Conflict, Unavailable)}


@dataclass(frozen=True)
class Request:
    verb: Verb
    node_id: str | None = None


def parse_request(line: str, node_ids: Sequence[str]) -> Request:
    """One command line (`restart mom3`, `k 2`, `status`) as a request; InvalidInput says what is wrong."""
    words = line.split()
    if not words:
        raise InvalidInput(f"no command given; {HELP}")
    verb = _VERBS.get(words[0].lower())
    if verb is None:
        raise InvalidInput(f"unknown command {words[0]!r}; {HELP}")
    if verb in ("status", "help"):
        if len(words) != 1:
            raise InvalidInput(f"{verb} takes no node")
        return Request(verb)
    if len(words) != 2:
        raise InvalidInput(f"{verb} takes one node, e.g. `{verb} {node_ids[-1]}`")
    node_id = f"mom{words[1]}" if words[1].isdigit() else words[1]
    if node_id not in node_ids:
        raise InvalidInput(f"there is no node {words[1]!r}: the nodes are {', '.join(node_ids)}")
    return Request(verb, node_id)


Execute = Callable[[str], Awaitable[str]]
"""Runs one command line; returns the answer or raises a MomError."""


# ----------------------------------------------------------------------------------------------------------------
# The socket


def socket_path(data_dir: Path) -> Path:
    return data_dir / SOCKET_FILE


def _address(path: Path) -> str:
    """The shorter of the absolute and the relative path: a Unix socket's path is limited to 107 bytes."""
    address = min(str(path.absolute()), os.path.relpath(path), key=len)
    if len(os.fsencode(address)) > 107:
        raise InvalidInput(f"{path} is too long a path for a Unix socket; use a shorter --data-dir")
    return address


def _connect(data_dir: Path, timeout_s: float) -> socket.socket | None:
    """A connection to the dev cluster running on `data_dir`, or None if none runs there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(_address(socket_path(data_dir)))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    except BaseException:
        sock.close()
        raise
    return sock


def ensure_not_running(data_dir: Path) -> None:
    """Raise Conflict if a dev cluster already runs on `data_dir`: two on one directory would corrupt it."""
    try:
        sock = _connect(data_dir, READ_TIMEOUT_S)
    except InvalidInput:
        return  # a path too long for a socket: that dev cluster runs without one, and so will this one
    if sock is not None:
        sock.close()
        raise Conflict(
            f"a dev-cluster is already running on {data_dir}: stop it first (Ctrl-C in its terminal), "
            "or give this one another --data-dir"
        )


def send_command(data_dir: Path, line: str, *, timeout_s: float = ANSWER_TIMEOUT_S) -> str:
    """Have the dev cluster running on `data_dir` execute `line`; its answer, or the MomError it raised."""
    sock = _connect(data_dir, timeout_s)
    if sock is None:
        raise Unavailable(f"no dev-cluster is running on {data_dir} (start one with `mom dev-cluster`)")
    chunks = []
    with sock:
        try:
            sock.sendall(line.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:  # a timeout, or the dev cluster stopped while we waited
            raise Unavailable(f"the dev-cluster on {data_dir} did not answer: {exc or type(exc).__name__}") from exc
    status, _, text = b"".join(chunks).decode(errors="replace").partition("\n")
    if status == "ok":
        return text
    raise _ERRORS.get(status, MomError)(text or "the dev-cluster closed the connection without an answer")


async def serve_control(
    data_dir: Path, execute: Execute, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Answer commands on the data directory's socket until cancelled, then remove it.

    A socket file left by a dev cluster that was killed is replaced; one that answers is another dev cluster's,
    and raises Conflict.
    """
    path = socket_path(data_dir)
    address = _address(path)
    ensure_not_running(data_dir)
    path.unlink(missing_ok=True)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(address)
        os.chmod(path, 0o600)
        sock.listen(16)
        task_status.started()
        await trio.serve_listeners(partial(_answer, execute), [trio.SocketListener(sock)])
    finally:
        sock.close()
        path.unlink(missing_ok=True)


async def _answer(execute: Execute, stream: trio.SocketStream) -> None:
    async with stream:
        try:
            with trio.fail_after(READ_TIMEOUT_S):
                line = await _read_line(stream)
            if not line.strip():
                return  # a liveness probe (ensure_not_running)
            try:
                answer = "ok\n" + await execute(line)
            except MomError as exc:
                answer = f"{exc.slug}\n{exc.detail}"
            await stream.send_all(answer.encode())
        except (trio.BrokenResourceError, trio.TooSlowError):
            pass  # the client went away or never finished its line: nothing to answer


async def _read_line(stream: trio.SocketStream) -> str:
    data = b""
    while b"\n" not in data and len(data) < MAX_LINE:
        chunk = await stream.receive_some(MAX_LINE)
        if not chunk:
            break
        data += chunk
    return data.partition(b"\n")[0].decode(errors="replace")


# ----------------------------------------------------------------------------------------------------------------
# Stdin


def stdin_takes_commands() -> bool:
    """Read commands from stdin when it is a pipe, or a terminal of which we are the foreground job.

    Not otherwise: a background job reading its terminal would be stopped (SIGTTIN), and /dev/null has none.
    """
    try:
        mode = os.fstat(0).st_mode
        if stat.S_ISFIFO(mode):
            return True
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


async def read_commands(execute: Execute, say: Callable[[str], None]) -> None:
    """Execute each line of stdin and print its answer, until stdin ends.

    Blocking reads run in a worker thread abandoned on cancellation: trio has no portable non-blocking stdin,
    and making a terminal non-blocking would also change it for the shell that shares it.
    """
    while line := await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True):
        if not line.strip():
            continue
        try:
            say(await execute(line))
        except MomError as exc:
            say(f"error: {exc.detail}")
