"""One JSON parser for request bodies (ingest's ``POST /v1/changes``, the admin API), with
its limits stated.

pydantic-core's parser rather than ``json.loads``: ``json.loads`` recurses in C up to
Python's recursion limit, so a deeply nested body raised RecursionError (not a ValueError,
so a 500), and the depths just below that which it accepted were left to exhaust the stack
of whatever recursed over the value next. pydantic-core stops at a fixed depth in Rust and
says so as a ValueError; it also refuses NaN and Infinity (not JSON: pydantic wrote them
into events as null) and lone surrogates (UTF-8 cannot carry them to Kafka or PostgreSQL).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import from_json

from schemas.errors import RefuseInput

# pydantic-core's nesting limit: 200 nested objects (201 arrays). Fixed in its parser
# (jiter's recursion limit), not configurable; a test pins it so an upgrade that moves it
# is noticed. Real bodies nest a handful of levels (an invoice's lines, a mapping's items).
MAX_DEPTH = 200
_UTF8 = frozenset({"utf-8", "utf-8-sig"})


class NotJsonError(RefuseInput, ValueError):
    """The body is not JSON this service accepts; the message says why, for the sender."""


def parse_json(raw: bytes | str) -> Any:
    """``raw`` parsed; NotJsonError for anything else, never RecursionError."""
    try:
        if isinstance(raw, bytes):
            # The encodings json.loads accepted stay accepted: UTF-8 (a BOM is dropped, as
            # RFC 8259 allows) and, decoded first, UTF-16 and UTF-32.
            encoding = json.detect_encoding(raw)
            utf8 = encoding in _UTF8
            raw = raw.removeprefix(b"\xef\xbb\xbf") if utf8 else raw.decode(encoding)
        return from_json(raw, allow_inf_nan=False)
    except ValueError as exc:  # UnicodeError is one too
        message = str(exc)
        if message.startswith("recursion limit exceeded"):
            message = f"nested deeper than {MAX_DEPTH} levels"
        raise NotJsonError(message) from None
