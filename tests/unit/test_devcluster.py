"""`mom dev-cluster` without processes: the shape check, `--reset`, the command language and the control socket."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

from mom.cli import main
from mom.devcluster import DevCluster, ensure_not_running, send_command
from mom.devcluster._control import Request, parse_request, serve_control, socket_path
from mom.errors import Conflict, InvalidInput, Unavailable

IDS = ["mom1", "mom2", "mom3"]


def made(tmp_path: Path, **shape: object) -> DevCluster:
    """A data directory as a first start leaves it: the cluster file and one data directory per node."""
    cluster = asked(tmp_path, **shape)
    cluster.prepare(progress=print)
    for node_id in cluster.node_ids:
        (cluster.data_dir / node_id / "meta").mkdir(parents=True)
    return cluster


def asked(tmp_path: Path, **shape: object) -> DevCluster:
    return dataclasses.replace(DevCluster(3, "grpc", tmp_path / "dc"), **shape)


# ----------------------------------------------------------------------------------------------------------------
# The shape


def test_the_same_shape_starts_again(tmp_path: Path) -> None:
    made(tmp_path)
    asked(tmp_path).check_shape()
    asked(tmp_path, secure=True).check_shape()  # TLS on or off does not change where the data belongs


@pytest.mark.parametrize(
    ("change", "difference"),
    [
        ({"nodes": 5}, "nodes mom1..mom3 here, mom1..mom5 asked"),
        ({"nodes": 2}, "nodes mom1..mom3 here, mom1, mom2 asked"),
        ({"transport": "zmq"}, "transport grpc here, zmq asked"),
        ({"rest_base_port": 9001}, "REST 127.0.0.1:8001-8003 here, 127.0.0.1:9001-9003 asked"),
        ({"replication_base_port": 6000}, "replication 127.0.0.1:50051-50053 here, 127.0.0.1:6000-6002 asked"),
    ],
)
def test_another_shape_is_refused_with_what_differs_and_what_to_do(
    tmp_path: Path, change: dict[str, object], difference: str
) -> None:
    cluster = made(tmp_path)
    before = cluster.config_file.read_text()
    with pytest.raises(Conflict) as refused:
        asked(tmp_path, **change).prepare(progress=print)
    message = refused.value.detail
    assert difference in message.splitlines()[1]
    assert f"mom dev-cluster --data-dir {cluster.data_dir} --reset" in message
    assert "--data-dir OTHER_DIR" in message
    assert (
        f"run the one that is there:  mom dev-cluster --data-dir {cluster.data_dir} "
        "--nodes 3 --transport grpc --rest-port 8001 --replication-port 50051" in message
    )
    assert cluster.config_file.read_text() == before, "a refused start must change nothing"


def test_a_directory_without_node_data_takes_any_shape(tmp_path: Path) -> None:
    """A first start that died before any node wrote leaves only the cluster file: nothing to protect."""
    DevCluster(3, "grpc", tmp_path / "dc").prepare(progress=print)
    bigger = DevCluster(5, "zmq", tmp_path / "dc")
    bigger.prepare(progress=print)
    assert bigger.recorded_shape() == bigger.shape


def test_node_data_without_a_cluster_file_is_refused(tmp_path: Path) -> None:
    cluster = made(tmp_path)
    cluster.config_file.unlink()
    with pytest.raises(Conflict, match=r"holds node data \(mom1, mom2, mom3\) but no cluster.toml"):
        cluster.prepare(progress=print)


def test_a_cluster_file_written_before_the_check_existed_is_read_as_the_record(tmp_path: Path) -> None:
    data_dir = tmp_path / "dc"
    (data_dir / "mom1").mkdir(parents=True)
    (data_dir / "cluster.toml").write_text(
        '[cluster]\ntransport = "zmq"\nreplication_factor = 1\n\n'
        '[[cluster.nodes]]\nid = "mom1"\nrest = "127.0.0.1:8001"\nreplication = "127.0.0.1:50051"\n'
    )
    DevCluster(1, "zmq", data_dir).check_shape()
    with pytest.raises(Conflict, match="nodes mom1 here, mom1, mom2 asked"):
        DevCluster(2, "zmq", data_dir).check_shape()


def test_an_unreadable_cluster_file_is_refused(tmp_path: Path) -> None:
    cluster = made(tmp_path)
    cluster.config_file.write_text("[cluster\n")
    with pytest.raises(Conflict, match="cannot be read"):
        cluster.check_shape()


def test_reset_deletes_what_a_dev_cluster_made_and_nothing_else(tmp_path: Path) -> None:
    cluster = made(tmp_path)
    cluster.admin_password({})
    (cluster.data_dir / "mom7").mkdir()  # left by an old 7-node cluster
    (cluster.data_dir / "notes.txt").write_text("mine")
    (cluster.data_dir / "momentum").mkdir()
    cluster.reset()
    assert sorted(p.name for p in cluster.data_dir.iterdir()) == ["momentum", "notes.txt"]
    DevCluster(5, "zmq", cluster.data_dir).prepare(progress=print)


# ----------------------------------------------------------------------------------------------------------------
# The command language


@pytest.mark.parametrize(
    ("line", "request_"),
    [
        ("restart mom3", Request("restart", "mom3")),
        ("r 3\n", Request("restart", "mom3")),
        ("  KILL   mom1 ", Request("kill", "mom1")),
        ("k 2", Request("kill", "mom2")),
        ("stop mom2", Request("stop", "mom2")),
        ("s 1", Request("stop", "mom1")),
        ("status", Request("status")),
        ("ps", Request("status")),
        ("?", Request("help")),
    ],
)
def test_commands_parse(line: str, request_: Request) -> None:
    assert parse_request(line, IDS) == request_


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ("", "no command given"),
        ("reboot mom1", "unknown command 'reboot'"),
        ("restart", "restart takes one node, e.g. `restart mom3`"),
        ("kill mom1 mom2", "kill takes one node"),
        ("kill mom4", "there is no node 'mom4': the nodes are mom1, mom2, mom3"),
        ("stop 0", "there is no node '0'"),
        ("status mom1", "status takes no node"),
    ],
)
def test_bad_commands_say_what_is_wrong(line: str, error: str) -> None:
    with pytest.raises(InvalidInput, match=error.replace("(", r"\(").replace("?", r"\?")):
        parse_request(line, IDS)


# ----------------------------------------------------------------------------------------------------------------
# The control socket


async def test_a_command_sent_from_another_process_is_executed_and_answered(tmp_path: Path) -> None:
    seen = []

    async def execute(line: str) -> str:
        request = parse_request(line, IDS)
        seen.append(request)
        if request.verb == "stop":
            raise Conflict("mom2 is not running")
        return f"did {request.verb} {request.node_id}"

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, tmp_path, execute)
        assert os.stat(socket_path(tmp_path)).st_mode & 0o777 == 0o600
        assert await trio.to_thread.run_sync(send_command, tmp_path, "restart 3") == "did restart mom3"
        with pytest.raises(Conflict, match="mom2 is not running"):
            await trio.to_thread.run_sync(send_command, tmp_path, "stop mom2")
        with pytest.raises(InvalidInput, match="unknown command"):
            await trio.to_thread.run_sync(send_command, tmp_path, "reboot")
        with pytest.raises(Conflict, match="already running"):
            await trio.to_thread.run_sync(ensure_not_running, tmp_path)
        with pytest.raises(Conflict, match="already running"):
            await nursery.start(serve_control, tmp_path, execute)
        nursery.cancel_scope.cancel()
    assert seen == [Request("restart", "mom3"), Request("stop", "mom2")]
    assert not socket_path(tmp_path).exists(), "the socket is removed on the way out"


async def test_a_socket_left_by_a_killed_dev_cluster_is_replaced(tmp_path: Path) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path(tmp_path)))
    stale.close()  # the file stays, nobody listens: as after kill -9
    ensure_not_running(tmp_path)
    with pytest.raises(Unavailable, match="no dev-cluster is running on"):
        send_command(tmp_path, "status")

    async def execute(line: str) -> str:
        return "fine"

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, tmp_path, execute)
        assert await trio.to_thread.run_sync(send_command, tmp_path, "status") == "fine"
        nursery.cancel_scope.cancel()


async def test_a_dev_cluster_that_does_not_answer_in_time_is_reported(tmp_path: Path) -> None:
    async def execute(line: str) -> str:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async with trio.open_nursery() as nursery:
        await nursery.start(serve_control, tmp_path, execute)
        with pytest.raises(Unavailable, match=f"the dev-cluster on {tmp_path} did not answer"):
            await trio.to_thread.run_sync(lambda: send_command(tmp_path, "restart 1", timeout_s=0.3))
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------------------------------------------------
# The command line


def test_control_commands_without_a_running_dev_cluster_say_so(tmp_path: Path) -> None:
    for args in (["--data-dir", str(tmp_path), "kill", "mom3"], ["status", "--data-dir", str(tmp_path)]):
        result = CliRunner().invoke(main, ["dev-cluster", *args])
        assert result.exit_code == 1, result.output
        assert f"error: no dev-cluster is running on {tmp_path}" in result.output


def test_another_shape_is_refused_on_the_command_line_before_anything_starts(tmp_path: Path) -> None:
    cluster = made(tmp_path)
    result = CliRunner().invoke(main, ["dev-cluster", "--data-dir", str(cluster.data_dir), "--nodes", "2"])
    assert result.exit_code == 2
    assert "holds the data of a cluster of another shape" in result.output
    assert sorted(p.name for p in cluster.node_data()) == IDS


def test_reset_asks_first_and_a_no_keeps_everything(tmp_path: Path) -> None:
    cluster = made(tmp_path)
    result = CliRunner().invoke(main, ["dev-cluster", "--data-dir", str(cluster.data_dir), "--reset"], input="n\n")
    assert result.exit_code == 1 and "Aborted" in result.output
    assert f"Delete the cluster in {cluster.data_dir} (3 nodes mom1..mom3 over grpc, REST 127.0.0.1:8001-8003" in (
        result.output
    )
    assert sorted(p.name for p in cluster.node_data()) == IDS and cluster.config_file.exists()
