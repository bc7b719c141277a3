"""The per-message text the API makes itself: message ids (version 4 UUIDs) and RFC 3339 timestamps."""

from __future__ import annotations

import uuid
from datetime import datetime

from hypothesis import given
from hypothesis import strategies as st

from mom.api.messages import new_message_id, parse_publish
from mom.api.views import rfc3339
from mom.config import LimitsSection


def test_message_ids_are_random_version_4_uuids_in_canonical_text() -> None:
    ids = [new_message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert str(parsed) == text


def test_published_messages_get_distinct_ids() -> None:
    messages = parse_publish(b'{"messages":[{"body":1},{"body":2},{"body":3}]}', LimitsSection())
    assert len({m.id for m in messages}) == 3
    assert all(uuid.UUID(m.id).version == 4 for m in messages)


@given(st.integers(min_value=0, max_value=4_102_444_800_000))  # 1970 .. 2100
def test_rfc3339_is_utc_with_milliseconds(ms: int) -> None:
    text = rfc3339(ms)
    assert text.endswith("Z") and len(text) == len("2026-11-30T16:00:00.123Z")
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None
    assert round(parsed.timestamp() * 1000) == ms


def test_rfc3339_examples() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_764_518_400_123) == "2025-11-30T16:00:00.123Z"
    assert rfc3339(1_764_518_400_999) == "2025-11-30T16:00:00.999Z"
