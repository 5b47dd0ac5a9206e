from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

from crmsync.application import pagination
from crmsync.application.models import Page

T = TypeVar("T")


class Created(Protocol):
    """An item of a list ordered by creation: ``(created_at, id)`` is its sort key."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


C = TypeVar("C", bound=Created)


def page(items: Sequence[T], limit: int, key: Callable[[T], tuple[Any, ...]]) -> Page[T]:
    """A page of ``limit`` from ``limit + 1`` fetched items: the extra one says "more"."""
    more = len(items) > limit
    kept = list(items[:limit])
    cursor = pagination.encode(*key(kept[-1])) if more and kept else None
    return Page[T](items=kept, next_cursor=cursor)


def creation_key(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    """The ``(created_at, id)`` of the last item the client was given, from its cursor;
    ``(None, None)`` on the first page. The SQL resumes after it (before it, newest first)."""
    if not cursor:
        return None, None
    created_at, id_ = pagination.decode(cursor, datetime, uuid.UUID)
    return created_at, id_


def page_by_creation(items: Sequence[C], limit: int) -> Page[C]:
    return page(items, limit, lambda item: (item.created_at, item.id))
