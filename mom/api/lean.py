"""A lean ASGI path for the single-message routes: publish, receive and ack, served by the same route functions.

One message per request is where the framework's share of the work is largest: Quart-trio serves every request
with a nursery of two tasks (one only to read the body and watch for a disconnect), sends `request_started` and
`request_finished` signals, and streams the answer through an async body iterator under a response timeout, in
three ASGI sends. For the hot routes (POST publish on a queue or topic, receive and ack on a queue or
subscription, without a query string) this middleware does the same work with less around it: it reads the body
in the serving task, pushes the same Quart request context, runs the app's own `before_request` hooks, route
function, error handlers (problem+json, forwarding to the leader, following a moving leader) and `after_request`
hooks (metrics, `X-Mom-Leader`), and sends the answer as one start and one body event. Nothing of the API is
implemented twice: auth, scopes, quotas, limits, strict JSON and errors are the route's, so both paths answer
alike (tests/security/test_lean_path.py compares them). Every other request goes to Quart unchanged.

A receive may long-poll, so it alone keeps a task that watches for the client going away and cancels the wait,
as Quart does; a publish or an ack runs to its end (a commit in progress is not abandoned half-way).
"""

from __future__ import annotations

import re
from typing import Any

import trio
from quart import Response
from quart.utils import encode_headers
from quart_trio import QuartTrio
from quart_trio.asgi import TrioASGIHTTPConnection

ASGIApp = Any
"""An ASGI callable (scope, receive, send); Hypercorn's and Quart's typings disagree, so it is kept loose."""

HOT_PATH = re.compile(
    r"/v1/(?:queues/[^/]+/(?:messages|receive|ack)"
    r"|topics/[^/]+/(?:messages|subscriptions/[^/]+/(?:receive|ack)))"
)
"""The routes served here; exactly the paths Quart routes to those endpoints (names are `[^/]+` there too)."""


def is_hot(scope: dict[str, Any]) -> bool:
    """A POST to a publish, receive or ack route with no query string (those routes take none)."""
    return (
        scope["type"] == "http"
        and scope["method"] == "POST"
        and not scope.get("query_string")
        and not scope.get("root_path")
        and HOT_PATH.fullmatch(scope["path"]) is not None
    )


class LeanRoutes:
    """ASGI middleware in front of the Quart app: the hot routes here, everything else to `inner` (Quart)."""

    def __init__(self, app: QuartTrio, inner: ASGIApp) -> None:
        self._app = app
        self._inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not is_hot(scope):
            await self._inner(scope, receive, send)
            return
        request = TrioASGIHTTPConnection(self._app, scope)._create_request_from_scope(send)  # type: ignore[arg-type]
        if not scope["path"].endswith("/receive"):
            if await _read_body(request, receive, self._app.config["MAX_CONTENT_LENGTH"]):
                await self._answer(request, send)
            return
        async with trio.open_nursery() as nursery:  # a long-poll ends when its client goes away
            nursery.start_soon(_read_then_watch, request, receive, nursery.cancel_scope)
            await self._answer(request, send)
            nursery.cancel_scope.cancel()

    async def _answer(self, request: Any, send: Any) -> None:
        """What Quart's `handle_request` does, less the signals nothing listens to, then one body event."""
        app = self._app
        result: Any
        response: Any
        async with app.request_context(request):
            try:
                try:
                    result = await app.preprocess_request()
                    if result is None:
                        result = await app.dispatch_request()
                except Exception as error:
                    result = await app.handle_user_exception(error)
                response = await app.make_response(result)
                response = await app.process_response(response)
            except Exception as error:
                response = await app.handle_exception(error)
            body = await response.get_data() if isinstance(response, Response) else response.get_data()
        headers = encode_headers(response.headers)
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _read_body(request: Any, receive: Any, limit: int | None) -> bool:
    """The body into the request, as Quart's reader puts it; False if the client went away meanwhile.

    Reading stops at the size limit (the app's hook then answers 413 from the request, as Quart's would) and at
    the body timeout (the hook answers 408 at once rather than after a second timeout). `limit` is the app's
    MAX_CONTENT_LENGTH, which the request's body was given."""
    if limit is not None and (request.content_length or 0) > limit:
        return True  # the request's body already knows it is too large
    total = 0
    with trio.move_on_after(request.body_timeout or float("inf")):
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return False
            chunk = message.get("body", b"")
            total += len(chunk)
            request.body.append(chunk)
            if not message.get("more_body", False) or (limit is not None and total > limit):
                request.body.set_complete()
                return True
    request.body_timeout = 0
    return True


async def _read_then_watch(request: Any, receive: Any, cancel_scope: trio.CancelScope) -> None:
    """Quart's message reader: the body into the request, then the end of the connection cancels the request."""
    while True:
        message = await receive()
        if message["type"] == "http.request":
            request.body.append(message.get("body", b""))
            if not message.get("more_body", False):
                request.body.set_complete()
        elif message["type"] == "http.disconnect":
            cancel_scope.cancel()
            return
