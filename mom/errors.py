"""The one exception hierarchy of mom.

The core raises these typed errors; the REST layer maps each to its HTTP status in one place
(`mom.api.errors`), and the client raises the same classes from a problem+json answer, so users catch
`MomError` or a precise subclass on either side of the wire.
"""

from __future__ import annotations


class MomError(Exception):
    """Base of every error mom raises on purpose."""

    status: int = 500
    title: str = "Internal error"
    slug: str = "internal"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title


class InvalidInput(MomError):
    status, title, slug = 400, "Invalid input", "invalid-input"


class Unauthorized(MomError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(MomError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(MomError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(MomError):
    status, title, slug = 409, "Conflict", "conflict"


class MembershipChangeRefused(Conflict):
    """A Raft membership change its group's leader cannot make now: another one is in progress, the learner has
    not caught up yet, it would remove the last voter, or the node is not a member (nothing was changed)."""

    title, slug = "Membership change refused", "membership-change-refused"


class TooLarge(MomError):
    status, title, slug = 413, "Payload too large", "too-large"


class Overloaded(MomError):
    """The request was valid but cannot be accepted now; retrying later may succeed."""

    status, title, slug = 429, "Too many requests", "overloaded"
    retry_after_s: float = 1.0


class QueueFull(Overloaded):
    title, slug = "Queue full", "queue-full"


class QuotaExceeded(Overloaded):
    """A per-principal limit is reached; each kind of limit has its own class and problem type."""

    title, slug = "Quota exceeded", "quota-exceeded"
    retryable: bool = True
    """Whether waiting alone can help (a client retries only those)."""


class DestinationQuota(QuotaExceeded):
    """The principal holds as many queues and topics as it may (configurable); deleting one frees a place."""

    title, slug = "Destination quota exceeded", "quota-destinations"
    retryable = False
    retry_after_s = 60.0


class StreamQuota(QuotaExceeded):
    """Too many streams (SSE, WebSocket) of one principal open on this node at once."""

    title, slug = "Stream quota exceeded", "quota-streams"
    retry_after_s = 5.0


class LongPollQuota(QuotaExceeded):
    """Too many long-polls (receive with wait_s > 0) of one principal waiting on this node at once."""

    title, slug = "Long-poll quota exceeded", "quota-long-polls"
    retry_after_s = 1.0


class LoginThrottled(Overloaded):
    """Too many failed logins for this name or from this address: wait `Retry-After` before the next try."""

    title, slug = "Too many failed logins", "login-throttled"


class Unavailable(MomError):
    """No leader or no quorum: nothing was written, the client should retry.

    Its subclass `OutcomeUnknown` is the one 503 that does not promise "nothing was written".
    """

    status, title, slug = 503, "Service unavailable", "unavailable"
    retry_after_s: float = 1.0


class OutcomeUnknown(Unavailable):
    """The request reached a leader, which then went away: it may or may not have been applied.

    Raised where the answer cannot say: leadership lost after a write was proposed, a forwarded request whose
    leader died or stopped answering after it was sent, a node shutting down with writes in flight. Repeating the
    request is safe only if it is idempotent, e.g. a publish whose messages all carry a `dedup_id` (the
    client gives every message one by default). A subclass of `Unavailable` so that `except Unavailable`
    keeps catching every 503.
    """

    title, slug = "Outcome unknown", "outcome-unknown"


class StorageError(MomError):
    """The durable log could not be read or written; the node must not answer as if it had been."""

    status, title, slug = 503, "Storage unavailable", "storage"


BY_STATUS: dict[int, type[MomError]] = {
    cls.status: cls
    for cls in (InvalidInput, Unauthorized, Forbidden, NotFound, Conflict, TooLarge, Overloaded, Unavailable)
}
"""The class a client raises for a problem+json answer of a given status."""


def class_for(status: int, problem_type: object) -> type[MomError]:
    """The class a problem names by its `type` slug (queue-full, outcome-unknown, ...) if it has this status,
    else the class of the status (MomError for one without its own class).

    Both sides of the wire use it: the client reading an answer, and a node relaying a leader's answer.
    """
    if isinstance(problem_type, str):
        slug = problem_type.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
        pending: list[type[MomError]] = [MomError]
        while pending:
            cls = pending.pop()
            if cls.slug == slug and cls.status == status:
                return cls
            pending.extend(cls.__subclasses__())
    return BY_STATUS.get(status, MomError)
