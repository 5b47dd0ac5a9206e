from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import asyncpg

from crmsync.application import pagination
from crmsync.application.models import Page
from crmsync.common.db import Conn

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


class Listing:
    """One page of a table's rows in creation order, ``(created_at, id)``, resumed after a
    cursor: the keyset query every list of the admin API and the CLI runs, written once.

    ``where`` adds a condition whose ``{}`` stand for its values (numbered ``$n`` in order);
    ``match`` adds ``column = value`` for each filter the client gave (None: no filter)."""

    def __init__(self, columns: str, table: str, *, newest_first: bool = False) -> None:
        # the callers' constant columns and table; every value is a parameter
        self._select = f"SELECT {columns} FROM {table}"  # noqa: S608
        self._newest_first = newest_first
        self._conditions: list[str] = []
        self._args: list[Any] = []

    def where(self, condition: str, *values: Any) -> Listing:
        first = len(self._args) + 1
        self._conditions.append(
            condition.format(*(f"${n}" for n in range(first, first + len(values))))
        )
        self._args.extend(values)
        return self

    def match(self, **filters: Any) -> Listing:
        for column, value in filters.items():
            if value is not None:
                self.where(f"{column} = {{}}", value)
        return self

    async def page(
        self, conn: Conn, cursor: str | None, limit: int, out: Callable[[asyncpg.Record], C]
    ) -> Page[C]:
        """``limit`` rows after the cursor's (before it, newest first) and the next cursor."""
        conditions, args = list(self._conditions), list(self._args)
        at, id_ = creation_key(cursor)
        if at is not None:
            n = len(args)
            past = "<" if self._newest_first else ">"
            conditions.append(f"(created_at, id) {past} (${n + 1}::timestamptz, ${n + 2}::uuid)")
            args += [at, id_]
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        order = "created_at DESC, id DESC" if self._newest_first else "created_at, id"
        rows = await conn.fetch(
            f"{self._select}{where} ORDER BY {order} LIMIT ${len(args) + 1}",
            *args,
            limit + 1,
        )
        return page_by_creation([out(row) for row in rows], limit)
