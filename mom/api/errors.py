"""Every error leaves the API as RFC 9457 problem+json, from this one place.

Handlers raise `mom.errors` exceptions; malformed JSON and schema violations surface as msgspec errors; routing
and size errors come from werkzeug. All of them become a 4xx with a detail a user can act on. Anything else is a
bug: it is logged with its traceback and answered with a plain 500 problem that reveals nothing internal.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from quart import Quart, Response
from werkzeug.exceptions import HTTPException

from mom.errors import MomError, Overloaded, Unauthorized, Unavailable

log = logging.getLogger("mom.api")

PROBLEM_TYPE_BASE = "https://mom.invalid/problems/"
"""Problem `type` URIs; the slug names the error class (documented in docs/errors.md)."""


def problem(status: int, title: str, detail: str, *, slug: str, headers: dict[str, str] | None = None) -> Response:
    body = msgspec.json.encode({"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail})
    response = Response(body, status=status, content_type="application/problem+json")
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def problem_from(exc: MomError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(exc, Overloaded | Unavailable):
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s)))
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="mom"'
    return problem(exc.status, exc.title, exc.detail, slug=exc.slug, headers=headers)


def register_error_handlers(app: Quart) -> None:
    @app.errorhandler(MomError)
    async def _mom_error(exc: MomError) -> Response:
        return problem_from(exc)

    @app.errorhandler(msgspec.DecodeError)
    async def _malformed(exc: msgspec.DecodeError) -> Response:
        return problem(400, "Malformed JSON", f"the request body is not valid JSON: {exc}", slug="malformed")

    @app.errorhandler(msgspec.ValidationError)
    async def _invalid(exc: msgspec.ValidationError) -> Response:
        return problem(400, "Invalid input", str(exc), slug="invalid-input")

    @app.errorhandler(HTTPException)
    async def _http(exc: HTTPException) -> Response:
        status = exc.code or 500
        title = exc.name or "HTTP error"
        detail = exc.description or title
        headers = {name: value for name, value in exc.get_headers() if name.lower() == "allow"}
        if status == 413:
            detail = "the request body is larger than this server accepts (see limits in docs/api.md)"
        if status in (408, 413):
            # The rest of the body is still on the wire, unread (too large, or too slow to come), so the server
            # drops the connection after this answer; saying so keeps a keep-alive client from sending its next
            # request into the closed socket.
            headers["Connection"] = "close"
        return problem(status, title, detail, slug=title.lower().replace(" ", "-"), headers=headers)

    @app.errorhandler(Exception)
    async def _bug(exc: Exception) -> Any:
        log.exception("unhandled error")
        return problem(500, "Internal error", "the server hit an unexpected error; it was logged", slug="internal")
