"""One error hierarchy on both sides of the wire: a problem's status and `type` name the same class again."""

from __future__ import annotations

import json

import pytest

from mom.api.errors import PROBLEM_TYPE_BASE, problem_from
from mom.errors import (
    Conflict,
    MomError,
    NotFound,
    OutcomeUnknown,
    Overloaded,
    QueueFull,
    StorageError,
    Unavailable,
    class_for,
)


@pytest.mark.parametrize(
    ("status", "slug", "expected"),
    [
        (503, "outcome-unknown", OutcomeUnknown),
        (503, "unavailable", Unavailable),
        (503, "storage", StorageError),
        (503, "something-new", Unavailable),
        (429, "queue-full", QueueFull),
        (429, "overloaded", Overloaded),
        (404, "not-found", NotFound),
        (409, "conflict", Conflict),
        (418, "teapot", MomError),
        (404, "outcome-unknown", NotFound),  # a slug with another status is not trusted
    ],
)
def test_class_for_a_problem(status: int, slug: str, expected: type[MomError]) -> None:
    assert class_for(status, PROBLEM_TYPE_BASE + slug) is expected


def test_outcome_unknown_is_a_503_that_existing_handlers_still_catch() -> None:
    error = OutcomeUnknown("the leader went away")
    assert isinstance(error, Unavailable) and error.status == 503
    assert error.slug != Unavailable.slug


async def test_outcome_unknown_leaves_as_its_own_problem_type_with_retry_after() -> None:
    response = problem_from(OutcomeUnknown("the leader n2 went away mid-answer"))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    body = json.loads(await response.get_data())
    assert body["type"] == PROBLEM_TYPE_BASE + "outcome-unknown"
    assert body["title"] == "Outcome unknown"
    assert "went away" in body["detail"]


async def test_unavailable_keeps_its_type() -> None:
    body = json.loads(await problem_from(Unavailable("no leader")).get_data())
    assert body["type"] == PROBLEM_TYPE_BASE + "unavailable"
