"""One node: builds storage, the broker service, auth and the REST server from settings and runs them in one
nursery. Start-up order is explicit (each part is `nursery.start`ed and ready before the next), and shutdown is
the cancellation of that nursery.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import secrets
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from mom.api import hypercorn_fixes
from mom.api.app import create_app
from mom.api.auth import (
    ADMIN_SCOPES,
    SigningKeys,
    TokenEndpoint,
    TokenService,
    hash_secret_async,
    verify_secret_async,
)
from mom.api.auth.peers import PEER_KEYS_FILE, PeerKeys
from mom.api.auth.revocation import CheckedVerifier, LiveAccounts
from mom.api.context import ApiContext
from mom.api.forward import Forwarder
from mom.api.guard import Guard
from mom.api.metrics import Metrics
from mom.api.node_metrics import NodeCollector, NodeParts
from mom.broker.commands import MemberRecord, RegisterUser
from mom.config import AuthSection, Settings, parse_address
from mom.dead_letters import DeadLetterSender
from mom.errors import Conflict, InvalidInput, Unavailable
from mom.log.disk import Disk
from mom.log.filecache import CachedFiles
from mom.log.fs import OS_FILES
from mom.move_recorder import MoveRecorder
from mom.replication.manager import GroupManager
from mom.replication.router import Router
from mom.security import NodeSecurity, load_node_security
from mom.service import BrokerService, Handle, wall_clock_ms
from mom.service.membership import MemberWatch, seed_members, seed_once
from mom.service.mover import Mover, Rebalancer
from mom.transports import Transport, TransportSettings, open_transport

READY_POLL_S = 0.05

log = logging.getLogger("mom.node")

TOKEN_ISSUER = "urn:mom"
TOKEN_AUDIENCE = "mom"

Announce = Callable[[str], None]


@contextmanager
def data_dir_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on the data directory: two nodes writing one log would corrupt it."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidInput(f"another mom node is using the data directory {directory}") from None
        yield
    finally:
        os.close(fd)


class AdminBootstrap:
    """Creates the admin account on the cluster's first start, and says when this node can log the admin in.

    Whichever node leads the metadata group writes the account; a generated password is printed once, by the
    node whose entry became the account (a leader whose answer was lost to an election still knows: the stored
    hash is its own), and never stored. `done` turns true once the account is in this node's catalog and, when
    the node was given MOM_ADMIN_PASSWORD, that password verifies against it: from then on a token request for
    the admin on this node succeeds, which is what readiness promises.
    """

    def __init__(self, service: BrokerService, auth: AuthSection, announce: Announce) -> None:
        self._service = service
        self._auth = auth
        self._announce = announce
        self.done = False

    async def run(self) -> None:
        auth, service = self._auth, self._service
        password = auth.admin_password or secrets.token_urlsafe(18)
        password_hash: str | None = None
        while service.user(auth.admin_username) is None:
            meta = service.locate_meta()
            if isinstance(meta, Handle):
                password_hash = password_hash or await hash_secret_async(password)
                with contextlib.suppress(Conflict, Unavailable):
                    await service.submit(meta, RegisterUser(auth.admin_username, password_hash, list(ADMIN_SCOPES)))
            await trio.sleep(0.05)
        record = service.user(auth.admin_username)
        assert record is not None
        if password_hash is not None and record.password_hash == password_hash:
            if auth.admin_password:
                self._announce(f"created admin user {record.username!r} with the password from MOM_ADMIN_PASSWORD")
            else:
                self._announce(f"created admin user {record.username!r}; password (shown once): {password}")
        if auth.admin_password and not await verify_secret_async(record.password_hash, auth.admin_password):
            log.error(
                "MOM_ADMIN_PASSWORD does not match the cluster's admin account %r: this node stays not ready",
                record.username,
            )
            return
        self.done = True


def _hypercorn_config(settings: Settings, security: NodeSecurity | None) -> HypercornConfig:
    hypercorn_fixes.apply()
    config = HypercornConfig()
    config.bind = [str(settings.rest)]
    config.accesslog = None
    config.errorlog = logging.getLogger("mom.http")
    config.graceful_timeout = 2.0
    if security is not None and security.rest_tls:
        config.certfile, config.keyfile = str(security.cert_file), str(security.key_file)
    return config


def _rest_tls(security: NodeSecurity | None) -> bool:
    return security is not None and security.rest_tls


def peer_urls(settings: Settings, *, tls: bool = False) -> dict[str, str]:
    """The REST base URL of every node by id (this one too); https when the cluster serves REST over TLS."""
    scheme = "https" if tls else "http"
    if not settings.cluster.nodes:
        return {settings.node_id: f"{scheme}://{settings.rest}"}
    return {node.id: f"{scheme}://{parse_address(node.rest)}" for node in settings.cluster.nodes}


def _transport(settings: Settings, security: NodeSecurity | None) -> Transport:
    """The configured transport in a cluster, secured as it sees fit; a single node talks to nobody, so an
    in-process one will do."""
    nodes = settings.cluster.nodes
    if not nodes:
        return open_transport("memory", TransportSettings(settings.node_id, settings.rest, {}))
    addresses = {node.id: parse_address(node.replication) for node in nodes}
    listen = addresses.pop(settings.node_id)
    return open_transport(
        settings.cluster.transport,
        TransportSettings(settings.node_id, listen, addresses, send_queue_bytes=settings.replication.send_queue_bytes),
        security=security,
    )


def _follow_members(
    settings: Settings,
    manager: GroupManager,
    router: Router,
    transport: Transport,
    forwarder: Forwarder,
    peer_keys: PeerKeys,
    urls: dict[str, str],
    *,
    tls: bool,
) -> None:
    """Connect to the nodes the catalog adds and drop those it removes: the transport, the router's liveness,
    forwarding, token keys and the cluster view (`urls`, shared with the API context) all follow it."""
    scheme = "https" if tls else "http"

    def url_of(member: MemberRecord) -> str:
        return f"{scheme}://{member.rest}"

    def added(member: MemberRecord) -> None:
        url = url_of(member)
        urls[member.id] = url
        transport.add_peer(member.id, parse_address(member.replication))
        router.add_peer(member.id)
        forwarder.add_peer(member.id, url)
        peer_keys.add_peer(member.id, url)

    def removed(peer: str) -> None:
        urls.pop(peer, None)
        transport.remove_peer(peer)
        router.remove_peer(peer)
        forwarder.remove_peer(peer)
        peer_keys.remove_peer(peer)

    watch = MemberWatch(settings.node_id, [added], [removed])
    watch.start(seed_members(settings))
    if manager.meta.broker.members.seeded:
        watch.update(manager.members())
    manager.add_members_listener(watch.update)


async def serve_node(
    settings: Settings,
    *,
    announce: Announce = print,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one node until cancelled; `task_status.started` receives the REST URLs once it accepts requests."""
    started = trio.current_time()
    data_dir = settings.data_dir
    security = load_node_security(settings)
    verify = security.client_ssl_context() if security is not None else True
    with data_dir_lock(data_dir):
        async with (
            httpx.AsyncClient(limits=httpx.Limits(max_connections=256), verify=verify) as http,
            trio.open_nursery() as nursery,
        ):
            transport = _transport(settings, security)
            await nursery.start(transport.run)
            metrics = Metrics(max_destinations=settings.metrics.max_destinations)
            router = Router(
                settings.node_id,
                transport,
                max_frame_bytes=settings.replication.max_frame_bytes,
                on_tick_lag=metrics.observe_loop_lag,
                peers=[node.id for node in settings.cluster.nodes],
                incarnation=random.getrandbits(62) + 1,
            )
            await nursery.start(router.run)
            manager = GroupManager(
                settings,
                router,
                disk=Disk(CachedFiles(OS_FILES, settings.storage.max_open_segments)),
                clock_ms=wall_clock_ms,
                rng=random.Random(),
                observer=metrics,
            )
            await nursery.start(manager.run)
            service = BrokerService(
                manager,
                limits=settings.limits,
                on_dead_letters_held=lambda reason, count: metrics.dead_letters_held.labels(reason).inc(count),
            )
            metrics.dead_letters_waiting.set_function(service.dead_letters_waiting)
            await nursery.start(service.run)
            keys = SigningKeys.load_or_create(data_dir / "keys")
            tokens = TokenService(keys, issuer=TOKEN_ISSUER, audience=TOKEN_AUDIENCE, ttl_s=settings.auth.token_ttl_s)
            tls = _rest_tls(security)
            urls = peer_urls(settings, tls=tls)
            others = {node_id: url for node_id, url in urls.items() if node_id != settings.node_id}
            forwarder = Forwarder(
                http, urls, link_up=lambda node: transport.status(node).connected, on_leader=service.note_leader
            )
            peer_keys = PeerKeys(keys, tokens, others, http, store=data_dir / "keys" / PEER_KEYS_FILE)
            _follow_members(settings, manager, router, transport, forwarder, peer_keys, urls, tls=tls)
            nursery.start_soon(seed_once, service, settings)
            service.set_dead_letter_sender(DeadLetterSender(service, tokens, forwarder, settings.node_id))
            nursery.start_soon(Mover(manager, MoveRecorder(service, tokens, forwarder, settings.node_id)).run)
            rebalancer = Rebalancer(
                manager,
                service.submit_to_meta,
                max_moves=settings.cluster.max_moves,
                replication_factor=settings.cluster.replication_factor,
            )
            nursery.start_soon(rebalancer.run)
            accounts = LiveAccounts(lambda: service.catalog.accounts, service.metadata_current)
            guard = Guard.build(settings, accounts, metrics)
            manager.add_listener(guard.changes.on_applied)
            bootstrap = AdminBootstrap(service, settings.auth, announce)
            context = ApiContext(
                settings=settings,
                service=service,
                keys=keys,
                tokens=tokens,
                token_endpoint=TokenEndpoint(accounts, tokens),
                metrics=metrics,
                is_ready=lambda: service.is_ready() and bootstrap.done,
                forwarder=forwarder,
                peer_urls=urls,
                verify_token=CheckedVerifier(
                    peer_keys.verify,
                    accounts,
                    catalog_current=lambda: isinstance(service.locate_meta(), Handle),
                ),
                transport_status=transport.status,
                guard=guard,
            )
            metrics.watch(
                NodeCollector(
                    NodeParts(
                        node_id=settings.node_id,
                        transport=settings.cluster.transport if settings.cluster.nodes else "none",
                        service=service,
                        manager=manager,
                        router=router,
                        peer_status=transport.status,
                        peers=list(others),
                        data_dir=data_dir,
                        rest_port=settings.rest.port,
                        max_destinations=settings.metrics.max_destinations,
                    )
                )
            )
            nursery.start_soon(bootstrap.run)
            nursery.start_soon(_log_when_ready, context.is_ready, started)
            bound = await nursery.start(partial(serve, create_app(context), _hypercorn_config(settings, security)))
            announce(f"mom node {settings.node_id} ready: REST on {', '.join(bound)}, data in {data_dir}")
            task_status.started(bound)


async def _log_when_ready(is_ready: Callable[[], bool], since: float) -> None:
    """One log line when /readyz first answers 200: how long a start (or restart) took to serve (an operator
    timing a restart reads it here; the poll stops once ready)."""
    while not is_ready():  # noqa: ASYNC110 - no event says so (a Raft core's leader and the admin bootstrap)
        await trio.sleep(READY_POLL_S)
    log.info(
        "ready (the metadata group has a leader) %.2f s after the start, imports not counted",
        trio.current_time() - since,
    )


async def _main(settings: Settings) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_cancel_on_signal, nursery.cancel_scope)
        await nursery.start(partial(serve_node, settings))


async def _cancel_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s: shutting down", signal.Signals(signum).name)
            scope.cancel()
            return


def run_node(settings: Settings) -> None:
    """Run one node in the foreground until SIGINT or SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per forwarded request is noise
    trio.run(_main, settings)
