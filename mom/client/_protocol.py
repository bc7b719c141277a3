"""Everything the sync and async clients share that is not I/O.

An operation is an `Op`: the HTTP request it needs and how to read the answer. `Protocol.call` turns an
`Op` into a `Flow`, a generator that yields the requests to send (a token request first when needed, the
request again after a 401) and receives their responses, so both twins run the exact same logic and only
differ in how they send a request and sleep between retries. `Nodes` is which node of a cluster they send
to: the same one while it answers, the next one after a failure that is retried.
"""

from __future__ import annotations

import base64
import email.utils
import json
import ssl
import time
import uuid
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    stop_any,
    wait_random_exponential,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from mom import errors
from mom.errors import InvalidInput, MomError, OutcomeUnknown, Overloaded, Unauthorized, Unavailable

T = TypeVar("T")

RETRY_AFTER_CAP_S = 30.0
"""A server asking for a longer pause than this is waited for at most this long per attempt."""

TOKEN_MARGIN_S = 30.0
"""A token is renewed this long before it expires, so a request never leaves with a token about to lapse."""


_OAUTH_DENIED = {"invalid_grant", "invalid_client", "unauthorized_client"}


@dataclass(frozen=True)
class Request:
    """One HTTP request, relative to the client's base URL."""

    method: str
    path: str
    json: Any = None
    form: Mapping[str, str] | None = None
    params: Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: httpx.Timeout | None = None
    retry: bool = True
    repeatable: bool = False
    """Sending it again after an unknown outcome cannot duplicate anything (see `Op.repeatable`)."""

    def httpx_kwargs(self, base_url: str) -> dict[str, Any]:
        """Keyword arguments for `httpx.Client.request` / `httpx.AsyncClient.request` (and `stream`), for the
        node at `base_url`."""
        return {
            "method": self.method,
            "url": base_url + self.path,
            "json": self.json,
            "data": self.form,
            "params": self.params,
            "headers": self.headers,
            "timeout": self.timeout if self.timeout is not None else httpx.USE_CLIENT_DEFAULT,
        }


@dataclass(frozen=True)
class Op(Generic[T]):
    """A client operation: its request without credentials, and how to read a response into a result."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    json: Any = None
    form: Mapping[str, str] | None = None
    params: Mapping[str, Any] | None = None
    auth: bool = True
    long_poll_s: float = 0.0
    retry: bool = True
    repeatable: bool = False
    """Sending it again when its first attempt may have been applied cannot duplicate anything: reads,
    declares (the same attributes again are a no-op), publishes whose every message has a dedup id, acks
    and nacks (a receipt settled by the lost attempt is reported `unknown`), receives (a lease taken by the
    lost attempt ends after its visibility timeout and the message is delivered again)."""


Flow = Generator[Request, httpx.Response, T]
"""Yields requests, receives their responses, returns the result of the operation."""


# ---------------------------------------------------------------------------------------------------------
# Answers and errors


def error_from(response: httpx.Response) -> MomError:
    """The `mom.errors` exception for an error answer: problem+json, OAuth error or anything else."""
    status = response.status_code
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        payload = {}
    if "error" in payload and "title" not in payload:
        denied = payload["error"] in _OAUTH_DENIED or status == 401
        cls: type[MomError] = Unauthorized if denied else InvalidInput
        return cls(str(payload.get("error_description") or payload["error"]))
    cls = errors.class_for(status, payload.get("type"))
    detail = payload.get("detail") or payload.get("title") or response.text[:200] or response.reason_phrase
    error = cls(str(detail))
    if cls is MomError:
        error.status = status
        error.title = str(payload.get("title") or response.reason_phrase or f"HTTP {status}")
    if isinstance(error, Overloaded | Unavailable):
        wait = parse_retry_after(response.headers.get("Retry-After"))
        if wait is not None:
            error.retry_after_s = wait
    return error


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def answer(response: httpx.Response) -> Any:
    """The JSON of a successful answer (None for an empty one); raise the mom error of a failed one."""
    if response.is_error:
        raise error_from(response)
    if response.status_code == 204 or not response.content:
        return None
    return response.json()


def check_retryable(request: Request, response: httpx.Response) -> None:
    """Raise the error of a 429/503 answer to a retryable request, so that the retry policy sees it."""
    if request.retry and response.status_code in (429, 503):
        raise error_from(response)


class _WaitRetryAfter(wait_base):
    """Exponential backoff with full jitter, but never shorter than the server's Retry-After (capped)."""

    def __init__(self) -> None:
        self._backoff = wait_random_exponential(multiplier=0.1, max=5.0)

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = float(getattr(exc, "retry_after_s", 0.0))
        return min(RETRY_AFTER_CAP_S, max(retry_after, self._backoff(retry_state)))


def parse_urls(url: str | Sequence[str]) -> list[str]:
    """The node URLs of `url`: one URL, several separated by commas (as `MOM_URL` and `--url` take them), or a
    list; each without a trailing slash."""
    parts = url.split(",") if isinstance(url, str) else list(url)
    urls = [part.strip().rstrip("/") for part in parts if part.strip()]
    if not urls:
        raise InvalidInput("give the URL of at least one node")
    return urls


class Nodes:
    """The nodes a client may send to (any node of a cluster answers any request), and the one in use.

    The client stays on a node while it answers. A failure that the retry policy retries (the node cannot be
    reached, the connection broke, a 429 or 503) moves it to the next node in the list, round the list, so that
    a retry goes where it may succeed; whether a retry is allowed at all does not depend on the node (see
    `worth_retrying`).
    """

    def __init__(self, url: str | Sequence[str]) -> None:
        self.urls = parse_urls(url)
        self._current = 0

    @property
    def current(self) -> str:
        return self.urls[self._current]

    def from_current(self) -> list[str]:
        """Every URL, the one in use first (then in list order, round the list): for a client that goes on from
        where this one is."""
        return [*self.urls[self._current :], *self.urls[: self._current]]

    def failed(self, url: str, exc: BaseException) -> None:
        """`url` failed with `exc`: move on from it if that failure is worth trying elsewhere (and it is still
        the node in use: concurrent requests that fail on one node move the client once)."""
        if url == self.current and moves_on(exc):
            self._current = (self._current + 1) % len(self.urls)


def moves_on(exc: BaseException) -> bool:
    """A failure that another node may not have: unreachable, broken connection, timeout, 429, 503."""
    return isinstance(exc, httpx.TransportError | Overloaded | Unavailable)


def worth_retrying(exc: BaseException, *, repeatable: bool) -> bool:
    """Whether a failed attempt may be sent again without risk of applying it twice.

    429 and a 503 that says nothing was written (`Unavailable`), and a request that never left (could not
    connect), always are; not a certificate this client does not trust.
    A 503 `OutcomeUnknown`, or a connection lost after the request was sent, only for a repeatable request.
    """
    if isinstance(exc, OutcomeUnknown):
        return repeatable
    if untrusted_certificate(exc) is not None:  # a retry cannot make a certificate trusted
        return False
    if isinstance(exc, Overloaded | Unavailable | httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return True
    return repeatable and isinstance(exc, httpx.TransportError)


@dataclass(frozen=True)
class Retries:
    """How far a client retries: at most `count` retries after the first attempt (None: no count), and none
    once `for_s` seconds have passed since the first attempt (None: no time limit). One of them must be set."""

    count: int | None = 5
    for_s: float | None = None

    def __post_init__(self) -> None:
        if self.count is None and self.for_s is None:
            raise InvalidInput("retries=None retries without end: give retry_for_s too")


def retry_policy(retries: int | Retries, *, repeatable: bool = False) -> dict[str, Any]:
    """Keyword arguments for tenacity's `Retrying` / `AsyncRetrying`: retries within `retries` (a count, or
    `Retries`), exponential back-off with full jitter, never shorter than the server's Retry-After (capped)."""
    limits = retries if isinstance(retries, Retries) else Retries(retries)
    stops: list[stop_base] = []
    if limits.count is not None:
        stops.append(stop_after_attempt(max(0, limits.count) + 1))
    if limits.for_s is not None:
        stops.append(stop_after_delay(limits.for_s))
    return {
        "stop": stop_any(*stops),
        "wait": _WaitRetryAfter(),
        "retry": retry_if_exception(
            lambda exc: worth_retrying(exc, repeatable=repeatable) and getattr(exc, "retryable", True)
        ),
        "reraise": True,
    }


def untrusted_certificate(exc: BaseException) -> str | None:
    """Why the server's certificate was refused, if that is what `exc` is (a retry cannot fix it)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return str(exc) if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


# ---------------------------------------------------------------------------------------------------------
# Bodies


def encode_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A message as the API takes it: bytes bodies travel as `body_base64`."""
    encoded = dict(message)
    body = encoded.get("body")
    if isinstance(body, bytes | bytearray | memoryview):
        del encoded["body"]
        encoded["body_base64"] = base64.b64encode(bytes(body)).decode("ascii")
    return encoded


def decode_message(message: dict[str, Any]) -> dict[str, Any]:
    """A message as the API gives it, with a `body_base64` turned back into a bytes `body`."""
    if "body_base64" in message:
        message = dict(message)
        message["body"] = base64.b64decode(message.pop("body_base64"))
    return message


def with_dedup_ids(messages: Sequence[Mapping[str, Any]], enabled: bool = True) -> list[dict[str, Any]]:
    """The messages, each with a `dedup_id`: its own, or (when `enabled`) a new random one.

    This is what makes a publish safe to send again when its outcome is unknown: within the server's dedup
    window a message whose dedup id was already stored is answered with the first copy, not stored twice.
    """
    return [
        dict(m) if not enabled or m.get("dedup_id") is not None else {**m, "dedup_id": uuid.uuid4().hex}
        for m in messages
    ]


def all_deduplicated(messages: Sequence[Mapping[str, Any]]) -> bool:
    return all(m.get("dedup_id") is not None for m in messages)


def make_message(body: Any, headers: Mapping[str, str] | None, delay_s: float, dedup_id: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"body": body}
    if headers:
        message["headers"] = dict(headers)
    if delay_s:
        message["delay_s"] = delay_s
    if dedup_id is not None:
        message["dedup_id"] = dedup_id
    return message


# ---------------------------------------------------------------------------------------------------------
# Paths


def _seg(name: str) -> str:
    return quote(name, safe="")


def consumer_path(queue: str | None, topic: str | None, subscription: str | None) -> str:
    """Where to receive, ack and nack: a queue, or a subscription of a topic."""
    if queue is not None and topic is None and subscription is None:
        return f"/v1/queues/{_seg(queue)}"
    if queue is None and topic is not None and subscription is not None:
        return f"/v1/topics/{_seg(topic)}/subscriptions/{_seg(subscription)}"
    raise InvalidInput("give either queue=..., or topic=... with subscription=...")


def publish_path(queue: str | None, topic: str | None) -> str:
    if (queue is None) == (topic is None):
        raise InvalidInput("give exactly one of queue=... or topic=...")
    return (queue_path(queue) if queue is not None else topic_path(topic or "")) + "/messages"


def queue_path(name: str) -> str:
    return f"/v1/queues/{_seg(name)}"


def topic_path(name: str) -> str:
    return f"/v1/topics/{_seg(name)}"


def subscription_path(topic: str, name: str) -> str:
    return f"/v1/topics/{_seg(topic)}/subscriptions/{_seg(name)}"


def start_value(start: str | int | Mapping[str, int]) -> str | dict[str, int]:
    """`latest`, `earliest`, an offset, or `{"offset": N}` as the API takes it."""
    if isinstance(start, int):
        return {"offset": start}
    if isinstance(start, str):
        return start
    return dict(start)


# ---------------------------------------------------------------------------------------------------------
# Server-Sent Events


@dataclass
class SSEParser:
    """Incremental parser of a text/event-stream (WHATWG rules), fed one line at a time."""

    _event: str = ""
    _data: list[str] = field(default_factory=list)

    def feed(self, line: str) -> tuple[str, str] | None:
        """Take one line (without its end of line); return `(event, data)` when a blank line completes one."""
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = (self._event or "message", "\n".join(self._data))
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        return None


def delivery_from_event(event: tuple[str, str]) -> dict[str, Any] | None:
    """The delivery carried by a `message` event; None for any other event (keep-alives and the like)."""
    name, data = event
    if name != "message":
        return None
    return decode_message(json.loads(data))


# ---------------------------------------------------------------------------------------------------------
# Tokens and the request flow


def tls_verify(ca_file: str | None) -> ssl.SSLContext | bool:
    """httpx's `verify`: the system's trust store, or only the private CA in `ca_file` (as `mom certs init` makes)."""
    return True if ca_file is None else ssl.create_default_context(cafile=ca_file)


class Credentials(TypedDict, total=False):
    """A client's credentials, as the keyword arguments of another client."""

    username: str
    password: str
    client_id: str
    client_secret: str


class Protocol:
    """The state shared by a client's requests: base timeout and the bearer token with its renewal."""

    def __init__(
        self,
        *,
        timeout: float,
        token: str | None,
        username: str | None,
        password: str | None,
        client_id: str | None,
        client_secret: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._token = token
        self._expires_at: float | None = None
        self._clock = clock
        self._grant: dict[str, str] | None = None
        if username is not None and password is not None:
            self._grant = {"grant_type": "password", "username": username, "password": password}
        elif client_id is not None and client_secret is not None:
            self._grant = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_secret": client_secret,
            }

    @property
    def can_fetch_token(self) -> bool:
        return self._grant is not None

    def credentials(self) -> Credentials:
        """The keyword arguments that give another client (a stream the client opens) the same credentials, so
        that it renews its token by itself instead of dying with the one it was handed."""
        match self._grant:
            case {"grant_type": "password", "username": username, "password": password}:
                return Credentials(username=username, password=password)
            case {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}:
                return Credentials(client_id=client_id, client_secret=secret)
        return Credentials()

    def _token_is_stale(self) -> bool:
        if self._token is None:
            return True
        return self._expires_at is not None and self._clock() >= self._expires_at

    def fetch_token(self) -> Flow[dict[str, Any]]:
        """Get a new token with the credentials and keep it for the following requests."""
        if self._grant is None:
            raise InvalidInput("a token needs username and password, or client_id and client_secret")
        response = yield Request("POST", "/v1/auth/token", form=self._grant, repeatable=True)
        grant = answer(response)
        self._token = str(grant["access_token"])
        expires_in = grant.get("expires_in")
        self._expires_at = None
        if isinstance(expires_in, int | float):
            self._expires_at = self._clock() + expires_in - min(TOKEN_MARGIN_S, expires_in / 10)
        return dict(grant)

    def authorization(self, *, renew: bool = False) -> Flow[dict[str, str]]:
        """The Authorization header; a token is fetched first if there is none, it is stale or `renew`."""
        if self._grant is not None and (renew or self._token_is_stale()):
            yield from self.fetch_token()
        return {"Authorization": f"Bearer {self._token}"} if self._token is not None else {}

    def request(self, op: Op[Any], headers: Mapping[str, str]) -> Request:
        timeout = None
        if op.long_poll_s:
            timeout = httpx.Timeout(self.timeout, read=self.timeout + op.long_poll_s)
        return Request(
            op.method,
            op.path,
            op.json,
            op.form,
            op.params,
            headers=headers,
            timeout=timeout,
            retry=op.retry,
            repeatable=op.repeatable,
        )

    def call(self, op: Op[T]) -> Flow[T]:
        """Run `op`, authenticated when it needs it, renewing the token once if the server refuses it."""
        headers = (yield from self.authorization()) if op.auth else {}
        response = yield self.request(op, headers)
        if response.status_code == 401 and op.auth and self.can_fetch_token:
            headers = yield from self.authorization(renew=True)
            response = yield self.request(op, headers)
        return op.parse(response)

    def events_request(self, topic: str, subscription: str, headers: Mapping[str, str]) -> Request:
        """The SSE request: no read timeout, since the stream stays open between deliveries."""
        return Request(
            "GET",
            subscription_path(topic, subscription) + "/events",
            headers={**headers, "Accept": "text/event-stream"},
            timeout=httpx.Timeout(self.timeout, read=None),
        )


# ---------------------------------------------------------------------------------------------------------
# Operations: one builder per client method, so the twins only run them


def as_dict(response: httpx.Response) -> dict[str, Any]:
    return dict(answer(response))


def as_none(response: httpx.Response) -> None:
    answer(response)


def status_is_ok(response: httpx.Response) -> bool:
    """True for 200, False for 503 (health and readiness), the mom error for anything else."""
    if response.status_code == 503:
        return False
    answer(response)
    return True


def items_of(key: str) -> Callable[[httpx.Response], list[dict[str, Any]]]:
    return lambda response: [dict(item) for item in answer(response)[key]]


def messages_of(response: httpx.Response) -> list[dict[str, Any]]:
    return [decode_message(m) for m in answer(response)["messages"]]


def read_answer(response: httpx.Response) -> dict[str, Any]:
    result = as_dict(response)
    result["messages"] = [decode_message(m) for m in result["messages"]]
    return result


def register_user_op(username: str, password: str) -> Op[dict[str, Any]]:
    body = {"username": username, "password": password}
    return Op("POST", "/v1/auth/users", as_dict, json=body, auth=False)


def create_user_op(username: str, password: str) -> Op[dict[str, Any]]:
    """Registration as an admin (needed when open registration is off): the same request, with a token."""
    return Op("POST", "/v1/auth/users", as_dict, json={"username": username, "password": password})


def accounts_op(kind: str) -> Op[list[dict[str, Any]]]:
    """`kind` is "users" or "clients"."""
    return Op("GET", f"/v1/auth/{kind}", items_of(kind))


def scopes_op(kind: str, name: str, verb: str, scopes: Sequence[str]) -> Op[dict[str, Any]]:
    """Grant (`verb` "grant") or revoke scopes of a user or client (`kind` "users" or "clients")."""
    return Op("POST", f"/v1/auth/{kind}/{quote(name, safe='')}/{verb}", as_dict, json={"scopes": list(scopes)})


def delete_account_op(kind: str, name: str) -> Op[None]:
    return Op("DELETE", f"/v1/auth/{kind}/{quote(name, safe='')}", as_none)


def revoke_token_op(token: str) -> Op[None]:
    """RFC 7009: the token itself is the credential."""
    return Op("POST", "/v1/auth/revoke", as_none, form={"token": token}, auth=False)


def create_client_op(scopes: Sequence[str], client_id: str | None) -> Op[dict[str, Any]]:
    body: dict[str, Any] = {"scopes": list(scopes)}
    if client_id is not None:
        body["client_id"] = client_id
    return Op("POST", "/v1/auth/clients", as_dict, json=body)


def declare_op(path: str, attrs: Mapping[str, Any]) -> Op[dict[str, Any]]:
    """PUT of a queue, topic or subscription: 201 created, 200 already the same, Conflict otherwise."""
    return Op("PUT", path, as_dict, json=dict(attrs), repeatable=True)


def get_op(path: str) -> Op[dict[str, Any]]:
    return Op("GET", path, as_dict, repeatable=True)


def list_op(path: str, key: str) -> Op[list[dict[str, Any]]]:
    return Op("GET", path, items_of(key), repeatable=True)


def delete_op(path: str) -> Op[None]:
    return Op("DELETE", path, as_none)


def subscription_op(
    topic: str, name: str, start: str | int | Mapping[str, int], attrs: Mapping[str, Any]
) -> Op[dict[str, Any]]:
    return declare_op(subscription_path(topic, name), {"start": start_value(start), **attrs})


def publish_op(
    queue: str | None, topic: str | None, messages: Sequence[Mapping[str, Any]], *, dedup_ids: bool = True
) -> Op[list[dict[str, Any]]]:
    """A publish; with `dedup_ids` every message without a dedup id gets one, so retries never duplicate."""
    messages = with_dedup_ids(messages, dedup_ids)
    body = {"messages": [encode_message(m) for m in messages]}
    path = publish_path(queue, topic)
    return Op("POST", path, items_of("messages"), json=body, repeatable=all_deduplicated(messages))


def receive_op(
    queue: str | None,
    topic: str | None,
    subscription: str | None,
    max_messages: int,
    wait_s: float,
    visibility_timeout_s: float | None,
) -> Op[list[dict[str, Any]]]:
    body: dict[str, Any] = {"max_messages": max_messages, "wait_s": wait_s}
    if visibility_timeout_s is not None:
        body["visibility_timeout_s"] = visibility_timeout_s
    path = consumer_path(queue, topic, subscription) + "/receive"
    return Op("POST", path, messages_of, json=body, long_poll_s=wait_s, repeatable=True)


def settle_op(
    verb: str,
    queue: str | None,
    topic: str | None,
    subscription: str | None,
    receipts: Sequence[str],
    delay_s: float = 0.0,
) -> Op[dict[str, Any]]:
    """An ack or a nack of `receipts`."""
    body: dict[str, Any] = {"receipts": list(receipts)}
    if delay_s:
        body["delay_s"] = delay_s
    return Op("POST", f"{consumer_path(queue, topic, subscription)}/{verb}", as_dict, json=body, repeatable=True)


def read_topic_op(topic: str, from_offset: int, limit: int) -> Op[dict[str, Any]]:
    params = {"from_offset": from_offset, "limit": limit}
    return Op("GET", topic_path(topic) + "/messages", read_answer, params=params, repeatable=True)


def probe_op(path: str) -> Op[bool]:
    """/healthz or /readyz: no token, and no retry, since a 503 is the answer and not a failure."""
    return Op("GET", path, status_is_ok, auth=False, retry=False)
