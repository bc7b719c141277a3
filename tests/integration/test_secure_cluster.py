"""A secure 3-node cluster of real processes (on the transport in MOM_TRANSPORT): https for REST, mutual TLS or
CURVE between nodes, and an intruder with keys of its own that can neither join nor disturb the cluster."""

from __future__ import annotations

import shutil
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from mom.client import Client
from mom.client.stream import StreamClient
from mom.security import CertsLayout, init_certs
from tests.integration.harness import ADMIN_PASSWORD, Cluster, NodeProcess, free_port

pytestmark = pytest.mark.transport

NODES = ["mom1", "mom2", "mom3"]
INTRUDER_WATCH_S = 3.0
"""How long the intruder keeps trying: several reconnect rounds of either transport (capped at 1 s)."""


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory, NODES, ["127.0.0.1", "localhost"], progress=lambda _: None)
    return CertsLayout(directory)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, certs: CertsLayout) -> Iterator[Cluster]:
    running = Cluster(tmp_path_factory.mktemp("secure") / "cluster", certs_dir=certs.directory).start()
    yield running
    running.kill_all()


def test_rest_answers_over_https_with_the_configured_certificate(cluster: Cluster, certs: CertsLayout) -> None:
    node = cluster.nodes["mom2"]
    assert node.url.startswith("https://")
    served = ssl.get_server_certificate(("127.0.0.1", node.port))
    assert x509.load_pem_x509_certificate(served.encode()) == x509.load_pem_x509_certificate(
        certs.cert("mom2").read_bytes()
    )
    assert httpx.get(node.url + "/healthz", verify=node.verify).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(node.url + "/healthz")  # the system trust store does not know the cluster CA


def test_plain_http_is_refused(cluster: Cluster) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{cluster.nodes['mom1'].port}/healthz", timeout=5)


def test_publish_through_one_node_and_receive_through_another(cluster: Cluster, certs: CertsLayout) -> None:
    apis = {node_id: cluster.api(node_id) for node_id in cluster.nodes}
    assert apis["mom1"].retrying("PUT", "/v1/queues/secure-orders").status_code == 201
    for node_id, api in apis.items():
        api.publish("secure-orders", f"from-{node_id}")  # two of the three are forwarded to the leader over https
    with Client(cluster.nodes["mom3"].url, username="admin", password=ADMIN_PASSWORD, ca_file=str(certs.ca)) as client:
        got = client.receive(queue="secure-orders", max_messages=10, wait_s=2)
        assert sorted(m["body"] for m in got) == ["from-mom1", "from-mom2", "from-mom3"]
        view = client.cluster()
    assert {n["id"]: n["state"] for n in view["nodes"]} == {"mom1": "up", "mom2": "up", "mom3": "up"}
    assert {n["rest_url"] for n in view["nodes"]} == {node.url for node in cluster.nodes.values()}


async def test_the_streaming_client_trusts_the_cluster_ca(cluster: Cluster, certs: CertsLayout) -> None:
    cluster.api("mom2").retrying("PUT", "/v1/queues/secure-stream")
    url = cluster.nodes["mom2"].url
    async with StreamClient(url, username="admin", password=ADMIN_PASSWORD, ca_file=str(certs.ca)) as stream:
        published = await stream.publish([{"body": "over wss"}], queue="secure-stream")
    assert len(published) == 1
    got = cluster.api("mom1").receive("secure-stream", wait_s=2)
    assert [m["body"] for m in got] == ["over wss"]


def test_an_intruder_with_keys_of_its_own_cannot_join(cluster: Cluster, certs: CertsLayout, tmp_path: Path) -> None:
    """It poses as mom3 with its own CA, certificate and CURVE key, knowing the cluster's public keys."""
    foreign = CertsLayout(tmp_path / "foreign")
    init_certs(foreign.directory, NODES, ["127.0.0.1"], progress=lambda _: None)
    for node_id in ("mom1", "mom2"):
        shutil.copy(certs.curve_public(node_id), foreign.curve_public(node_id))
    config = tmp_path / "intruder.toml"
    rest = free_port()
    entries = [(n, cluster.nodes[n].port, _replication_address(cluster, n)) for n in ("mom1", "mom2")]
    entries.append(("mom3", rest, f"127.0.0.1:{free_port()}"))
    lines = ["[cluster]", f'transport = "{cluster.transport}"', "[security]", f'certs_dir = "{foreign.directory}"']
    for node_id, port, replication in entries:
        lines += [
            "[[cluster.nodes]]",
            f'id = "{node_id}"',
            f'rest = "127.0.0.1:{port}"',
            f'replication = "{replication}"',
        ]
    config.write_text("\n".join(lines) + "\n")
    intruder = NodeProcess(
        tmp_path / "intruder", port=rest, config=config, env={"MOM_NODE_ID": "mom3"}, ca_file=foreign.ca
    )
    intruder.start(wait=False)
    try:
        _wait_until_alive(intruder)
        api = cluster.api("mom1")
        api.put("/v1/queues/despite-intruder")
        deadline = time.monotonic() + INTRUDER_WATCH_S
        while time.monotonic() < deadline:
            api.publish("despite-intruder", "still working")
        ready = httpx.get(intruder.url + "/readyz", verify=intruder.verify, timeout=5)
        assert ready.status_code == 503, "the intruder never reached a majority: it did not join"
        view = cluster.cluster_view("mom2")
        assert {n["id"]: n["state"] for n in view["nodes"]} == {"mom1": "up", "mom2": "up", "mom3": "up"}
    finally:
        intruder.kill()
    intruder_log = intruder.log_tail(400)
    if cluster.transport == "grpc":
        assert "grpc: TLS with peer mom1 at" in intruder_log, intruder_log
    else:
        logs = "".join(cluster.nodes[n].log_tail(400) for n in ("mom1", "mom2"))
        refused_key = foreign.curve_public("mom3").read_text().strip()
        assert f"its CURVE key {refused_key} is not the .curve.pub of any peer" in logs
        assert "refused this node's CURVE key" in intruder_log, intruder_log


def _replication_address(cluster: Cluster, node_id: str) -> str:
    config = (cluster.directory / "cluster.toml").read_text()
    block = config.split(f'id = "{node_id}"', 1)[1]
    return block.split('replication = "', 1)[1].split('"', 1)[0]


def _wait_until_alive(node: NodeProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert node.proc is not None and node.proc.poll() is None, node.log_tail()
        try:
            if httpx.get(node.url + "/healthz", verify=node.verify, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the intruder did not start:\n{node.log_tail()}")
