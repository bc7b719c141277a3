"""The deployment files parse and agree with each other: node ids, host names, ports, volumes, quorum.

No Docker daemon or Kubernetes cluster is needed: these are the checks that can be made on the files alone.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from mom.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def k8s() -> dict[str, dict[str, Any]]:
    """Every manifest the kustomization lists, by kind/name."""
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    found: dict[str, dict[str, Any]] = {}
    for resource in kustomization["resources"]:
        for document in yaml.safe_load_all((DEPLOY / "k8s" / resource).read_text()):
            found[f"{document['kind']}/{document['metadata']['name']}"] = document
    return found


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def test_every_k8s_file_is_listed_in_the_kustomization() -> None:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_the_statefulset_the_services_and_the_cluster_file_agree() -> None:
    manifests = k8s()
    sts = manifests["StatefulSet/mom"]
    headless = manifests[f"Service/{sts['spec']['serviceName']}"]
    api = manifests["Service/mom-api"]
    cluster_map = manifests["ConfigMap/mom-cluster"]
    cluster = tomllib.loads(cluster_map["data"]["cluster.toml"])

    replicas = sts["spec"]["replicas"]
    names = [f"{sts['metadata']['name']}-{i}" for i in range(replicas)]
    nodes = cluster["cluster"]["nodes"]
    assert [n["id"] for n in nodes] == names
    assert cluster["cluster"]["replication_factor"] <= replicas

    container = sts["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for node in nodes:
        assert host_port(node["rest"]) == (f"{node['id']}.{headless['metadata']['name']}", ports["rest"])
        assert host_port(node["replication"]) == (f"{node['id']}.{headless['metadata']['name']}", ports["replication"])

    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True  # peers must find each other before ready
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for service in (headless, api):
        assert service["spec"]["selector"].items() <= labels.items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports
    assert {p["targetPort"] for p in headless["spec"]["ports"]} == set(ports)

    args = container["args"]
    assert args[args.index("--node-id") + 1] == "$(POD_NAME)"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert args[args.index("--data-dir") + 1].startswith(mounts["data"])
    assert [t["metadata"]["name"] for t in sts["spec"]["volumeClaimTemplates"]] == ["data"]
    assert args[args.index("--config") + 1] == f"{mounts['cluster']}/cluster.toml"
    assert cluster["security"]["certs_dir"] == mounts["certs"]
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert volumes["cluster"]["configMap"]["name"] == cluster_map["metadata"]["name"]
    assert set(mounts) - {"data"} <= set(volumes)

    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] == "rest"
    assert sts["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_disruption_budget_keeps_a_quorum() -> None:
    manifests = k8s()
    sts, pdb = manifests["StatefulSet/mom"], manifests["PodDisruptionBudget/mom"]
    replicas = sts["spec"]["replicas"]
    assert pdb["spec"]["minAvailable"] == replicas // 2 + 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()


def test_the_compose_cluster_agrees_with_its_cluster_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    cluster = tomllib.loads((DEPLOY / "cluster.toml").read_text())
    services = compose["services"]
    nodes = cluster["cluster"]["nodes"]
    assert {n["id"] for n in nodes} | {"certs"} == set(services)
    published = []
    for node in nodes:
        service = services[node["id"]]
        rest_host, rest_port = host_port(node["rest"])
        assert rest_host == node["id"] == service["hostname"]
        assert host_port(node["replication"])[0] == node["id"]
        command = service["command"]
        assert command[command.index("--node-id") + 1] == node["id"]
        assert service["depends_on"]["certs"]["condition"] == "service_completed_successfully"
        host_side, container_side = service["ports"][0].split(":")
        assert int(container_side) == rest_port
        published.append(int(host_side))
        mounts = dict(v.split(":", 1) for v in service["volumes"])
        assert mounts["certs"] == f"{cluster['security']['certs_dir']}:ro"
        config = command[command.index("--config") + 1]
        assert mounts["./cluster.toml"] == f"{config}:ro"
        data = next(volume for volume, target in mounts.items() if target == command[command.index("--data-dir") + 1])
        assert data == f"{node['id']}-data"
        assert service["environment"]["MOM_HEALTHCHECK_URL"] == f"https://{node['rest']}/readyz"
    assert len(set(published)) == len(published)
    declared = set(compose["volumes"])
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", []) if not v.startswith(".")}
    assert used == declared
    init = " ".join(services["certs"]["command"])
    assert "mom certs init /certs" in init and f"--nodes {','.join(n['id'] for n in nodes)}" in init
    for node in nodes:
        assert f"--host {node['id']}" in init


def test_the_cluster_files_load_for_every_node(tmp_path: Path) -> None:
    cluster_map = k8s()["ConfigMap/mom-cluster"]
    files = {"compose": DEPLOY / "cluster.toml", "k8s": tmp_path / "k8s.toml"}
    files["k8s"].write_text(cluster_map["data"]["cluster.toml"])
    for path in files.values():
        for node in tomllib.loads(path.read_text())["cluster"]["nodes"]:
            settings = load_settings(path, env={}, flags={"node.id": node["id"]})
            assert str(settings.rest) == node["rest"]
            assert settings.security.certs_dir == "/certs"


def test_the_dockerfile_runs_as_non_root_with_a_data_volume_and_a_readiness_check() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    user = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert user and user[-1] not in ("root", "0")
    assert 'VOLUME ["/var/lib/mom/data"]' in dockerfile and "MOM_DATA_DIR=/var/lib/mom/data" in dockerfile
    healthcheck = re.search(r"^HEALTHCHECK .*$", dockerfile, re.M)
    assert healthcheck is not None and "/readyz" in healthcheck[0]
    assert "EXPOSE 8080 50051" in dockerfile
    for copied in re.findall(r"^COPY (?!--from)(\S+)", dockerfile, re.M):
        assert (ROOT / copied).exists(), copied


def test_the_grafana_dashboard_is_valid_json_with_queries() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "mom.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels and all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
