"""Each connector's declared capabilities (the README's providers-by-kinds matrix) hold
against what it does: its ApiSpec, its client's refusals, its mapper's webhooks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connectors import registry
from connectors.ascora import mapping as ascora_mapping
from connectors.capabilities import Can, KindSupport, matrix, no
from connectors.http import StaticAuth, UnsupportedOperationError
from connectors.hubspot import mapping as hubspot_mapping
from connectors.quickbooks import mapping as quickbooks_mapping
from connectors.spec import ENTITY_TYPES, EntityType, WebhookItem
from connectors.stripe import mapping as stripe_mapping
from connectors.xero import mapping as xero_mapping

FIXTURES = Path(__file__).parents[2] / "fixtures"
CAPABILITIES = registry.CAPABILITIES
# Every provider with a connector of its own (generic needs a connection's config;
# internal has no connector): their declarations are checked against behaviour.
FIXED = tuple(slug for slug in registry.PROVIDERS if slug not in ("generic", "internal"))
# The settings a client or mapper needs to be built at all.
SETTINGS: dict[str, dict[str, Any]] = {
    "ascora": {"company_code": "DEMO"},
    "xero": {"xero_tenant_id": "tenant-1", "xero_payment_account_code": "090"},
    "quickbooks": {"realm_id": "4620816365", "home_currency": "USD"},
    "stripe": {},
    "hubspot": {},
}
API_COLUMNS = ("hydrate", "backfill", "reconcile", "create", "update", "delete", "payment")


def _row(slug: str, kind: EntityType) -> KindSupport:
    return CAPABILITIES[slug][kind]


def _api_kinds(slug: str) -> tuple[EntityType, ...]:
    api = registry.connector(slug).api
    return () if api is None else api.entity_types


class NoNetwork:
    """A session any request through fails the test: a refusal must come before a call."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the client used the network ({name}) instead of refusing")


def _client(slug: str) -> Any:
    api = registry.connector(slug).api
    assert api is not None
    return api.make_client(
        NoNetwork(), "https://api.example.test", StaticAuth.bearer("token"), SETTINGS[slug]
    )


# --- the declarations themselves ----------------------------------------------------------


def test_every_provider_declares_every_kind() -> None:
    assert tuple(CAPABILITIES) == registry.PROVIDERS
    for slug, kinds in CAPABILITIES.items():
        assert tuple(kinds) == ENTITY_TYPES, slug


def test_a_cell_that_is_not_a_plain_yes_says_why() -> None:
    with pytest.raises(ValueError, match="needs its reason"):
        Can("partial")
    with pytest.raises(ValueError, match="needs its reason"):
        no("")


def test_matrix_numbers_each_reason_once_and_lists_it_under_the_table() -> None:
    same = no("Acme has no jobs")
    text = matrix(
        {
            "acme": {
                kind: KindSupport.absent("Acme has no jobs")
                if kind == "job"
                else KindSupport(*([Can("yes")] * 7), same)
                for kind in ENTITY_TYPES
            }
        }
    )
    assert "| acme | job | ✗ [1] | ✗ [1] |" in text
    assert "| acme | customer | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✗ [1] |" in text
    assert text.endswith("\n1. Acme has no jobs\n")


# --- against the ApiSpec and the clients ----------------------------------------------------


@pytest.mark.parametrize("slug", FIXED)
def test_a_kind_outside_the_api_is_neither_fetched_listed_nor_written(slug: str) -> None:
    for kind in ENTITY_TYPES:
        row = _row(slug, kind)
        if kind in _api_kinds(slug):
            # Every ApiClient lists and creates each kind its spec holds.
            assert row.backfill.works, kind
            assert row.reconcile.works, kind
            assert row.create.works, kind
        else:
            working = [c for c in API_COLUMNS if getattr(row, c).works]
            assert not working, f"{slug} {kind}: declared {working} without an API for it"


@pytest.mark.parametrize("slug", FIXED)
def test_delete_column_is_the_specs_deletable_kinds(slug: str) -> None:
    api = registry.connector(slug).api
    deletable = () if api is None else api.deletable
    declared = tuple(k for k in ENTITY_TYPES if _row(slug, k).delete.works)
    assert declared == tuple(k for k in ENTITY_TYPES if k in deletable)


UNDELETABLE = [
    (slug, kind) for slug in FIXED for kind in _api_kinds(slug) if not _row(slug, kind).delete.works
]
NOT_UPDATABLE = [
    (slug, kind) for slug in FIXED for kind in _api_kinds(slug) if not _row(slug, kind).update.works
]


def test_the_refusals_below_are_checked_for_real_cases() -> None:
    assert ("stripe", "payment") in UNDELETABLE
    assert {("xero", "payment"), ("ascora", "payment")} <= set(NOT_UPDATABLE)


@pytest.mark.parametrize(("slug", "kind"), UNDELETABLE)
async def test_client_refuses_to_delete_a_kind_declared_undeletable(
    slug: str, kind: EntityType
) -> None:
    with pytest.raises(UnsupportedOperationError):
        await _client(slug).delete(kind, "rec_1")


@pytest.mark.parametrize(("slug", "kind"), NOT_UPDATABLE)
async def test_client_refuses_to_update_a_kind_declared_not_updatable(
    slug: str, kind: EntityType
) -> None:
    with pytest.raises(UnsupportedOperationError):
        await _client(slug).update(kind, "rec_1", {"reference": "R-1"}, {})


# --- against the mappers' webhooks ----------------------------------------------------------


def _fixture(provider: str, name: str) -> bytes:
    return json.dumps(json.loads((FIXTURES / provider / name).read_text())["body"]).encode()


def _xero(kind: EntityType) -> bytes:
    category = {v: k for k, v in xero_mapping.CATEGORY_ENTITIES.items()}[kind]
    event = {
        "resourceId": "4fa4ed1c-0f48-4a1f-9c5a-8c0b2d7f1e11",
        "eventCategory": category,
        "eventType": "UPDATE",
        "eventDateUtc": "2026-02-17T20:48:03.512",
        "tenantId": SETTINGS["xero"]["xero_tenant_id"],
        "tenantType": "ORGANISATION",
    }
    body = {"events": [event], "firstEventSequence": 1, "lastEventSequence": 1, "entropy": "X"}
    return json.dumps(body).encode()


def _quickbooks(kind: EntityType) -> bytes:
    entity = {
        "name": quickbooks_mapping.ENTITY_NAMES[kind],
        "id": "130",
        "operation": "Update",
        "lastUpdated": "2026-02-17T20:48:03.000Z",
    }
    notification = {
        "realmId": SETTINGS["quickbooks"]["realm_id"],
        "dataChangeEvent": {"entities": [entity]},
    }
    return json.dumps({"eventNotifications": [notification]}).encode()


def _hubspot(kind: EntityType) -> bytes:
    prefix = {"customer": "contact", "job": "deal"}[kind]
    event = {
        "eventId": 100,
        "subscriptionId": 25,
        "portalId": 33,
        "appId": 1160452,
        "occurredAt": 1771361283512,
        "subscriptionType": f"{prefix}.propertyChange",
        "attemptNumber": 0,
        "objectId": 123,
        "changeSource": "CRM",
        "propertyName": "email",
        "propertyValue": "sample@example.com",
    }
    return json.dumps([event]).encode()


_STRIPE = {
    "customer": "customer_created.json",
    "invoice": "invoice_created.json",
    "payment": "payment_intent_created.json",
}
_ASCORA = {
    "customer": "customer_updated.json",
    "job": "job_updated_completed.json",
    "invoice": "invoice_updated_partially_paid.json",
    "payment": "payment_created.json",
}
# One webhook body per provider and kind, and the headers it comes with.
SAMPLES: dict[str, tuple[Callable[[EntityType], bytes], dict[str, str]]] = {
    "xero": (_xero, {}),
    "quickbooks": (_quickbooks, {}),
    "hubspot": (_hubspot, {}),
    "stripe": (lambda kind: _fixture("stripe", _STRIPE[kind]), {}),
    "ascora": (lambda kind: _fixture("ascora", _ASCORA[kind]), {"webhook-id": "msg_1"}),
}
# The kinds each mapper's own event table routes webhooks to.
WEBHOOK_TABLES: dict[str, set[str]] = {
    "stripe": {entity for entity, _ in stripe_mapping.SYNCED_EVENTS.values()},
    "xero": set(xero_mapping.CATEGORY_ENTITIES.values()),
    "quickbooks": set(quickbooks_mapping.ENTITY_NAMES),
    "hubspot": set(hubspot_mapping.OBJECT_TYPES),
    "ascora": set(ascora_mapping.ID_FIELDS),
}


def test_every_mapper_is_sampled() -> None:
    mapped = {slug for slug in FIXED if registry.connector(slug).mapper is not None}
    assert mapped == set(SAMPLES) == set(WEBHOOK_TABLES)


@pytest.mark.parametrize("slug", FIXED)
def test_webhook_column_is_what_the_mapper_routes(slug: str) -> None:
    declared = {k for k in ENTITY_TYPES if _row(slug, k).webhook.works}
    if registry.connector(slug).mapper is None:
        assert not declared, f"{slug} has no mapper, so no kind is read from its webhooks"
        assert not any(_row(slug, k).hydrate.works for k in ENTITY_TYPES)
    else:
        assert declared == WEBHOOK_TABLES[slug]


WEBHOOK_KINDS = [
    (slug, kind) for slug in SAMPLES for kind in ENTITY_TYPES if _row(slug, kind).webhook.works
]


@pytest.mark.parametrize(("slug", "kind"), WEBHOOK_KINDS)
def test_a_webhook_kind_is_mapped_and_hydrated_as_declared(slug: str, kind: EntityType) -> None:
    connector = registry.connector(slug)
    assert connector.mapper is not None
    sample, headers = SAMPLES[slug]
    parsed = connector.mapper.parse_webhook(
        sample(kind), {"content-type": "application/json", **headers}, SETTINGS[slug]
    )
    items: list[WebhookItem] = [i for i in parsed.items if i.entity_type == kind]
    assert items, f"{slug}: the {kind} sample maps to no {kind} item"
    hydrate = _row(slug, kind).hydrate
    for item in items:
        # Thin (no record) exactly when the kind is declared hydrated; n/a when it is full.
        assert (item.record is None) == hydrate.works, (slug, kind, hydrate)
        assert (item.record is not None) == (hydrate.support == "n/a"), (slug, kind, hydrate)


# --- the payment column on payment rows -----------------------------------------------------

PAYMENT = {
    "amount": 1500,
    "currency": "USD",
    "status": "succeeded",
    "paid_at": "2026-02-17T20:48:03Z",
    "reference": "R-1",
}


@pytest.mark.parametrize("slug", FIXED)
def test_a_pushed_payment_names_its_invoice_where_declared(slug: str) -> None:
    can = _row(slug, "payment").payment
    connector = registry.connector(slug)
    if not can.works:
        assert connector.api is None or "payment" not in connector.api.entity_types
        return
    assert connector.mapper is not None
    body = connector.mapper.from_canonical(
        "payment", PAYMENT, {"invoice_id": "inv_9", "customer_id": "cus_9"}, SETTINGS[slug]
    )
    assert "inv_9" in json.dumps(body), f"{slug}: the payment body does not name its invoice"
