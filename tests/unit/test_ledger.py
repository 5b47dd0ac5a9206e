"""The ledger's pure core: each accepted event and each (change, target) pair lands in
exactly one category, and only a consumed event without a fate is unaccounted."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from connectors.spec import WebhookItem
from crmsync.application.ledger import (
    Accepted,
    Committed,
    ConnectionLedger,
    InboundCounts,
    InboundFacts,
    Ledger,
    OutboundCounts,
    OutboundFacts,
    TargetInfo,
    classify_inbound,
    classify_outbound,
)
from crmsync.application.ledger_io import _others, item_event_id, item_key
from schemas.envelope import WebhookEnvelope
from services.processor.normalize import item_event_id as normalizer_item_event_id
from services.processor.normalize import item_key as normalizer_item_key

T0 = datetime(2026, 12, 1, tzinfo=UTC)
CONN = uuid.uuid4()
OTHER = uuid.uuid4()
TENANT = uuid.uuid4()
RAW = "webhooks.raw"


def event(offset: int, key: str | None = "evt-1", **kw: object) -> Accepted:
    fields: dict[str, object] = {
        "connection_id": CONN,
        "record_id": f"rec-{offset}",
        "where": f"{RAW}[0]@{offset}",
        "partition": 0,
        "offset": offset,
        "timestamp_ms": 0,
        "topic": RAW,
        "key": key,
    }
    fields.update(kw)
    return Accepted(**fields)  # type: ignore[arg-type]


def facts(**kw: object) -> InboundFacts:
    fields: dict[str, object] = {
        "processed": {},
        "recorded_skips": {},
        "not_synced": frozenset(),
        "dead_records": frozenset(),
        "dead_keys": frozenset(),
        "committed": {(RAW, 0): 100},
        "waiting_records": frozenset(),
        "waiting_keys": frozenset(),
    }
    fields.update(kw)
    return InboundFacts(**fields)  # type: ignore[arg-type]


def test_the_normalizers_item_ids_and_the_ledgers_agree() -> None:
    for item_id in ("evt_1", "x" * 200, "y" * 201, "é" * 150):
        assert item_event_id(item_id) == normalizer_item_event_id(item_id)


def test_the_normalizers_per_receipt_keys_and_the_ledgers_agree() -> None:
    envelope = WebhookEnvelope(
        tenant_id=uuid.uuid4(),
        connection_id=uuid.uuid4(),
        provider="generic",
        received_at=datetime.now(UTC),
        body=b"name=client.update&object_id=7",
    )
    for per_receipt in (True, False):
        item = WebhookItem("sha256:ab:0", "customer", "7", "upsert", None, per_receipt=per_receipt)
        assert item_key(envelope, item) == normalizer_item_key(envelope, item)
    assert item_key(envelope, item) == "sha256:ab:0"


def test_one_processed_key_delivered_twice_is_one_applied_and_one_duplicate() -> None:
    counts = classify_inbound(
        [event(1), event(2)], facts(processed={(CONN, "evt-1"): T0}), since=T0
    )[CONN]
    assert (counts.accepted, counts.applied, counts.duplicates) == (2, 1, 1)
    assert counts.unaccounted == 0


def test_a_key_processed_before_the_window_makes_every_occurrence_a_duplicate() -> None:
    before = T0 - timedelta(seconds=1)
    counts = classify_inbound([event(1)], facts(processed={(CONN, "evt-1"): before}), since=T0)[
        CONN
    ]
    assert (counts.applied, counts.duplicates) == (0, 1)


def test_a_consumed_event_without_a_fate_is_unaccounted_and_named() -> None:
    counts = classify_inbound([event(7)], facts(), since=None)[CONN]
    assert counts.unaccounted == 1
    assert counts.examples == [f"{RAW}[0]@7 event evt-1"]


@pytest.mark.parametrize(
    ("changed", "category"),
    [
        ({"committed": {(RAW, 0): 7}}, "in_flight"),  # at the committed offset
        ({"committed": {}}, "in_flight"),  # the group never committed
        ({"waiting_keys": frozenset({(CONN, "evt-1")})}, "in_flight"),  # normalised, waiting
        ({"waiting_records": frozenset({"rec-7"})}, "in_flight"),  # a redriven copy waits
        ({"parked_keys": frozenset({(CONN, "evt-1")})}, "in_flight"),  # waits for a reference
        ({"dead_records": frozenset({"rec-7"})}, "dead_lettered"),
        ({"dead_keys": frozenset({(CONN, "evt-1")})}, "dead_lettered"),
        ({"recorded_skips": {(CONN, "evt-1"): "gone"}}, "skipped"),
    ],
)
def test_each_fate_accounts_for_a_consumed_event(changed: dict[str, object], category: str) -> None:
    counts = classify_inbound([event(7)], facts(**changed), since=None)[CONN]
    got = {
        "in_flight": counts.in_flight,
        "dead_lettered": counts.dead_lettered,
        "skipped": sum(counts.skipped.values()),
    }
    assert got[category] == 1
    assert counts.unaccounted == 0
    assert counts.explained == counts.accepted == 1


def test_items_the_connection_does_not_sync_and_ignored_event_types_are_skipped() -> None:
    events = [
        event(1, entity_type="invoice"),
        event(2, key=None, skipped="ignored_event_type"),
    ]
    counts = classify_inbound(events, facts(not_synced=frozenset({(CONN, "invoice")})), since=None)[
        CONN
    ]
    assert dict(counts.skipped) == {"not_synced": 1, "ignored_event_type": 1}


def target(connection: uuid.UUID, *, types: frozenset[str] = frozenset({"customer"})) -> TargetInfo:
    return TargetInfo(connection, TENANT, T0 - timedelta(days=1), types)


def change(version: int = 1, **kw: object) -> Committed:
    fields: dict[str, object] = {
        "change_id": uuid.uuid4(),
        "tenant_id": TENANT,
        "entity_type": "customer",
        "entity_id": ENTITY,
        "version": version,
        "origin_connection_id": OTHER,
        "committed_at": T0,
        "routed": True,
    }
    fields.update(kw)
    return Committed(**fields)  # type: ignore[arg-type]


ENTITY = uuid.uuid4()
KEY = (CONN, "customer", ENTITY)
NO_FACTS = OutboundFacts({}, {}, {}, frozenset(), frozenset())


@pytest.mark.parametrize(
    ("the_change", "the_target", "the_facts", "fate"),
    [
        (change(), target(OTHER), NO_FACTS, "echo"),
        (change(), target(CONN, types=frozenset()), NO_FACTS, "settings"),
        (change(committed_at=T0 - timedelta(days=2)), target(CONN), NO_FACTS, "settings"),
        (change(2), target(CONN), replace(NO_FACTS, pushed={KEY: 3}), "pushed"),  # coalesced
        (change(2), target(CONN), replace(NO_FACTS, queued={KEY: 2}), "pending"),
        (change(routed=False), target(CONN), NO_FACTS, "pending"),
        (change(2), target(CONN), replace(NO_FACTS, dead={KEY: 2}), "dead_lettered"),
        (change(), target(CONN), replace(NO_FACTS, deleted=frozenset({ENTITY})), "deleted"),
        (change(2), target(CONN), replace(NO_FACTS, pushed={KEY: 1}), "unaccounted"),
        # A version the target cannot hold yet (ApiSpec.holds_back: a pending payment, to
        # Xero), never linked: the push that read it after the change committed held it.
        (change(2), target(CONN), replace(NO_FACTS, held={KEY: T0}), "held"),
        # A hold logged before the change committed says nothing of this version.
        (
            change(2),
            target(CONN),
            replace(NO_FACTS, held={KEY: T0 - timedelta(seconds=1)}),
            "unaccounted",
        ),
    ],
)
def test_each_change_and_target_has_one_fate(
    the_change: Committed, the_target: TargetInfo, the_facts: OutboundFacts, fate: str
) -> None:
    counts = classify_outbound([the_change], [the_target], the_facts)[the_target.connection_id]
    got = {
        "pushed": counts.pushed,
        "pending": counts.pending,
        "dead_lettered": counts.dead_lettered,
        "unaccounted": counts.unaccounted,
        **counts.skipped,
    }
    assert got.get(fate) == 1
    assert counts.changes == counts.explained + counts.unaccounted == 1


def test_a_ledger_names_the_connection_and_direction_that_do_not_add_up() -> None:
    lost = InboundCounts(accepted=1, unaccounted=1, examples=[f"{RAW}[0]@7"])
    ledger = Ledger(None, T0, [ConnectionLedger(CONN, "stripe", "shop", lost, OutboundCounts())])
    assert not ledger.balanced
    [problem] = ledger.problems()
    assert str(CONN) in problem
    assert "inbound" in problem
    assert f"{RAW}[0]@7" in problem

    fine = Ledger(
        None,
        T0,
        [
            ConnectionLedger(
                CONN, "stripe", "shop", InboundCounts(accepted=1, in_flight=1), OutboundCounts()
            )
        ],
    )
    assert fine.balanced
    assert not fine.settled


@pytest.mark.parametrize(
    ("key", "skipped"),
    [
        (str(CONN).encode(), False),  # ours
        (f"{CONN}:customer:c-1".encode(), False),
        (str(OTHER).encode(), True),  # another connection's or tenant's
        (f"{OTHER}:customer:c-1".encode(), True),
        (b"customer:c-1", False),  # a key that names no id proves nothing: parse it
        (None, False),
    ],
)
def test_only_a_key_naming_someone_elses_id_spares_parsing_the_record(
    key: bytes | None, skipped: bool
) -> None:
    record = SimpleNamespace(key=key)
    assert _others(record, {str(CONN).encode()}) is skipped  # type: ignore[arg-type]
