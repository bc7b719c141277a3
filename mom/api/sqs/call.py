"""One SQS request as the operations see it: the caller, the parameters, and helpers to read them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mom.api.auth import Principal
from mom.api.auth.scopes import Action
from mom.api.sqs.errors import ACCESS_DENIED, INVALID_PARAMETER_VALUE, MISSING_PARAMETER, QUEUE_DOES_NOT_EXIST, SqsError
from mom.api.sqs.queue_attributes import ACCOUNT
from mom.broker.commands import NAME_PATTERN

_NAME_RE = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class Call:
    principal: Principal
    params: dict[str, Any]
    region: str
    base_url: str
    """scheme://host the client called, for the queue URLs in answers."""

    def url(self, name: str) -> str:
        return f"{self.base_url}/{ACCOUNT}/{name}"

    def require(self, key: str) -> Any:
        value = self.params.get(key)
        if value is None or value == "":
            raise SqsError(MISSING_PARAMETER, f"The request must contain the parameter {key}.")
        return value

    def text(self, key: str) -> str:
        value = self.require(key)
        if not isinstance(value, str):
            raise SqsError(INVALID_PARAMETER_VALUE, f"{key} must be a string.")
        return value

    def integer(
        self, key: str, default: int | None, low: int, high: int, params: dict[str, Any] | None = None
    ) -> int | None:
        raw = (self.params if params is None else params).get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise SqsError(INVALID_PARAMETER_VALUE, f"Value {raw} for parameter {key} is invalid.") from None
        if isinstance(raw, bool) or not low <= value <= high:
            raise SqsError(
                INVALID_PARAMETER_VALUE,
                f"Value {raw} for parameter {key} is invalid. Reason: Must be between {low} and {high}.",
            )
        return value

    def strings(self, key: str) -> list[str]:
        value = self.params.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SqsError(INVALID_PARAMETER_VALUE, f"{key} must be a list of strings.")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.params.get(key) or {}
        if not isinstance(value, dict):
            raise SqsError(INVALID_PARAMETER_VALUE, f"{key} must be a map.")
        return value

    def queue(self) -> str:
        """The queue a QueueUrl names (its last path segment; a bare name works too)."""
        name = self.text("QueueUrl").rstrip("/").rsplit("/", 1)[-1]
        if not _NAME_RE.match(name):
            raise SqsError(QUEUE_DOES_NOT_EXIST, "The specified queue does not exist.")
        return name

    def allow(self, name: str, *actions: Action) -> None:
        if not any(self.principal.can(action, name) for action in actions):
            needed = " or ".join(f"mom.{a}:{name}" for a in actions)
            raise SqsError(ACCESS_DENIED, f"Access to the resource {name} is denied: the caller lacks {needed}.")
