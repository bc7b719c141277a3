"""`mom certs init`: everything a secure cluster needs, generated into one folder.

Private keys are created with mode 0600 from the start (never written world-readable and tightened later), and
nothing is overwritten unless asked: regenerating a CA under a running cluster would lock its nodes out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from mom.errors import InvalidInput
from mom.security.layout import CertsLayout
from mom.security.pki import issue_node_cert, new_ca

Progress = Callable[[str], None]

README = """\
Certificates and keys of a mom cluster, written by `mom certs init`.

  ca.pem               the cluster CA certificate: every node and client trusts it (curl --cacert ca.pem)
  ca.key               the CA private key: only needed to issue more certificates; keep it OFF the nodes
  ID.pem, ID.key       node ID's certificate and private key (mutual TLS between nodes over gRPC, TLS for REST);
                       the certificate names ID (CN and DNS SAN) and the hosts given with --host
  ID.curve.key         node ID's CURVE secret key (Z85), for the ZeroMQ transport
  ID.curve.pub         node ID's CURVE public key (Z85): every node needs the .curve.pub of all its peers

Each node needs: ca.pem, its own ID.pem, ID.key and ID.curve.key, and every node's ID.curve.pub.
Point the nodes at the folder with `[security] certs_dir = "..."` (or MOM_CERTS_DIR, or --certs-dir).
Files ending in .key are secret (mode 0600).
"""


def init_certs(
    directory: Path,
    nodes: Sequence[str],
    hosts: Sequence[str],
    *,
    force: bool = False,
    progress: Progress = print,
) -> list[Path]:
    """Write a new CA, a certificate and key per node, and a CURVE key pair per node; the paths written.

    Raises InvalidInput, before writing anything, if a file exists and `force` is not set.
    """
    import zmq  # here, not at the top: a node on grpc that loads mom.security must not load pyzmq

    if not nodes:
        raise InvalidInput("certs init needs at least one node id")
    layout = CertsLayout(directory)
    planned = [layout.ca, layout.ca_key, layout.readme]
    for node_id in nodes:
        planned += [
            layout.cert(node_id),
            layout.key(node_id),
            layout.curve_secret(node_id),
            layout.curve_public(node_id),
        ]
    existing = [path for path in planned if path.exists()]
    if existing and not force:
        names = ", ".join(path.name for path in existing)
        raise InvalidInput(f"{directory} already holds {names}: use --force to replace them")
    directory.mkdir(parents=True, exist_ok=True)
    ca = new_ca()
    written: list[Path] = []

    def write(path: Path, content: bytes, what: str, *, secret: bool = False) -> None:
        _write(path, content, 0o600 if secret else 0o644)
        written.append(path)
        progress(f"wrote {path} ({what}{', secret' if secret else ''})")

    write(layout.ca, ca.cert_pem, "cluster CA certificate")
    write(layout.ca_key, ca.key_pem, "cluster CA private key", secret=True)
    for node_id in nodes:
        issued = issue_node_cert(ca, node_id, list(hosts))
        public, secret = zmq.curve_keypair()
        write(layout.cert(node_id), issued.cert_pem, f"certificate of {node_id}")
        write(layout.key(node_id), issued.key_pem, f"private key of {node_id}", secret=True)
        write(layout.curve_secret(node_id), secret + b"\n", f"CURVE secret key of {node_id}", secret=True)
        write(layout.curve_public(node_id), public + b"\n", f"CURVE public key of {node_id}")
    write(layout.readme, README.encode(), "what each file is")
    return written


def _write(path: Path, content: bytes, mode: int) -> None:
    """Create `path` afresh with `mode` (replacing any old file, whose mode must not carry over)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(content)
