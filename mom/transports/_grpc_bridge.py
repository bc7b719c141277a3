"""Where grpcio's threads meet trio: the only module that owns threads, so the rest of mom stays structured.

grpcio's sync API needs threads: the server handles each Push stream in a pool thread, and each outgoing
stream pulls its frames from an iterator in a thread of grpc's own. This module keeps those threads on a short
leash: every blocking wait has a bound, frames cross into trio with `trio.from_thread.run_sync` (a grpc thread
waits only for the trio loop to run one non-blocking call), and `stop()` / `close()` + `join()` end every
thread it started, so none outlives `GrpcTransport.run()`. Protocol decisions (what a Hello must say, which
options to set) belong to `grpc.py`; this module only moves frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc  # type: ignore[import-untyped]
import trio

from mom.transports._generated.replication_pb2 import DESCRIPTOR, Frame, Hello, PushSummary
from mom.transports._sendqueue import ThreadSendQueue

log = logging.getLogger("mom.transports.grpc")

_SERVICE = DESCRIPTOR.services_by_name["Replication"]
PUSH_PATH = f"/{_SERVICE.full_name}/Push"
ACCEPTED_BY = "mom-accepted-by"
"""Initial-metadata key the server sends once it has accepted a Hello; its value is the server's node id."""
POLL_S = 0.1
"""How long a thread waits before looking again whether it should stop: bounds shutdown, not latency."""
INITIAL_BACKOFF_S, MAX_BACKOFF_S = 0.05, 1.0
GRPC_THREAD_START_S = 5.0
"""Bound on the wait for grpc's request thread to start: it starts at once, the bound only rules out a hang."""

Options = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class Refusal:
    """Why a server turns a Hello away: the gRPC status and the detail the peer (and our log) sees."""

    code: grpc.StatusCode
    detail: str


class PushServer:
    """A grpc.server whose Push streams hand each batch to trio as `deliver(peer, batch)` (run on trio's thread)."""

    def __init__(
        self,
        *,
        node_id: str,
        admit: Callable[[Hello, str | None], Refusal | None],
        deliver: Callable[[str, bytes], None],
        trio_token: trio.lowlevel.TrioToken,
        max_streams: int,
        options: Options,
    ) -> None:
        self._node_id = node_id
        self._admit = admit
        self._deliver = deliver
        self._token = trio_token
        self._pool = ThreadPoolExecutor(max_workers=max_streams, thread_name_prefix="mom-grpc-server")
        handler = grpc.stream_unary_rpc_method_handler(
            self._push, request_deserializer=Frame.FromString, response_serializer=PushSummary.SerializeToString
        )
        self._server = grpc.server(
            self._pool,
            handlers=[grpc.method_handlers_generic_handler(_SERVICE.full_name, {"Push": handler})],
            options=options,
            maximum_concurrent_rpcs=max_streams,
        )

    def start(self, target: str, credentials: grpc.ServerCredentials | None) -> int:
        """Bind and start serving; the bound port. Raises what grpcio raises (the caller maps it)."""
        if credentials is None:
            port: int = self._server.add_insecure_port(target)
        else:
            port = self._server.add_secure_port(target, credentials)
        self._server.start()
        return port

    def stop(self, grace_s: float) -> None:
        """Refuse new streams, give open ones `grace_s` to end, then cancel them and wait for the pool threads."""
        self._server.stop(grace_s).wait(grace_s + 5)
        self._pool.shutdown(wait=True)

    def _push(self, frames: Iterator[Frame], context: grpc.ServicerContext) -> PushSummary:
        first = next(frames, None)
        if first is None or first.WhichOneof("body") != "hello":
            _abort(context, Refusal(grpc.StatusCode.INVALID_ARGUMENT, "a Push stream must start with a Hello"))
        hello = first.hello
        refusal = self._admit(hello, _certified_name(context))
        if refusal is not None:
            _abort(context, refusal)
        context.send_initial_metadata(((ACCEPTED_BY, self._node_id),))
        count = 0
        for frame in frames:
            if frame.WhichOneof("body") != "batch":
                _abort(context, Refusal(grpc.StatusCode.INVALID_ARGUMENT, "only a stream's first Frame is a Hello"))
            try:
                trio.from_thread.run_sync(self._deliver, hello.node_id, frame.batch, trio_token=self._token)
            except trio.RunFinishedError:
                _abort(context, Refusal(grpc.StatusCode.UNAVAILABLE, f"node {self._node_id} is shutting down"))
            count += 1
        return PushSummary(frames=count)


def _certified_name(context: grpc.ServicerContext) -> str | None:
    """The common name of the client's certificate, which TLS verified against the CA; None in clear text."""
    names = context.auth_context().get("x509_common_name")
    return names[0].decode(errors="replace") if names else None


def _abort(context: grpc.ServicerContext, refusal: Refusal) -> NoReturn:
    """End the stream with `refusal`'s status; grpcio's `abort` raises, which its untyped API cannot say."""
    context.abort(refusal.code, refusal.detail)
    raise AssertionError("grpc.ServicerContext.abort returned")


class PeerLink:
    """One peer's outgoing side: a thread-safe queue bounded in frames and bytes, and while running, the thread
    that streams it.

    The queue outlives the thread, so frames queued while the transport is not running (or the peer is down)
    are sent once a stream is up, and `offer` never blocks: a full queue drops the frame and counts it. Beyond
    the queue, grpc holds at most the frame it is writing (its request iterator asks for the next one only once
    the previous one was written).
    """

    def __init__(
        self, peer: str, max_frames: int, max_bytes: int, on_failure: Callable[[grpc.StatusCode, str], None]
    ) -> None:
        self.peer = peer
        self._on_failure = on_failure
        """Told how each stream that we did not end ended: the policy of what to log is grpc.py's."""
        self.connected = False
        self._queue = ThreadSendQueue(max_frames, max_bytes)
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._call: grpc.Future | None = None
        self._thread: threading.Thread | None = None
        self._pullers: list[threading.Thread] = []
        """grpc's threads that pull `_frames` of our streams: not ours, but joined so none outlives `join()`."""

    @property
    def dropped(self) -> int:
        return self._queue.dropped

    @property
    def queued_bytes(self) -> int:
        return self._queue.queued_bytes

    def offer(self, frame: bytes) -> bool:
        return self._queue.offer(frame)

    def start(self, target: str, hello: Hello, options: Options, credentials: grpc.ChannelCredentials | None) -> None:
        self._closing.clear()
        self._thread = threading.Thread(
            target=self._run, args=(target, hello, options, credentials), name=f"mom-grpc-to-{self.peer}"
        )
        self._thread.start()

    def close(self) -> None:
        """Ask the thread to stop: it ends the open stream at once and exits within about POLL_S."""
        with self._lock:
            self._closing.set()
            if self._call is not None:
                self._call.cancel()

    def join(self) -> None:
        """Wait for the thread started by `start` and for grpc's threads that pulled our frames (after close)."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for puller in self._pullers:
            puller.join()
        self._pullers.clear()

    def _run(self, target: str, hello: Hello, options: Options, credentials: grpc.ChannelCredentials | None) -> None:
        """Keep one Push stream open to the peer, reopening it with capped exponential backoff when it breaks."""
        if credentials is None:
            channel = grpc.insecure_channel(target, options=options)
        else:
            channel = grpc.secure_channel(target, credentials, options=options)
        push = channel.stream_unary(
            PUSH_PATH, request_serializer=Frame.SerializeToString, response_deserializer=PushSummary.FromString
        )
        backoff = INITIAL_BACKOFF_S
        try:
            while not self._closing.is_set():
                started = time.monotonic()
                self._stream(push, hello)
                if time.monotonic() - started > MAX_BACKOFF_S:
                    backoff = INITIAL_BACKOFF_S
                self._closing.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
        finally:
            channel.close()

    def _stream(self, push: grpc.StreamUnaryMultiCallable, hello: Hello) -> None:
        done, pulled = threading.Event(), threading.Event()
        with self._lock:
            if self._closing.is_set():
                return
            call = self._call = push.future(self._frames(hello, done, pulled))
        call.add_done_callback(lambda _: done.set())
        try:
            accepted_by = dict(call.initial_metadata() or ()).get(ACCEPTED_BY)
            if accepted_by is not None and accepted_by != self.peer:
                log.warning("%s answers as node %r: check the peer addresses", self.peer, accepted_by)
                call.cancel()
            self.connected = accepted_by == self.peer
            done.wait()
        finally:
            self.connected = False
            with self._lock:
                self._call = None
        pulled.wait(GRPC_THREAD_START_S)
        if not self._closing.is_set() and call.code() not in (grpc.StatusCode.OK, grpc.StatusCode.CANCELLED):
            self._on_failure(call.code(), call.details() or "")

    def _frames(self, hello: Hello, done: threading.Event, pulled: threading.Event) -> Iterator[Frame]:
        """The frames of one stream, pulled by a grpc thread; it returns soon after the stream ends or we close.

        grpc starts that thread with every call and it asks for the first frame at once, so recording it here
        (and `_stream` waiting for `pulled`) lets `join()` know every such thread. A frame taken just as the
        stream breaks is lost, like any frame on a broken link: replication resends what was not acknowledged.
        """
        self._pullers = [puller for puller in self._pullers if puller.is_alive()]
        self._pullers.append(threading.current_thread())
        pulled.set()
        yield Frame(hello=hello)
        while not (done.is_set() or self._closing.is_set()):
            batch = self._queue.get(timeout=POLL_S)
            if batch is not None:
                yield Frame(batch=batch)
