"""Builds the Quart-trio application of one node from its parts."""

from __future__ import annotations

from quart import Response, request
from quart_schema import HttpSecurityScheme, Info, QuartSchema
from quart_trio import QuartTrio

from mom.api import following, sqs
from mom.api.context import ApiContext
from mom.api.errors import register_error_handlers
from mom.api.routes import auth, ops, queue_ops, queues, stream, topics

BODY_OVERHEAD = 2.0
"""A batch's request may exceed its body bytes (JSON framing, base64); werkzeug refuses beyond this factor."""


def create_app(context: ApiContext) -> QuartTrio:
    app = QuartTrio("mom")
    limits = context.settings.limits
    app.config["MAX_CONTENT_LENGTH"] = int(limits.max_batch_bytes * BODY_OVERHEAD) + 64 * 1024
    app.config["BODY_TIMEOUT"] = 60
    app.extensions["mom"] = context
    QuartSchema(
        app,
        info=Info(title="mom", version="0.1.0", description="Message-oriented middleware: queues and topics."),
        openapi_path="/openapi.json",
        swagger_ui_path="/docs",
        redoc_ui_path=None,
        scalar_ui_path=None,
        security_schemes={"bearer": HttpSecurityScheme(scheme="bearer", bearer_format="JWT")},
        security=[{"bearer": []}],
        conversion_preference="msgspec",
    )
    for blueprint in (
        auth.blueprint,
        queues.blueprint,
        queue_ops.blueprint,
        topics.blueprint,
        ops.blueprint,
        stream.blueprint,
    ):
        app.register_blueprint(blueprint)
    sqs.install(app)
    register_error_handlers(app)

    following.install(app, context)

    @app.before_request
    async def _read_body_first() -> None:
        # Hypercorn's HTTP/1.1 keep-alive can stall the next request on a connection when a response (an early
        # 401/403/404) goes out before the request body has arrived; reading the body first rules that out.
        # The body is bounded by MAX_CONTENT_LENGTH (413 beyond) and cached for the handler.
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            await request.get_data()

    @app.after_request
    async def _count(response: Response) -> Response:
        context.metrics.requests.labels(request.method, str(response.status_code)).inc()
        return response

    return app
