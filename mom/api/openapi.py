"""The OpenAPI document, exact: every operation's answers, security, parameters and bounds.

quart-schema builds the skeleton (paths, request bodies from the msgspec structs). Each route adds its contract
with `@contract(...)`: the status codes it can answer (errors as RFC 9457 problem+json, or OAuth errors for the
OAuth endpoints), whether it needs a bearer token, its query parameters and its success body. The provider here
merges those in, documents path parameters with the name pattern the server enforces, and moves nested schema
definitions to `components` so that every `$ref` resolves. A schemathesis run over the result is a test
(tests/security/test_openapi_contract.py): what the document says is what the server does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
from quart_schema.openapi import OpenAPIProvider
from quart_schema.validation import DataSource
from werkzeug.routing import Rule

from mom.api.openapi_text import text_for
from mom.broker.commands import NAME_PATTERN

PATH_PATTERNS = {
    "username": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
    "client_id": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
    "node_id": r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
}
"""Path parameters that are not destination names (those follow NAME_PATTERN)."""

F = TypeVar("F", bound=Callable[..., Any])

BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
PUBLIC: list[dict[str, list[str]]] = []
BEARER_OPTIONAL: list[dict[str, list[str]]] = [{}, {"bearer": []}]
"""Anyone, or a bearer (registration: anonymous with open registration, else an admin's token)."""

_ATTRIBUTE = "_mom_contract"
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_OAUTH_ERROR = {"$ref": "#/components/schemas/OAuthError"}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer", "minimum": 0}}
}
_REASONS = {
    200: "OK",
    201: "Created",
    204: "No content",
    400: "Malformed JSON, wrong types, unknown fields, bad names or values",
    401: "Missing, malformed, forged, expired or revoked bearer token",
    403: "The token's scopes do not allow this",
    404: "No such destination, subscription or account",
    409: "Conflicts with what exists",
    413: "Message, batch or request body too large",
    415: "The request body is not JSON (send Content-Type: application/json)",
    429: "Over a limit or a quota; retry after Retry-After",
    503: "Not ready, or no leader or quorum at the moment; retry after Retry-After",
}

COMPONENTS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
        },
    },
    "OAuthError": {
        "type": "object",
        "description": "RFC 6749 section 5.2 error",
        "required": ["error"],
        "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}},
    },
}


@dataclass(frozen=True)
class Contract:
    statuses: tuple[int, ...]
    security: list[dict[str, list[str]]]
    oauth_errors: tuple[int, ...] = ()
    query: tuple[dict[str, Any], ...] = ()
    body: dict[str, Any] | type[Any] = field(default_factory=dict)
    """The success answer's JSON schema, or a struct of mom.api.answers that it is generated from."""
    content_type: str = "application/json"
    form: bool = False
    """The request body may also come form-encoded (the OAuth endpoints)."""


def contract(
    *statuses: int,
    security: list[dict[str, list[str]]] = BEARER,
    oauth_errors: Iterable[int] = (),
    query: Iterable[dict[str, Any]] = (),
    body: dict[str, Any] | type[Any] | None = None,
    content_type: str = "application/json",
    form: bool = False,
) -> Callable[[F], F]:
    """Declare what an operation answers: its status codes (2xx and errors), security, query, success body."""

    def decorate(func: F) -> F:
        setattr(
            func,
            _ATTRIBUTE,
            Contract(
                tuple(statuses),
                security,
                tuple(oauth_errors),
                tuple(query),
                body or {"type": "object"},
                content_type,
                form,
            ),
        )
        return func

    return decorate


def query_integer(name: str, low: int, high: int, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "integer", "minimum": low, "maximum": high},
    }


def _body_schema(body: dict[str, Any] | type[Any], components: dict[str, Any]) -> dict[str, Any]:
    if isinstance(body, dict):
        return body
    (schema,), found = msgspec.json.schema_components([body], ref_template="#/components/schemas/{name}")
    components.update(found)
    return schema


def _response(status: int, spec: Contract, components: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": _REASONS.get(status, "")}
    if status == 204:
        return answer
    if status < 300:
        answer["content"] = {spec.content_type: {"schema": _body_schema(spec.body, components)}}
    elif status in spec.oauth_errors:  # OAuth errors; a body that is not JSON at all is still a problem
        answer["content"] = {
            "application/json": {"schema": _OAUTH_ERROR},
            "application/problem+json": {"schema": _PROBLEM},
        }
    else:
        answer["content"] = {"application/problem+json": {"schema": _PROBLEM}}
    if status in (429, 503):
        answer["headers"] = dict(_RETRY_AFTER)
    return answer


def _hoist(node: Any, found: dict[str, Any]) -> Any:
    """Move every nested `$defs` into `found` and point its `$ref`s at #/components/schemas."""
    if isinstance(node, dict):
        for name, schema in node.pop("$defs", {}).items():
            found[name] = _hoist(schema, found)
        out = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                value = "#/components/schemas/" + value.removeprefix("#/$defs/")
            out[key] = _hoist(value, found)
        return out
    if isinstance(node, list):
        return [_hoist(item, found) for item in node]
    return node


def _has_required_fields(model: type[Any]) -> bool:
    fields = getattr(model, "__struct_fields__", ())
    return len(getattr(model, "__struct_defaults__", ())) < len(fields)


class Provider(OpenAPIProvider):
    """quart-schema's provider, completed with each route's `Contract`."""

    def build_request_body(self, model: type[Any], source: DataSource) -> tuple[dict[str, Any], dict[str, Any]]:
        """The body's schema with every nested struct in `components` (quart-schema drops nested ones)."""
        (schema,), components = msgspec.json.schema_components([model], ref_template="#/components/schemas/{name}")
        body = {"content": {"application/json": {"schema": schema}}, "required": _has_required_fields(model)}
        return body, components

    def build_paths(self, rule: Rule) -> tuple[dict[str, Any], dict[str, Any]]:
        paths, components = super().build_paths(rule)
        func = self._app.view_functions[rule.endpoint]
        spec: Contract | None = getattr(func, _ATTRIBUTE, None)
        summary, description = text_for(rule.endpoint, inspect.getdoc(func))
        for path_object in paths.values():
            for operation in path_object.values():
                operation["summary"], operation["description"] = summary, description
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") == "path":
                        pattern = PATH_PATTERNS.get(parameter["name"], NAME_PATTERN)
                        parameter["schema"] = {"type": "string", "pattern": pattern}
                if spec is None:
                    continue
                operation["security"] = spec.security
                operation["responses"] = {str(s): _response(s, spec, components) for s in sorted(set(spec.statuses))}
                operation["parameters"] = [*operation.get("parameters", []), *spec.query]
                content = operation.get("requestBody", {}).get("content", {})
                if spec.form and "application/json" in content:
                    content["application/x-www-form-urlencoded"] = content["application/json"]
        return paths, components

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        found: dict[str, Any] = {}
        document = _hoist(document, found)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(found)
        schemas.update(COMPONENTS)
        return document  # type: ignore[no-any-return]
