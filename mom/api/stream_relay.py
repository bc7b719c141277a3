"""A stream connection's publish, ack and nack frames for destinations another node leads: relayed to that
leader over one WebSocket per leader, not as one HTTP request per frame.

A follower that relayed every frame as its own HTTP request spent more CPU on it than the leader spent on the
whole operation (a request to build and parse, and httpx's connection pool scanned once per request). Instead a
client's connection opens, on first use, one upstream `/v1/stream` socket to each leader it needs, as the
caller (its own bearer token: the leader authorizes every frame as if the client had called it), and pipelines
the frames over it with the upstream's own correlation ids; each answer goes back to the frame that asked. The
upstream lives in the client connection's nursery and ends with it.

The failures keep the meaning they have over HTTP (`mom.api.forward`): a leader that cannot be reached is
`Unavailable` (nothing was sent); a socket that breaks, or an answer that does not come within
`FORWARD_WAIT_S`, after a frame went out is `OutcomeUnknown`, and the next frame opens a new socket. A leader
that refuses the upgrade (a quota of streams, say) is not asked again on this connection: its frames travel as
HTTP requests, as before. Leadership that moves is bounded as forwarding is: a socket relayed once carries the
hop count in `X-Mom-Hops`, and a node that serves a relayed socket relays on over HTTP only, where `MAX_HOPS`
applies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import msgspec
import trio
from httpx_ws import AsyncWebSocketSession, HTTPXWSException, WebSocketUpgradeError, aconnect_ws

from mom.api.forward import CONNECT_TIMEOUT_S, FORWARD_WAIT_S, HOPS_HEADER, Forwarder, NotReached
from mom.errors import MomError, OutcomeUnknown, Overloaded, Unavailable, class_for

MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Largest answer frame accepted from a leader: a published answer of the largest batch fits many times."""

_encoder = msgspec.json.Encoder()
_BROKEN = (HTTPXWSException, httpx.TransportError)
"""How a socket to a leader fails (refused, reset, closed, timed out)."""


class _Answer(msgspec.Struct):
    """What the relay reads of a leader's frame: its kind and correlation id; the rest stays raw."""

    op: str = ""
    id: Any = None


class _Waiter:
    def __init__(self) -> None:
        self.done = trio.Event()
        self.frame: bytes = b""
        self.error: MomError | None = None

    def settle(self, frame: bytes, error: MomError | None = None) -> None:
        if not self.done.is_set():
            self.frame, self.error = frame, error
            self.done.set()


class Upstream:
    """One WebSocket to a leader's `/v1/stream`, as the caller; frames pipelined over it."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._ws: AsyncWebSocketSession | None = None
        self._ids = itertools.count(1)
        self._waiters: dict[int, _Waiter] = {}
        self.broken = False

    async def run(
        self,
        http: httpx.AsyncClient,
        url: str,
        headers: dict[str, str],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Connect (raising `Unavailable`, or `WebSocketUpgradeError` if refused), then read answers until the
        socket ends or the connection is cancelled; then every frame still waiting gets `OutcomeUnknown`."""
        why = "the stream to it closed"
        connected = False
        try:
            with trio.CancelScope(deadline=trio.current_time() + CONNECT_TIMEOUT_S + FORWARD_WAIT_S) as connecting:
                session: AbstractAsyncContextManager[AsyncWebSocketSession] = aconnect_ws(
                    url, http, headers=headers, max_message_size_bytes=MAX_FRAME_BYTES
                )
                async with session as ws:
                    connecting.deadline = math.inf
                    self._ws, connected = ws, True
                    task_status.started()
                    try:
                        while True:
                            self._dispatch((await ws.receive_text()).encode())
                    except _BROKEN as exc:  # caught inside: httpx-ws would wrap it in a group
                        why = f"the stream to it broke ({type(exc).__name__})"
        except WebSocketUpgradeError as exc:
            await exc.response.aclose()
            raise
        except _BROKEN as exc:
            raise NotReached(f"the leader {self.node_id} cannot be reached ({type(exc).__name__})") from exc
        except ExceptionGroup as group:  # from httpx-ws's own tasks, closing a socket that broke
            rest = group.subgroup(lambda exc: not isinstance(exc, _BROKEN))
            if rest is not None:
                raise rest from None
            if not connected:
                raise NotReached(f"the leader {self.node_id} cannot be reached") from group
        finally:
            self.broken = True
            self._fail(OutcomeUnknown(f"the leader {self.node_id}: {why}; the frame may or may not have been applied"))
        if not connected:
            raise NotReached(f"the leader {self.node_id} did not accept the stream in time")

    def _dispatch(self, data: bytes) -> None:
        try:
            answer = msgspec.json.decode(data, type=_Answer)
        except msgspec.MsgspecError:
            return
        waiter = self._waiters.get(answer.id) if isinstance(answer.id, int) else None
        if waiter is None:
            return  # a connection-wide notice (the token expired or was revoked): the close follows
        waiter.settle(data, _error_of(data) if answer.op == "error" else None)

    def _fail(self, error: MomError) -> None:
        for waiter in list(self._waiters.values()):
            waiter.settle(b"", error)

    async def call(self, frame: dict[str, Any]) -> bytes:
        """Send `frame` with a fresh correlation id and wait for the leader's answer frame (raised if an error)."""
        ws = self._ws
        if ws is None or self.broken:
            raise Unavailable(f"the stream to the leader {self.node_id} is closed; retry shortly")
        ident = next(self._ids)
        waiter = self._waiters[ident] = _Waiter()
        try:
            try:
                await ws.send_text(_encoder.encode({**frame, "id": ident}).decode())
            except HTTPXWSException as exc:
                raise Unavailable(f"the stream to the leader {self.node_id} broke ({type(exc).__name__})") from exc
            with trio.move_on_after(FORWARD_WAIT_S):
                await waiter.done.wait()
            if not waiter.done.is_set():
                raise OutcomeUnknown(
                    f"the leader {self.node_id} did not answer in time: the frame may or may not have been applied"
                )
            if waiter.error is not None:
                raise waiter.error
            return waiter.frame
        finally:
            del self._waiters[ident]


class _Problem(msgspec.Struct):
    type: str = ""
    title: str = ""
    status: int = 500
    detail: str = ""
    retry_after_s: float | None = None


def _error_of(data: bytes) -> MomError:
    """The leader's error frame as the MomError it stands for, with the same status, title, type and detail."""
    try:
        problem = msgspec.json.decode(data, type=_Problem)
    except msgspec.MsgspecError:
        problem = _Problem(detail="the leader answered with an error frame that could not be read")
    error = class_for(problem.status, problem.type)(problem.detail or problem.title)
    error.status = problem.status
    error.title = problem.title or error.title
    error.slug = problem.type.rsplit("/", 1)[-1] or error.slug
    if isinstance(error, Overloaded | Unavailable) and problem.retry_after_s is not None:
        error.retry_after_s = problem.retry_after_s
    return error


class Relay:
    """The upstream sockets of one client connection: one per leader, opened on first use."""

    def __init__(self, forwarder: Forwarder, bearer: str, nursery: trio.Nursery) -> None:
        self._forwarder = forwarder
        self._headers = {"authorization": f"Bearer {bearer}", HOPS_HEADER: "1"}
        self._nursery = nursery
        self._upstreams: dict[str, Upstream] = {}
        self._opening: dict[str, trio.Event] = {}
        self._refused: set[str] = set()

    async def call(self, targets: Sequence[str], frame: dict[str, Any]) -> bytes | None:
        """The answer frame to `frame` from the first of `targets` (best first, as forwarding tries them) that
        can be reached, or None if that node does not take relayed sockets (send the frame over HTTP)."""
        unreached: list[str] = []
        for node in self._forwarder.order(targets):
            try:
                upstream = await self._upstream(node)
            except NotReached:
                unreached.append(node)
                continue
            return None if upstream is None else await upstream.call(frame)
        raise NotReached(f"{', '.join(unreached)} cannot be reached (the frame was not sent); retry shortly")

    async def _upstream(self, node_id: str) -> Upstream | None:
        while True:
            if node_id in self._refused:
                return None
            upstream = self._upstreams.get(node_id)
            if upstream is not None and not upstream.broken:
                return upstream
            opening = self._opening.get(node_id)
            if opening is None:
                break
            await opening.wait()  # another frame is connecting: use its socket (or its failure's verdict)
            if node_id not in self._upstreams and node_id not in self._refused:
                raise NotReached(f"the leader {node_id} cannot be reached; retry shortly")
        self._opening[node_id] = opening = trio.Event()
        try:
            upstream = Upstream(node_id)
            url = self._forwarder.url(node_id).rstrip("/") + "/v1/stream"
            await self._nursery.start(upstream.run, self._forwarder.http, url, self._headers)
        except WebSocketUpgradeError:
            self._refused.add(node_id)
            return None
        except NotReached:
            self._upstreams.pop(node_id, None)
            raise
        finally:
            del self._opening[node_id]
            opening.set()
        self._upstreams[node_id] = upstream
        return upstream
