"""QuickBooks Online mapping: documented webhooks and objects, round trips, exact money."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.money import decimal_of
from connectors.quickbooks import CONNECTOR
from connectors.quickbooks.mapping import Mapper
from connectors.quickbooks.values import json_number, parse_timestamp, to_minor
from connectors.simulators import simulator_for
from connectors.spec import EntityType, MappingError, RemoteRecord
from schemas.records import ENTITY_MODELS

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "quickbooks").glob("*.json"))
MAPPER = Mapper()
REALM = "1185883450"
SETTINGS = {"realm_id": REALM, "home_currency": "USD"}

# Intuit's Invoice API reference, "Read an invoice" response (DocNumber 1037).
DOCUMENTED_INVOICE: dict[str, Any] = {
    "Invoice": {
        "TxnDate": "2014-09-19",
        "domain": "QBO",
        "PrintStatus": "NeedToPrint",
        "SalesTermRef": {"value": "3"},
        "TotalAmt": 362.07,
        "Line": [
            {
                "Description": "Rock Fountain",
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "TaxCodeRef": {"value": "TAX"},
                    "Qty": 1,
                    "UnitPrice": 275,
                    "ItemRef": {"name": "Rock Fountain", "value": "5"},
                },
                "LineNum": 1,
                "Amount": 275.0,
                "Id": "1",
            },
            {
                "Description": "Fountain Pump",
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "TaxCodeRef": {"value": "TAX"},
                    "Qty": 1,
                    "UnitPrice": 12.75,
                    "ItemRef": {"name": "Pump", "value": "11"},
                },
                "LineNum": 2,
                "Amount": 12.75,
                "Id": "2",
            },
            {
                "Description": "Concrete for fountain installation",
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "TaxCodeRef": {"value": "TAX"},
                    "Qty": 5,
                    "UnitPrice": 9.5,
                    "ItemRef": {"name": "Concrete", "value": "3"},
                },
                "LineNum": 3,
                "Amount": 47.5,
                "Id": "3",
            },
            {"DetailType": "SubTotalLineDetail", "Amount": 335.25, "SubTotalLineDetail": {}},
        ],
        "DueDate": "2014-10-19",
        "ApplyTaxAfterDiscount": False,
        "DocNumber": "1037",
        "sparse": False,
        "CustomerMemo": {"value": "Thank you for your business and have a great day!"},
        "Deposit": 0,
        "Balance": 362.07,
        "CustomerRef": {"name": "Sonnenschein Family Store", "value": "24"},
        "TxnTaxDetail": {"TxnTaxCodeRef": {"value": "2"}, "TotalTax": 26.82},
        "SyncToken": "0",
        "LinkedTxn": [{"TxnId": "100", "TxnType": "Estimate"}],
        "BillEmail": {"Address": "Familiystore@intuit.com"},
        "EmailStatus": "NotSet",
        "MetaData": {
            "CreateTime": "2014-09-19T13:16:17-07:00",
            "LastUpdatedTime": "2014-09-19T13:16:17-07:00",
        },
        "Id": "238",
    },
    "time": "2015-07-24T10:48:27.082-07:00",
}

# Intuit developer blog, "Voiding Invoice Objects" (2016-04-06): an invoice after
# ?operation=void (the address is cut where the post's example is cut).
VOIDED_INVOICE: dict[str, Any] = {
    "Invoice": {
        "Deposit": 0,
        "domain": "QBO",
        "sparse": False,
        "Id": "207",
        "SyncToken": "2",
        "MetaData": {
            "CreateTime": "2016-01-07T12:15:17-08:00",
            "LastUpdatedTime": "2016-03-29T14:15:04-07:00",
        },
        "DocNumber": "1067",
        "TxnDate": "2016-01-07",
        "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
        "PrivateNote": "Voided",
        "LinkedTxn": [],
        "Line": [
            {
                "Id": "1",
                "LineNum": 1,
                "Amount": 0,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "1", "name": "Services"},
                    "TaxCodeRef": {"value": "NON"},
                },
            },
            {"Amount": 0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
        ],
        "TxnTaxDetail": {"TotalTax": 0},
        "CustomerRef": {"value": "1", "name": "Amy"},
        "TotalAmt": 0,
        "Balance": 0,
    }
}

# Intuit's Payment API reference, "Read a payment" response.
DOCUMENTED_PAYMENT: dict[str, Any] = {
    "Payment": {
        "SyncToken": "0",
        "domain": "QBO",
        "DepositToAccountRef": {"value": "4"},
        "UnappliedAmt": 10.0,
        "TxnDate": "2015-01-16",
        "TotalAmt": 65.0,
        "ProcessPayment": False,
        "sparse": False,
        "Line": [
            {
                "Amount": 55.0,
                "LineEx": {
                    "any": [
                        {
                            "name": "{http://schema.intuit.com/finance/v3}NameValue",
                            "nil": False,
                            "value": {"Name": "txnId", "Value": "70"},
                            "declaredType": "com.intuit.schema.finance.v3.NameValue",
                            "scope": "javax.xml.bind.JAXBElement$GlobalScope",
                            "globalScope": True,
                            "typeSubstituted": False,
                        }
                    ]
                },
                "LinkedTxn": [{"TxnId": "70", "TxnType": "Invoice"}],
            }
        ],
        "CustomerRef": {"name": "Red Rock Diner", "value": "20"},
        "Id": "163",
        "MetaData": {
            "CreateTime": "2015-01-16T15:08:12-08:00",
            "LastUpdatedTime": "2015-01-16T15:08:12-08:00",
        },
    },
    "time": "2015-07-28T15:16:15.435-07:00",
}


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def fixture(stem: str) -> dict[str, Any]:
    return load(next(path for path in FIXTURES if path.stem == stem))


def fixture_realm(body: Any) -> str:
    if isinstance(body, list):
        return str(body[0]["intuitaccountid"])
    return str(body["eventNotifications"][0]["realmId"])


def classic(*entities: dict[str, Any], realm: str = REALM) -> bytes:
    return json.dumps(
        {
            "eventNotifications": [
                {"realmId": realm, "dataChangeEvent": {"entities": list(entities)}}
            ]
        }
    ).encode()


def entity(
    name: str = "Invoice",
    operation: str = "Update",
    entity_id: str = "130",
    last_updated: str = "2015-10-05T14:42:19-0700",
) -> dict[str, Any]:
    return {"name": name, "id": entity_id, "operation": operation, "lastUpdated": last_updated}


def cloud_event(event_type: str, entity_id: str = "95", **extra: Any) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": f"evt-{event_type}-{entity_id}",
        "source": "intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=",
        "type": event_type,
        "datacontenttype": "application/json",
        "time": "2025-09-10T21:31:25.179Z",
        "intuitentityid": entity_id,
        "intuitaccountid": REALM,
        "data": {},
        **extra,
    }


def mapping_error(body: bytes, settings: dict[str, Any] | None = None) -> MappingError:
    with pytest.raises(MappingError) as caught:
        MAPPER.parse_webhook(body, {}, SETTINGS if settings is None else settings)
    return caught.value


def wire(body: dict[str, Any]) -> dict[str, Any]:
    """A body as it crosses HTTP: json.dumps out, json.loads back (floats and all)."""
    crossed: dict[str, Any] = json.loads(json.dumps(body))
    return crossed


def stored(body: dict[str, Any], **computed: Any) -> dict[str, Any]:
    """What QuickBooks would store for ``body``: its fields plus the ones it assigns."""
    metadata = {
        "CreateTime": "2025-01-02T03:04:05-08:00",
        "LastUpdatedTime": "2025-01-02T03:04:05-08:00",
    }
    return {**wire(body), "Id": "9", "SyncToken": "0", "MetaData": metadata, **computed}


# --- documented webhooks -------------------------------------------------------------------


def test_the_fixtures_cover_both_webhook_formats() -> None:
    bodies = [load(path)["body"] for path in FIXTURES]
    assert any(isinstance(body, list) for body in bodies)
    assert any(isinstance(body, dict) for body in bodies)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_documented_webhook_gives_exactly_the_expected_items(path: Path) -> None:
    fixture = load(path)
    settings = {"realm_id": fixture_realm(fixture["body"]), "home_currency": "USD"}
    parsed = MAPPER.parse_webhook(json.dumps(fixture["body"]).encode(), {}, settings)
    got = []
    for item in parsed.items:
        assert item.record is None  # thin, both formats
        data: dict[str, Any] = {}
        refs: dict[str, str] = {}
        if item.op == "upsert":
            api_object = fixture["api_objects"][item.entity_type][item.external_id]
            record = MAPPER.to_canonical(item.entity_type, api_object, settings)
            assert record.external_id == item.external_id
            ENTITY_MODELS[item.entity_type].model_validate(record.data)
            data, refs = record.data, record.refs
        got.append((item.entity_type, item.external_id, item.op, data, refs))
    assert len(got) == len(fixture["expected"])
    for (entity_type, external_id, op, data, refs), want in zip(
        got, fixture["expected"], strict=True
    ):
        assert (entity_type, external_id, op) == (
            want["entity_type"],
            want["external_id"],
            want["op"],
        )
        assert {key: data[key] for key in want["data"]} == want["data"]
        assert refs == want["refs"]


@pytest.mark.parametrize(
    ("name", "ignored"),
    [
        ("classic_customer_vendor_create", 1),
        ("classic_account_create", 1),
        ("cloudevents_account_created", 1),
        ("cloudevents_customer_merged", 0),
    ],
)
def test_documented_webhook_counts_entities_we_do_not_sync_as_ignored(
    name: str, ignored: int
) -> None:
    body = fixture(name)["body"]
    settings = {"realm_id": fixture_realm(body)}
    assert MAPPER.parse_webhook(json.dumps(body).encode(), {}, settings).ignored == ignored


def test_classic_occurred_at_is_the_entitys_last_updated_in_utc() -> None:
    item = MAPPER.parse_webhook(classic(entity("Customer", "Create", "1")), {}, SETTINGS).items[0]
    assert item.occurred_at == datetime(2015, 10, 5, 21, 42, 19, tzinfo=UTC)


def test_cloud_event_time_with_nanoseconds_is_read_to_the_microsecond() -> None:
    event = cloud_event("qbo.invoice.created.v1", time="2025-09-10T21:31:25.179851517Z")
    item = MAPPER.parse_webhook(json.dumps([event]).encode(), {}, SETTINGS).items[0]
    assert item.occurred_at == datetime(2025, 9, 10, 21, 31, 25, 179851, tzinfo=UTC)


def test_classic_event_id_is_realm_name_id_operation_and_last_updated() -> None:
    body = classic(entity("Invoice", "Update", "130"))
    first = MAPPER.parse_webhook(body, {}, SETTINGS).items[0]
    again = MAPPER.parse_webhook(body, {}, SETTINGS).items[0]
    assert first.event_id == f"{REALM}:Invoice:130:Update:2015-10-05T14:42:19-0700"
    assert again.event_id == first.event_id


def test_cloud_event_id_is_the_cloud_event_id() -> None:
    event = cloud_event("qbo.payment.updated.v1", "77")
    item = MAPPER.parse_webhook(json.dumps([event]).encode(), {}, SETTINGS).items[0]
    assert item.event_id == "evt-qbo.payment.updated.v1-77"
    assert (item.entity_type, item.external_id, item.op) == ("payment", "77", "upsert")


def test_merge_deletes_the_merged_away_customer_under_its_own_event_id() -> None:
    merged = entity("Customer", "Merge", "123") | {"deletedId": "27"}
    items = MAPPER.parse_webhook(classic(merged), {}, SETTINGS).items
    assert [(i.external_id, i.op) for i in items] == [("123", "upsert"), ("27", "delete")]
    assert items[0].event_id != items[1].event_id


@pytest.mark.parametrize(
    ("operation", "op"),
    [("Create", "upsert"), ("Update", "upsert"), ("Void", "upsert"), ("Delete", "delete")],
)
def test_classic_operations_map_to_upsert_or_delete(operation: str, op: str) -> None:
    item = MAPPER.parse_webhook(classic(entity("Invoice", operation)), {}, SETTINGS).items[0]
    assert (item.entity_type, item.op, item.record) == ("invoice", op, None)


@pytest.mark.parametrize(
    ("event_type", "op"),
    [
        ("qbo.customer.created.v1", "upsert"),
        ("qbo.invoice.updated.v1", "upsert"),
        ("qbo.invoice.voided.v1", "upsert"),
        ("qbo.payment.deleted.v1", "delete"),
    ],
)
def test_cloud_event_types_map_to_upsert_or_delete(event_type: str, op: str) -> None:
    item = MAPPER.parse_webhook(json.dumps([cloud_event(event_type)]).encode(), {}, SETTINGS)
    assert item.items[0].op == op


def test_emailed_and_unsynced_entities_are_ignored_not_errors() -> None:
    body = classic(
        entity("Invoice", "Emailed"),
        entity("Bill", "Create"),
        entity("Vendor", "Merge"),
        entity("Payment", "Create", "5"),
    )
    parsed = MAPPER.parse_webhook(body, {}, SETTINGS)
    assert parsed.ignored == 3
    assert [(i.entity_type, i.external_id) for i in parsed.items] == [("payment", "5")]
    events = [cloud_event("qbo.invoice.emailed.v1"), cloud_event("qbo.bill.created.v1")]
    assert MAPPER.parse_webhook(json.dumps(events).encode(), {}, SETTINGS).ignored == 2


def test_out_of_order_events_keep_each_entitys_own_time() -> None:
    later = entity("Customer", "Update", "1", "2025-03-01T10:00:05-0800")
    earlier = entity("Customer", "Update", "1", "2025-03-01T10:00:01-0800")
    items = MAPPER.parse_webhook(classic(later, earlier), {}, SETTINGS).items
    assert items[0].occurred_at > items[1].occurred_at
    assert items[0].event_id != items[1].event_id


# --- refused webhooks ----------------------------------------------------------------------


def test_other_company_is_a_realm_mismatch_in_both_formats() -> None:
    assert mapping_error(classic(entity(), realm="999")).reason == "realm_mismatch"
    event = cloud_event("qbo.invoice.updated.v1") | {"intuitaccountid": "999"}
    error = mapping_error(json.dumps([event]).encode())
    assert error.reason == "realm_mismatch"
    assert error.detail.startswith("0.intuitaccountid")


def test_realm_is_checked_even_when_every_entity_is_ignored() -> None:
    assert mapping_error(classic(entity("Vendor"), realm="999")).reason == "realm_mismatch"


def test_connection_without_realm_id_is_misconfigured() -> None:
    assert mapping_error(classic(entity()), {}).reason == "misconfigured"


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"{not json", "unparseable", "body"),
        (b"\xff\xfe", "unparseable", "body"),
        (b"{}", "schema_violation", "body"),
        (b"42", "schema_violation", "body"),
        (b'{"eventNotifications": {}}', "schema_violation", "eventNotifications"),
        (b'{"eventNotifications": [7]}', "schema_violation", "eventNotifications.0"),
        (
            b'{"eventNotifications": [{"realmId": "1185883450"}]}',
            "schema_violation",
            "eventNotifications.0.dataChangeEvent.entities",
        ),
        (
            b'{"eventNotifications": [{"dataChangeEvent": {"entities": []}}]}',
            "schema_violation",
            "eventNotifications.0.realmId",
        ),
        (b"[1]", "schema_violation", "0"),
        (b'[{"specversion": "0.3"}]', "schema_violation", "0.specversion"),
    ],
)
def test_malformed_body_names_reason_and_path(body: bytes, reason: str, detail: str) -> None:
    error = mapping_error(body)
    assert error.reason == reason
    assert error.detail.split(":")[0] == detail


def test_entity_without_id_names_the_path() -> None:
    bad = entity()
    del bad["id"]
    error = mapping_error(classic(bad))
    assert error.reason == "schema_violation"
    assert error.detail == "eventNotifications.0.dataChangeEvent.entities.0.id: missing"


def test_unreadable_last_updated_names_the_path() -> None:
    error = mapping_error(classic(entity(last_updated="yesterday")))
    assert error.detail.startswith("eventNotifications.0.dataChangeEvent.entities.0.lastUpdated")


def test_unknown_operation_is_an_unknown_event_type() -> None:
    error = mapping_error(classic(entity("Invoice", "Archive")))
    assert error.reason == "unknown_event_type"
    assert "entities.0.operation" in error.detail


@pytest.mark.parametrize("event_type", ["com.example.thing", "qbo.invoice.exploded.v1", "qbo"])
def test_unknown_cloud_event_type_is_an_unknown_event_type(event_type: str) -> None:
    error = mapping_error(json.dumps([cloud_event(event_type)]).encode())
    assert error.reason == "unknown_event_type"
    assert error.detail.startswith("0.type")


def test_cloud_event_without_entity_id_names_the_path() -> None:
    event = cloud_event("qbo.invoice.updated.v1")
    del event["intuitentityid"]
    assert mapping_error(json.dumps([event]).encode()).detail == "0.intuitentityid: missing"


# --- API objects -> canonical ----------------------------------------------------------------


def test_documented_invoice_maps_to_exact_minor_units() -> None:
    record = MAPPER.to_canonical("invoice", DOCUMENTED_INVOICE, SETTINGS)
    assert record.external_id == "238"
    assert record.version == "0"
    assert record.updated_at == datetime(2014, 9, 19, 20, 16, 17, tzinfo=UTC)
    assert record.refs == {"customer_id": "24"}
    data = record.data
    assert (data["total"], data["tax"], data["subtotal"], data["amount_due"]) == (
        36207,
        2682,
        33525,
        36207,
    )
    assert data["currency"] == "USD"  # no CurrencyRef: the company's home currency
    assert (data["number"], data["status"]) == ("1037", "open")
    assert (data["issued_on"], data["due_on"]) == ("2014-09-19", "2014-10-19")
    assert [(line["quantity"], line["unit_amount"]) for line in data["lines"]] == [
        ("1", 27500),
        ("1", 1275),
        ("5", 950),
    ]


def test_voided_invoice_is_status_void_not_deleted() -> None:
    record = MAPPER.to_canonical("invoice", VOIDED_INVOICE, SETTINGS)
    assert record.deleted is False
    assert record.data["status"] == "void"
    assert (record.data["total"], record.data["amount_due"]) == (0, 0)
    assert record.data["lines"] == [
        {"description": None, "quantity": "1", "unit_amount": 0, "tax_amount": 0}
    ]


def test_paid_invoice_is_status_paid() -> None:
    invoice = json.loads(json.dumps(DOCUMENTED_INVOICE))
    invoice["Invoice"]["Balance"] = 0
    assert MAPPER.to_canonical("invoice", invoice, SETTINGS).data["status"] == "paid"


def test_documented_payment_maps_amount_refs_and_date() -> None:
    record = MAPPER.to_canonical("payment", DOCUMENTED_PAYMENT, SETTINGS)
    assert record.refs == {"customer_id": "20", "invoice_id": "70"}
    assert record.data["amount"] == 6500
    assert record.data["status"] == "succeeded"
    assert record.data["paid_at"] == "2015-01-16T00:00:00Z"
    assert record.updated_at == datetime(2015, 1, 16, 23, 8, 12, tzinfo=UTC)


def test_voided_payment_ends_its_life() -> None:
    payment = json.loads(json.dumps(DOCUMENTED_PAYMENT))["Payment"]
    payment |= {"TotalAmt": 0, "PrivateNote": "Voided", "Line": []}
    record = MAPPER.to_canonical("payment", payment, SETTINGS)
    assert record.deleted is True
    assert record.data["amount"] is None


def test_inactive_customer_is_deleted() -> None:
    documented = fixture("classic_customer_vendor_create")["api_objects"]["customer"]["1"]
    customer = documented["Customer"] | {"Active": False}
    assert MAPPER.to_canonical("customer", customer, SETTINGS).deleted is True


def test_discount_and_group_lines_are_kept_subtotal_lines_skipped() -> None:
    lines = [
        {"DetailType": "DiscountLineDetail", "Amount": 5, "DiscountLineDetail": {}},
        {
            "DetailType": "GroupLineDetail",
            "GroupLineDetail": {
                "Line": [
                    {
                        "DetailType": "SalesItemLineDetail",
                        "Amount": 20,
                        "SalesItemLineDetail": {"Qty": 2, "UnitPrice": 10},
                    }
                ]
            },
        },
        {"DetailType": "SubTotalLineDetail", "Amount": 20, "SubTotalLineDetail": {}},
    ]
    invoice = stored({"Line": lines, "TotalAmt": 15, "Balance": 15})
    record = MAPPER.to_canonical("invoice", invoice, SETTINGS)
    assert [(line["quantity"], line["unit_amount"]) for line in record.data["lines"]] == [
        ("1", -500),
        ("2", 1000),
    ]


def test_object_without_last_updated_time_names_the_path() -> None:
    customer = {"Customer": {"Id": "1", "DisplayName": "A"}}
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("customer", customer, SETTINGS)
    assert caught.value.detail == "Customer.MetaData.LastUpdatedTime: missing"


def test_invalid_email_is_a_schema_violation_naming_the_field() -> None:
    customer = stored({"DisplayName": "A", "PrimaryEmailAddr": {"Address": "not an email"}})
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("customer", customer, SETTINGS)
    assert caught.value.reason == "schema_violation"
    assert "canonical email" in caught.value.detail


def test_quickbooks_has_no_jobs() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("job", {}, SETTINGS)
    assert caught.value.reason == "unsupported_entity"
    with pytest.raises(MappingError):
        MAPPER.from_canonical("job", {}, {}, SETTINGS)


def test_free_text_countries_become_iso_codes_or_nothing() -> None:
    for country, code in [("USA", "US"), ("United Kingdom", "GB"), ("ca", "CA"), ("Narnia", None)]:
        customer = stored({"DisplayName": "A", "BillAddr": {"City": "X", "Country": country}})
        address = MAPPER.to_canonical("customer", customer, SETTINGS).data["address"]
        assert address["country"] == code


# --- money is exact --------------------------------------------------------------------------


def test_decimal_amounts_that_floats_cannot_hold_stay_exact() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floating point; "0.3" from JSON stays 30 cents.
    invoice = stored({"TotalAmt": 0.3, "Balance": 0.3, "TxnTaxDetail": {"TotalTax": 0.1}})
    data = MAPPER.to_canonical("invoice", invoice, SETTINGS).data
    assert (data["total"], data["tax"], data["subtotal"]) == (30, 10, 20)


def test_float_arithmetic_noise_is_refused_not_rounded() -> None:
    invoice = stored({"TotalAmt": 0.1 + 0.2, "Balance": 0})
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("invoice", invoice, SETTINGS)
    assert caught.value.detail.startswith("TotalAmt")


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [(1500, "JPY", 1500), (1.234, "KWD", 1234), (19.99, "USD", 1999), ("0.07", "EUR", 7)],
)
def test_currency_exponent_sets_the_minor_units(amount: Any, currency: str, minor: int) -> None:
    invoice = stored({"TotalAmt": amount, "Balance": 0, "CurrencyRef": {"value": currency}})
    data = MAPPER.to_canonical("invoice", invoice, SETTINGS).data
    assert (data["total"], data["currency"]) == (minor, currency)


def test_yen_with_decimals_is_refused() -> None:
    invoice = stored({"TotalAmt": 1500.5, "Balance": 0, "CurrencyRef": {"value": "JPY"}})
    with pytest.raises(MappingError):
        MAPPER.to_canonical("invoice", invoice, SETTINGS)


def test_sub_cent_unit_prices_round_half_to_even_while_totals_stay_exact() -> None:
    line = {
        "DetailType": "SalesItemLineDetail",
        "Amount": 0.25,
        "SalesItemLineDetail": {"Qty": 10, "UnitPrice": 0.025},
    }
    invoice = stored({"Line": [line], "TotalAmt": 0.25, "Balance": 0.25})
    data = MAPPER.to_canonical("invoice", invoice, SETTINGS).data
    assert data["lines"][0]["unit_amount"] == 2
    assert data["total"] == 25


def test_amounts_leave_as_json_numbers_with_exactly_their_digits() -> None:
    data = {"currency": "USD", "lines": [{"quantity": "3", "unit_amount": 10}], "tax": 3}
    body = MAPPER.from_canonical("invoice", data, {"customer_id": "1"}, SETTINGS)
    text = json.dumps(body)
    assert '"Amount": 0.3' in text
    assert '"UnitPrice": 0.1' in text
    assert '"TotalTax": 0.03' in text


def test_yen_leaves_without_decimals() -> None:
    data = {"currency": "JPY", "lines": [{"quantity": "2", "unit_amount": 1500}]}
    body = MAPPER.from_canonical("invoice", data, {}, SETTINGS)
    assert body["Line"][0]["Amount"] == 3000
    assert isinstance(body["Line"][0]["Amount"], int)


def test_amount_too_long_for_an_exact_json_number_is_refused() -> None:
    with pytest.raises(MappingError):
        MAPPER.from_canonical("payment", {"amount": 2**62, "currency": "USD"}, {}, SETTINGS)


def test_value_helpers_agree_with_each_other() -> None:
    assert to_minor(json_number(Decimal("12345678901.23"), "x"), "USD", "x") == 1234567890123
    assert parse_timestamp("2015-07-23T10:58:12-07:00", "t") == datetime(
        2015, 7, 23, 17, 58, 12, tzinfo=UTC
    )


# --- canonical -> QuickBooks -> canonical ----------------------------------------------------


def round_trip(
    entity_type: EntityType, data: dict[str, Any], refs: dict[str, str]
) -> tuple[dict[str, Any], RemoteRecord]:
    """Canonical -> QuickBooks body -> the wire -> stored object -> canonical."""
    canonical = ENTITY_MODELS[entity_type].model_validate(data).model_dump(mode="json")
    body = MAPPER.from_canonical(entity_type, canonical, refs, SETTINGS)
    computed: dict[str, Any] = {}
    if entity_type == "invoice":
        # QuickBooks computes the totals; the lines' Amounts plus the tax is what it gets.
        wired = wire(body)
        total = sum((decimal_of(line["Amount"], "Amount") for line in wired["Line"]), Decimal(0))
        total += decimal_of(wired.get("TxnTaxDetail", {}).get("TotalTax", 0), "TotalTax")
        computed = {"TotalAmt": json_number(total, "TotalAmt")}
        computed["Balance"] = computed["TotalAmt"]
    record = MAPPER.to_canonical(entity_type, stored(body, **computed), SETTINGS)
    return canonical, record


text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=60
)
optional_text = st.none() | text
emails = st.from_regex(r"[a-z0-9]{1,12}@[a-z]{1,10}\.(com|org|co\.uk)", fullmatch=True)
addresses = st.none() | st.fixed_dictionaries(
    {
        "line1": optional_text,
        "line2": optional_text,
        "city": optional_text,
        "region": optional_text,
        "postal_code": st.none() | st.from_regex(r"[0-9A-Z]{3,10}", fullmatch=True),
        "country": st.sampled_from([None, "US", "GB", "AU", "FR"]),
    }
).filter(lambda a: any(v is not None for v in a.values()))


@given(
    name=optional_text,
    email=st.none() | emails,
    phone=st.none() | st.from_regex(r"\+?[0-9 ()-]{1,25}", fullmatch=True),
    company=optional_text,
    address=addresses,
    notes=st.none() | st.text(min_size=1, max_size=300).filter(str.strip),
)
def test_customer_round_trip_keeps_every_field(**data: Any) -> None:
    canonical, record = round_trip("customer", data, {})
    assert record.data == canonical


quantities = st.decimals(min_value=0, max_value=100_000, places=4, allow_nan=False)
currencies = st.sampled_from(["USD", "JPY", "KWD", "EUR", "GBP"])


@given(
    number=st.none() | st.from_regex(r"[A-Z0-9-]{1,21}", fullmatch=True),
    currency=currencies,
    issued_on=st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    due_on=st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    lines=st.lists(
        st.fixed_dictionaries(
            {
                "description": st.none() | text,
                "quantity": quantities,
                "unit_amount": st.integers(0, 10**9),
            }
        ),
        min_size=1,
        max_size=5,
    ),
    tax=st.integers(0, 10**9),
    customer=st.from_regex(r"[1-9][0-9]{0,5}", fullmatch=True),
)
def test_invoice_round_trip_keeps_every_field_both_sides_have(customer: str, **data: Any) -> None:
    canonical, record = round_trip("invoice", data, {"customer_id": customer})
    assert record.refs == {"customer_id": customer}
    for field in ("number", "currency", "issued_on", "due_on", "tax"):
        assert record.data[field] == canonical[field], field
    got = ENTITY_MODELS["invoice"].model_validate({"lines": record.data["lines"]})
    want = ENTITY_MODELS["invoice"].model_validate({"lines": canonical["lines"]})
    assert got == want


@given(
    amount=st.integers(1, 10**12),
    currency=currencies,
    day=st.dates(date(2000, 1, 1), date(2100, 1, 1)),
    reference=st.none() | st.from_regex(r"[A-Za-z0-9]{1,21}", fullmatch=True),
    customer=st.from_regex(r"[1-9][0-9]{0,5}", fullmatch=True),
    invoice=st.from_regex(r"[1-9][0-9]{0,5}", fullmatch=True),
)
def test_payment_round_trip_keeps_every_field_both_sides_have(
    *, amount: int, currency: str, day: date, reference: str | None, customer: str, invoice: str
) -> None:
    data = {
        "amount": amount,
        "currency": currency,
        "paid_at": datetime.combine(day, time(), UTC),
        "reference": reference,
    }
    refs = {"customer_id": customer, "invoice_id": invoice}
    canonical, record = round_trip("payment", data, refs)
    assert record.refs == refs
    for field in ("amount", "currency", "paid_at", "reference"):
        assert record.data[field] == canonical[field], field


def test_cleared_fields_are_sent_as_empty_and_read_back_as_none() -> None:
    data = {"email": None, "phone": None, "notes": None, "address": None, "company": None}
    body = MAPPER.from_canonical("customer", data, {}, SETTINGS)
    assert body["PrimaryEmailAddr"] == {"Address": ""}
    assert body["Notes"] == ""
    assert "DisplayName" not in body  # QuickBooks cannot clear a customer's name
    record = MAPPER.to_canonical("customer", stored(body | {"DisplayName": "A"}), SETTINGS)
    assert {k: record.data[k] for k in data} == data


def test_fields_longer_than_quickbooks_keeps_are_cut_or_refused() -> None:
    body = MAPPER.from_canonical("customer", {"notes": "n" * 5000}, {}, SETTINGS)
    assert len(body["Notes"]) == 2000
    with pytest.raises(MappingError) as caught:
        MAPPER.from_canonical("customer", {"email": f"{'a' * 60}@{'b' * 60}.com"}, {}, SETTINGS)
    assert caught.value.detail.startswith("email")
    with pytest.raises(MappingError):
        MAPPER.from_canonical("invoice", {"number": "N" * 22}, {}, SETTINGS)


def test_lines_without_any_currency_are_refused() -> None:
    data = {"lines": [{"quantity": "1", "unit_amount": 100}]}
    with pytest.raises(MappingError) as caught:
        MAPPER.from_canonical("invoice", data, {}, {"realm_id": REALM})
    assert caught.value.detail.startswith("lines")


def test_negative_single_line_goes_out_as_a_discount_and_comes_back() -> None:
    data = {"currency": "USD", "lines": [{"quantity": "1", "unit_amount": -250}]}
    body = MAPPER.from_canonical("invoice", data, {}, SETTINGS)
    assert body["Line"][0]["DetailType"] == "DiscountLineDetail"
    record = MAPPER.to_canonical("invoice", stored(body, TotalAmt=0, Balance=0), SETTINGS)
    assert record.data["lines"][0]["unit_amount"] == -250


def test_invoice_line_books_to_the_configured_item() -> None:
    data = {"currency": "USD", "lines": [{"quantity": "1", "unit_amount": 100}]}
    body = MAPPER.from_canonical("invoice", data, {}, SETTINGS | {"item_id": "7"})
    assert body["Line"][0]["SalesItemLineDetail"]["ItemRef"] == {"value": "7"}


def test_connector_wires_the_mapper_api_and_simulator() -> None:
    assert isinstance(CONNECTOR.mapper, Mapper)
    assert CONNECTOR.api is not None
    assert CONNECTOR.api.entity_types == ("customer", "invoice", "payment")
    assert CONNECTOR.api.rate_limit.per_second == pytest.approx(500 / 60)
    assert simulator_for("quickbooks").provider == "quickbooks"


def test_an_invoice_without_lines_is_held_back_from_quickbooks() -> None:
    # QuickBooks takes no invoice without a Line (its simulator answers "Required param
    # missing, need to supply the required value for the API: Line"): held, not sent.
    api = CONNECTOR.api
    assert api is not None
    assert api.holds_back is not None
    why = api.holds_back("invoice", {"number": "INV-1", "status": "open", "lines": []})
    assert why is not None
    assert "line" in why
    assert api.holds_back("invoice", {"status": "draft"}) is not None
    lines = [{"description": "Callout", "quantity": "1", "unit_amount": 15000}]
    assert api.holds_back("invoice", {"status": "open", "lines": lines}) is None
    assert api.holds_back("customer", {"name": "Harbour Plumbing"}) is None
