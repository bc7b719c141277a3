"""Builds the Quart-trio application of one node from its parts."""

from __future__ import annotations

from quart import Response, g, request
from quart_schema import HttpSecurityScheme, Info, QuartSchema
from quart_trio import QuartTrio

from mom.api import sqs
from mom.api.context import ApiContext, ForwardRequired, served
from mom.api.errors import problem_from, register_error_handlers
from mom.api.forward import LEADER_HEADER, leader_header
from mom.api.routes import auth, ops, queue_ops, queues, stream, topics
from mom.errors import MomError
from mom.service import LeadershipMoved

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

    @app.errorhandler(ForwardRequired)
    async def _forward(exc: ForwardRequired) -> Response:
        try:
            return await context.forwarder.forward(exc)
        except MomError as error:  # raised inside an error handler: no other handler would see it
            return problem_from(error)

    @app.errorhandler(LeadershipMoved)
    async def _follow(exc: LeadershipMoved) -> Response:
        # Nothing was written here: the request goes on to the node that leads now (a hand-over, a step-down).
        about = served()
        g.pop("mom_served", None)
        if exc.leader is None:
            return problem_from(exc)
        return await _forward(ForwardRequired([exc.leader], wait_s=about.wait_s if about else 0.0, group=exc.group_id))

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
        about = served()
        if about is not None and about.leader is not None and LEADER_HEADER not in response.headers:
            response.headers[LEADER_HEADER] = leader_header(about.group, about.leader, about.term)
        return response

    return app
