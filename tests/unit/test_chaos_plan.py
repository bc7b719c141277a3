"""The seeded fault plan, the cluster files the engine writes, the settle rule, and `mom chaos`'s options."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from mom.chaos import KINDS
from mom.chaos.cluster import ChaosCluster
from mom.chaos.faults import plan
from mom.chaos.observe import META, disagreement, lagging, leader_commits, roles_from
from mom.chaos.proxy import Link
from mom.cli import main
from mom.cli.chaos import FAULT_KINDS
from mom.config import Address, load_settings


def test_a_seed_gives_the_same_plan_and_every_kind_comes_first() -> None:
    first = plan(7, 25, KINDS, (1.0, 2.0))
    assert first == plan(7, 25, KINDS, (1.0, 2.0))
    assert first != plan(8, 25, KINDS, (1.0, 2.0))
    assert sorted(p.kind for p in first[: len(KINDS)]) == sorted(KINDS)
    assert all(1.0 <= p.hold_s <= 2.0 for p in first)
    assert [p.round for p in first] == list(range(1, 26))
    assert {p.kind for p in plan(1, 5, ["pause", "wipe"], (1.0, 1.0))} == {"pause", "wipe"}


def test_unknown_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown fault kinds"):
        plan(1, 3, ["pause", "meteor"], (1.0, 2.0))


def test_the_cli_lists_the_engines_kinds() -> None:
    assert FAULT_KINDS == KINDS


def test_each_node_file_points_its_peers_at_the_proxy_and_loads(tmp_path: Path) -> None:
    cluster = ChaosCluster(tmp_path, 3, "zmq", "pw")
    ports = {link: Address("127.0.0.1", 40000 + i) for i, link in enumerate(cluster.links())}
    assert len(ports) == 3 * 2 * 2, "one link per ordered pair of nodes and kind of traffic"
    path = tmp_path / "mom2.toml"
    path.write_text(cluster.config_text("mom2", ports))
    entries = {n["id"]: n for n in tomllib.loads(path.read_text())["cluster"]["nodes"]}
    me = cluster.nodes["mom2"]
    assert (entries["mom2"]["rest"], entries["mom2"]["replication"]) == (str(me.rest), str(me.replication))
    peer = cluster.nodes["mom3"]
    assert entries["mom3"]["replication"] == str(ports[Link("mom2", "mom3", "replication", peer.replication)])
    assert entries["mom3"]["rest"] == str(ports[Link("mom2", "mom3", "rest", peer.rest)])
    settings = load_settings(path, flags={"node.id": "mom2"})
    assert settings.cluster.transport == "zmq" and settings.rest == me.rest


def view(
    meta: str | None, leaders: dict[str, str | None], replicas: tuple[str, ...], commit: int = 0
) -> dict[str, object]:
    destinations = [
        {"name": name, "leader": leader, "replicas": list(replicas), "commit_index": commit}
        for name, leader in leaders.items()
    ]
    return {"metadata_leader": meta, "destinations": destinations}


def test_settled_means_one_agreed_leader_everywhere() -> None:
    nodes = ("mom1", "mom2", "mom3")
    agreed = {n: view("mom1", {"q": "mom2"}, nodes) for n in nodes}
    assert disagreement(agreed) is None
    assert roles_from(agreed, list(nodes))["q"].leader == "mom2"
    assert roles_from(agreed, list(nodes))[META].leader == "mom1"
    split = {**agreed, "mom3": view("mom1", {"q": "mom3"}, nodes)}
    assert disagreement(split) is not None
    leaderless = disagreement({**agreed, "mom3": view("mom1", {"q": None}, nodes)})
    assert leaderless is not None and "q leader" in leaderless.text and leaderless.groups == {"q"}
    no_meta = disagreement({**agreed, "mom1": view(None, {"q": "mom2"}, nodes)})
    assert no_meta is not None and "metadata" in no_meta.text and no_meta.groups == {META}
    outsider = {**agreed, "mom4": view("mom1", {"q": None}, nodes)}
    assert disagreement(outsider) is None, "a node that does not replicate q knows no leader for it"


def test_chaos_help_documents_every_option() -> None:
    result = CliRunner().invoke(main, ["chaos", "--help"])
    assert result.exit_code == 0
    for option in ("--rounds", "--transport", "--nodes", "--seed", "--out", "--faults", "--hold", "--recovery-timeout"):
        assert option in result.output
    command = main.commands["chaos"]
    assert all(param.help for param in command.params if param.name != "help")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "pause,meteor"], "unknown fault kinds meteor"),
        (["--hold", "5"], "MIN,MAX"),
        (["--hold", "5,1"], "MIN <= MAX"),
        (["--nodes", "4"], "'4' is not one of"),
        (["--transport", "tcp"], "'tcp' is not one of"),
    ],
)
def test_chaos_refuses_bad_options_before_starting_anything(args: list[str], message: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["chaos", "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_a_replica_that_does_not_reach_its_leaders_earlier_commit_lags() -> None:
    nodes = ("mom1", "mom2", "mom3")
    views = {"mom1": view("mom1", {"q": "mom2"}, nodes, 90), "mom2": view("mom1", {"q": "mom2"}, nodes, 120)}
    views["mom3"] = view("mom1", {"q": "mom2"}, nodes, 100)
    assert leader_commits(views) == {"q": 120}
    behind = lagging(views, {"q": 100})
    assert behind is not None and behind.groups == {"q"}
    assert behind.text == "replicas behind their leader: mom1 at 90 in q (its leader had 100)"
    assert lagging(views, {"q": 90}) is None
