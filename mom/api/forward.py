"""Forwarding: a node that does not lead a destination passes the HTTP request on and relays the answer.

The whole request travels (method, path, query, body, the caller's bearer token), so the node that leads the
destination applies exactly the same validation, authorization and semantics as if the client had called it; a
client never needs to know who leads what. A request is forwarded at most `MAX_HOPS` times: a node that learns
of a new leader only after forwarding may forward once more, and a loop (leadership moving during the request)
ends in 503 with Retry-After, never in a wrong answer. Streams (SSE) are relayed chunk by chunk.

Where to: a `ForwardRequired` names the nodes to try, best first (the leader as this node knows it, then the
destination's replicas, which know the leader from Raft). Nodes that look down (the replication link to them is
broken, or they refused a connection in the last `DOWN_FOR_S`) are tried last, and a node that cannot be
reached at all (nothing was sent) makes the forwarder try the next one at once: a dead leader costs a refused
connection, not a timeout. Every answer a leader gives names the group, itself and its term in `X-Mom-Leader`;
relayed along, it teaches the forwarding nodes where the group is led (`mom.service.leaders`).

Every wait on the leader is bounded, because a leader can stop answering without closing anything (a SIGSTOP,
a frozen VM, a partition): connecting by `CONNECT_TIMEOUT_S`, the whole answer by `FORWARD_WAIT_S` plus what the
request itself may legitimately wait (a long-poll's `wait_s`), a relayed stream by `STREAM_IDLE_S` between
chunks. When the leader fails to answer, the 503 says what is known: `Unavailable` if the request provably
never reached it (the connection was refused or never made) or could not change anything (a read), and
`OutcomeUnknown` for a write that was sent, since the leader may have applied it before going away. Meanwhile
the destination's other replicas elect a new leader, which the client's retry reaches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import httpx
import trio
from quart import Response, has_request_context, request

from mom.errors import OutcomeUnknown, Unavailable

HOPS_HEADER = "X-Mom-Hops"
LEADER_HEADER = "X-Mom-Leader"
"""On an answer about a destination: `<group> <leader> <term>`, from the leader that served it."""
MAX_HOPS = 3
"""A non-replica asks a replica that no longer leads, which forwards to the leader: two hops; one more for a
leader that hands over meanwhile."""
DOWN_FOR_S = 2.0
"""A node that refused a connection is tried after the other candidates for this long."""
CONNECT_TIMEOUT_S = 1.0
"""A live peer on the same network accepts a connection in milliseconds."""
FORWARD_WAIT_S = 5.0
"""A bound on a leader's answer beyond the election timeout (0.5 to 1 s): by then a leader that stopped
answering has been replaced, so the client's retry can succeed. Longer than any ordinary commit."""
STREAM_IDLE_S = 20.0
"""Longest silence on a relayed event stream (the leader sends a keep-alive every 15 s) before it is ended."""

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Requests that change nothing, so a lost answer leaves nothing unknown."""
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Failures before any byte of the request left: the leader cannot have acted on it."""

_REQUEST_HEADERS = ("authorization", "content-type", "accept")
_RESPONSE_HEADERS = (
    "content-type",
    "retry-after",
    "www-authenticate",
    "cache-control",
    "pragma",
    "x-amzn-query-error",
    "x-amzn-requestid",
    LEADER_HEADER.lower(),
)


class ForwardRequired(Exception):
    """Raised by a handler on a node that does not lead what the request is about; answered by forwarding.

    `targets` are the nodes to try, best first; `wait_s` is how long the leader's handler may legitimately take
    beyond an ordinary request (a long-poll's wait, a declare waiting for its group): the forwarding bound grows
    by that much.
    """

    def __init__(self, targets: Sequence[str], *, wait_s: float = 0.0) -> None:
        if not targets:
            raise ValueError("forwarding needs at least one node to forward to")
        super().__init__(targets[0])
        self.targets, self.wait_s = tuple(targets), wait_s


class NotReached(Unavailable):
    """Nothing of the request reached the node (the connection was refused or never made): another may serve it."""


def leader_header(group: str, leader: str, term: int) -> str:
    return f"{group} {leader} {term}"


def parse_leader_header(value: str | None) -> tuple[str, str, int] | None:
    """(group, leader, term) from an `X-Mom-Leader` value; None if absent or malformed."""
    parts = (value or "").split()
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[0], parts[1], int(parts[2])


def hops() -> int:
    """How many times the current request was forwarded already (0 outside an HTTP request: a stream's frame)."""
    if not has_request_context():
        return 0
    raw = request.headers.get(HOPS_HEADER, "0")
    return int(raw) if raw.isascii() and raw.isdigit() else MAX_HOPS


def timeouts(wait_s: float = 0.0) -> httpx.Timeout:
    """httpx's per-phase timeouts of a call to a leader; `answer_within` bounds the whole of it."""
    return httpx.Timeout(FORWARD_WAIT_S + wait_s, connect=CONNECT_TIMEOUT_S)


@contextmanager
def answer_within(leader: str, method: str, wait_s: float = 0.0) -> Iterator[None]:
    """Bound a call to `leader` to `FORWARD_WAIT_S + wait_s` and turn its failures into the honest 503."""
    try:
        with trio.fail_after(FORWARD_WAIT_S + wait_s):
            yield
    except NOT_SENT as exc:
        raise NotReached(f"{leader} cannot be reached ({type(exc).__name__}); retry shortly") from exc
    except (httpx.TransportError, trio.TooSlowError) as exc:
        what = "did not answer in time" if isinstance(exc, trio.TooSlowError | httpx.TimeoutException) else "went away"
        if method.upper() in SAFE_METHODS:
            raise Unavailable(f"the leader {leader} {what}; retry shortly") from exc
        raise OutcomeUnknown(
            f"the leader {leader} {what} after the request reached it: it may or may not have been applied; "
            "retrying is safe with a dedup_id on every message"
        ) from exc


async def call_leader(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    leader: str,
    *,
    content: bytes = b"",
    headers: Mapping[str, str] | None = None,
    wait_s: float = 0.0,
) -> httpx.Response:
    """One bounded request to `leader` (the whole answer read): a 503 of the right kind if it fails."""
    with answer_within(leader, method, wait_s):
        return await http.request(method, url, content=content, headers=headers, timeout=timeouts(wait_s))


LeaderNoted = Callable[[str, str, int], None]
"""Told (group, leader, term) from every answer that names one."""


class Forwarder:
    """Relays requests to other nodes' REST APIs over one pooled HTTP client, trying the candidates in turn."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        peer_urls: Mapping[str, str],
        *,
        link_up: Callable[[str], bool] = lambda node: True,
        on_leader: LeaderNoted = lambda group, leader, term: None,
    ) -> None:
        self._http = http
        self._urls = dict(peer_urls)
        self._link_up = link_up
        self._on_leader = on_leader
        self._refused_until: dict[str, float] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        """The node's pooled client for calls to other nodes (it carries the cluster's TLS settings)."""
        return self._http

    def add_peer(self, node: str, url: str) -> None:
        """A node added to the cluster (or moved): requests can be forwarded to it from now on."""
        self._urls[node] = url

    def remove_peer(self, node: str) -> None:
        self._urls.pop(node, None)
        self._refused_until.pop(node, None)

    def url(self, node: str) -> str:
        """The REST base URL of `node` (a stream relays frames to it over a socket of its own); NotReached for a
        node this one does not know (removed, or added by a catalog entry not applied here yet)."""
        url = self._urls.get(node)
        if url is None:
            raise _none_reached([node])
        return url

    def order(self, targets: Sequence[str]) -> list[str]:
        """The targets, those that look up first (in their given order), then the others."""
        now = trio.current_time()

        def looks_down(node: str) -> bool:
            return not self._link_up(node) or now < self._refused_until.get(node, -1.0)

        return sorted(dict.fromkeys(targets), key=looks_down)

    def _refused(self, node: str) -> None:
        self._refused_until[node] = trio.current_time() + DOWN_FOR_S

    def _learn(self, answer: httpx.Response) -> None:
        noted = parse_leader_header(answer.headers.get(LEADER_HEADER))
        if noted is not None:
            self._on_leader(*noted)

    async def call(
        self,
        to: ForwardRequired,
        method: str,
        path: str,
        *,
        content: bytes = b"",
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request (the whole answer read) to the first target that can be reached; a 503 of the right kind
        if none can, or the one reached fails. For calls outside an HTTP request (a WebSocket's frames, dead
        letters): `headers` carry their own hop count."""
        unreached: list[str] = []
        for node in self.order(to.targets):
            base = self._urls.get(node)
            if base is None:  # removed from the cluster (a removed metadata leader leads on for a moment)
                unreached.append(node)
                continue
            try:
                answer = await call_leader(
                    self._http,
                    method,
                    base + path,
                    node,
                    content=content,
                    headers=headers,
                    wait_s=to.wait_s,
                )
            except NotReached:
                self._refused(node)
                unreached.append(node)
                continue
            self._learn(answer)
            return answer
        raise _none_reached(unreached)

    async def forward(self, to: ForwardRequired, *, headers: Mapping[str, str] | None = None) -> Response:
        """Relay the current request to the first target that can be reached; `headers` replace or add request
        headers (the SQS endpoint swaps a SigV4 signature, valid only for this host, for a bearer token of the
        same caller)."""
        if hops() >= MAX_HOPS:
            raise Unavailable(f"leadership is moving (last seen at {to.targets[0]}); retry shortly")
        outgoing_headers = {name: request.headers[name] for name in _REQUEST_HEADERS if name in request.headers}
        outgoing_headers.update(headers or {})
        outgoing_headers[HOPS_HEADER] = str(hops() + 1)
        content = await request.get_data(cache=True, as_text=False, parse_form_data=False)
        timeout = timeouts(to.wait_s)
        unreached: list[str] = []
        for node in self.order(to.targets):
            base = self._urls.get(node)
            if base is None:  # removed from the cluster: nothing can be sent to it
                unreached.append(node)
                continue
            outgoing = self._http.build_request(
                request.method,
                base.rstrip("/") + request.full_path.rstrip("?"),
                content=content,
                headers=outgoing_headers,
                timeout=httpx.Timeout(
                    timeout.write, connect=timeout.connect, read=max(timeout.read or 0.0, STREAM_IDLE_S)
                ),
            )
            try:
                with answer_within(node, request.method, to.wait_s):
                    answer = await self._http.send(outgoing, stream=True)
                    self._learn(answer)
                    relayed = {name: answer.headers[name] for name in _RESPONSE_HEADERS if name in answer.headers}
                    if answer.headers.get("content-type", "").startswith("text/event-stream"):
                        response = Response(_relay(answer), status=answer.status_code, headers=relayed)
                        response.timeout = None
                        return response
                    try:
                        return Response(await answer.aread(), status=answer.status_code, headers=relayed)
                    finally:
                        await answer.aclose()
            except NotReached:
                self._refused(node)
                unreached.append(node)
        raise _none_reached(unreached)


def _none_reached(nodes: list[str]) -> NotReached:
    which = nodes[0] if len(nodes) == 1 else "any of " + ", ".join(nodes)
    return NotReached(f"{which} cannot be reached (the request was not sent); retry shortly")


async def _relay(answer: httpx.Response) -> AsyncIterator[bytes]:
    """The leader's event stream, until either side ends it or the leader is silent for `STREAM_IDLE_S`."""
    try:
        async for chunk in answer.aiter_raw():
            yield chunk
    except httpx.TransportError:  # a read timeout included: the client reconnects and reaches a live leader
        return
    finally:
        await answer.aclose()
