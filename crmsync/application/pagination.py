"""Opaque cursors for keyset pagination.

A cursor is the sort key of the last item of a page, as base64url JSON. Clients treat it
as opaque; the server validates it like any other input (a bad one is a 422, never a 500).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from crmsync.application.errors import InvalidError

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


def encode(*values: Any) -> str:
    parts = [v.isoformat() if isinstance(v, datetime) else str(v) for v in values]
    raw = json.dumps(parts, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad() -> InvalidError:
    return InvalidError("invalid cursor", loc="/query/cursor", msg="not a cursor this API issued")


def decode(cursor: str, *kinds: type) -> tuple[Any, ...]:
    """The sort key in ``cursor``, each part parsed as ``kinds`` (datetime, uuid, int)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError):
        raise _bad() from None
    if not isinstance(parts, list) or len(parts) != len(kinds):
        raise _bad()
    out: list[Any] = []
    try:
        for part, kind in zip(parts, kinds, strict=True):
            if not isinstance(part, str):
                raise _bad()
            if kind is datetime:
                value = datetime.fromisoformat(part)
                if value.tzinfo is None:
                    raise _bad()
                out.append(value)
            elif kind is uuid.UUID:
                out.append(uuid.UUID(part))
            elif kind is int:
                out.append(int(part))
            else:
                out.append(part)
    except (ValueError, OverflowError):
        raise _bad() from None
    return tuple(out)
