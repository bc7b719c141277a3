"""compose.yaml cannot run here (no Docker), so this checks that it says what the code does: the same
processes as `launch.plan`, started the same way, with the variables `Settings` needs, pointing at each other's
ports; mom nodes matching the cluster file mom itself accepts; and every file it names existing."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from examples.bookstore import config as c
from examples.bookstore.launch import Ports, plan
from mom.config import load_settings
from tests.examples.bookstore_harness import REPO

HERE = REPO / "examples" / "bookstore"
_DEFAULT = re.compile(r"\$\{(\w+):-([^}]*)\}")


def _interpolate(value: Any) -> Any:
    """Compose's `${VAR:-default}` with the variables unset."""
    if isinstance(value, str):
        return _DEFAULT.sub(lambda match: match.group(2), value)
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((HERE / "compose.yaml").read_text())
    return dict(_interpolate(loaded))


@pytest.fixture(scope="module")
def cluster_file() -> dict[str, Any]:
    return tomllib.loads((HERE / "compose" / "cluster.toml").read_text())


def _env(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in (service.get("environment") or {}).items()}


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, for every volume of a service."""
    found = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        found[target] = source
    return found


def test_the_build_uses_files_that_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service["build"]
        context = (HERE / build["context"]).resolve()
        assert context == REPO, f"{name}: the build context must be the repository root"
        dockerfile = context / build["dockerfile"]
        assert dockerfile.exists()
        text = dockerfile.read_text()
        assert "COPY mom ./mom" in text and "COPY examples ./examples" in text
        assert (dockerfile.parent / (dockerfile.name + ".dockerignore")).exists()
        for target, source in _mounts(service).items():
            if source.startswith("."):
                assert (HERE / source).exists(), f"{name}: {source} (for {target}) is missing"
            else:
                assert source in compose["volumes"], f"{name}: volume {source} is not declared"


def test_every_process_of_the_plan_is_a_compose_service_started_the_same_way(compose: dict[str, Any]) -> None:
    services = compose["services"]
    processes = plan(Ports(), Path("/var/lib/bookstore"), (), Path("/run/bookstore/credentials.json"), "0.0.0.0")
    assert {p.name for p in processes} | {"mom1", "mom2", "mom3", "provision"} == set(services)
    by_name = {p.name: p for p in processes}
    for process in processes:
        service = services[process.name]
        assert service["command"] == process.argv("python"), process.name
        env = _env(service)
        assert set(env) == set(process.env), f"{process.name}: variables differ from the plan"
        for key in (c.ENV_INSTANCE, c.ENV_LISTEN, c.ENV_DATA_DIR, c.ENV_CREDENTIALS):
            assert env.get(key) == process.env.get(key), f"{process.name}: {key}"
        settings = c.Settings.load(process.service, env)
        assert settings.instance == process.instance
        mounts = _mounts(service)
        assert mounts.get(str(settings.data_dir)) or process.service == "gateway", f"{process.name}: data not kept"
        if process.service in c.USES_MOM:
            assert c.ENV_CREDENTIALS in env and str(Path(env[c.ENV_CREDENTIALS]).parent) in mounts
            assert service["depends_on"]["provision"]["condition"] == "service_completed_successfully"
        if process.service == "gateway":
            targets = {c.ENV_AUTH_URL: ["auth-1"], c.ENV_CATALOG_URL: ["catalog-1"],
                       c.ENV_ORDERS_URLS: ["orders-1", "orders-2"]}  # fmt: skip
            for key, names in targets.items():
                urls = [urlsplit(url) for url in env[key].split(",")]
                assert [u.hostname for u in urls] == names, key
                assert [u.port for u in urls] == [int(str(by_name[n].listen).rsplit(":", 1)[1]) for n in names]
            assert service["ports"] == [f"{Ports().gateway}:{Ports().gateway}"]


def test_instances_of_one_service_share_its_database(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for service in ("orders", "payments"):
        sources = {_mounts(services[f"{service}-{n}"])["/var/lib/bookstore"] for n in (1, 2)}
        assert sources == {f"{service}-data"}


def test_the_mom_nodes_match_a_cluster_file_mom_accepts(compose: dict[str, Any], cluster_file: dict[str, Any]) -> None:
    services = compose["services"]
    subnet = compose["networks"]["bookstore"]["ipam"]["config"][0]["subnet"]
    nodes = {node["id"]: node for node in cluster_file["cluster"]["nodes"]}
    assert set(nodes) == {"mom1", "mom2", "mom3"}
    mom_urls = []
    for node_id, node in nodes.items():
        service = services[node_id]
        settings = load_settings(HERE / "compose" / "cluster.toml", env={}, flags={"node.id": node_id})
        ip = service["networks"]["bookstore"]["ipv4_address"]
        assert ip.rsplit(".", 1)[0] == subnet.rsplit(".", 1)[0]
        assert settings.rest.host == ip and node["replication"].startswith(ip + ":")
        assert (
            service["command"][:2] == ["mom", "serve"]
            and service["command"][service["command"].index("--node-id") + 1] == node_id
        )
        assert _env(service)["HEALTH_URL"] == f"http://{node['rest']}/readyz"
        assert _mounts(service)["/etc/mom/cluster.toml"] == "./compose/cluster.toml"
        assert service["ports"] == [f"{settings.rest.port}:{settings.rest.port}"]
        mom_urls.append(f"http://{node['rest']}")
    for name, service in services.items():
        if c.ENV_MOM_URLS in _env(service):
            assert _env(service)[c.ENV_MOM_URLS].split(",") == mom_urls, name


def test_provisioning_has_what_its_command_needs(compose: dict[str, Any]) -> None:
    provision = compose["services"]["provision"]
    env = _env(provision)
    assert provision["command"] == ["python", "-m", "examples.bookstore", "provision"]
    assert {"BOOKSTORE_MOM_URLS", "BOOKSTORE_CREDENTIALS", "MOM_ADMIN_PASSWORD"} <= set(env)
    assert _mounts(provision)[str(Path(env["BOOKSTORE_CREDENTIALS"]).parent)] == "credentials"
    assert provision["restart"] == "no"
    assert all(provision["depends_on"][n]["condition"] == "service_healthy" for n in ("mom1", "mom2", "mom3"))
    for node in ("mom1", "mom2", "mom3"):
        assert _env(compose["services"][node])["MOM_ADMIN_PASSWORD"] == env["MOM_ADMIN_PASSWORD"]
