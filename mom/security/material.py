"""A node's security material, read and checked once at start-up so that a bad file is one clear error.

The checks are the ones whose failure would otherwise surface late and obscurely (a TLS handshake that fails on
every connection, a ZeroMQ socket option that raises): unreadable files, files that are not what their name
says, a certificate that does not name this node or was not signed by the cluster CA, a key that does not
match its certificate, a CURVE key of the wrong length.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from mom.config import Settings
from mom.errors import InvalidInput
from mom.security.layout import CertsLayout

Z85_KEY_CHARS = 40
"""A CURVE key is 32 bytes, 40 characters in Z85."""


@dataclass(frozen=True)
class NodeSecurity:
    """What a secure node loads: the PEMs for gRPC, the paths for Hypercorn, and CURVE keys for ZeroMQ."""

    node_id: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    rest_tls: bool
    curve_secret_file: Path
    curve_public_files: Mapping[str, Path]
    """Every other node's CURVE public key file, by node id (read only by a transport that uses CURVE)."""

    def client_ssl_context(self) -> ssl.SSLContext:
        """For https to peers: trust the cluster CA, and only it."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def curve_keys(self, peers: Iterable[str]) -> tuple[bytes, dict[str, bytes]]:
        """This node's CURVE secret key and `peers`' public keys (Z85), checked; InvalidInput if one is bad.

        Read on demand, by the transport that uses them (ZeroMQ), not by the others.
        """
        secret = _curve_key(self.curve_secret_file, "CURVE secret key")
        public: dict[str, bytes] = {}
        for peer in peers:
            path = self.curve_public_files.get(peer)
            if path is None:
                raise InvalidInput(f"no CURVE public key file is known for node {peer!r}")
            public[peer] = _curve_key(path, f"CURVE public key of {peer}")
        return secret, public


def load_node_security(settings: Settings) -> NodeSecurity | None:
    """The material `settings.security` points to, or None when security is off; InvalidInput if it is bad."""
    section = settings.security
    if section.certs_dir is None:
        return None
    layout = CertsLayout(Path(section.certs_dir))
    if not layout.directory.is_dir():
        raise InvalidInput(f"security.certs_dir {layout.directory} is not a directory (create it with mom certs init)")
    node_id = settings.node_id
    ca_file = Path(section.ca_file) if section.ca_file else layout.ca
    cert_file = Path(section.cert_file) if section.cert_file else layout.cert(node_id)
    key_file = Path(section.key_file) if section.key_file else layout.key(node_id)
    ca_pem = _read(ca_file, "CA certificate")
    cert_pem = _read(cert_file, "certificate")
    key_pem = _read(key_file, "private key")
    _check_certificate(node_id, ca_file, ca_pem, cert_file, cert_pem, key_file, key_pem)
    return NodeSecurity(
        node_id=node_id,
        ca_file=ca_file,
        cert_file=cert_file,
        key_file=key_file,
        ca_pem=ca_pem,
        cert_pem=cert_pem,
        key_pem=key_pem,
        rest_tls=section.rest_tls,
        curve_secret_file=Path(section.curve_secret_file)
        if section.curve_secret_file
        else layout.curve_secret(node_id),
        curve_public_files={
            node.id: layout.curve_public(node.id) for node in settings.cluster.nodes if node.id != node_id
        },
    )


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"{what} file {path} does not exist (create it with mom certs init)") from None
    except OSError as exc:
        raise InvalidInput(f"cannot read {what} file {path}: {exc.strerror}") from None


def _check_certificate(
    node_id: str, ca_file: Path, ca_pem: bytes, cert_file: Path, cert_pem: bytes, key_file: Path, key_pem: bytes
) -> None:
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        raise InvalidInput(f"{ca_file} is not a PEM certificate") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError:
        raise InvalidInput(f"{cert_file} is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise InvalidInput(f"{key_file} is not an unencrypted PEM private key") from None
    names = [attr.value for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if names != [node_id]:
        raise InvalidInput(f"certificate {cert_file} is for {', '.join(map(str, names)) or 'nobody'}, not {node_id!r}")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise InvalidInput(f"certificate {cert_file} was not issued by the CA in {ca_file}: {exc}") from None
    if key.public_key() != cert.public_key():
        raise InvalidInput(f"private key {key_file} does not belong to certificate {cert_file}")


def _curve_key(path: Path, what: str) -> bytes:
    key = _read(path, what).strip()
    if len(key) != Z85_KEY_CHARS:
        raise InvalidInput(f"{path} must hold one Z85 CURVE key of {Z85_KEY_CHARS} characters")
    return key
