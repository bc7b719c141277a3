"""The edge's JSON text checks: UTF-8 and nesting depth, brackets inside strings not counted."""

from __future__ import annotations

import pytest

from mom.api.jsontext import MAX_DEPTH, check_json_text
from mom.api.schemas import ReceiveRequest, decode_body
from mom.broker.commands import QueueAttrs
from mom.errors import InvalidInput


@pytest.mark.parametrize("raw", [b'{"a": "\xff"}', b'"\xed\xa0\x80"', b'{"\xc3": 1}'])
def test_invalid_utf8(raw: bytes) -> None:
    with pytest.raises(InvalidInput, match="UTF-8"):
        check_json_text(raw)


def test_depth() -> None:
    check_json_text(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    with pytest.raises(InvalidInput, match="deep"):
        check_json_text(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1))
    check_json_text(b'["' + b"[{" * 500 + b'\\" [[[[", 1]')
    check_json_text(b'{"a": [' + b'{"b": 1},' * 5000 + b"{}]}")


def test_integral_floats_are_integers() -> None:
    assert decode_body(b'{"max_length": 5.0}', QueueAttrs).max_length == 5
    assert decode_body(b'{"max_messages": 2e0}', ReceiveRequest).max_messages == 2
    with pytest.raises(Exception, match="int"):
        decode_body(b'{"max_length": 5.5}', QueueAttrs)


def test_strings_do_not_count_however_they_are_escaped() -> None:
    deep = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    hidden = b'["\\\\", "\\"]]]]", "]]]]", ' + deep + b"]"
    with pytest.raises(InvalidInput, match="deep"):
        check_json_text(hidden)
    check_json_text(b'["\\\\\\"[[[[[[[[", ' + b"[" * 60 + b'"]]"' + b"]" * 60 + b', "{{{{{{{{"]' + b"[{" * 40)
