"""Settings: defaults < TOML file < environment < command-line flags, resolved once into one typed object.

Only `load_settings` looks at the environment, and only through the mapping it is given; every other module
receives the resulting `Settings` (or the part of it that it needs).
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from mom.errors import InvalidInput

Transport = Literal["grpc", "zmq"]
FsyncPolicy = Literal["always", "never"]
MiB = 1024 * 1024


class Address(Struct, frozen=True):
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_address(text: str) -> Address:
    """Parse `HOST:PORT` (or `[v6]:PORT`) with a clear error."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidInput(f"address {text!r} must look like HOST:PORT, e.g. 127.0.0.1:8080")
    return Address(host, int(port))


class NodeEntry(Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    rest: str
    replication: str


class NodeSection(Struct, frozen=True, forbid_unknown_fields=True):
    id: str = "mom1"
    data_dir: str | None = None
    rest: str = "127.0.0.1:8080"


class ClusterSection(Struct, frozen=True, forbid_unknown_fields=True):
    transport: Transport = "grpc"
    replication_factor: Annotated[int, Meta(ge=1, le=7)] = 3
    nodes: list[NodeEntry] = []
    """The seed members: on a cluster's first start the metadata leader records them; from then on the catalog's
    member list (changed with `mom cluster add-node/drain/remove-node`) is the cluster's."""
    max_moves: Annotated[int, Meta(ge=1, le=64)] = 2
    """Replica moves in flight at once in the whole cluster while rebalancing (each copies a group's log)."""
    join: bool = False
    """This node is being added to a running cluster named by `nodes` (itself included): it starts empty and
    waits until an admin adds it (`mom cluster add-node`), then catches up."""


class StorageSection(Struct, frozen=True, forbid_unknown_fields=True):
    fsync: FsyncPolicy = "always"
    """`always`: a write is answered only after fsync (batched: one fsync per Raft Ready covers every entry
    appended meanwhile). `never`: leave it to the OS."""
    segment_bytes: Annotated[int, Meta(ge=4096)] = 64 * MiB
    snapshot_bytes: Annotated[int, Meta(ge=4096)] = 64 * MiB
    """Take a snapshot (and free old segments) once this much log has been written since the last one."""
    max_open_segments: Annotated[int, Meta(ge=1)] = 256
    """Log segment files open at once on this node, all groups together: the least recently used are closed
    (fsynced first if written) and opened again when used, so descriptors do not grow with the destinations."""
    fault_delay_ms: Annotated[int, Meta(ge=0)] = 0
    """For fault testing only: every log sync, snapshot save and log truncation sleeps this long first (in the
    worker thread that does it), as on a disk that stalls. 0 (the default) is off."""
    fault_delay_groups: str = "*"
    """For fault testing only: a glob on group ids (`meta`, `q.orders@*`) choosing which groups `fault_delay_ms`
    slows."""


WIRE_FRAME_LIMIT = 64 * MiB
"""The largest frame a transport accepts (gRPC's max message length and ZeroMQ's MAXMSGSIZE are set to it):
every Raft message, and so every log entry, must stay below it."""


class ReplicationSection(Struct, frozen=True, forbid_unknown_fields=True):
    """Byte budgets of replication: what a slow or stopped replica may cost the others, and how big frames get."""

    max_frame_bytes: Annotated[int, Meta(ge=64 * 1024, le=WIRE_FRAME_LIMIT // 4)] = 4 * MiB
    """The router's frames to a peer are cut at this size (a single larger message travels alone)."""
    max_append_bytes: Annotated[int, Meta(ge=1024)] = 1 * MiB
    """Entries per AppendEntries message (at least one entry, however large)."""
    max_inflight_bytes: Annotated[int, Meta(ge=1024)] = 8 * MiB
    """Entries sent to one follower of one group and not yet acknowledged (besides at most 64 messages)."""
    max_uncommitted_bytes: Annotated[int, Meta(ge=1024)] = 32 * MiB
    """Entries a group's leader holds uncommitted; beyond it writes are refused with 429 and Retry-After."""
    send_queue_bytes: Annotated[int, Meta(ge=64 * 1024)] = 32 * MiB
    """Frames queued for one peer; beyond it frames are dropped (Raft sends again what was lost)."""
    snapshot_chunk_bytes: Annotated[int, Meta(ge=256)] = 1 * MiB
    """A snapshot is streamed to a follower in chunks of this size, ..."""
    snapshot_window: Annotated[int, Meta(ge=1, le=64)] = 4
    """... at most this many ahead of the follower's acknowledgements."""
    quiesce: bool = True
    """Idle groups stop heartbeating and ticking; one node-level heartbeat per pair of nodes stands in for them
    (docs/cluster.md, "Thousands of destinations"). Off: every group heartbeats all the time."""

    def __post_init__(self) -> None:
        if self.max_append_bytes > self.max_frame_bytes or self.snapshot_chunk_bytes > self.max_frame_bytes:
            raise ValueError("replication.max_append_bytes and snapshot_chunk_bytes must not exceed max_frame_bytes")


class LimitsSection(Struct, frozen=True, forbid_unknown_fields=True):
    max_message_bytes: Annotated[int, Meta(ge=1)] = 1 * MiB
    max_batch_messages: Annotated[int, Meta(ge=1)] = 1000
    max_batch_bytes: Annotated[int, Meta(ge=1, le=WIRE_FRAME_LIMIT // 2)] = 10 * MiB
    """Also bounds a log entry: it must stay well below the transports' frame limit, headers and all."""
    body_timeout_s: Annotated[float, Meta(gt=0, le=600)] = 30.0
    """The longest a request body may take to arrive (408 and the connection closed beyond): a client that
    trickles a body cannot hold a connection open."""


class AuthSection(Struct, frozen=True, forbid_unknown_fields=True):
    open_registration: bool = False
    """Anyone may POST /v1/auth/users (off: admins only). `mom dev-cluster` and `./dev.sh serve` turn it on."""
    token_ttl_s: Annotated[int, Meta(ge=10)] = 3600
    admin_username: str = "admin"
    admin_password: str | None = None
    """From MOM_ADMIN_PASSWORD; when unset on first start a password is generated and printed once."""
    login_free_failures: Annotated[int, Meta(ge=1)] = 5
    """Failed logins of one user name allowed in a row before each further one locks the name for a while."""
    login_max_lockout_s: Annotated[float, Meta(gt=0, le=3600)] = 60.0
    """The longest a name is locked (the lock doubles from 1 s per failure up to this); the real user waits
    at most this long after the attacker's last try, never forever."""
    address_free_failures: Annotated[int, Meta(ge=1)] = 20
    """Likewise per client address (higher: many users may share one address)."""
    address_max_lockout_s: Annotated[float, Meta(gt=0, le=3600)] = 300.0


class QuotasSection(Struct, frozen=True, forbid_unknown_fields=True):
    """Per-principal limits; admins (scope mom.admin) are exempt. Beyond a limit: 429 with a problem type."""

    destinations: Annotated[int, Meta(ge=1)] = 100
    """Queues and topics one principal may hold (cluster-wide: counted in the replicated catalog)."""
    streams: Annotated[int, Meta(ge=1)] = 32
    """Open SSE event streams and /v1/stream WebSockets of one principal, per node."""
    long_polls: Annotated[int, Meta(ge=1)] = 64
    """Receives with wait_s > 0 of one principal waiting at once, per node."""


class BrokerSection(Struct, frozen=True, forbid_unknown_fields=True):
    dedup_window_s: Annotated[float, Meta(gt=0)] = 300.0


class MetricsSection(Struct, frozen=True, forbid_unknown_fields=True):
    max_destinations: Annotated[int, Meta(ge=0)] = 1000
    """Queues and topics (and their subscriptions) that /metrics shows series for, the first by name; the rest
    only count in `mom_metrics_destinations_omitted`. Bounds the label cardinality of a scrape."""


class SecuritySection(Struct, frozen=True, forbid_unknown_fields=True):
    """Secure wires. With `certs_dir` unset (the default) every wire is clear text, as on a laptop."""

    certs_dir: str | None = None
    """The folder written by `mom certs init`; setting it turns security on (mutual TLS for gRPC, CURVE for
    ZeroMQ, TLS for REST). Files are found by the node id: ca.pem, ID.pem, ID.key, ID.curve.key, and every
    peer's PEER.curve.pub."""
    ca_file: str | None = None
    """Explicit path overriding `certs_dir`/ca.pem; likewise the three below for this node's own files."""
    cert_file: str | None = None
    key_file: str | None = None
    curve_secret_file: str | None = None
    rest_tls: bool = True
    """Serve REST over https when security is on (peers then reach each other over https too)."""


class Settings(Struct, frozen=True, forbid_unknown_fields=True):
    node: NodeSection = NodeSection()
    cluster: ClusterSection = ClusterSection()
    storage: StorageSection = StorageSection()
    replication: ReplicationSection = ReplicationSection()
    limits: LimitsSection = LimitsSection()
    auth: AuthSection = AuthSection()
    quotas: QuotasSection = QuotasSection()
    broker: BrokerSection = BrokerSection()
    security: SecuritySection = SecuritySection()
    metrics: MetricsSection = MetricsSection()

    @property
    def node_id(self) -> str:
        return self.node.id

    @property
    def data_dir(self) -> Path:
        if self.node.data_dir is not None:
            return Path(self.node.data_dir)
        return Path("var") / self.node.id if self.cluster.nodes else Path("var/mom")

    @property
    def rest(self) -> Address:
        return parse_address(self.node.rest)


ENV_KEYS: dict[str, str] = {
    "MOM_NODE_ID": "node.id",
    "MOM_DATA_DIR": "node.data_dir",
    "MOM_REST": "node.rest",
    "MOM_TRANSPORT": "cluster.transport",
    "MOM_FSYNC": "storage.fsync",
    "MOM_ADMIN_PASSWORD": "auth.admin_password",
    "MOM_OPEN_REGISTRATION": "auth.open_registration",
    "MOM_CERTS_DIR": "security.certs_dir",
    "MOM_FAULT_DISK_DELAY_MS": "storage.fault_delay_ms",
    "MOM_FAULT_DISK_DELAY_GROUPS": "storage.fault_delay_groups",
}
"""Environment variables and the setting each one sets."""


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    section, key = dotted.split(".")
    tree.setdefault(section, {})[key] = value


def _env_value(dotted: str, raw: str) -> Any:
    if dotted == "storage.fault_delay_ms":
        if not raw.strip().isdigit():
            raise InvalidInput(f"MOM_FAULT_DISK_DELAY_MS must be a whole number of milliseconds, not {raw!r}")
        return int(raw)
    if dotted == "auth.open_registration":
        lowered = raw.strip().lower()
        if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
            raise InvalidInput(f"MOM_OPEN_REGISTRATION must be true or false, not {raw!r}")
        return lowered in {"1", "true", "yes", "on"}
    return raw


def load_settings(
    config_file: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings of one node. `flags` maps dotted keys (`node.id`) to values; None means unset.

    In a cluster file the node takes its REST address from its own `[[cluster.nodes]]` entry.
    """
    tree: dict[str, Any] = {}
    if config_file is not None:
        try:
            tree = tomllib.loads(Path(config_file).read_text())
        except FileNotFoundError:
            raise InvalidInput(f"config file {config_file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise InvalidInput(f"config file {config_file} is not valid TOML: {exc}") from None
    for var, dotted in ENV_KEYS.items():
        if env and env.get(var):
            _set(tree, dotted, _env_value(dotted, env[var]))
    for dotted, value in (flags or {}).items():
        if value is not None:
            _set(tree, dotted, value)
    try:
        settings = msgspec.convert(tree, Settings)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"invalid settings: {exc}") from None
    return _with_cluster_entry(settings)


def _with_cluster_entry(settings: Settings) -> Settings:
    nodes = settings.cluster.nodes
    if not nodes:
        settings.rest  # noqa: B018 - validates the address early, with a clear message
        return settings
    ids = [n.id for n in nodes]
    if len(set(ids)) != len(ids):
        raise InvalidInput(f"node ids in [[cluster.nodes]] must be unique, got {ids}")
    for node in nodes:
        parse_address(node.rest)
        parse_address(node.replication)
    mine = next((n for n in nodes if n.id == settings.node.id), None)
    if mine is None:
        raise InvalidInput(f"node id {settings.node.id!r} is not in [[cluster.nodes]] ({', '.join(ids)})")
    if settings.cluster.replication_factor > len(nodes):
        raise InvalidInput(f"replication_factor {settings.cluster.replication_factor} exceeds the {len(nodes)} nodes")
    return msgspec.structs.replace(settings, node=msgspec.structs.replace(settings.node, rest=mine.rest))
