"""Facts the ledger (DESIGN invariant 13, crmsync/application/ledger.py) reads that no
other table holds: the webhook items the normalizer drops on purpose (migration 0009).

Here, not in the processor, because the write belongs to the processor and the read to
the admin operations, and neither may import the other.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal

import asyncpg

from crmsync.common.db import Conn

SkipReason = Literal["not_synced", "gone", "erased"]


async def record_inbound_skips(
    conn: Conn | asyncpg.Pool, skips: Sequence[tuple[uuid.UUID, str, SkipReason]]
) -> None:
    """Record (connection, item event id, reason) for webhook items dropped on purpose.

    Call before the envelope's offset is committed, with the event id the item would have
    been deduplicated by (``normalize.item_event_id``). Idempotent: a redelivered envelope
    records nothing new, and the first reason stays.
    """
    if not skips:
        return
    await conn.execute(
        """
        INSERT INTO inbound_skips (connection_id, provider_event_id, reason)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
        ON CONFLICT DO NOTHING
        """,
        [s[0] for s in skips],
        [s[1] for s in skips],
        [s[2] for s in skips],
    )


def prune_event_rows_sql(table: str, at_column: str) -> str:
    """The chunked prune of a table keyed by (connection_id, provider_event_id): deletes up
    to $2 rows whose ``at_column`` is older than $1 days and returns how many. The
    processor's housekeeping runs it for processed_events and inbound_skips alike."""
    return f"""
    WITH old AS (
        SELECT connection_id, provider_event_id FROM {table}
         WHERE {at_column} < now() - make_interval(secs => $1 * 86400)
         LIMIT $2
    ), gone AS (
        DELETE FROM {table} t USING old
         WHERE t.connection_id = old.connection_id
           AND t.provider_event_id = old.provider_event_id
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""  # noqa: S608 - table and column names are constants of the callers


# processed_events' retention: a skip is worth remembering as long as the dedup row of an
# applied item is.
PRUNE_INBOUND_SKIPS_SQL = prune_event_rows_sql("inbound_skips", "skipped_at")
