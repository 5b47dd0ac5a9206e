from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from crmsync.application import pagination
from crmsync.application.models import Page

T = TypeVar("T")


def page(items: Sequence[T], limit: int, key: Callable[[T], tuple[Any, ...]]) -> Page[T]:
    """A page of ``limit`` from ``limit + 1`` fetched items: the extra one says "more"."""
    more = len(items) > limit
    kept = list(items[:limit])
    cursor = pagination.encode(*key(kept[-1])) if more and kept else None
    return Page[T](items=kept, next_cursor=cursor)
