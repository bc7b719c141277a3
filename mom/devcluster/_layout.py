"""What a dev cluster is on disk: its data directory, the cluster file in it, and the shape its data was made for.

The data of a cluster is bound to its shape: the node ids (a destination's replicas are chosen among them and
recorded in the catalog), their addresses and the transport. Starting a 5-node cluster on the data of a 3-node one
silently moves replica sets onto nodes that have no data, so the shape is recorded in `cluster.toml` on the first
start and a later start of another shape is refused until the user picks another directory or resets this one.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from mom.config import ClusterSection, NodeEntry, Transport
from mom.errors import Conflict
from mom.security import CertsLayout, init_certs

CONFIG_FILE = "cluster.toml"
PASSWORD_FILE = "admin-password"
NODE_DIR = re.compile(r"mom[1-9]")
"""The node directories a dev cluster makes (at most 9 nodes): what `--reset` deletes besides its own files."""


@dataclass(frozen=True)
class Shape:
    """The part of a cluster its data depends on: the transport and each node's id and addresses."""

    transport: str
    nodes: tuple[NodeEntry, ...]

    def describe(self) -> str:
        return (
            f"{len(self.nodes)} node{'s' if len(self.nodes) != 1 else ''} {_ids(self.nodes)} over {self.transport}, "
            f"REST {_span([n.rest for n in self.nodes])}, replication {_span([n.replication for n in self.nodes])}"
        )

    def differences(self, asked: Shape) -> list[str]:
        """What differs between this (recorded) shape and the one asked for, one phrase per aspect."""
        out = []
        if [n.id for n in self.nodes] != [n.id for n in asked.nodes]:
            out.append(f"nodes {_ids(self.nodes)} here, {_ids(asked.nodes)} asked")
        if self.transport != asked.transport:
            out.append(f"transport {self.transport} here, {asked.transport} asked")
        for label, key in (("REST", "rest"), ("replication", "replication")):
            here = [getattr(n, key) for n in self.nodes]
            there = [getattr(n, key) for n in asked.nodes]
            if here != there:
                out.append(f"{label} {_span(here)} here, {_span(there)} asked")
        return out

    def flags(self) -> str | None:
        """The `mom dev-cluster` flags that start this shape again, when a dev cluster can make it."""
        count = len(self.nodes)
        if not 1 <= count <= 9 or [n.id for n in self.nodes] != [f"mom{i}" for i in range(1, count + 1)]:
            return None
        rest, replication = _ports([n.rest for n in self.nodes]), _ports([n.replication for n in self.nodes])
        if rest is None or replication is None:
            return None
        return f"--nodes {count} --transport {self.transport} --rest-port {rest} --replication-port {replication}"


def _ids(nodes: Sequence[NodeEntry]) -> str:
    ids = [n.id for n in nodes]
    if len(ids) > 2 and ids == [f"mom{i}" for i in range(1, len(ids) + 1)]:
        return f"{ids[0]}..{ids[-1]}"
    return ", ".join(ids)


def _ports(addresses: Sequence[str]) -> int | None:
    """The first port, if the addresses are consecutive ports on 127.0.0.1 (as a dev cluster makes them)."""
    hosts_ports = [a.rpartition(":") for a in addresses]
    if any(host != "127.0.0.1" or not port.isdigit() for host, _, port in hosts_ports):
        return None
    ports = [int(port) for _, _, port in hosts_ports]
    return ports[0] if ports == list(range(ports[0], ports[0] + len(ports))) else None


def _span(addresses: Sequence[str]) -> str:
    first = _ports(addresses)
    if first is None or len(addresses) == 1:
        return ", ".join(addresses)
    return f"127.0.0.1:{first}-{first + len(addresses) - 1}"


@dataclass(frozen=True)
class DevCluster:
    nodes: int
    transport: Transport
    data_dir: Path
    rest_base_port: int = 8001
    replication_base_port: int = 50051
    secure: bool = False
    """TLS (REST, gRPC) or CURVE (ZeroMQ) on every wire, with certificates generated into `certs_dir`."""

    @property
    def node_ids(self) -> list[str]:
        return [f"mom{i}" for i in range(1, self.nodes + 1)]

    @property
    def certs_dir(self) -> Path:
        return self.data_dir / "certs"

    @property
    def config_file(self) -> Path:
        return self.data_dir / CONFIG_FILE

    def rest_url(self, index: int) -> str:
        scheme = "https" if self.secure else "http"
        return f"{scheme}://127.0.0.1:{self.rest_base_port + index}"

    def replication_address(self, index: int) -> str:
        return f"127.0.0.1:{self.replication_base_port + index}"

    @property
    def shape(self) -> Shape:
        entries = (
            NodeEntry(node_id, f"127.0.0.1:{self.rest_base_port + i}", self.replication_address(i))
            for i, node_id in enumerate(self.node_ids)
        )
        return Shape(self.transport, tuple(entries))

    def config_text(self) -> str:
        lines = ["[cluster]", f'transport = "{self.transport}"', f"replication_factor = {min(3, self.nodes)}", ""]
        if self.secure:
            lines += ["[security]", f"certs_dir = {json.dumps(str(self.certs_dir.resolve()))}", ""]
        for node in self.shape.nodes:
            lines += ["[[cluster.nodes]]", f'id = "{node.id}"', f'rest = "{node.rest}"',
                      f'replication = "{node.replication}"', ""]  # fmt: skip
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------------------------------
    # What the data directory holds

    def node_data(self) -> list[Path]:
        """The node data directories present, whichever shape made them."""
        if not self.data_dir.is_dir():
            return []
        return sorted(p for p in self.data_dir.iterdir() if p.is_dir() and NODE_DIR.fullmatch(p.name))

    def recorded_shape(self) -> Shape | None:
        """The shape written on the first start, or None if there is no cluster file (raises if unreadable)."""
        try:
            tree = tomllib.loads(self.config_file.read_text())
            section = msgspec.convert(tree.get("cluster", {}), ClusterSection)
        except FileNotFoundError:
            return None
        except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
            raise Conflict(f"{self.config_file} cannot be read ({exc}).\n{self._remedy(None)}") from None
        return Shape(section.transport, tuple(section.nodes))

    def check_shape(self) -> None:
        """Refuse (Conflict) when the directory holds node data of a shape other than the one asked for."""
        present = self.node_data()
        if not present:
            return
        recorded = self.recorded_shape()
        if recorded is None:
            names = ", ".join(p.name for p in present)
            raise Conflict(
                f"{self.data_dir} holds node data ({names}) but no {CONFIG_FILE} saying what cluster made it.\n"
                + self._remedy(None)
            )
        differences = recorded.differences(self.shape)
        if differences:
            raise Conflict(
                f"{self.data_dir} holds the data of a cluster of another shape:\n"
                + "".join(f"  {difference}\n" for difference in differences)
                + "Starting on it would reuse that data on the wrong nodes (a destination's replicas would move onto "
                "nodes without its data).\n" + self._remedy(recorded)
            )

    def _remedy(self, recorded: Shape | None) -> str:
        asked = self.shape.flags() or ""
        lines = [
            "Either:",
            f"  use another directory:      mom dev-cluster --data-dir OTHER_DIR {asked}",
            f"  delete it and start afresh: mom dev-cluster --data-dir {self.data_dir} --reset {asked}",
            "                              (--reset asks first; add --yes not to be asked)",
        ]
        flags = recorded.flags() if recorded is not None else None
        if flags is not None:
            lines.append(f"  run the one that is there:  mom dev-cluster --data-dir {self.data_dir} {flags}")
        return "\n".join(lines)

    def contents(self) -> list[Path]:
        """What `reset` deletes: the files and node directories a dev cluster makes, and nothing else."""
        own = [self.config_file, self.data_dir / PASSWORD_FILE, self.certs_dir]
        return [p for p in own if p.exists()] + self.node_data()

    def reset(self) -> None:
        """Delete every node's data, the cluster file, the certificates and the generated admin password."""
        for path in self.contents():
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()

    def prepare(self, progress: Callable[[str], None]) -> None:
        """Check the shape, then record it (the cluster file) and make the certificates on the first secure run."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.check_shape()
        if self.secure and not CertsLayout(self.certs_dir).ca.exists():
            init_certs(self.certs_dir, self.node_ids, ["127.0.0.1", "localhost"], progress=progress)
        self.config_file.write_text(self.config_text())

    def admin_password(self, env: dict[str, str]) -> str:
        """MOM_ADMIN_PASSWORD, else the one generated on the first run (kept 0600 so a restart can show it)."""
        if env.get("MOM_ADMIN_PASSWORD"):
            return env["MOM_ADMIN_PASSWORD"]
        path = self.data_dir / PASSWORD_FILE
        if path.exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(18)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(password + "\n")
        return password
