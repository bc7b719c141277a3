"""Where each file of a certificates folder lives: one naming convention shared by `certs init` and the node."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CertsLayout:
    """File names by convention from the node id, so a cluster file needs only `certs_dir`."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The cluster CA's certificate: every node trusts exactly the certificates it signed."""
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        """The CA's private key: needed only to issue certificates; keep it off the nodes in production."""
        return self.directory / "ca.key"

    def cert(self, node_id: str) -> Path:
        return self.directory / f"{node_id}.pem"

    def key(self, node_id: str) -> Path:
        return self.directory / f"{node_id}.key"

    def curve_secret(self, node_id: str) -> Path:
        """The node's CURVE secret key (Z85), for ZeroMQ."""
        return self.directory / f"{node_id}.curve.key"

    def curve_public(self, node_id: str) -> Path:
        """The node's CURVE public key (Z85): every peer needs it to admit this node."""
        return self.directory / f"{node_id}.curve.pub"

    @property
    def readme(self) -> Path:
        return self.directory / "README.txt"
