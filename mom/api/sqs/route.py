"""The SQS endpoint: `POST /` (and `/sqs`, and a queue URL's path) speaking AWS JSON 1.0 or the query protocol.

A request is authenticated by its SigV4 signature (the access key id is an OAuth client's id; see `sigv4`) or
by a mom bearer token, then dispatched to its operation with the caller's scopes. An operation that must run
on another node (the queue's or the catalog's leader) raises ForwardRequired before it changes anything; the
request then travels there with a bearer token minted for the same caller, since a SigV4 signature covers the
Host header and would not verify on another node. Every failure becomes the SQS error a client expects, in the
request's protocol; nothing escapes as a 500 with a trace.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from quart import Blueprint, Quart, Response, request
from quart_schema import hide
from werkzeug.routing import BaseConverter

from mom.api.auth import Principal
from mom.api.context import ForwardRequired, ctx
from mom.api.errors import problem
from mom.api.sqs import ops_messages as om
from mom.api.sqs import ops_queues as oq
from mom.api.sqs import protocol
from mom.api.sqs.call import Call
from mom.api.sqs.errors import (
    INTERNAL_FAILURE,
    INVALID_ACTION,
    MISSING_AUTHENTICATION_TOKEN,
    UNSUPPORTED_OPERATION,
    SqsError,
    from_mom,
)
from mom.api.sqs.sigv4 import SignedRequest, verify
from mom.broker.accounts import client_subject
from mom.errors import MomError

log = logging.getLogger("mom.sqs")

DEFAULT_REGION = "us-east-1"
REGION_HEADER = "X-Mom-Sqs-Region"
"""Set on forwarded requests: the region the client signed for (used in ARNs)."""

Operation = Callable[[Call], Awaitable[dict[str, Any]]]


async def _unsupported(call: Call) -> dict[str, Any]:
    raise SqsError(UNSUPPORTED_OPERATION, "mom authorizes with OAuth scopes, not SQS queue policies.")


OPERATIONS: dict[str, Operation] = {
    "CreateQueue": oq.create_queue,
    "GetQueueUrl": oq.get_queue_url,
    "ListQueues": oq.list_queues,
    "GetQueueAttributes": oq.get_queue_attributes,
    "SetQueueAttributes": oq.set_queue_attributes,
    "DeleteQueue": oq.delete_queue,
    "PurgeQueue": oq.purge_queue,
    "TagQueue": oq.tag_queue,
    "UntagQueue": oq.untag_queue,
    "ListQueueTags": oq.list_queue_tags,
    "ListDeadLetterSourceQueues": oq.list_dead_letter_source_queues,
    "StartMessageMoveTask": oq.start_message_move_task,
    "ListMessageMoveTasks": oq.list_message_move_tasks,
    "CancelMessageMoveTask": oq.cancel_message_move_task,
    "SendMessage": om.send_message,
    "SendMessageBatch": om.send_message_batch,
    "ReceiveMessage": om.receive_message,
    "DeleteMessage": om.delete_message,
    "DeleteMessageBatch": om.delete_message_batch,
    "ChangeMessageVisibility": om.change_message_visibility,
    "ChangeMessageVisibilityBatch": om.change_message_visibility_batch,
    "AddPermission": _unsupported,
    "RemovePermission": _unsupported,
}

blueprint = Blueprint("sqs", __name__)


class AccountConverter(BaseConverter):
    """The account segment of a queue URL: twelve digits, so no other route is shadowed."""

    regex = r"\d{12}"


def install(app: Quart) -> None:
    app.url_map.converters["awsaccount"] = AccountConverter
    app.register_blueprint(blueprint)


def _raw(key: str, fallback: str) -> str:
    value = request.scope.get(key)
    return value.decode("latin-1") if isinstance(value, bytes) else fallback


def _base_url() -> str:
    host = request.headers.get("X-Forwarded-Host") or request.headers.get("Host") or "localhost"
    scheme = request.headers.get("X-Forwarded-Proto") or request.scheme
    return f"{scheme}://{host}"


async def _authenticate(body: bytes) -> tuple[Principal, str]:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        principal = await ctx().verify_token(header[7:].strip())
        return principal, request.headers.get(REGION_HEADER, DEFAULT_REGION)
    if not header:
        raise SqsError(MISSING_AUTHENTICATION_TOKEN, "Request is missing Authentication Token")
    service = ctx().service

    def secret_of(access_key: str) -> str | None:
        record = service.client(access_key)
        return None if record is None else record.sigv4_secret

    signed = verify(
        SignedRequest(
            method=request.method,
            raw_path=_raw("raw_path", request.path),
            raw_query=_raw("query_string", ""),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
        ),
        secret_of,
        service.now_ms() / 1000,
    )
    record = service.client(signed.access_key)
    assert record is not None
    return Principal(client_subject(record.client_id), frozenset(record.scopes), record.client_id), signed.region


async def _forward(forward: ForwardRequired, principal: Principal, region: str) -> Response:
    issued = ctx().tokens.issue(principal.subject, sorted(principal.scopes), principal.client_id)
    headers = {
        "authorization": f"Bearer {issued.access_token}",
        "x-forwarded-host": request.headers.get("X-Forwarded-Host") or request.headers.get("Host", ""),
        "x-forwarded-proto": request.headers.get("X-Forwarded-Proto") or request.scheme,
        REGION_HEADER.lower(): region,
    }
    if "X-Amz-Target" in request.headers:
        headers["x-amz-target"] = request.headers["X-Amz-Target"]
    return await ctx().forwarder.forward(forward, headers=headers)


def _answer(json_mode: bool, action: str, result: dict[str, Any], request_id: str) -> Response:
    if json_mode:
        response = Response(protocol.json_body(result), content_type=protocol.JSON_CONTENT_TYPE)
    else:
        response = Response(protocol.xml_body(action, result, request_id), content_type="text/xml")
    response.headers["x-amzn-RequestId"] = request_id
    return response


def _error(json_mode: bool, error: SqsError, request_id: str) -> Response:
    if json_mode:
        body, headers = protocol.json_error(error)
        response = Response(body, status=error.kind.status, content_type=protocol.JSON_CONTENT_TYPE)
        for name, value in headers.items():
            response.headers[name] = value
    else:
        response = Response(protocol.xml_error(error, request_id), status=error.kind.status, content_type="text/xml")
    response.headers["x-amzn-RequestId"] = request_id
    return response


async def _handle(path_queue: str | None) -> Response:
    request_id = str(uuid.uuid4())
    target = request.headers.get("X-Amz-Target")
    json_mode = protocol.is_json(request.content_type, target)
    body = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if not json_mode and not path_queue and "Action=" not in _raw("query_string", "") + body.decode("latin-1"):
        return problem(
            404, "Not found", "no such endpoint (SQS requests carry X-Amz-Target or Action)", slug="not-found"
        )
    action = ""
    try:
        if json_mode:
            action, params = protocol.parse_json(target, body)
        else:
            action, params = protocol.parse_query(_raw("query_string", ""), body)
        if path_queue is not None and not params.get("QueueUrl"):
            params["QueueUrl"] = path_queue
        operation = OPERATIONS.get(action)
        principal, region = await _authenticate(body)
        if operation is None:
            raise SqsError(INVALID_ACTION, f"The action {action} is not valid for this endpoint.")
        try:
            result = await operation(Call(principal, params, region, _base_url()))
        except ForwardRequired as forward:
            return await _forward(forward, principal, region)
    except SqsError as error:
        return _error(json_mode, error, request_id)
    except MomError as error:
        return _error(json_mode, from_mom(error), request_id)
    except Exception:
        log.exception("SQS %s failed", action or "request")
        return _error(
            json_mode, SqsError(INTERNAL_FAILURE, "The request failed on the server; it was logged."), request_id
        )
    return _answer(json_mode, action, result, request_id)


# The SQS routes speak the AWS protocols, not the REST API: /openapi.json leaves them out (docs/sqs.md).


@blueprint.route("/", methods=["POST", "GET"])
@hide
async def root() -> Response:
    return await _handle(None)


@blueprint.route("/sqs", methods=["POST", "GET"])
@blueprint.route("/sqs/", methods=["POST", "GET"])
@hide
async def sqs() -> Response:
    return await _handle(None)


@blueprint.route("/<awsaccount:account>/<queue>", methods=["POST", "GET"])
@hide
async def queue_url(account: str, queue: str) -> Response:
    return await _handle(queue)
