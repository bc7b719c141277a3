"""Summaries and descriptions of the operations, for the OpenAPI document (keyed by Quart endpoint name).

A route's docstring, where it has one, gives its summary (first line) and description (the rest); this table
gives the text for the rest, so every operation in /openapi.json says what it does, and route modules stay
free of documentation-only code. docs/api.md explains the semantics at length.
"""

from __future__ import annotations

_NAME = "Names are 1 to 200 characters of [A-Za-z0-9._-], starting with a letter or digit."
_FORWARD = "Any node answers: one that does not lead the destination forwards the request to its leader."
_SETTLE = "A receipt names one delivery; a receipt that is stale (the message was delivered again) is `unknown`."

TEXT: dict[str, tuple[str, str]] = {
    "queues.declare": (
        "Create a queue, or confirm one with the same attributes",
        f"201 when created, 200 when it exists with the same attributes, 409 with others. Needs "
        f"mom.configure on the name. Counts toward the caller's destination quota. {_NAME}",
    ),
    "queues.list_queues": (
        "List the queues the caller may read or configure",
        "Each with its attributes, owner (a subject: user:NAME or client:ID) and counts.",
    ),
    "queues.show": (
        "Show a queue",
        f"Attributes, owner, ready/delayed/in-flight counts, leader and replicas. {_FORWARD}",
    ),
    "queues.delete": ("Delete a queue", "Only its creator or an admin may delete it; its messages are gone."),
    "queues.publish": (
        "Publish messages to a queue",
        "A batch (`messages`) or one message's fields at the top level; `body` is any JSON value, `body_base64` "
        f"bytes. Answered once durable on a majority of the queue's replicas. {_FORWARD}",
    ),
    "queues.receive": (
        "Lease messages from a queue",
        "Up to `max_messages`, long-polling up to `wait_s` for the first; each is leased for the visibility "
        "timeout and comes with a receipt to ack or nack. Long-polls count toward a per-principal quota.",
    ),
    "queues.ack": ("Acknowledge deliveries of a queue", f"The messages are done and removed. {_SETTLE}"),
    "queues.nack": (
        "Give deliveries of a queue back",
        f"The messages become visible again after `delay_s`, or move to the dead-letter queue. {_SETTLE}",
    ),
    "topics.declare": (
        "Create a topic, or confirm one with the same attributes",
        f"201 when created, 200 when it exists with the same attributes, 409 with others. {_NAME}",
    ),
    "topics.list_topics": ("List the topics the caller may read or configure", "With their subscriptions."),
    "topics.show": ("Show a topic", "Attributes, offsets, size, subscriptions, leader and replicas."),
    "topics.delete": ("Delete a topic", "Only its creator or an admin may; its subscriptions go with it."),
    "topics.publish": (
        "Publish messages to a topic",
        "As for a queue; every subscription receives every message. Messages to a topic cannot be delayed.",
    ),
    "topics.replay": (
        "Read the retained log of a topic",
        "From `from_offset` (default 0), at most `limit` messages (default 100), without a subscription.",
    ),
    "topics.list_subscriptions": ("List the subscriptions of a topic", "Each with its cursor and counts."),
    "topics.subscribe": (
        "Create a durable subscription, or confirm one",
        "`start` is latest, earliest or {offset: N}. Needs mom.read on the topic.",
    ),
    "topics.show_subscription": ("Show a subscription", "Its attributes, cursor, ready and in-flight counts."),
    "topics.unsubscribe": ("Delete a subscription", "Only its creator or an admin may."),
    "topics.receive": ("Lease messages of a subscription", "As for a queue."),
    "topics.ack": ("Acknowledge deliveries of a subscription", _SETTLE),
    "topics.nack": ("Give deliveries of a subscription back", _SETTLE),
    "topics.events": (
        "Push a subscription's messages as Server-Sent Events",
        "`event: message` with the receipt as `id`; ack with /ack. The stream ends with `event: error` when the "
        "token expires or is revoked. Streams count toward a per-principal quota.",
    ),
    "ops.healthz": ("Liveness", "The process is alive and serving HTTP; no token needed."),
    "ops.metrics": ("Prometheus metrics", "Text format 0.0.4; no token needed."),
    "ops.cluster": (
        "The cluster as this node sees it",
        "Nodes, transport, and per destination the caller may see its leader, replicas, commit index and lag.",
    ),
    "auth.jwks": (
        "The node's public signing key",
        "A JWK Set (RFC 7517) of the key this node signs its tokens with (ES256); each node serves its own.",
    ),
}


def text_for(endpoint: str, docstring: str | None) -> tuple[str, str]:
    """(summary, description) of an operation: its docstring's, completed from the table."""
    summary, _, description = (docstring or "").strip().partition("\n")
    table_summary, table_description = TEXT.get(endpoint, ("", ""))
    return (summary.strip() or table_summary), (description.strip() or table_description or summary.strip())
