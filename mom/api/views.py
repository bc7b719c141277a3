"""The JSON shapes of API answers, built from the core's read-only views."""

from __future__ import annotations

import base64
import functools
import time
from typing import Any

import msgspec
from quart import Response

from mom.broker.commands import (
    Delivery,
    PeekedMessage,
    QueueInfo,
    StoredMessage,
    SubscriptionInfo,
    TopicInfo,
    Totals,
)


def json_response(payload: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(payload), status=status, content_type="application/json")


@functools.lru_cache(maxsize=256)
def _second(s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))


def rfc3339(ms: int) -> str:
    """`2026-11-30T16:00:00.123Z` (UTC, milliseconds). Every delivery carries one, and deliveries come in
    bursts of the same second: the second's text is cached, only the milliseconds are formatted each time."""
    s, milli = divmod(ms, 1000)
    return f"{_second(s)}.{milli:03d}Z"


def _body(body: bytes, binary: bool) -> dict[str, Any]:
    if binary:
        return {"body_base64": base64.b64encode(body).decode()}
    return {"body": msgspec.Raw(body)}


def delivery_view(d: Delivery) -> dict[str, Any]:
    view = {
        "id": d.id,
        "offset": d.offset,
        **_body(d.body, d.binary),
        "headers": d.headers,
        "receipt": d.receipt,
        "deliveries": d.deliveries,
        "published_at": rfc3339(d.published_at_ms),
    }
    if d.group_id is not None:
        view["group_id"] = d.group_id
    return view


def peeked_view(m: PeekedMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "offset": m.offset,
        **_body(m.body, m.binary),
        "headers": m.headers,
        "state": m.state,
        "deliveries": m.deliveries,
        "published_at": rfc3339(m.published_at_ms),
        "visible_at": None if m.visible_at_ms is None else rfc3339(m.visible_at_ms),
        "group_id": m.group_id,
    }


def stored_view(m: StoredMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "offset": m.offset,
        **_body(m.body, m.binary),
        "headers": m.headers,
        "published_at": rfc3339(m.published_at_ms),
    }


def totals_view(totals: Totals) -> dict[str, int]:
    """Counts since the destination was declared; clients compute rates from two readings."""
    return msgspec.structs.asdict(totals)


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000


def queue_view(info: QueueInfo, *, leader: str | None, replicas: list[str]) -> dict[str, Any]:
    return {
        "name": info.name,
        "attributes": info.attrs,
        "owner": info.owner,
        "created_at": rfc3339(info.created_at_ms),
        "ready": info.ready,
        "delayed": info.delayed,
        "in_flight": info.in_flight,
        "messages": info.messages,
        "bytes": info.bytes,
        "oldest_age_s": _seconds(info.oldest_age_ms),
        "totals": totals_view(info.totals),
        "tags": info.tags,
        "leader": leader,
        "replicas": replicas,
    }


def subscription_view(info: SubscriptionInfo) -> dict[str, Any]:
    return {
        "topic": info.topic,
        "name": info.name,
        "attributes": info.attrs,
        "owner": info.owner,
        "created_at": rfc3339(info.created_at_ms),
        "next_offset": info.next_offset,
        "ready": info.ready,
        "in_flight": info.in_flight,
        "lag": info.lag,
        "lag_s": info.lag_ms / 1000,
        "totals": totals_view(info.totals),
    }


def topic_view(info: TopicInfo, *, leader: str | None, replicas: list[str]) -> dict[str, Any]:
    return {
        "name": info.name,
        "attributes": info.attrs,
        "owner": info.owner,
        "created_at": rfc3339(info.created_at_ms),
        "first_offset": info.first_offset,
        "next_offset": info.next_offset,
        "messages": info.messages,
        "bytes": info.bytes,
        "subscriptions": [subscription_view(s) for s in info.subscriptions],
        "totals": totals_view(info.totals),
        "leader": leader,
        "replicas": replicas,
    }
