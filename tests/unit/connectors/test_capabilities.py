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
from connectors.base import Connector
from connectors.capabilities import FULL_WEBHOOK, Can, Capabilities, KindSupport, matrix, no
from connectors.generic import connector_for, load_mapping_file, mapping_settings
from connectors.http import StaticAuth, UnsupportedOperationError
from connectors.hubspot import mapping as hubspot_mapping
from connectors.paypal import mapping as paypal_mapping
from connectors.quickbooks import mapping as quickbooks_mapping
from connectors.shopify import mapping as shopify_mapping
from connectors.spec import ENTITY_TYPES, EntityType, WebhookItem
from connectors.square import mapping as square_mapping
from connectors.stripe import mapping as stripe_mapping
from connectors.xero import mapping as xero_mapping
from crmsync.cli.main import build_parser

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
    "square": {"square_location_id": "L1"},
    "paypal": {},
    "shopify": {},
}
API_COLUMNS = ("hydrate", "backfill", "reconcile", "create", "update", "delete", "payment")


def _row(slug: str, kind: EntityType) -> KindSupport:
    return CAPABILITIES[slug][kind]


def _api_kinds(slug: str) -> tuple[EntityType, ...]:
    api = registry.connector(slug).api
    return () if api is None else api.entity_types


def _shipped(name: str) -> tuple[Connector, Capabilities, dict[str, Any]]:
    scheme, mapping = load_mapping_file(registry.MAPPING_FILES[name])
    rows = registry.documented_capabilities()[name]
    return connector_for(scheme, mapping), rows, {"generic_mapping": mapping_settings(mapping)}


# What the API checks run on: each fixed connector with its declaration, and each mapping
# file we ship with the rows derived from it.
SUBJECTS: dict[str, tuple[Connector, Capabilities, dict[str, Any]]] = {
    **{
        slug: (registry.connector(slug), CAPABILITIES[slug], SETTINGS.get(slug, {}))
        for slug in FIXED
    },
    **{name: _shipped(name) for name in registry.MAPPING_FILES},
}


class NoNetwork:
    """A session any request through fails the test: a refusal must come before a call."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the client used the network ({name}) instead of refusing")


def _client(subject: str) -> Any:
    connector, _, settings = SUBJECTS[subject]
    assert connector.api is not None
    return connector.api.make_client(
        NoNetwork(), "https://api.example.test", StaticAuth.bearer("token"), settings
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
    assert "| acme | customer, invoice, payment | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✓ | ✗ [1] |" in text
    assert text.endswith("\n1. Acme has no jobs\n")


# --- against the ApiSpec and the clients ----------------------------------------------------


def _kinds(subject: str) -> tuple[EntityType, ...]:
    api = SUBJECTS[subject][0].api
    return () if api is None else api.entity_types


def test_the_documented_matrix_covers_every_provider_and_shipped_mapping_file() -> None:
    documented = registry.documented_capabilities()
    assert set(documented) == set(registry.PROVIDERS) | set(registry.MAPPING_FILES)
    assert set(registry.MAPPING_FILES) >= {"mailchimp", "mautic", "woocommerce", "freshbooks"}


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_kind_outside_the_api_is_neither_fetched_listed_nor_written(subject: str) -> None:
    _, rows, _ = SUBJECTS[subject]
    for kind in ENTITY_TYPES:
        row = rows[kind]
        if kind in _kinds(subject):
            # Every ApiClient creates each kind its spec holds (a mapping may say otherwise).
            assert row.create.works or subject in registry.MAPPING_FILES, kind
        else:
            working = [c for c in API_COLUMNS if getattr(row, c).works]
            assert not working, f"{subject} {kind}: declared {working} without an API for it"


@pytest.mark.parametrize("slug", FIXED)
def test_every_kind_of_a_fixed_api_is_listed(slug: str) -> None:
    for kind in _kinds(slug):
        assert _row(slug, kind).backfill.works, kind
        assert _row(slug, kind).reconcile.works, kind


@pytest.mark.parametrize("subject", SUBJECTS)
def test_delete_column_is_the_specs_deletable_kinds(subject: str) -> None:
    connector, rows, _ = SUBJECTS[subject]
    deletable = () if connector.api is None else connector.api.deletable
    declared = tuple(k for k in ENTITY_TYPES if rows[k].delete.works)
    assert declared == tuple(k for k in ENTITY_TYPES if k in deletable)


def _refused(column: str) -> list[tuple[str, EntityType]]:
    return [
        (subject, kind)
        for subject, (_, rows, _) in SUBJECTS.items()
        for kind in _kinds(subject)
        if not getattr(rows[kind], column).works
    ]


UNDELETABLE = _refused("delete")
NOT_UPDATABLE = _refused("update")


def test_the_refusals_below_are_checked_for_real_cases() -> None:
    assert {("stripe", "payment"), ("generic: `acme.json`", "invoice")} <= set(UNDELETABLE)
    assert {("xero", "payment"), ("ascora", "payment")} <= set(NOT_UPDATABLE)


@pytest.mark.parametrize(("subject", "kind"), UNDELETABLE)
async def test_client_refuses_to_delete_a_kind_declared_undeletable(
    subject: str, kind: EntityType
) -> None:
    with pytest.raises(UnsupportedOperationError):
        await _client(subject).delete(kind, "rec_1")


@pytest.mark.parametrize(("subject", "kind"), NOT_UPDATABLE)
async def test_client_refuses_to_update_a_kind_declared_not_updatable(
    subject: str, kind: EntityType
) -> None:
    with pytest.raises(UnsupportedOperationError):
        await _client(subject).update(kind, "rec_1", {"reference": "R-1"}, {})


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
_SQUARE = {
    "customer": "customer_updated.json",
    "invoice": "invoice_published.json",
    "payment": "payment_updated.json",
}
# PayPal has no customer events: a customer comes with the invoice addressed to it.
_PAYPAL = {
    "customer": "invoice_updated.json",
    "invoice": "invoice_updated.json",
    "payment": "capture_completed.json",
}
_SHOPIFY = {
    "customer": "customers_update.json",
    "invoice": "orders_paid.json",
    "payment": "order_transactions_create.json",
}


def _shopify_headers(kind: EntityType) -> dict[str, str]:
    # Shopify names what the body is in a header: the sample's own.
    headers: dict[str, str] = json.loads((FIXTURES / "shopify" / _SHOPIFY[kind]).read_text())[
        "headers"
    ]
    return headers


# One webhook body per provider and kind, and the headers it comes with (a function of the
# kind where the provider says in a header what the body is).
SAMPLES: dict[
    str,
    tuple[Callable[[EntityType], bytes], dict[str, str] | Callable[[EntityType], dict[str, str]]],
] = {
    "xero": (_xero, {}),
    "quickbooks": (_quickbooks, {}),
    "hubspot": (_hubspot, {}),
    "stripe": (lambda kind: _fixture("stripe", _STRIPE[kind]), {}),
    "ascora": (lambda kind: _fixture("ascora", _ASCORA[kind]), {"webhook-id": "msg_1"}),
    "square": (lambda kind: _fixture("square", _SQUARE[kind]), {}),
    "paypal": (lambda kind: _fixture("paypal", _PAYPAL[kind]), {}),
    "shopify": (lambda kind: _fixture("shopify", _SHOPIFY[kind]), _shopify_headers),
}
# The kinds each mapper's own event table routes webhooks to.
WEBHOOK_TABLES: dict[str, set[str]] = {
    "stripe": {entity for entity, _ in stripe_mapping.SYNCED_EVENTS.values()},
    "xero": set(xero_mapping.CATEGORY_ENTITIES.values()),
    "quickbooks": set(quickbooks_mapping.ENTITY_NAMES),
    "hubspot": set(hubspot_mapping.OBJECT_TYPES),
    "ascora": set(ascora_mapping.ID_FIELDS),
    "square": {entity for entity, _ in square_mapping.EVENTS.values()},
    "paypal": set(paypal_mapping.ROUTED_KINDS),
    "shopify": {entity for entity, _ in shopify_mapping.TOPICS.values()},
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
    sample, sent_with = SAMPLES[slug]
    headers = sent_with(kind) if callable(sent_with) else sent_with
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


OVERRIDABLE = {
    "customer": "notes",
    "job": "description",
    "invoice": "number",
    "payment": "reference",
}
FULL_KINDS = [
    (slug, kind) for slug, kind in WEBHOOK_KINDS if _row(slug, kind).hydrate.why == FULL_WEBHOOK
]


@pytest.mark.parametrize(("slug", "kind"), FULL_KINDS)
def test_a_full_webhook_kind_is_fetched_once_field_overrides_cover_it(
    slug: str, kind: EntityType
) -> None:
    mapper = registry.connector(slug).mapper
    assert mapper is not None
    sample, sent_with = SAMPLES[slug]
    headers = sent_with(kind) if callable(sent_with) else sent_with
    overrides = {kind: [{"canonical": OVERRIDABLE[kind], "path": "metadata.crm_field"}]}
    parsed = mapper.parse_webhook(
        sample(kind),
        {"content-type": "application/json", **headers},
        {**SETTINGS[slug], "field_overrides": overrides},
    )
    items = [i for i in parsed.items if i.entity_type == kind]
    assert items
    assert all(i.record is None for i in items)


# --- the command --------------------------------------------------------------------------


def _run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    status: int = args.handler(args)
    return status


def test_matrix_command_prints_the_rows_a_mapping_file_gives(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = registry.MAPPING_FILES["woocommerce"]
    assert _run(["connectors", "matrix", "--mapping", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| woocommerce.json | invoice | ✓ |" in out
    assert "| woocommerce.json | job, payment | ✗ [" in out
    assert "stripe" not in out


def test_matrix_command_refuses_a_mapping_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(["connectors", "matrix", "--mapping", str(tmp_path / "absent.json")]) == 2
    bad = tmp_path / "bad.json"
    bad.write_text('{"entities": {}}')
    assert _run(["connectors", "matrix", "--mapping", str(bad)]) == 2
    assert "--mapping" in capsys.readouterr().err
