"""Lenient parsing of the JSON-like answers uploader servers send.

The seed document's own examples are JavaScript object literals, not JSON
(``{result:"OK"}``, unquoted keys, and a query answer with one closing brace too many),
and servers written from it answer the same way. We accept strict JSON first, then
JSON5 (a well-kept superset covering unquoted keys and single quotes), then JSON5 on the
first balanced ``{...}`` of the text, which drops trailing garbage.
"""

from __future__ import annotations

import json
from typing import Any

import json5

from .errors import ProtocolError

__all__ = ["MAX_ANSWER_BYTES", "loads_lenient"]

#: Answers are small objects; anything bigger is not an answer (and JSON5 is slow on it).
MAX_ANSWER_BYTES = 64 * 1024


def _first_object(text: str) -> str | None:
    """The first balanced ``{...}`` in ``text``, honouring quoted strings."""
    start = text.find("{")
    if start < 0:
        return None
    depth = 0
    quote: str | None = None
    escaped = False
    for i in range(start, len(text)):
        ch = text[i]
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def loads_lenient(data: bytes | str) -> Any:
    """Parse an answer body; raise :class:`ProtocolError` when it is none of the above."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        if len(data) > MAX_ANSWER_BYTES:
            raise ProtocolError(f"answer too large to be a protocol answer ({len(data)} bytes)")
        text = bytes(data).decode("utf-8", errors="replace")
    else:
        if len(data) > MAX_ANSWER_BYTES:
            raise ProtocolError(f"answer too large to be a protocol answer ({len(data)} chars)")
        text = data
    text = text.lstrip("\ufeff").strip()
    if not text:
        raise ProtocolError("empty answer")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # deep nesting raises RecursionError
        pass
    try:
        return json5.loads(text)
    except Exception:  # noqa: BLE001 - json5 raises ValueError, but also others on odd input
        pass
    candidate = _first_object(text)
    if candidate is not None and candidate != text:
        try:
            return json5.loads(candidate)
        except Exception:  # noqa: BLE001 - as above
            pass
    raise ProtocolError(f"answer is neither JSON nor a JavaScript object literal: {text[:80]!r}")
