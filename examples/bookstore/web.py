"""What the services' HTTP APIs share: a Quart-trio app whose errors are problem+json, JSON in and out, and
serving it with Hypercorn on trio (as mom's own nodes do).

Errors use the `mom.errors` classes (NotFound, Conflict, ...): one hierarchy for the whole example, and an
error from a mom call maps to the same status the broker gave.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

import msgspec
import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from mom.errors import MomError, Overloaded, Unavailable

S = TypeVar("S")
log = logging.getLogger("bookstore.http")

PROBLEM_BASE = "https://bookstore.invalid/problems/"
MAX_BODY_BYTES = 64 * 1024


def problem(status: int, title: str, detail: str, slug: str) -> Response:
    body = msgspec.json.encode({"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail})
    return Response(body, status=status, content_type="application/problem+json")


def json_response(value: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status=status, content_type="application/json")


async def json_body(kind: type[S]) -> S:
    """The request's JSON body as `kind`; msgspec's errors become 400 problems."""
    data = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    return msgspec.json.decode(data or b"{}", type=kind)


def create_app(name: str) -> QuartTrio:
    app = QuartTrio(name)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @app.before_request
    async def _read_body_first() -> None:
        # As in mom's own app: answering before the body is read can stall the next request on the connection.
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            await request.get_data()

    @app.get("/healthz")
    async def _healthz() -> Response:
        return json_response({"status": "ok", "service": name})

    @app.errorhandler(MomError)
    async def _known(exc: MomError) -> Response:
        response = problem(exc.status, exc.title, exc.detail, exc.slug)
        if isinstance(exc, Overloaded | Unavailable):
            response.headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
        return response

    @app.errorhandler(msgspec.DecodeError)
    async def _malformed(exc: msgspec.DecodeError) -> Response:
        return problem(400, "Malformed JSON", f"the request body is not valid JSON: {exc}", "malformed")

    @app.errorhandler(msgspec.ValidationError)
    async def _invalid(exc: msgspec.ValidationError) -> Response:
        return problem(400, "Invalid input", str(exc), "invalid-input")

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        title = exc.name or "HTTP error"
        return problem(exc.code or 500, title, exc.description or title, title.lower().replace(" ", "-"))

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Response:
        log.exception("unhandled error")
        return problem(500, "Internal error", "the service hit an unexpected error; it was logged", "internal")

    return app


async def serve(
    app: QuartTrio, listen: str, *, task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve `app` on HOST:PORT until cancelled; `started` with the bound URLs once it accepts connections."""
    config = Config()
    config.bind = [listen]
    config.accesslog = None
    config.errorlog = logging.getLogger("bookstore.hypercorn")
    config.graceful_timeout = 2.0
    await hypercorn_serve(app, config, task_status=task_status)
