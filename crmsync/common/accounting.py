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


# Deletes up to $2 skip rows older than $1 days (processed_events' retention: a skip is
# worth remembering as long as the dedup row of an applied item is); returns how many.
PRUNE_INBOUND_SKIPS_SQL = """
    WITH old AS (
        SELECT connection_id, provider_event_id FROM inbound_skips
         WHERE skipped_at < now() - make_interval(secs => $1 * 86400)
         LIMIT $2
    ), gone AS (
        DELETE FROM inbound_skips s USING old
         WHERE s.connection_id = old.connection_id
           AND s.provider_event_id = old.provider_event_id
        RETURNING 1
    )
    SELECT count(*) FROM gone
"""
