"""Which changes a privacy erase's tombstones refuse (issue 20, migration 0016).

An erased person must not come back: not through a provider reporting back the erase
itself (Stripe's ``customer.deleted``, Xero's thin update of the contact we anonymised and
archived), nor through a later webhook, backfill or reconciliation that carries the
address again. So, before any apply rule, a customer change is refused (outcome
``erased``) when its connection's link names an erased record, or when it carries an
email whose hash a tombstone of its tenant holds.

Refused, not dead-lettered: a dead letter keeps the change's original bytes, and those
would hold again the very data the erase removed. The sync log says ``erased``, the ledger
counts the item skipped (``inbound_skips``, reason ``erased``), nothing else is written.
Jobs, invoices and payments that name an erased customer still apply: they are the
tenant's accounting, and they name the customer by its (anonymised) canonical record.

Cost: a batch without customer changes asks nothing; for one with them, whether each
tenant has any tombstone at all came with its connections (``erasing``,
crmsync.common.connections.connection_owners), and only for those that have does the
lookup by the links' unique key and the hashing of emails and their lookup follow. Most
tenants never erased anybody: the two lookups and a SHA-256 per customer change were 5 %
of the apply step's samples in a bulk drain (py-spy, bench/README.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence

from crmsync.common.db import Conn
from crmsync.common.links import LinkKey, erased_links
from crmsync.common.tombstones import Identity, erased_identities, identity_hash
from services.processor.decide import InboundChange


async def refused(
    conn: Conn, changes: Sequence[InboundChange | None], erasing: Collection[uuid.UUID]
) -> set[int]:
    """The positions of ``changes`` an erase's tombstone refuses; ``erasing``: the tenants
    that hold any tombstone (the others' changes are not looked up)."""
    customers = {
        i: change
        for i, change in enumerate(changes)
        if change is not None and change.entity_type == "customer"
    }
    if not customers:
        return set()
    # Both checks below join a tombstone of the change's tenant: a tenant without any
    # cannot refuse anything. (A change naming another tenant's connection never gets
    # here: the caller marked it and passes None.)
    keys: dict[int, LinkKey] = {}
    identities: dict[int, Identity] = {}
    for i, change in customers.items():
        if change.tenant_id not in erasing:
            continue
        keys[i] = (change.connection_id, change.entity_type, change.external_id)
        email = change.data.get("email") if change.op == "upsert" else None
        if isinstance(email, str) and email.strip():
            identities[i] = (change.tenant_id, identity_hash(change.tenant_id, email))
    if not keys:
        return set()
    linked = await erased_links(conn, keys.values())
    hashed = await erased_identities(conn, identities.values())
    return {i for i, key in keys.items() if key in linked} | {
        i for i, identity in identities.items() if identity in hashed
    }
