"""Secure wires: a development CA and the files a node needs (`init_certs`), and loading them at start-up.

Every node of a secure cluster holds the cluster CA, its own certificate and key (mutual TLS for gRPC, TLS for
REST) and its own CURVE key pair plus every peer's CURVE public key (ZeroMQ). `CertsLayout` names the files.
"""

from mom.security.devca import init_certs
from mom.security.layout import CertsLayout
from mom.security.material import NodeSecurity, load_node_security

__all__ = ["CertsLayout", "NodeSecurity", "init_certs", "load_node_security"]
