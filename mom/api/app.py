"""Builds the Quart-trio application of one node from its parts."""

from __future__ import annotations

import trio
from quart import Response, g, request
from quart_schema import HttpSecurityScheme, Info, QuartSchema
from quart_trio import QuartTrio

from mom.api import following, sqs
from mom.api.context import ApiContext
from mom.api.errors import problem, register_error_handlers
from mom.api.lean import LeanRoutes
from mom.api.metrics import InFlight
from mom.api.openapi import BEARER, Provider
from mom.api.routes import accounts, auth, cluster, ops, queue_ops, queues, stream, topics, ui

BODY_OVERHEAD = 2.0
"""A batch's request may exceed its body bytes (JSON framing, base64); werkzeug refuses beyond this factor."""

FORM_ENDPOINTS = frozenset({"auth.token", "auth.revoke"})
"""OAuth endpoints, which take form-encoded parameters (RFC 6749) as well as JSON."""

OWN_PROTOCOL_BLUEPRINTS = frozenset({"sqs"})
"""Endpoints that speak another protocol (SQS: AWS JSON 1.0 or form-encoded queries) and check their own bodies."""


def _is_json(mimetype: str) -> bool:
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


def create_app(context: ApiContext) -> QuartTrio:
    app = QuartTrio("mom")
    limits = context.settings.limits
    app.config["MAX_CONTENT_LENGTH"] = int(limits.max_batch_bytes * BODY_OVERHEAD) + 64 * 1024
    app.config["BODY_TIMEOUT"] = limits.body_timeout_s
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False  # OPTIONS is not an operation of this API: 405 problem
    app.extensions["mom"] = context
    QuartSchema(
        app,
        info=Info(
            title="mom",
            version="0.1.0",
            description="Message-oriented middleware: queues and topics. Errors are RFC 9457 problem+json.",
        ),
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        security_schemes={"bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT")},
        security=BEARER,
        conversion_preference="msgspec",
        openapi_provider_class=Provider,
    )
    ui.configure_docs(app)
    for blueprint in (
        auth.blueprint,
        accounts.blueprint,
        queues.blueprint,
        queue_ops.blueprint,
        topics.blueprint,
        ops.blueprint,
        cluster.blueprint,
        stream.blueprint,
        ui.blueprint,
    ):
        app.register_blueprint(blueprint)
    sqs.install(app)
    register_error_handlers(app)

    following.install(app, context)

    @app.before_request
    async def _read_body_first() -> Response | None:
        # Hypercorn's HTTP/1.1 keep-alive can stall the next request on a connection when a response (an early
        # 401/403/404) goes out before the request body has arrived; reading the body first rules that out.
        # The body is bounded by MAX_CONTENT_LENGTH (413 beyond) and BODY_TIMEOUT (408), and cached.
        g.mom_started = trio.current_time()
        if not request.content_length and "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
            return None
        data = await request.get_data()
        if request.endpoint in FORM_ENDPOINTS or request.blueprint in OWN_PROTOCOL_BLUEPRINTS:
            return None
        if data and not _is_json(request.mimetype):
            return problem(
                415,
                "Unsupported media type",
                f"the request body must be JSON (Content-Type: application/json), not {request.mimetype or 'untyped'}",
                slug="unsupported-media-type",
            )
        return None

    @app.after_request
    async def _count(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else None
        elapsed = trio.current_time() - g.get("mom_started", trio.current_time())
        context.metrics.observe_request(request.method, rule, response.status_code, elapsed)
        return response

    # The single-message routes skip Quart's per-request scaffolding (mom.api.lean); the rest is Quart's.
    app.asgi_app = InFlight(LeanRoutes(app, app.asgi_app), context.metrics)  # type: ignore[assignment, method-assign]

    return app
