"""The checks a JSON request body passes before anything of it is stored: UTF-8 text, bounded nesting.

Message bodies are kept as the JSON text the producer sent (`msgspec.Raw`) and handed back verbatim, so the
edge must make sure that text is valid JSON in every consumer's parser: invalid UTF-8 inside a string would be
stored and then break every receive of the batch around it (a poison message), and deep nesting would make
parsers, ours included, fail with recursion errors. Both checks run at C speed: UTF-8 decoding, a bracket count
that rules out deep nesting for almost every body, and only for bodies with many brackets a look at the
brackets outside strings, done with bytes methods (split, translate, regex substitution) rather than a loop
over characters, so a 1 MiB body costs about as much as decoding it.
"""

from __future__ import annotations

import re

from mom.errors import InvalidInput

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects accepted in a request (the request's own structure included)."""

_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")
_INNERMOST = re.compile(rb"\[\]|\{\}")


def _outside_strings(data: bytes) -> bytes:
    """The text of `data` outside its JSON strings (escaped backslashes and quotes are removed first, so every
    quote left opens or closes a string)."""
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    return b"".join(data.split(b'"')[0::2])


def check_json_text(data: bytes) -> None:
    """InvalidInput unless `data` is UTF-8 and nests arrays and objects at most MAX_DEPTH deep.

    Syntax is left to the JSON decoder; this only rules out what a decoder would accept and a consumer not.
    """
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the request body is not valid UTF-8 (byte {exc.start}); send bytes as 'body_base64'"
        ) from None
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return
    brackets = _outside_strings(data).translate(None, _NOT_BRACKETS)
    for _ in range(MAX_DEPTH):  # each round removes the innermost level of what is left
        if not brackets:
            return
        brackets = _INNERMOST.sub(b"", brackets)
    if _INNERMOST.search(brackets):  # a pair still nested inside MAX_DEPTH others (else: malformed, for the decoder)
        raise InvalidInput(f"the JSON nests arrays and objects more than {MAX_DEPTH} deep")
