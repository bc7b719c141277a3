"""`mom certs init` and the checks a node runs on its security files at start-up."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import stat
from pathlib import Path

import pytest
import zmq
from click.testing import CliRunner
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mom.cli import main
from mom.config import Address, Settings, load_settings
from mom.errors import InvalidInput
from mom.security import CertsLayout, init_certs, load_node_security
from mom.transports import TransportSettings, open_transport
from mom.transports.grpc import GrpcTransport
from mom.transports.zmq import CurveKeys, ZmqTransport

NODES = ["mom1", "mom2", "mom3"]
CLUSTER_TOML = """
[cluster]
transport = "{transport}"
[[cluster.nodes]]
id = "mom1"
rest = "127.0.0.1:8001"
replication = "127.0.0.1:50051"
[[cluster.nodes]]
id = "mom2"
rest = "127.0.0.1:8002"
replication = "127.0.0.1:50052"
[[cluster.nodes]]
id = "mom3"
rest = "127.0.0.1:8003"
replication = "127.0.0.1:50053"
"""


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> CertsLayout:
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory, NODES, ["127.0.0.1", "node1.example.org"], progress=lambda _: None)
    return CertsLayout(directory)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_every_file_is_written_and_secrets_are_private(layout: CertsLayout) -> None:
    expected = {"ca.pem", "ca.key", "README.txt"}
    for node in NODES:
        expected |= {f"{node}.pem", f"{node}.key", f"{node}.curve.key", f"{node}.curve.pub"}
    assert {path.name for path in layout.directory.iterdir()} == expected
    for path in layout.directory.iterdir():
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.name.endswith(".key"):
            assert mode == 0o600, path.name
        else:
            assert mode & 0o400 and not mode & 0o022, path.name  # public: readable, writable only by the owner
    assert "ca.pem" in (layout.readme).read_text() and "0600" in layout.readme.read_text()


def test_node_certificates_name_the_node_and_hosts_and_are_signed_by_the_ca(layout: CertsLayout) -> None:
    ca = _cert(layout.ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for node in NODES:
        cert = _cert(layout.cert(node))
        cert.verify_directly_issued_by(ca)
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == node
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sans.get_values_for_type(x509.DNSName) == [node, "node1.example.org"]
        assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= set(usages)
        assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_curve_keys_are_pairs(layout: CertsLayout) -> None:
    for node in NODES:
        secret = layout.curve_secret(node).read_bytes().strip()
        assert zmq.curve_public(secret) == layout.curve_public(node).read_bytes().strip()
    publics = {layout.curve_public(node).read_bytes() for node in NODES}
    assert len(publics) == len(NODES)


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(main, ["certs", "init", str(tmp_path), "--nodes", "a,b"])
    assert first.exit_code == 0, first.output
    assert first.output.count("wrote ") == 11 and f"wrote {tmp_path / 'a.key'}" in first.output
    ca_before = (tmp_path / "ca.pem").read_bytes()

    again = runner.invoke(main, ["certs", "init", str(tmp_path), "--nodes", "a,b"])
    assert again.exit_code == 2 and "use --force" in again.output
    assert (tmp_path / "ca.pem").read_bytes() == ca_before

    (tmp_path / "a.key").chmod(0o644)  # a loosened mode must not survive the replacement
    forced = runner.invoke(main, ["certs", "init", str(tmp_path), "--nodes", "a,b", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "ca.pem").read_bytes() != ca_before
    assert stat.S_IMODE((tmp_path / "a.key").stat().st_mode) == 0o600
    _cert(tmp_path / "a.pem").verify_directly_issued_by(_cert(tmp_path / "ca.pem"))


def _settings(tmp_path: Path, certs: Path, node: str = "mom2", transport: str = "grpc") -> Settings:
    config = tmp_path / "cluster.toml"
    config.write_text(CLUSTER_TOML.format(transport=transport))
    return load_settings(config, env={"MOM_CERTS_DIR": str(certs)}, flags={"node.id": node})


def test_a_node_loads_its_own_files_by_convention(tmp_path: Path, layout: CertsLayout) -> None:
    settings = _settings(tmp_path, layout.directory, transport="zmq")
    security = load_node_security(settings)
    assert security is not None and security.rest_tls
    assert security.cert_file == layout.cert("mom2") and security.key_file == layout.key("mom2")
    curve = CurveKeys.of_node(security, ["mom1", "mom3"])
    assert set(curve.peers) == {"mom1", "mom3"}
    assert curve.public == layout.curve_public("mom2").read_bytes().strip()
    assert load_node_security(load_settings()) is None, "no certs_dir: clear text"


def test_each_transport_builds_its_own_credentials_from_the_node_material(tmp_path: Path, layout: CertsLayout) -> None:
    security = load_node_security(_settings(tmp_path, layout.directory))
    assert security is not None
    wire = TransportSettings("mom2", Address("127.0.0.1", 0), {"mom1": Address("127.0.0.1", 1)})
    assert isinstance(open_transport("grpc", wire, security=security), GrpcTransport)
    assert isinstance(open_transport("zmq", wire, security=security), ZmqTransport)
    missing = load_node_security(_settings(tmp_path, layout.directory))
    assert missing is not None
    missing = dataclasses.replace(missing, curve_public_files={"mom1": layout.directory / "stray" / "mom1.curve.pub"})
    with pytest.raises(InvalidInput, match=r"CURVE public key of mom1 file .*mom1.curve.pub does not exist"):
        open_transport("zmq", wire, security=missing)
    assert isinstance(open_transport("grpc", wire, security=missing), GrpcTransport), "grpc needs no CURVE"


def test_missing_or_wrong_files_are_clear_errors(tmp_path: Path, layout: CertsLayout) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in layout.directory.iterdir():
        (broken / path.name).write_bytes(path.read_bytes())
    (broken / "mom2.key").unlink()
    with pytest.raises(InvalidInput, match=r"private key file .*mom2.key does not exist"):
        load_node_security(_settings(tmp_path, broken))
    (broken / "mom2.key").write_bytes((broken / "mom3.key").read_bytes())
    with pytest.raises(InvalidInput, match=r"mom2.key does not belong to certificate"):
        load_node_security(_settings(tmp_path, broken))
    (broken / "mom2.pem").write_bytes((broken / "mom3.pem").read_bytes())
    with pytest.raises(InvalidInput, match=r"is for mom3, not 'mom2'"):
        load_node_security(_settings(tmp_path, broken))
    init_certs(tmp_path / "other", ["mom2"], ["127.0.0.1"], progress=lambda _: None)
    os.replace(tmp_path / "other" / "ca.pem", broken / "ca.pem")
    (broken / "mom2.pem").write_bytes(layout.cert("mom2").read_bytes())
    (broken / "mom2.key").write_bytes(layout.key("mom2").read_bytes())
    with pytest.raises(InvalidInput, match=r"was not issued by the CA"):
        load_node_security(_settings(tmp_path, broken))
    (broken / "ca.pem").write_bytes(layout.ca.read_bytes())
    (broken / "mom3.curve.pub").unlink()
    security = load_node_security(_settings(tmp_path, broken, transport="zmq"))
    assert security is not None, "CURVE keys are read by the transport that uses them"
    with pytest.raises(InvalidInput, match=r"CURVE public key of mom3 file .*mom3.curve.pub does not exist"):
        CurveKeys.of_node(security, ["mom1", "mom3"])
    with pytest.raises(InvalidInput, match="is not a directory"):
        load_node_security(_settings(tmp_path, tmp_path / "nowhere"))


def test_serve_refuses_to_start_with_bad_security_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["serve", "--certs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert f"CA certificate file {tmp_path / 'ca.pem'} does not exist" in result.output
