"""The processor's apply step against the real PostgreSQL: invariants 2, 4, 5, 6, 7, 9."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from asyncpg.transaction import Transaction

from crmsync.common.canonical import canonical_values, state_hash
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.db import create_pool, keep_session
from schemas import topics
from services.processor.apply import Applied
from services.processor.deadletters import Source
from services.processor.decide import Outcome
from services.processor.housekeeping import CHUNK, prune_processed_events, prune_sync_log
from services.processor.pipeline import Processor
from tests.integration.test_references import KEYRING, internal_change

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
TOPIC = topics.CHANGES_INTERNAL.name
_offsets = itertools.count()


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def connect(pool: asyncpg.Pool, tenant: str, name: str, **settings: Any) -> CreatedConnection:
    async with pool.acquire() as conn:
        return await create_connection(
            conn, KEYRING, tenant=tenant, provider="internal", name=name,
            webhook_secret=None, settings=settings,
        )  # fmt: skip


def source(value: bytes) -> Source:
    return Source(TOPIC, 0, next(_offsets), b"k", value)


def change(
    conn: CreatedConnection,
    external_id: str,
    data: dict[str, Any],
    *,
    ts: datetime,
    event_id: str | None = None,
    entity_type: str = "customer",
    op: str = "upsert",
) -> Source:
    event = internal_change(conn, entity_type, external_id, data, ts=ts, op=op, event_id=event_id)
    return source(event.model_dump_json().encode())


@pytest.fixture(params=["set_based", "one_by_one"])
def processor(request: pytest.FixtureRequest, pool: asyncpg.Pool) -> Processor:
    """Both apply paths, so the fast one is held to the reference's outcomes."""
    return Processor(pool, set_based=request.param == "set_based")


@pytest.fixture
async def two(pool: asyncpg.Pool) -> tuple[CreatedConnection, CreatedConnection]:
    return await connect(pool, "acme", "crm-a"), await connect(pool, "acme", "crm-b")


async def customers(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, data, version, deleted_at FROM customers ORDER BY created_at"
    )


async def outbox_count(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox"))


async def test_new_record_is_created_with_an_outbox_row(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    (result,) = await processor.handle(
        TOPIC, [change(a, "c1", {"name": "Acme", "email": "Ops@Acme.test"}, ts=at(0))]
    )
    assert result is not None
    assert result.outcome == Outcome.APPLIED
    (row,) = await customers(pool)
    assert row["data"] == {"name": "Acme", "email": "ops@acme.test"}
    assert row["version"] == 1
    payload = await pool.fetchval("SELECT payload FROM outbox")
    assert payload["entity_id"] == str(row["id"])
    assert payload["origin_connection_id"] == str(a.id)
    assert payload["state"]["email"] == "ops@acme.test"


async def test_same_event_three_times_is_one_change_and_one_outbox_row(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    delivery = change(a, "c1", {"name": "Acme"}, ts=at(0), event_id="evt-1")
    outcomes = []
    for _ in range(3):  # in one batch and across batches alike
        outcomes += [r.outcome for r in await processor.handle(TOPIC, [delivery]) if r]
    assert outcomes == [Outcome.APPLIED, Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert await outbox_count(pool) == 1
    assert len(await customers(pool)) == 1


async def test_older_update_arriving_after_a_newer_one_is_ignored(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    await processor.handle(TOPIC, [change(a, "c1", {"phone": "new"}, ts=at(10))])
    (late,) = await processor.handle(TOPIC, [change(a, "c1", {"phone": "old"}, ts=at(5))])
    assert late is not None
    assert late.outcome == Outcome.STALE
    (row,) = await customers(pool)
    assert row["data"]["phone"] == "new"
    assert await outbox_count(pool) == 1


async def test_first_contact_from_a_second_system_links_instead_of_duplicating(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, b = two
    await processor.handle(TOPIC, [change(a, "a-1", {"email": "jo@x.test"}, ts=at(0))])
    (linked,) = await processor.handle(
        TOPIC, [change(b, "b-77", {"email": " JO@x.test ", "phone": "555"}, ts=at(1))]
    )
    rows = await customers(pool)
    assert len(rows) == 1
    assert linked is not None
    assert linked.entity_id == rows[0]["id"]
    assert rows[0]["data"] == {"email": "jo@x.test", "phone": "555"}
    links = await pool.fetch("SELECT connection_id, external_id FROM entity_links")
    assert {(r["connection_id"], r["external_id"]) for r in links} == {
        (a.id, "a-1"),
        (b.id, "b-77"),
    }


async def test_two_sources_editing_different_fields_both_keep_their_edits(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, b = two
    p = processor
    base = {"email": "jo@x.test", "name": "Jo", "phone": "1"}
    await p.handle(TOPIC, [change(a, "a-1", base, ts=at(0))])
    await p.handle(TOPIC, [change(b, "b-1", base, ts=at(1))])
    await p.handle(TOPIC, [change(a, "a-1", {**base, "name": "Joanna"}, ts=at(5))])
    await p.handle(TOPIC, [change(b, "b-1", {**base, "phone": "2"}, ts=at(3))])
    (row,) = await customers(pool)
    assert row["data"] == {"email": "jo@x.test", "name": "Joanna", "phone": "2"}


async def test_same_field_edited_by_both_follows_newest_wins(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, b = two
    p = processor
    base = {"email": "jo@x.test", "phone": "1"}
    await p.handle(TOPIC, [change(a, "a-1", base, ts=at(0))])
    await p.handle(TOPIC, [change(b, "b-1", base, ts=at(1))])
    await p.handle(TOPIC, [change(b, "b-1", {**base, "phone": "from-b"}, ts=at(9))])
    await p.handle(TOPIC, [change(a, "a-1", {**base, "phone": "from-a"}, ts=at(4))])
    (row,) = await customers(pool)
    assert row["data"]["phone"] == "from-b"


async def test_manual_policy_parks_the_conflict(pool: asyncpg.Pool, processor: Processor) -> None:
    manual = {"conflict_policy": {"default": {"kind": "manual"}}}
    a = await connect(pool, "acme", "crm-a", **manual)
    b = await connect(pool, "acme", "crm-b", **manual)
    p = processor
    await p.handle(TOPIC, [change(a, "a-1", {"email": "jo@x.test", "phone": "1"}, ts=at(0))])
    await p.handle(TOPIC, [change(b, "b-1", {"email": "jo@x.test", "phone": "2"}, ts=at(1))])
    (row,) = await customers(pool)
    assert row["data"]["phone"] == "1"
    conflict = await pool.fetchrow("SELECT field, current_value, incoming_value FROM conflicts")
    assert conflict is not None
    assert tuple(conflict) == ("phone", "1", "2")


async def test_an_echo_of_the_current_state_emits_nothing(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, b = two
    p = processor
    state = {"email": "jo@x.test", "name": "Jo"}
    await p.handle(TOPIC, [change(a, "a-1", state, ts=at(0))])
    (echo,) = await p.handle(TOPIC, [change(b, "b-1", state, ts=at(1))])
    assert echo is not None
    assert echo.outcome == Outcome.NOOP
    assert await outbox_count(pool) == 1


async def test_delete_is_a_soft_delete_with_a_change(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    p = processor
    await p.handle(TOPIC, [change(a, "a-1", {"name": "Jo"}, ts=at(0))])
    (deleted,) = await p.handle(TOPIC, [change(a, "a-1", {}, ts=at(1), op="delete")])
    (row,) = await customers(pool)
    assert deleted is not None
    assert deleted.outcome == Outcome.APPLIED
    assert row["deleted_at"] is not None
    assert row["version"] == 2
    assert await pool.fetchval("SELECT payload->>'deleted' FROM outbox WHERE version = 2") == "true"
    # A delete for something never seen deletes nothing.
    (nothing,) = await p.handle(TOPIC, [change(a, "never", {}, ts=at(2), op="delete")])
    assert nothing is not None
    assert nothing.outcome == Outcome.NOOP


async def test_bad_input_is_dead_lettered_and_the_rest_of_the_batch_applies(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    garbage = source(b"\x00not json at all")
    bad_money = change(a, "i-1", {"total": 12.5}, ts=at(0), entity_type="invoice")
    ghost = change(a, "c-9", {"name": "x"}, ts=at(0))
    ghost = Source(
        ghost.topic, ghost.partition, ghost.offset, ghost.key,
        ghost.value.replace(str(a.id).encode(), str(uuid.uuid4()).encode()),
    )  # fmt: skip
    good = change(a, "c-1", {"name": "Acme"}, ts=at(0))
    results = await processor.handle(TOPIC, [garbage, bad_money, ghost, good])
    assert [r.outcome if r else None for r in results] == [None, None, None, Outcome.APPLIED]
    letters = await pool.fetch(
        "SELECT reason, payload, kafka_offset, tenant_id, connection_id FROM dead_letters"
        " ORDER BY kafka_offset"
    )
    assert [(r["reason"], r["tenant_id"], r["connection_id"]) for r in letters] == [
        ("unparseable", None, None),
        ("schema_violation", a.tenant_id, a.id),
        # The tenant's operators see it (the admin API lists by tenant); the connection
        # it names does not exist.
        ("unknown_connection", a.tenant_id, None),
    ]
    assert letters[0]["payload"] == garbage.value  # the original bytes, for a redrive
    assert len(await customers(pool)) == 1


async def test_money_stays_exact_integer_minor_units(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    invoice = {
        "number": "INV-1",
        "currency": "AUD",
        "status": "open",
        "subtotal": 1999,
        "tax": 200,
        "total": 2199,
        "amount_due": 2199,
        "lines": [{"description": "Call-out", "quantity": "0.1", "unit_amount": 19990}],
    }
    await processor.handle(TOPIC, [change(a, "i-1", invoice, ts=at(0), entity_type="invoice")])
    data = await pool.fetchval("SELECT data FROM invoices")
    assert data["total"] == 2199
    assert isinstance(data["total"], int)
    assert data["lines"][0]["quantity"] == "0.1"


async def test_every_change_of_a_known_connection_is_in_the_sync_log(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    first = change(a, "c-1", {"name": "Acme"}, ts=at(0), event_id="e1")
    bad = change(a, "i-1", {"total": 1.5}, ts=at(0), entity_type="invoice")
    await processor.handle(TOPIC, [first, first, bad])
    rows = await pool.fetch(
        "SELECT direction, entity_type, external_id, outcome FROM sync_log ORDER BY id"
    )
    assert [tuple(r) for r in rows] == [
        ("in", "customer", "c-1", "applied"),
        ("in", "customer", "c-1", "duplicate"),
        ("in", "invoice", "i-1", "dead_lettered"),
    ]


async def test_a_batch_postgres_rejects_is_replayed_change_by_change(
    pool: asyncpg.Pool, two: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = two

    async def rejects(*_args: object, **_kwargs: object) -> None:
        raise asyncpg.DataError("as if a constraint Python did not foresee failed")

    monkeypatch.setattr("services.processor.pipeline.apply_batch", rejects)
    results = await Processor(pool).handle(TOPIC, [change(a, "c-1", {"name": "Acme"}, ts=at(0))])
    assert [r.outcome for r in results if r] == [Outcome.APPLIED]
    assert await outbox_count(pool) == 1


async def test_dedup_rows_past_retention_are_pruned_and_recent_ones_kept(
    pool: asyncpg.Pool, two: Any
) -> None:
    a, _ = two
    await Processor(pool).handle(
        TOPIC, [change(a, f"c-{i}", {"name": "x"}, ts=at(i), event_id=f"e{i}") for i in range(3)]
    )
    await pool.execute(
        "UPDATE processed_events SET processed_at = now() - interval '8 days'"
        " WHERE provider_event_id IN ('e0', 'e1')"
    )
    assert await prune_processed_events(pool, retention_days=7) == 2
    remaining = await pool.fetch("SELECT provider_event_id FROM processed_events")
    assert [r["provider_event_id"] for r in remaining] == ["e2"]


async def test_sync_log_rows_past_retention_are_pruned_in_rounds_and_recent_ones_kept(
    pool: asyncpg.Pool, two: Any
) -> None:
    a, _ = two
    # More old rows than one round deletes, then two the processor writes now.
    await pool.execute(
        """
        INSERT INTO sync_log (tenant_id, connection_id, direction, outcome, created_at)
        SELECT $1, $2, 'out', 'pushed', now() - interval '40 days'
          FROM generate_series(1, $3)
        """,
        a.tenant_id,
        a.id,
        CHUNK + 7,
    )
    await Processor(pool).handle(
        TOPIC, [change(a, f"c-{i}", {"name": "x"}, ts=at(i), event_id=f"e{i}") for i in range(2)]
    )
    assert await prune_sync_log(pool, retention_days=30) == CHUNK + 7
    kept = await pool.fetch("SELECT direction, external_id FROM sync_log ORDER BY id")
    assert [(r["direction"], r["external_id"]) for r in kept] == [("in", "c-0"), ("in", "c-1")]
    assert await prune_sync_log(pool, retention_days=30) == 0


async def pushed_to_b_while_b_edited(
    pool: asyncpg.Pool, p: Processor, a: CreatedConnection, b: CreatedConnection
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A creates a customer (version 1) and outbound pushes it to B as B's b-1, recorded as
    the pusher records it; B's own edit of the same field is what the test sends next.
    Returns (ours: what we pushed, theirs: B's edit)."""
    ours = {"email": "jo@x.test", "phone": "+61 2 5550 7001"}
    await p.handle(TOPIC, [change(a, "a-1", ours, ts=at(0))])
    (row,) = await customers(pool)
    await pool.execute(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id, external_id,
                                  last_pushed_hash, last_pushed_version)
        VALUES ($1, $2, 'customer', $3, 'b-1', $4, 1)
        """,
        b.tenant_id,
        b.id,
        row["id"],
        state_hash(canonical_values("customer", ours)),
    )
    return ours, {"email": "jo@x.test", "phone": "+61 2 5550 7002"}


async def test_an_echo_of_a_push_that_a_newer_edit_overtook_queues_the_latest_for_it(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    """A's value was pushed to B while B's user edited the same field: B then holds A's
    value, and B's own edit (applied here, newer) is never pushed back to B, its origin.
    The echo of our push is how we learn B is behind: the latest version is queued for B."""
    a, b = two
    p = processor
    ours, theirs = await pushed_to_b_while_b_edited(pool, p, a, b)
    (edit,) = await p.handle(TOPIC, [change(b, "b-1", theirs, ts=at(1))])
    assert edit is not None
    assert edit.outcome == Outcome.APPLIED
    (echo,) = await p.handle(TOPIC, [change(b, "b-1", ours, ts=at(2))])
    assert echo is not None
    assert echo.outcome == Outcome.ECHO
    queued = await pool.fetch("SELECT connection_id, version FROM push_jobs")
    assert [(r["connection_id"], r["version"]) for r in queued] == [(b.id, 2)]

    # The echo of the current version queues nothing more.
    await pool.execute("DELETE FROM push_jobs")
    await pool.execute(
        "UPDATE entity_links SET last_pushed_hash = $2, last_pushed_version = 2"
        " WHERE connection_id = $1",
        b.id,
        state_hash(canonical_values("customer", theirs)),
    )
    (again,) = await p.handle(TOPIC, [change(b, "b-1", theirs, ts=at(3))])
    assert again is not None
    assert again.outcome == Outcome.ECHO
    assert await pool.fetchval("SELECT count(*) FROM push_jobs") == 0


async def test_an_echo_of_a_system_that_refused_the_latest_version_does_not_push_it_again(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    """B refused version 2 by its rules (a parked outbound dead letter; MYOB keeps no void
    invoice) after writing what it could, so it reports the state it held. That echo must
    not queue version 2 for B again: B refuses it again, writes again, and reports again
    (a convergence run parked 131 MYOB dead letters for one invoice, one a poll). Once an
    operator redrives the dead letter, an echo queues it as before."""
    a, b = two
    p = processor
    ours, _ = await pushed_to_b_while_b_edited(pool, p, a, b)
    await p.handle(TOPIC, [change(a, "a-1", {**ours, "phone": "+61 2 5550 7003"}, ts=at(1))])
    (row,) = await customers(pool)
    assert row["version"] == 2
    payload = {
        "connection_id": str(b.id),
        "entity_type": "customer",
        "entity_id": str(row["id"]),
        "version": 2,
    }
    await pool.execute(
        "INSERT INTO dead_letters (stage, reason, detail, tenant_id, connection_id, payload)"
        " VALUES ('outbound', 'provider_rule', 'refused', $1, $2, $3)",
        b.tenant_id,
        b.id,
        json.dumps(payload).encode(),
    )
    await pool.execute("DELETE FROM push_jobs")
    (echo,) = await p.handle(TOPIC, [change(b, "b-1", ours, ts=at(2))])
    assert echo is not None
    assert echo.outcome == Outcome.ECHO
    assert await pool.fetchval("SELECT count(*) FROM push_jobs") == 0

    await pool.execute("UPDATE dead_letters SET redriven_at = now()")
    (again,) = await p.handle(TOPIC, [change(b, "b-1", ours, ts=at(3))])
    assert again is not None
    assert again.outcome == Outcome.ECHO
    queued = await pool.fetch("SELECT connection_id, version FROM push_jobs")
    assert [(r["connection_id"], r["version"]) for r in queued] == [(b.id, 2)]


def on_partition(item: Source, partition: int) -> Source:
    return Source(item.topic, partition, item.offset, item.key, item.value)


async def test_partitions_applied_at_once_keep_first_contact_and_order(
    pool: asyncpg.Pool, two: Any
) -> None:
    """Two transactions at once, one per group of partitions: the same customer introduced
    by both systems in one batch is still one record, and each partition's changes apply
    in offset order."""
    a, b = two
    processor = Processor(pool, concurrency=2, min_group=1)
    batch = [
        on_partition(change(a, "a-1", {"email": "jo@x.test", "name": "Jo"}, ts=at(0)), 0),
        on_partition(change(b, "b-1", {"email": "JO@x.test", "phone": "555"}, ts=at(1)), 1),
        on_partition(change(a, "a-1", {"email": "jo@x.test", "name": "Jo Two"}, ts=at(2)), 0),
        on_partition(change(a, "a-2", {"email": "al@x.test", "name": "Al"}, ts=at(3)), 2),
    ]
    results = await processor.handle(TOPIC, batch)
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED] * 4
    rows = await customers(pool)
    assert len(rows) == 2
    jo = next(r for r in rows if r["data"]["email"] == "jo@x.test")
    assert jo["data"] == {"email": "jo@x.test", "name": "Jo Two", "phone": "555"}
    assert {results[0].entity_id, results[1].entity_id, results[2].entity_id} == {jo["id"]}
    assert await outbox_count(pool) == 4
    logged = await pool.fetchval("SELECT count(*) FROM sync_log WHERE direction = 'in'")
    assert logged == 4


async def test_a_small_batch_over_two_partitions_commits_in_one_transaction(
    pool: asyncpg.Pool, two: Any
) -> None:
    """A batch too small to split (at 200 events/s the agent's hold about ten) is one
    transaction, not one a group of partitions: two would run every per-batch statement
    twice for a handful of changes (bench/README.md, "Ninth round")."""
    a, b = two
    processor = Processor(pool, concurrency=2)
    batch = [
        on_partition(change(a, f"a-{n}", {"email": f"a{n}@x.test"}, ts=at(n)), n % 2)
        for n in range(6)
    ] + [
        on_partition(change(b, f"b-{n}", {"email": f"b{n}@x.test"}, ts=at(n)), 2 + n % 2)
        for n in range(6)
    ]
    results = await processor.handle(TOPIC, batch)
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED] * 12
    # Rows a transaction wrote carry its id as xmin.
    writers = await pool.fetchval("SELECT count(DISTINCT xmin::text) FROM customers")
    assert writers == 1


# The statements of one set-based batch of new customers from a connection nothing is
# pushed to (bench/README.md, "Ninth round": at 200 events/s a batch holds about ten and
# its statements are most of its cost): BEGIN; the connections with their pauses and
# tombstones and whether anything waits; the dedup claim between two SET LOCALs; links
# (their connection is all these changes name, and the first statement found it);
# queued pushes; the first-contact lock and candidates; SET LOCAL; records, links, outbox,
# sync log; the outbox notify; COMMIT.
NEW_CUSTOMERS_STATEMENTS = 16


async def test_a_batch_of_new_customers_costs_its_statements_once(
    database_url: str, two: Any
) -> None:
    a, _ = two
    pool = await create_pool(database_url, max_size=1, reset=keep_session)
    try:
        processor = Processor(pool, concurrency=2)
        # A first batch: the connection learns the types (asyncpg's introspection).
        await processor.handle(TOPIC, [change(a, "warm", {"email": "w@x.test"}, ts=at(0))])
        sent: list[str] = []
        async with pool.acquire() as conn:
            conn.add_query_logger(lambda q: sent.append(q.query))
        batch = [change(a, f"a-{n}", {"email": f"a{n}@x.test"}, ts=at(n)) for n in range(10)]
        results = await processor.handle(TOPIC, batch)
    finally:
        await pool.close()
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED] * 10
    assert len(sent) == NEW_CUSTOMERS_STATEMENTS, "\n".join(" ".join(q.split())[:90] for q in sent)


async def waiting_on_a_lock(pool: asyncpg.Pool, applying: asyncio.Task[Any]) -> None:
    """Until a statement of this database waits on a lock (or ``applying`` is done): 30 s."""
    for _ in range(600):
        waiting = await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting or applying.done():
            return
        await asyncio.sleep(0.05)


async def applied_past_an_uncommitted_link(
    pool: asyncpg.Pool,
    conn: asyncpg.Connection,
    tx: Transaction,
    a: CreatedConnection,
    entity_id: uuid.UUID,
    *,
    apply: Callable[[], Coroutine[Any, Any, list[Applied | None]]],
) -> Applied:
    """``apply()`` (one change of a's c-1) run once ``conn``'s open transaction ``tx`` links
    c-1 to ``entity_id``, uncommitted: when the apply waits on that link, ``tx`` commits;
    the change's result."""
    await conn.execute(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id,
                                  external_id, remote_updated_at)
        VALUES ($1, $2, 'customer', $3, 'c-1', $4)
        """,
        a.tenant_id,
        a.id,
        entity_id,
        at(0),
    )
    applying = asyncio.create_task(apply())
    await waiting_on_a_lock(pool, applying)
    await tx.commit()
    (result,) = await asyncio.wait_for(applying, 30)
    assert result is not None
    return result


async def test_a_link_another_worker_creates_meanwhile_gets_the_change(
    pool: asyncpg.Pool, two: Any
) -> None:
    """A partition handed over mid-batch: another worker creates the same link, uncommitted,
    while this batch, which could not see it, inserts it as new. The batch's insert waits,
    then fails; the batch is replayed change by change and lands on that worker's record."""
    a, _ = two
    async with pool.acquire() as other:
        tx = other.transaction()
        await tx.start()
        theirs = await other.fetchval(
            "INSERT INTO customers (tenant_id, data) VALUES ($1, $2) RETURNING id",
            a.tenant_id,
            {"name": "Old"},
        )
        # The batch waits on the other transaction's link.
        result = await applied_past_an_uncommitted_link(
            pool,
            other,
            tx,
            a,
            theirs,
            apply=lambda: Processor(pool).handle(
                TOPIC, [change(a, "c-1", {"name": "New"}, ts=at(1))]
            ),
        )
    assert (result.outcome, result.entity_id) == (Outcome.APPLIED, theirs)
    assert [r["data"] for r in await customers(pool)] == [{"name": "New"}]
    assert await pool.fetchval("SELECT count(*) FROM entity_links") == 1


async def test_a_link_a_push_commits_meanwhile_gets_the_change_on_either_path(
    pool: asyncpg.Pool, processor: Processor, two: Any
) -> None:
    """The echo of our create overtaking the push's bookkeeping, on both paths: outbound
    links its record there (uncommitted) while the echo applies, unable to see the link.
    The change by change path once wrote its new record's link onto that one, so the echo
    left a second record with no link there (a duplicate in every system: a PayPal invoice
    in a 1,000-op convergence run). It applies again and lands on the linked record."""
    a, _ = two
    ours = await pool.fetchval(
        "INSERT INTO customers (tenant_id, data) VALUES ($1, $2) RETURNING id",
        a.tenant_id,
        {"name": "Pushed"},
    )
    async with pool.acquire() as pusher:
        tx = pusher.transaction()
        await tx.start()
        # The apply waits on the push's uncommitted link.
        result = await applied_past_an_uncommitted_link(
            pool,
            pusher,
            tx,
            a,
            ours,
            apply=lambda: processor.handle(
                TOPIC, [change(a, "c-1", {"name": "Pushed, read back"}, ts=at(1))]
            ),
        )
    assert (result.outcome, result.entity_id) == (Outcome.APPLIED, ours)
    assert [r["id"] for r in await customers(pool)] == [ours]
    assert await pool.fetchval("SELECT count(*) FROM entity_links") == 1


# -- where the two paths disagreed before one decide() served both ------------------------


async def test_a_delete_keeps_the_links_last_seen_hash(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    """A delete tells no fields: the link keeps the hash of the last state it was told.
    (The set-based path wrote NULL over it.)"""
    a, _ = two
    state = {"name": "Jo"}
    await processor.handle(TOPIC, [change(a, "a-1", state, ts=at(0))])
    await processor.handle(TOPIC, [change(a, "a-1", {}, ts=at(1), op="delete")])
    link = await pool.fetchrow("SELECT last_seen_hash, remote_updated_at FROM entity_links")
    assert link is not None
    assert link["last_seen_hash"] == state_hash(canonical_values("customer", state))
    assert link["remote_updated_at"] == at(1)


async def test_an_echo_queues_the_version_the_record_had_when_it_arrived(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    """In one batch, an echo showing B is behind, then A's newer edit: the echo queues for B
    the version it overtook (2); A's edit reaches B through the outbox like any change.
    (The set-based path queued the version at the end of the batch, 3.)"""
    a, b = two
    p = processor
    ours, theirs = await pushed_to_b_while_b_edited(pool, p, a, b)
    await p.handle(TOPIC, [change(b, "b-1", theirs, ts=at(1))])
    results = await p.handle(
        TOPIC,
        [
            change(b, "b-1", ours, ts=at(2)),
            change(a, "a-1", {**ours, "name": "Jo"}, ts=at(3)),
        ],
    )
    assert [r.outcome for r in results if r] == [Outcome.ECHO, Outcome.APPLIED]
    queued = await pool.fetch("SELECT connection_id, version FROM push_jobs")
    assert [(r["connection_id"], r["version"]) for r in queued] == [(b.id, 2)]


async def test_first_contact_matches_a_record_whose_key_changed_earlier_in_the_batch(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    """A changes its customer's email, then B introduces a customer with the new email, in
    one batch: B's is the same customer, not a second one; the old email matches nothing.
    (The set-based path matched on the emails as the batch began.)"""
    a, b = two
    await processor.handle(TOPIC, [change(a, "a-1", {"email": "old@x.test"}, ts=at(0))])
    results = await processor.handle(
        TOPIC,
        [
            change(a, "a-1", {"email": "new@x.test"}, ts=at(1)),
            change(b, "b-1", {"email": "new@x.test", "phone": "555"}, ts=at(2)),
            change(b, "b-2", {"email": "old@x.test"}, ts=at(3)),
        ],
    )
    rows = await customers(pool)
    assert [r["data"] for r in rows] == [
        {"email": "new@x.test", "phone": "555"},
        {"email": "old@x.test"},
    ]
    assert [r.entity_id for r in results if r] == [rows[0]["id"], rows[0]["id"], rows[1]["id"]]


async def test_a_partial_update_breaking_invoice_totals_is_dead_lettered_not_stored(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, _ = two
    full = {"number": "INV-7", "subtotal": 32_000, "tax": 2_400, "total": 34_400}
    created = change(a, "i-7", full, ts=at(0), entity_type="invoice")
    only_tax = change(a, "i-7", {"tax": 0}, ts=at(1), entity_type="invoice")
    other = change(a, "c-1", {"name": "Acme"}, ts=at(1))
    results = await processor.handle(TOPIC, [created, only_tax, other])
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED, None, Outcome.APPLIED]
    letters = await pool.fetch("SELECT reason, detail FROM dead_letters")
    assert [r["reason"] for r in letters] == ["schema_violation"]
    assert "total 34400 must equal subtotal 32000 + tax 0" in letters[0]["detail"]
    stored = await pool.fetchval("SELECT data FROM invoices")
    assert (stored["subtotal"], stored["tax"], stored["total"]) == (32_000, 2_400, 34_400)


async def test_a_lagging_draft_does_not_revert_an_open_invoice(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    a, b = two
    opened = change(
        a, "i-8", {"number": "INV-8", "status": "open"}, ts=at(1), entity_type="invoice"
    )
    draft = change(
        b, "b-8", {"number": "INV-8", "status": "draft"}, ts=at(2), entity_type="invoice"
    )
    results = await processor.handle(TOPIC, [opened, draft])
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED, Outcome.NOOP]
    assert (await pool.fetchval("SELECT data FROM invoices"))["status"] == "open"
    assert await outbox_count(pool) == 1


async def test_an_edit_carrying_a_lagging_status_applies_its_other_fields(
    pool: asyncpg.Pool, two: Any, processor: Processor
) -> None:
    """Issue 17 (found by race17): A opened the invoice, B reported it paid, then A edited
    its due date sending the status it last knew. The due date applies; the status and the
    amount due A stated with it stay as B made them."""
    a, b = two
    opened = {"number": "INV-9", "status": "open", "amount_due": 34_400, "due_on": "2026-12-01"}
    first = change(a, "i-9", opened, ts=at(1), entity_type="invoice")
    paid = {"number": "INV-9", "status": "paid", "amount_due": 0}
    second = change(b, "b-9", paid, ts=at(2), entity_type="invoice")
    edit = {**opened, "amount_due": 20_000, "due_on": "2026-12-31"}
    third = change(a, "i-9", edit, ts=at(3), entity_type="invoice")
    results = await processor.handle(TOPIC, [first, second])
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    results = await processor.handle(TOPIC, [third])
    assert [r.outcome if r else None for r in results] == [Outcome.APPLIED]
    stored = await pool.fetchrow("SELECT data, version FROM invoices")
    assert stored["version"] == 3
    assert {k: stored["data"][k] for k in ("status", "amount_due", "due_on")} == {
        "status": "paid",
        "amount_due": 0,
        "due_on": "2026-12-31",
    }
    assert await outbox_count(pool) == 3
    # Nothing else edited: the lagging status alone is status_behind, as before.
    again = change(a, "i-9", edit, ts=at(4), entity_type="invoice")
    results = await processor.handle(TOPIC, [again])
    assert [r.outcome if r else None for r in results] == [Outcome.NOOP]
    assert await outbox_count(pool) == 3
