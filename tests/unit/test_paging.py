"""paging.Listing: the keyset page query the admin API and CLI listings share. The rows
themselves are checked against PostgreSQL by the admin API and CLI tests; this pins the
query it writes (numbering, optional filters, cursor direction) and the page it returns."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from crmsync.application import pagination
from crmsync.application.paging import Listing

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ID = uuid.UUID("00000000-0000-0000-0000-000000000001")


@dataclass
class Item:
    created_at: datetime
    id: uuid.UUID


class Recording:
    """A connection that answers ``rows`` and keeps the query it was asked."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.sql = ""
        self.args: tuple[Any, ...] = ()

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        self.sql, self.args = " ".join(sql.split()), args
        return self.rows


def _item(row: dict[str, Any]) -> Item:
    return Item(row["created_at"], row["id"])


async def test_conditions_are_numbered_in_order_and_absent_filters_add_none() -> None:
    conn = Recording([])
    listing = Listing("id, created_at", "dead_letters").where("tenant_id = {}", "t1")
    listing.where("redriven_at IS NULL").match(stage="normalize", reason=None, kind="x")
    page = await listing.page(conn, None, 20, _item)  # type: ignore[arg-type]
    assert conn.sql == (
        "SELECT id, created_at FROM dead_letters WHERE tenant_id = $1 AND redriven_at IS NULL"
        " AND stage = $2 AND kind = $3 ORDER BY created_at, id LIMIT $4"
    )
    assert conn.args == ("t1", "normalize", "x", 21)
    assert (page.items, page.next_cursor) == ([], None)


@pytest.mark.parametrize(
    ("newest_first", "sql"),
    [
        (
            False,
            "SELECT id FROM sync_jobs WHERE tenant_id = $1"
            " AND (created_at, id) > ($2::timestamptz, $3::uuid) ORDER BY created_at, id LIMIT $4",
        ),
        (
            True,
            "SELECT id FROM sync_jobs WHERE tenant_id = $1"
            " AND (created_at, id) < ($2::timestamptz, $3::uuid)"
            " ORDER BY created_at DESC, id DESC LIMIT $4",
        ),
    ],
)
async def test_a_cursor_resumes_after_its_item_or_before_it_newest_first(
    newest_first: bool, sql: str
) -> None:
    conn = Recording([])
    listing = Listing("id", "sync_jobs", newest_first=newest_first).where("tenant_id = {}", 7)
    await listing.page(conn, pagination.encode(AT, ID), 5, _item)  # type: ignore[arg-type]
    assert conn.sql == sql
    assert conn.args == (7, AT, ID, 6)


async def test_one_row_more_than_the_limit_is_the_next_cursor_of_the_last_kept() -> None:
    rows = [{"created_at": AT, "id": uuid.UUID(int=n)} for n in range(3)]
    conn = Recording(rows)
    page = await Listing("id", "conflicts").page(conn, None, 2, _item)  # type: ignore[arg-type]
    assert conn.sql == "SELECT id FROM conflicts ORDER BY created_at, id LIMIT $1"
    assert [item.id for item in page.items] == [uuid.UUID(int=0), uuid.UUID(int=1)]
    assert page.next_cursor == pagination.encode(AT, uuid.UUID(int=1))
