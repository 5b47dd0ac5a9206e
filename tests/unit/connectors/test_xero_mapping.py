"""Xero mapping: documented webhooks to items, API objects to canonical data and back."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.spec import EntityType, MappingError
from connectors.xero import CONNECTOR
from connectors.xero.mapping import (
    Mapper,
    from_minor,
    json_number,
    parse_date,
    parse_datetime,
    to_minor,
    wcf_datetime,
)
from schemas.records import ENTITY_MODELS

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "xero").glob("*.json"))
TENANT = "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f"
SETTINGS: dict[str, Any] = {
    "xero_tenant_id": TENANT,
    "xero_payment_account_code": "090",
    "xero_base_currency": "NZD",
}
MAPPER = Mapper()


def event(**overrides: Any) -> dict[str, Any]:
    base = {
        "resourceUrl": "https://api.xero.com/api.xro/2.0/Contacts/c1",
        "resourceId": "c1",
        "eventDateUtc": "2024-06-21T01:15:39.902",
        "eventType": "UPDATE",
        "eventCategory": "CONTACT",
        "tenantId": TENANT,
        "tenantType": "ORGANISATION",
    }
    return {**base, **overrides}


def envelope(*events: dict[str, Any], first: int = 1, entropy: str = "ABCDEFGHIJ") -> bytes:
    body = {
        "events": list(events),
        "firstEventSequence": first,
        "lastEventSequence": first + max(len(events) - 1, 0),
        "entropy": entropy,
    }
    return json.dumps(body).encode()


def parse(body: bytes, settings: dict[str, Any] | None = None) -> Any:
    return MAPPER.parse_webhook(body, {"content-type": "application/json"}, settings or SETTINGS)


def mapping_error(call: Any, *args: Any) -> MappingError:
    with pytest.raises(MappingError) as caught:
        call(*args)
    return caught.value


# --- documented webhooks ----------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_documented_webhook_maps_to_the_expected_items(path: Path) -> None:
    fixture = json.loads(path.read_text())
    parsed = parse(json.dumps(fixture["body"]).encode())
    got = []
    for item in parsed.items:
        assert item.record is None  # Xero's webhooks are thin
        obj = fixture["api_objects"][item.entity_type][item.external_id]
        record = MAPPER.to_canonical(item.entity_type, obj, SETTINGS)
        assert record.external_id == item.external_id
        ENTITY_MODELS[item.entity_type].model_validate(record.data)
        got.append((item, record))
    assert len(got) == len(fixture["expected"])
    for (item, record), expected in zip(got, fixture["expected"], strict=True):
        assert (item.entity_type, item.external_id, item.op) == (
            expected["entity_type"],
            expected["external_id"],
            expected["op"],
        )
        assert {key: record.data.get(key) for key in expected["data"]} == expected["data"]
        assert record.refs == expected["refs"]
        assert not {"customer_id", "job_id", "invoice_id"} & record.data.keys()


def test_credit_note_events_are_counted_as_ignored() -> None:
    fixture = json.loads((FIXTURES[0].parent / "credit_note_create.json").read_text())
    parsed = parse(json.dumps(fixture["body"]).encode())
    assert (parsed.items, parsed.ignored) == ((), 1)


def test_documented_contact_update_time_and_timestamps_are_utc() -> None:
    fixture = json.loads((FIXTURES[0].parent / "contact_update.json").read_text())
    (item,) = parse(json.dumps(fixture["body"]).encode()).items
    assert item.occurred_at == datetime(2024, 6, 21, 1, 15, 39, 902_000, tzinfo=UTC)
    contact = fixture["api_objects"]["customer"][item.external_id]
    record = MAPPER.to_canonical("customer", contact, SETTINGS)
    assert record.updated_at == datetime(2017, 3, 1, 18, 3, 42, 280_000, tzinfo=UTC)
    assert (record.deleted, record.version) == (False, None)


# --- webhook items -------------------------------------------------------------------------


def test_intent_to_receive_has_no_items() -> None:
    parsed = parse(envelope(first=0))
    assert (parsed.items, parsed.ignored) == ((), 0)


def test_event_ids_survive_a_redelivery_that_batches_differently() -> None:
    contact, invoice = event(), event(eventCategory="INVOICE", resourceId="i1")
    alone = parse(envelope(contact, first=7, entropy="FIRSTTRY"))
    batched = parse(envelope(invoice, contact, first=40, entropy="SECONDTRY"))
    assert alone.items[0].event_id == batched.items[1].event_id
    assert batched.items[0].event_id != batched.items[1].event_id


def test_each_change_of_a_resource_gets_its_own_event_id() -> None:
    first = event(eventType="CREATE")
    later = event(eventDateUtc="2024-06-21T01:15:40.001")
    ids = {item.event_id for item in parse(envelope(first, later)).items}
    assert len(ids) == 2


def test_create_and_update_both_upsert_and_categories_pick_the_entity() -> None:
    parsed = parse(
        envelope(
            event(eventType="CREATE"),
            event(eventType="update", eventCategory="INVOICE", resourceId="i1"),
        )
    )
    assert [(i.entity_type, i.external_id, i.op) for i in parsed.items] == [
        ("customer", "c1", "upsert"),
        ("invoice", "i1", "upsert"),
    ]


def test_unknown_categories_are_ignored_even_from_the_application_tenant() -> None:
    subscription = event(eventCategory="SUBSCRIPTION", tenantId="app-id", tenantType="APPLICATION")
    parsed = parse(envelope(subscription, event(), event(eventCategory="PREPAYMENT")))
    assert (len(parsed.items), parsed.ignored) == (1, 2)


def test_rejects_an_event_for_another_tenant() -> None:
    body = envelope(event(), event(tenantId="someone-else"))
    error = mapping_error(parse, body)
    assert error.reason == "tenant_mismatch"
    assert error.detail.startswith("events.1.tenantId")


def test_rejects_webhooks_for_a_connection_without_a_tenant_id() -> None:
    error = mapping_error(parse, envelope(event()), {"xero_tenant_id": ""})
    assert error.reason == "tenant_mismatch"
    assert "settings.xero_tenant_id" in error.detail


@pytest.mark.parametrize(
    ("body", "reason", "path"),
    [
        (b"not json", "unparseable", "body"),
        (b"[]", "schema_violation", "body"),
        (b'{"entropy": "x"}', "schema_violation", "events"),
        (b'{"events": {}}', "schema_violation", "events"),
        (b'{"events": ["x"]}', "schema_violation", "events.0"),
        (envelope({"resourceId": "c1"}), "schema_violation", "events.0.eventCategory"),
        (envelope(event(resourceId="")), "schema_violation", "events.0.resourceId"),
        (envelope(event(resourceId=None)), "schema_violation", "events.0.resourceId"),
        (envelope(event(eventDateUtc="yesterday")), "schema_violation", "events.0.eventDateUtc"),
        (envelope(event(eventType="DELETE")), "unknown_event_type", "events.0.eventType"),
    ],
    ids=[
        "not-json",
        "array",
        "no-events",
        "events-object",
        "event-string",
        "no-category",
        "blank-id",
        "null-id",
        "bad-date",
        "unknown-type",
    ],
)
def test_rejects_malformed_bodies_naming_the_path(body: bytes, reason: str, path: str) -> None:
    error = mapping_error(parse, body)
    assert error.reason == reason
    assert error.detail.split(":")[0] == path


def test_connector_wires_the_xero_mapper_and_api() -> None:
    assert isinstance(CONNECTOR.mapper, Mapper)
    assert CONNECTOR.api is not None
    assert CONNECTOR.api.entity_types == ("customer", "invoice", "payment")
    assert CONNECTOR.api.auth_kind == "oauth2"


# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/Date(1573755038314+0000)/", datetime(2019, 11, 14, 18, 10, 38, 314_000, tzinfo=UTC)),
        # The offset is how Xero would display it; the milliseconds are already UTC.
        ("/Date(1573755038314+1300)/", datetime(2019, 11, 14, 18, 10, 38, 314_000, tzinfo=UTC)),
        ("/Date(1573755038314)/", datetime(2019, 11, 14, 18, 10, 38, 314_000, tzinfo=UTC)),
        ("2019-11-14T00:00:00", datetime(2019, 11, 14, tzinfo=UTC)),
        ("2019-11-14T13:00:00+13:00", datetime(2019, 11, 14, tzinfo=UTC)),
        ("2024-06-21T01:15:39.902Z", datetime(2024, 6, 21, 1, 15, 39, 902_000, tzinfo=UTC)),
    ],
)
def test_reads_both_xero_date_spellings_as_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text, "UpdatedDateUTC")
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["/Date(abc)/", "14/11/2019", "", 1573755038314])
def test_rejects_what_is_not_a_xero_date(text: object) -> None:
    assert mapping_error(parse_datetime, text, "Date").reason == "schema_violation"


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1)))
def test_wcf_dates_round_trip_to_the_millisecond(moment: datetime) -> None:
    aware = moment.replace(microsecond=moment.microsecond // 1000 * 1000, tzinfo=UTC)
    assert parse_datetime(wcf_datetime(aware), "UpdatedDateUTC") == aware


def test_date_string_wins_over_the_wcf_date() -> None:
    invoice = invoice_object(Date="/Date(0+0000)/", DateString="2019-11-14T00:00:00")
    assert MAPPER.to_canonical("invoice", invoice, SETTINGS).data["issued_on"] == "2019-11-14"
    assert parse_date("/Date(1573689600000+0000)/", "Date") == date(2019, 11, 14)


# --- money ---------------------------------------------------------------------------------


def test_decimal_amounts_that_floats_cannot_hold_stay_exact() -> None:
    # 0.1 + 0.2 != 0.3 in binary floating point; in minor units it must be 30 exactly.
    parts = [to_minor(x, "USD", "Amount") for x in json.loads("[0.1, 0.2]")]
    assert sum(parts) == 30 == to_minor(json.loads("0.3"), "USD", "Amount")
    assert to_minor(Decimal("0.30"), "USD", "Amount") == 30
    assert json.dumps(from_minor(30, "USD", "Amount")) == "0.3"


@pytest.mark.parametrize(
    ("amount", "currency", "minor"),
    [
        (1500, "JPY", 1500),
        (Decimal("1500"), "JPY", 1500),
        (1.5, "USD", 150),
        ("1.234", "KWD", 1234),
        (2025.0, "NZD", 202500),
        (-12.5, "NZD", -1250),
    ],
)
def test_converts_with_the_currency_exponent(amount: object, currency: str, minor: int) -> None:
    assert to_minor(amount, currency, "Amount") == minor
    assert Decimal(str(from_minor(minor, currency, "Amount"))) == Decimal(str(amount))


def test_jpy_amounts_are_sent_as_whole_numbers() -> None:
    assert json.dumps(from_minor(1500, "JPY", "Amount")) == "1500"


@pytest.mark.parametrize(
    ("amount", "currency"), [(1500.5, "JPY"), (0.001, "USD"), (True, "USD"), ("abc", "USD")]
)
def test_rejects_amounts_that_are_not_whole_minor_units(amount: object, currency: str) -> None:
    error = mapping_error(to_minor, amount, currency, "LineItems.0.UnitAmount")
    assert error.reason == "schema_violation"
    assert error.detail.startswith("LineItems.0.UnitAmount")


def test_refuses_to_send_an_amount_a_json_number_would_round() -> None:
    assert from_minor(10**17, "USD", "Amount") == 10**15
    error = mapping_error(json_number, Decimal("1000000000000000.01"), "data.amount")
    assert error.detail.startswith("data.amount")


def test_invoice_amount_with_more_places_than_the_currency_is_rejected() -> None:
    invoice = invoice_object()
    invoice["LineItems"][0]["UnitAmount"] = 10.005
    error = mapping_error(MAPPER.to_canonical, "invoice", invoice, SETTINGS)
    assert error.detail.startswith("LineItems.0.UnitAmount")


# --- API objects ---------------------------------------------------------------------------


def invoice_object(**overrides: Any) -> dict[str, Any]:
    base = {
        "Type": "ACCREC",
        "InvoiceID": "i1",
        "InvoiceNumber": "INV-0001",
        "Contact": {"ContactID": "c1", "Name": "Bayside Club"},
        "DateString": "2024-03-01T00:00:00",
        "Date": "/Date(1709251200000+0000)/",
        "Status": "AUTHORISED",
        "LineAmountTypes": "Exclusive",
        "LineItems": [
            {"Description": "Labour", "Quantity": 2.5, "UnitAmount": 85.0, "TaxAmount": 31.88}
        ],
        "CurrencyCode": "NZD",
        "SubTotal": 212.5,
        "TotalTax": 31.88,
        "Total": 244.38,
        "AmountDue": 244.38,
        "UpdatedDateUTC": "/Date(1709251200000+0000)/",
    }
    return {**base, **overrides}


def contact_object(**overrides: Any) -> dict[str, Any]:
    base = {"ContactID": "c1", "Name": "Bayside Club", "UpdatedDateUTC": "/Date(0+0000)/"}
    return {**base, **overrides}


def test_archived_contacts_are_deleted() -> None:
    record = MAPPER.to_canonical("customer", contact_object(ContactStatus="ARCHIVED"), SETTINGS)
    assert record.deleted is True
    assert record.data["name"] == "Bayside Club"


def test_a_contact_without_a_person_is_named_by_its_name() -> None:
    record = MAPPER.to_canonical("customer", contact_object(EmailAddress=""), SETTINGS)
    assert record.data == {"name": "Bayside Club", "email": None, "phone": None, "address": None}


def test_street_address_wins_and_free_text_countries_are_dropped() -> None:
    contact = contact_object(
        Addresses=[
            {"AddressType": "POBOX", "AddressLine1": "PO Box 1", "Country": "NZ"},
            {
                "AddressType": "STREET",
                "AddressLine1": "1 Quay St",
                "AddressLine2": "Level 2",
                "AddressLine3": "Suite 5",
                "City": "Auckland",
                "Country": "New Zealand",
            },
        ]
    )
    address = MAPPER.to_canonical("customer", contact, SETTINGS).data["address"]
    assert address == {"line1": "1 Quay St", "line2": "Level 2, Suite 5", "city": "Auckland"}


@pytest.mark.parametrize(
    ("status", "canonical", "deleted"),
    [
        ("DRAFT", "draft", False),
        ("SUBMITTED", "draft", False),
        ("AUTHORISED", "open", False),
        ("PAID", "paid", False),
        ("VOIDED", "void", False),
        ("DELETED", "void", True),
    ],
)
def test_invoice_states(status: str, canonical: str, deleted: bool) -> None:
    record = MAPPER.to_canonical("invoice", invoice_object(Status=status), SETTINGS)
    assert (record.data["status"], record.deleted) == (canonical, deleted)


def test_invoice_totals_and_lines_are_minor_units() -> None:
    record = MAPPER.to_canonical("invoice", invoice_object(), SETTINGS)
    assert record.data["lines"] == [
        {"description": "Labour", "quantity": "2.5", "unit_amount": 8500, "tax_amount": 3188}
    ]
    assert (record.data["subtotal"], record.data["tax"], record.data["total"]) == (
        21250,
        3188,
        24438,
    )
    assert record.refs == {"customer_id": "c1"}


def test_a_negative_quantity_moves_its_sign_to_the_unit_amount() -> None:
    invoice = invoice_object(
        LineItems=[{"Description": "Refund", "Quantity": -1, "UnitAmount": 20, "TaxAmount": 0}]
    )
    (line,) = MAPPER.to_canonical("invoice", invoice, SETTINGS).data["lines"]
    assert (line["quantity"], line["unit_amount"]) == ("1", -2000)


def test_bills_are_not_sales_invoices() -> None:
    error = mapping_error(MAPPER.to_canonical, "invoice", invoice_object(Type="ACCPAY"), SETTINGS)
    assert (error.reason, error.detail.split(":")[0]) == ("unsupported_entity", "Invoice.Type")


def test_xero_has_no_jobs() -> None:
    assert mapping_error(MAPPER.to_canonical, "job", {}, SETTINGS).reason == "unsupported_entity"
    error = mapping_error(MAPPER.from_canonical, "job", {}, {}, SETTINGS)
    assert error.reason == "unsupported_entity"


DOCUMENTED_PAYMENT = {
    "PaymentID": "b26fd49a-cbae-470a-a8f8-bcbc119e0379",
    "Date": "/Date(1455667200000+0000)/",
    "BankAmount": 500.00,
    "Amount": 500.00,
    "Reference": "INV-0001",
    "CurrencyRate": 1.000000,
    "PaymentType": "ACCRECPAYMENT",
    "Status": "AUTHORISED",
    "UpdatedDateUTC": "/Date(1289572582537+0000)/",
    "HasAccount": True,
    "IsReconciled": True,
    "Account": {"AccountID": "ac993f75-035b-433c-82e0-7b7a2d40802c", "Code": "090"},
    "Invoice": {
        "Type": "ACCREC",
        "InvoiceID": "b0875d8b-ff26-4ce8-8aea-6955492ead48",
        "InvoiceNumber": "INV-0001",
        "Contact": {"ContactID": "fef6755f-549b-4617-b1e9-60bdffb517d8", "Name": "Ridgeway"},
    },
}


def test_documented_payment_on_a_base_currency_invoice() -> None:
    # developer.xero.com/documentation/api/accounting/payments: GET Payments/{id} example.
    record = MAPPER.to_canonical("payment", DOCUMENTED_PAYMENT, SETTINGS)
    assert record.data == {
        "amount": 50000,
        "currency": "NZD",
        "status": "succeeded",
        "paid_at": "2016-02-17T00:00:00Z",
        "reference": "INV-0001",
    }
    assert record.refs == {
        "invoice_id": "b0875d8b-ff26-4ce8-8aea-6955492ead48",
        "customer_id": "fef6755f-549b-4617-b1e9-60bdffb517d8",
    }
    assert record.updated_at == datetime(2010, 11, 12, 14, 36, 22, 537_000, tzinfo=UTC)


def test_payment_currency_is_unknown_without_a_code_or_base_currency() -> None:
    settings = {"xero_tenant_id": TENANT}
    error = mapping_error(MAPPER.to_canonical, "payment", DOCUMENTED_PAYMENT, settings)
    assert error.detail.startswith("Invoice.CurrencyCode")
    foreign = {**DOCUMENTED_PAYMENT, "CurrencyRate": 0.75}
    error = mapping_error(MAPPER.to_canonical, "payment", foreign, SETTINGS)
    assert error.detail.startswith("Invoice.CurrencyCode")


def test_deleted_payments_are_deleted() -> None:
    deleted = {**DOCUMENTED_PAYMENT, "Status": "DELETED"}
    record = MAPPER.to_canonical("payment", deleted, SETTINGS)
    assert record.deleted is True
    assert "status" not in record.data


# --- canonical -> Xero -----------------------------------------------------------------------


def test_contact_body_is_what_xero_takes() -> None:
    data = {
        "name": "Andrea Dutchess",
        "company": "ABC Limited",
        "email": "a.dutchess@abclimited.com",
        "phone": "04 111 1111",
        "address": {"line1": "P O Box 123", "city": "Wellington", "country": "NZ"},
        "notes": "not kept by Xero",
    }
    body = MAPPER.from_canonical("customer", data, {}, SETTINGS)
    assert body == {
        "Name": "ABC Limited",
        "FirstName": "Andrea",
        "LastName": "Dutchess",
        "EmailAddress": "a.dutchess@abclimited.com",
        "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": "04 111 1111"}],
        "Addresses": [
            {
                "AddressType": "STREET",
                "AddressLine1": "P O Box 123",
                "AddressLine2": "",
                "City": "Wellington",
                "Region": "",
                "PostalCode": "",
                "Country": "NZ",
            }
        ],
    }


def test_invoice_body_is_what_xero_takes() -> None:
    data = {
        "number": "INV-9",
        "status": "paid",
        "currency": "JPY",
        "issued_on": "2024-03-01",
        "due_on": "2024-03-31",
        "lines": [{"description": "Visit", "quantity": "1.5", "unit_amount": 1200}],
        "total": 1800,
    }
    body = MAPPER.from_canonical("invoice", data, {"customer_id": "c1"}, SETTINGS)
    assert body == {
        "Type": "ACCREC",
        "Contact": {"ContactID": "c1"},
        "InvoiceNumber": "INV-9",
        "Status": "AUTHORISED",
        "CurrencyCode": "JPY",
        "Date": "2024-03-01",
        "DueDate": "2024-03-31",
        "LineAmountTypes": "Exclusive",
        "LineItems": [
            {
                "Description": "Visit",
                "Quantity": 1.5,
                "UnitAmount": 1200,
                "TaxAmount": 0,
                "AccountCode": "200",
            }
        ],
    }


def test_invoice_lines_need_a_currency() -> None:
    data = {"lines": [{"quantity": "1", "unit_amount": 100}]}
    error = mapping_error(MAPPER.from_canonical, "invoice", data, {}, SETTINGS)
    assert error.detail.startswith("data.currency")


def test_invalid_canonical_data_names_the_field() -> None:
    error = mapping_error(MAPPER.from_canonical, "customer", {"email": "nope"}, {}, SETTINGS)
    assert (error.reason, error.detail.split(":")[0]) == ("schema_violation", "data.email")


@pytest.mark.parametrize("status", ["pending", "failed", "refunded"])
def test_only_received_payments_are_pushed(status: str) -> None:
    data = {"amount": 100, "currency": "NZD", "status": status}
    error = mapping_error(MAPPER.from_canonical, "payment", data, {"invoice_id": "i1"}, SETTINGS)
    assert error.detail.startswith("data.status")


def test_payments_need_the_bank_account_setting() -> None:
    data = {"amount": 100, "currency": "NZD"}
    settings = {"xero_tenant_id": TENANT}
    error = mapping_error(MAPPER.from_canonical, "payment", data, {"invoice_id": "i1"}, settings)
    assert error.detail.startswith("settings.xero_payment_account_code")


# --- round trips -----------------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
_addresses = st.fixed_dictionaries(
    {},
    optional={
        "line1": _text,
        "line2": _text,
        "city": _text,
        "region": _text,
        "postal_code": st.text("0123456789ABC -", min_size=1, max_size=10),
        "country": st.sampled_from(["NZ", "AU", "GB", "US", "XK"]),
    },
).filter(bool)


@st.composite
def customers(draw: st.DrawFn) -> dict[str, Any]:
    data: dict[str, Any] = {"name": draw(_text)}
    company = draw(st.none() | _text.filter(lambda c: c != data["name"]))
    if company is not None:
        data["company"] = company
    data["email"] = draw(
        st.none() | st.from_regex(r"[a-z0-9._]{1,12}@[a-z]{1,10}\.[a-z]{2,5}", fullmatch=True)
    )
    data["phone"] = draw(st.none() | st.text("0123456789 +()-", min_size=1, max_size=20))
    data["address"] = draw(st.none() | _addresses)
    return data


CURRENCIES = st.sampled_from(["NZD", "USD", "JPY", "KWD", "EUR"])
_quantities = st.decimals(min_value=0, max_value=100_000, places=4)
_lines = st.fixed_dictionaries(
    {
        "quantity": _quantities,
        "unit_amount": st.integers(-(10**11), 10**11),
        "tax_amount": st.integers(0, 10**10),
    },
    optional={"description": _text},
)


@st.composite
def invoices(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "number": draw(_text),
        "status": draw(st.sampled_from(["draft", "open", "void"])),
        "currency": draw(CURRENCIES),
        "issued_on": draw(st.dates(date(2000, 1, 1), date(2100, 1, 1))),
        "due_on": draw(st.dates(date(2000, 1, 1), date(2100, 1, 1))),
        "lines": draw(st.lists(_lines, max_size=4)),
    }


@st.composite
def payments(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(st.dates(date(2000, 1, 1), date(2100, 1, 1)))
    return {
        "amount": draw(st.integers(1, 10**12)),
        "currency": draw(CURRENCIES),
        "status": "succeeded",
        "paid_at": datetime.combine(day, time(), tzinfo=UTC),
        "reference": draw(_text),
    }


STORED = {
    "customer": {"ContactID": "c1", "UpdatedDateUTC": "/Date(1709251200000+0000)/"},
    "invoice": {"InvoiceID": "i1", "UpdatedDateUTC": "/Date(1709251200000+0000)/"},
    "payment": {
        "PaymentID": "p1",
        "Status": "AUTHORISED",
        "PaymentType": "ACCRECPAYMENT",
        "UpdatedDateUTC": "/Date(1709251200000+0000)/",
    },
}


def round_trip(entity_type: EntityType, raw: dict[str, Any], refs: dict[str, str]) -> None:
    model = ENTITY_MODELS[entity_type]
    canonical = model.model_validate(raw).model_dump(mode="json", exclude_unset=True)
    body = MAPPER.from_canonical(entity_type, canonical, refs, SETTINGS)
    # What Xero stores is the body plus its own id and timestamp (the JSON trip included).
    stored = {**json.loads(json.dumps(body)), **STORED[entity_type]}
    back = MAPPER.to_canonical(entity_type, stored, SETTINGS)
    before, after = model.model_validate(canonical), model.model_validate(back.data)
    for key in canonical:
        assert getattr(after, key) == getattr(before, key), key
    assert back.refs.items() >= refs.items()


@given(customers())
def test_customers_round_trip(data: dict[str, Any]) -> None:
    round_trip("customer", data, {})


@given(invoices())
def test_invoices_round_trip(data: dict[str, Any]) -> None:
    round_trip("invoice", data, {"customer_id": "c1"})


@given(payments())
def test_payments_round_trip(data: dict[str, Any]) -> None:
    round_trip("payment", data, {"invoice_id": "i1"})


def _lines_add_up(data: dict[str, Any]) -> None:
    """What any system pushing these lines bills: the rounded line amounts plus their tax."""
    from schemas.records import line_amount  # noqa: PLC0415 - only this check needs it

    lines = data["lines"]
    net = sum(line_amount(Decimal(str(ln["quantity"])), ln["unit_amount"]) for ln in lines)
    tax = sum(ln["tax_amount"] for ln in lines)
    assert (net, tax, net + tax) == (data["subtotal"], data["tax"], data["total"])


@pytest.mark.parametrize(
    ("line", "totals", "expected"),
    [
        pytest.param(
            # Xero: UnitAmount 115.00 including 15.00 GST, two of them: SubTotal 200, tax 30.
            {"Quantity": 2.0, "UnitAmount": 115.0, "TaxAmount": 30.0, "LineAmount": 230.0},
            (200.0, 30.0, 230.0),
            {"quantity": "2", "unit_amount": 10_000, "tax_amount": 3_000},
            id="tax-exclusive-unit-amounts",
        ),
        pytest.param(
            # 3 x 10.00 including 3.91 tax: 26.09 net does not divide by 3 in cents, so the
            # line is one of its net amount.
            {"Quantity": 3.0, "UnitAmount": 10.0, "TaxAmount": 3.91, "LineAmount": 30.0},
            (26.09, 3.91, 30.0),
            {"quantity": "1", "unit_amount": 2_609, "tax_amount": 391},
            id="net-unit-not-whole",
        ),
    ],
)
def test_tax_inclusive_lines_become_tax_exclusive(
    line: dict[str, float], totals: tuple[float, float, float], expected: dict[str, Any]
) -> None:
    subtotal, tax, total = totals
    invoice = invoice_object(
        LineAmountTypes="Inclusive",
        LineItems=[line],
        SubTotal=subtotal,
        TotalTax=tax,
        Total=total,
        AmountDue=total,
    )
    record = MAPPER.to_canonical("invoice", invoice, SETTINGS)
    assert record.data["lines"] == [expected]
    _lines_add_up(record.data)


def test_no_tax_lines_carry_no_tax() -> None:
    # Xero ignores a line's TaxAmount on a NoTax invoice: TotalTax is 0.
    invoice = invoice_object(
        LineAmountTypes="NoTax",
        LineItems=[{"Quantity": 1.0, "UnitAmount": 50.0, "TaxAmount": 7.5}],
        SubTotal=50.0,
        TotalTax=0.0,
        Total=50.0,
        AmountDue=50.0,
    )
    record = MAPPER.to_canonical("invoice", invoice, SETTINGS)
    assert record.data["lines"][0]["tax_amount"] == 0
    _lines_add_up(record.data)
