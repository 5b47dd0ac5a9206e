"""Ascora mapping: documented-shape fixtures, round trips, malformed bodies, exact money."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.ascora import CONNECTOR
from connectors.ascora.mapping import Mapper
from connectors.ascora.money import to_decimal_string, to_minor
from connectors.spec import EntityType, MappingError
from schemas.records import ENTITY_MODELS

FIXTURES = sorted((Path(__file__).parents[2] / "fixtures" / "ascora").glob("*.json"))
MAPPER = Mapper()
HEADERS = {"content-type": "application/json", "webhook-id": "msg_2bKf9xQ"}
SETTINGS: dict[str, Any] = {"company_code": "DEMO"}
STAMP = "2026-02-17T20:48:03.000Z"


def parse(body: object, headers: dict[str, str] = HEADERS) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return MAPPER.parse_webhook(raw, headers, SETTINGS)


def failure(body: object, headers: dict[str, str] = HEADERS) -> MappingError:
    with pytest.raises(MappingError) as caught:
        parse(body, headers)
    return caught.value


def envelope(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event_type, "timestamp": "2026-02-17T20:48:03.512Z", "data": data}


def load(path: Path) -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads(path.read_text())
    return fixture


# --- fixtures --------------------------------------------------------------------------------


def test_fixtures_exist_for_every_synced_entity_and_an_ignored_family() -> None:
    types = {load(p)["body"]["type"] for p in FIXTURES}
    assert {t.split(".")[0] for t in types} >= {"customer", "job", "invoice", "payment", "quote"}
    assert any(t.endswith(".deleted") for t in types)


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_parses_into_exactly_the_expected_items(path: Path) -> None:
    fixture = load(path)
    assert fixture["source"].startswith("https://")
    parsed = parse(fixture["body"])
    got = []
    for item in parsed.items:
        record = item.record
        if record is None:  # Ascora sends full records; only deletes come without one
            assert item.op == "delete"
            api_object = fixture["api_objects"].get(item.entity_type, {}).get(item.external_id)
            if api_object is not None:
                record = MAPPER.to_canonical(item.entity_type, api_object, SETTINGS)
        got.append(
            {
                "entity_type": item.entity_type,
                "external_id": item.external_id,
                "op": item.op,
                "data": record.data if record else {},
                "refs": record.refs if record else {},
            }
        )
        assert item.event_id == HEADERS["webhook-id"]
        assert item.occurred_at == datetime.fromisoformat(fixture["body"]["timestamp"])
        if record is not None:
            assert record.external_id == item.external_id
            assert record.updated_at.tzinfo is not None
            assert record.updated_at == datetime.fromisoformat(
                fixture["body"]["data"]["lastModified"]
            )
            assert not set(record.data) & {"customer_id", "job_id", "invoice_id"}
            ENTITY_MODELS[item.entity_type].model_validate(record.data)
    assert got == fixture["expected"]
    assert parsed.ignored == (0 if fixture["expected"] else 1)


def test_full_record_webhooks_need_no_api_objects() -> None:
    assert all(load(p)["api_objects"] == {} for p in FIXTURES)


def test_reads_payment_refs_and_converts_its_offset_to_utc() -> None:
    fixture = load(next(p for p in FIXTURES if p.stem == "payment_created"))
    record = parse(fixture["body"]).items[0].record
    assert record.refs == {
        "invoice_id": "0b6d3c52-5f0e-4d8e-9a57-3f1de2a0c7e4",
        "customer_id": "69703923-0f72-421f-a2ab-aeddc1c37f05",
    }
    assert record.data["paid_at"] == "2026-02-18T08:30:00Z"


def test_fixture_records_write_back_as_the_same_ascora_fields() -> None:
    fixture = load(next(p for p in FIXTURES if p.stem == "job_updated_completed"))
    obj = fixture["body"]["data"]
    record = MAPPER.to_canonical("job", obj, SETTINGS)
    body = MAPPER.from_canonical("job", record.data, record.refs, SETTINGS)
    assert body["jobName"] == obj["jobName"]
    assert body["jobDescription"] == obj["jobDescription"]
    assert body["status"] == obj["status"]
    assert body["customerId"] == obj["customerId"]
    assert body["country"] == "US"


# --- malformed bodies ------------------------------------------------------------------------


def test_rejects_a_body_that_is_not_json_as_unparseable() -> None:
    error = failure(b"{not json")
    assert (error.reason, error.detail) == ("unparseable", "body: not a JSON document")


def test_rejects_a_json_array_body() -> None:
    error = failure([envelope("customer.updated", {})])
    assert (error.reason, error.detail) == ("schema_violation", "body: expected a JSON object")


@pytest.mark.parametrize("missing", ["type", "timestamp", "data"])
def test_rejects_an_envelope_without_a_required_member(missing: str) -> None:
    body = envelope("customer.created", {"customerId": "c1", "lastModified": STAMP})
    del body[missing]
    error = failure(body)
    assert (error.reason, error.detail) == ("schema_violation", f"{missing}: missing")


def test_rejects_data_that_is_not_an_object() -> None:
    error = failure(envelope("customer.created", ["c1"]))  # type: ignore[arg-type]
    assert (error.reason, error.detail) == ("schema_violation", "data: expected an object")


def test_rejects_a_webhook_without_its_webhook_id() -> None:
    body = envelope("customer.deleted", {"customerId": "c1"})
    error = failure(body, {"content-type": "application/json"})
    assert (error.reason, error.detail) == ("schema_violation", "headers.webhook-id: missing")


@pytest.mark.parametrize(
    "event_type", ["widget.created", "job.archived", "customer", "Job.updated"]
)
def test_rejects_event_types_of_no_known_family_or_action(event_type: str) -> None:
    error = failure(envelope(event_type, {"jobId": "j1", "lastModified": STAMP}))
    assert error.reason == "unknown_event_type"
    assert event_type in error.detail


@pytest.mark.parametrize("event_type", ["quote.created", "note.updated", "lead.deleted"])
def test_ignores_families_ascora_sends_that_we_do_not_sync(event_type: str) -> None:
    parsed = parse(envelope(event_type, {"anything": True}))
    assert (parsed.items, parsed.ignored) == ((), 1)


def test_rejects_a_timestamp_without_an_offset() -> None:
    body = envelope("customer.deleted", {"customerId": "c1"})
    body["timestamp"] = "2026-02-17T20:48:03"
    error = failure(body)
    assert (error.reason, error.detail) == (
        "schema_violation",
        "timestamp: timestamp has no UTC offset",
    )


def test_rejects_a_record_without_last_modified() -> None:
    error = failure(envelope("customer.updated", {"customerId": "c1", "customerName": "A"}))
    assert (error.reason, error.detail) == ("schema_violation", "data.lastModified: missing")


def test_rejects_a_delete_without_the_record_id() -> None:
    error = failure(envelope("job.deleted", {"jobName": "x"}))
    assert (error.reason, error.detail) == ("schema_violation", "data.jobId: missing")


@pytest.mark.parametrize(
    ("event_type", "data", "detail"),
    [
        (
            "job.updated",
            {"jobId": "j1", "lastModified": STAMP, "status": "OnHold"},
            "data.status: 'OnHold' is not one of Draft, Scheduled",
        ),
        (
            "customer.updated",
            {"customerId": "c1", "lastModified": STAMP, "emailAddress": "not-an-email"},
            "data.emailAddress: ",
        ),
    ],
    ids=["unknown-job-status", "malformed-email"],
)
def test_rejects_a_value_ascora_does_not_allow_naming_its_field(
    event_type: str, data: dict[str, Any], detail: str
) -> None:
    error = failure(envelope(event_type, data))
    assert error.reason == "schema_violation"
    assert error.detail.startswith(detail)


@pytest.mark.parametrize("amount", [100.0, 100, "1e2", " 100.00", "1,000.00", "100.001"])
def test_rejects_amounts_that_are_not_exact_decimal_strings(amount: object) -> None:
    data = {
        "paymentId": "p1",
        "lastModified": STAMP,
        "currency": "AUD",
        "amount": amount,
    }
    error = failure(envelope("payment.created", data))
    assert error.reason == "schema_violation"
    assert error.detail.startswith("data.amount: ")


def test_rejects_amounts_without_a_currency() -> None:
    data = {"paymentId": "p1", "lastModified": STAMP, "amount": "10.00"}
    error = failure(envelope("payment.created", data))
    assert (error.reason, error.detail) == (
        "schema_violation",
        "data.currency: missing, amounts need it",
    )


def test_rejects_invoice_totals_that_do_not_add_up() -> None:
    data = {
        "invoiceId": "i1",
        "lastModified": STAMP,
        "currency": "AUD",
        "totalExTax": "10.00",
        "totalTax": "1.00",
        "totalIncTax": "11.01",
    }
    error = failure(envelope("invoice.updated", data))
    assert error.reason == "schema_violation"
    assert "must equal subtotal" in error.detail


def test_names_the_line_that_fails() -> None:
    data = {
        "invoiceId": "i1",
        "lastModified": STAMP,
        "currency": "AUD",
        "lines": [{"quantity": "1", "unitPrice": "5.00"}, {"quantity": 2, "unitPrice": "1"}],
    }
    error = failure(envelope("invoice.updated", data))
    assert (error.reason, error.detail) == (
        "schema_violation",
        "data.lines.1.quantity: expected a decimal string like '12.50'",
    )


def test_to_canonical_refuses_an_entity_ascora_does_not_have() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("quote", {}, SETTINGS)  # type: ignore[arg-type]
    assert caught.value.reason == "unsupported_entity"


# --- reading details -------------------------------------------------------------------------


def test_blank_text_reads_as_none_and_a_mobile_stands_in_for_a_missing_phone() -> None:
    obj = {
        "customerId": "c1",
        "lastModified": STAMP,
        "customerName": "",
        "contactFirstName": "Mia",
        "contactLastName": "Nguyen",
        "phoneNumber": "",
        "mobileNumber": "0412 345 678",
        "companyName": None,
    }
    data = MAPPER.to_canonical("customer", obj, SETTINGS).data
    assert data == {"name": "Mia Nguyen", "phone": "0412 345 678", "company": None}


def test_any_address_field_carries_the_whole_address() -> None:
    obj = {"customerId": "c1", "lastModified": STAMP, "streetCountry": "nz"}
    data = MAPPER.to_canonical("customer", obj, SETTINGS).data
    assert data["address"] == {
        "line1": None,
        "line2": None,
        "city": None,
        "region": None,
        "postal_code": None,
        "country": "NZ",
    }


def test_fields_the_object_omits_stay_unset() -> None:
    record = MAPPER.to_canonical("job", {"jobId": "j1", "lastModified": STAMP}, SETTINGS)
    assert record.data == {}
    assert record.refs == {}
    assert record.version is None


# --- writing ---------------------------------------------------------------------------------


def test_from_canonical_writes_only_the_given_fields_and_refs() -> None:
    body = MAPPER.from_canonical(
        "job", {"title": "Fix tap", "status": "in_progress"}, {"customer_id": "c9"}, SETTINGS
    )
    assert body == {"jobName": "Fix tap", "status": "InProgress", "customerId": "c9"}


def test_from_canonical_leaves_canonical_reference_ids_out() -> None:
    data = {"customer_id": "0f8fad5b-d9cb-469f-a165-70867728950e", "title": "Fix tap"}
    body = MAPPER.from_canonical("job", data, {}, SETTINGS)
    assert body == {"jobName": "Fix tap"}


def test_from_canonical_clears_an_address_with_nulls() -> None:
    body = MAPPER.from_canonical("customer", {"address": None}, {}, SETTINGS)
    assert body == {
        "streetLine1": None,
        "streetLine2": None,
        "streetSuburb": None,
        "streetState": None,
        "streetPostcode": None,
        "streetCountry": None,
    }


@pytest.mark.parametrize("status", ["paid", "overdue"])
def test_never_writes_invoice_statuses_ascora_derives(status: str) -> None:
    body = MAPPER.from_canonical("invoice", {"status": status, "number": "7"}, {}, SETTINGS)
    assert body == {"invoiceNumber": "7"}


def test_from_canonical_refuses_amounts_without_a_currency() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.from_canonical("payment", {"amount": 100}, {"invoice_id": "i1"}, SETTINGS)
    assert (caught.value.reason, caught.value.detail) == (
        "schema_violation",
        "data.currency: missing, amounts need it",
    )


def test_from_canonical_refuses_invalid_canonical_data() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.from_canonical("payment", {"amount": 1.5, "currency": "AUD"}, {}, SETTINGS)
    assert caught.value.reason == "schema_violation"
    assert caught.value.detail.startswith("data.amount: ")


# --- money -----------------------------------------------------------------------------------


def test_point_one_plus_point_two_is_exactly_thirty_cents() -> None:
    obj = {
        "invoiceId": "i1",
        "lastModified": STAMP,
        "currency": "AUD",
        "lines": [
            {"quantity": "1", "unitPrice": "0.10", "taxAmount": "0.01"},
            {"quantity": "1", "unitPrice": "0.20", "taxAmount": "0.02"},
        ],
        "totalExTax": "0.30",
        "totalTax": "0.03",
        "totalIncTax": "0.33",
        "balanceDue": "0.33",
    }
    data = MAPPER.to_canonical("invoice", obj, SETTINGS).data
    assert [line["unit_amount"] for line in data["lines"]] == [10, 20]
    assert (data["subtotal"], data["tax"], data["total"]) == (30, 3, 33)
    tenth, fifth = to_minor("0.10", "AUD", "x"), to_minor("0.20", "AUD", "x")
    assert tenth + fifth == to_minor("0.3", "AUD", "x") == 30


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("1500", "JPY", 1500),
        ("1500.00", "JPY", 1500),
        ("12.345", "KWD", 12345),
        ("0.0001", "CLF", 1),
        ("92233720368547758.07", "AUD", 2**63 - 1),
        ("-10.10", "AUD", -1010),
    ],
)
def test_reads_amounts_with_the_currency_exponent(text: str, currency: str, minor: int) -> None:
    assert to_minor(text, currency, "amount") == minor


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("1500.5", "JPY"),
        ("1.005", "AUD"),
        ("1.0000000000000000000000000000001", "AUD"),
        ("1.00", "XAU"),
    ],
)
def test_refuses_amounts_finer_than_the_currency_or_without_minor_units(
    text: str, currency: str
) -> None:
    with pytest.raises(MappingError) as caught:
        to_minor(text, currency, "data.amount")
    assert caught.value.reason == "schema_violation"
    assert caught.value.detail.startswith("data.amount: ")


def test_writes_amounts_with_exactly_the_currency_decimals() -> None:
    assert to_decimal_string(150000, "JPY", "a") == "150000"
    assert to_decimal_string(5, "AUD", "a") == "0.05"
    assert to_decimal_string(-1010, "AUD", "a") == "-10.10"
    assert to_decimal_string(12345, "KWD", "a") == "12.345"
    payment = MAPPER.from_canonical("payment", {"amount": 1500, "currency": "JPY"}, {}, SETTINGS)
    assert payment["amount"] == "1500"


@given(
    minor=st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    currency=st.sampled_from(["AUD", "JPY", "KWD", "CLF", "NZD", "ISK"]),
)
def test_amounts_survive_the_trip_through_decimal_strings(minor: int, currency: str) -> None:
    assert to_minor(to_decimal_string(minor, currency, "a"), currency, "a") == minor


# --- round trips: canonical -> Ascora -> canonical ------------------------------------------

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40)
maybe_text = st.none() | texts
moments = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 1, 1))
addresses = st.none() | st.fixed_dictionaries(
    {
        "line1": maybe_text,
        "line2": maybe_text,
        "city": maybe_text,
        "region": maybe_text,
        "postal_code": st.none() | st.text("0123456789", min_size=3, max_size=8),
        "country": st.none() | st.sampled_from(["AU", "NZ", "US", "GB", "XK"]),
    }
).filter(lambda a: any(v is not None for v in a.values()))


def optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=fields)


def canonical(entity_type: EntityType, data: dict[str, Any]) -> dict[str, Any]:
    dumped: dict[str, Any] = (
        ENTITY_MODELS[entity_type].model_validate(data).model_dump(mode="json", exclude_unset=True)
    )
    return dumped


def stored(entity_type: EntityType, body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``body`` as Ascora would return it after storing it: id and lastModified added."""
    id_field = {"customer": "customerId", "job": "jobId", "invoice": "invoiceId"}.get(
        entity_type, "paymentId"
    )
    return {**body, id_field: "id-1", "lastModified": STAMP, **extra}


def assert_round_trip(
    entity_type: EntityType, data: dict[str, Any], refs: dict[str, str], **extra: Any
) -> None:
    expected = canonical(entity_type, data)
    body = MAPPER.from_canonical(entity_type, expected, refs, SETTINGS)
    json.dumps(body)  # a real request body: JSON all the way down
    record = MAPPER.to_canonical(entity_type, stored(entity_type, body, **extra), SETTINGS)
    assert {k: v for k, v in record.data.items() if k in expected} == expected
    assert record.refs == refs


emails = st.from_regex(r"[a-z0-9]{1,10}@[a-z]{1,10}\.(com|com\.au|nz)", fullmatch=True)


@given(
    optional(
        {
            "name": maybe_text,
            "email": st.none() | emails,
            "phone": st.none() | st.text("0123456789 +()", min_size=1, max_size=20),
            "company": maybe_text,
            "notes": maybe_text,
            "address": addresses,
        }
    )
)
def test_customer_round_trip_keeps_every_field(data: dict[str, Any]) -> None:
    assert_round_trip("customer", data, {})


@given(
    optional(
        {
            "title": maybe_text,
            "description": maybe_text,
            "status": st.sampled_from(
                ["draft", "scheduled", "in_progress", "completed", "cancelled"]
            ),
            "priority": st.sampled_from(["low", "normal", "high", "urgent"]),
            "site_address": addresses,
        }
    ),
    st.one_of(st.none(), st.tuples(moments, moments).map(sorted)),
    st.dictionaries(st.just("customer_id"), st.uuids().map(str)),
)
def test_job_round_trip_keeps_every_field(
    data: dict[str, Any], schedule: list[datetime] | None, refs: dict[str, str]
) -> None:
    if schedule is not None:
        data = data | {"scheduled_start": schedule[0], "scheduled_end": schedule[1]}
    assert_round_trip("job", data, refs)


lines = st.lists(
    st.fixed_dictionaries(
        {
            "description": maybe_text,
            "quantity": st.decimals(min_value=0, max_value=10_000, places=3),
            "unit_amount": st.integers(min_value=-(10**9), max_value=10**9),
            "tax_amount": st.integers(min_value=-(10**8), max_value=10**8),
        }
    ),
    max_size=4,
)


@given(
    optional(
        {
            "number": maybe_text,
            "status": st.sampled_from(["draft", "open", "void"]),
            "issued_on": days,
            "due_on": days,
            "lines": lines,
        }
    ),
    st.sampled_from(["AUD", "JPY", "KWD", "NZD"]),
    st.fixed_dictionaries(
        {"customer_id": st.uuids().map(str)}, optional={"job_id": st.uuids().map(str)}
    ),
)
def test_invoice_round_trip_keeps_every_written_field(
    data: dict[str, Any], currency: str, refs: dict[str, str]
) -> None:
    assert_round_trip("invoice", data | {"currency": currency}, refs)


@given(
    optional(
        {
            "status": st.sampled_from(["pending", "succeeded", "failed", "refunded"]),
            "method": st.none() | st.sampled_from(["Card", "Cash", "BankTransfer"]),
            "paid_at": moments,
            "reference": maybe_text,
        }
    ),
    st.integers(min_value=1, max_value=2**63 - 1),
    st.sampled_from(["AUD", "JPY", "BHD"]),
)
def test_payment_round_trip_keeps_every_field(
    data: dict[str, Any], amount: int, currency: str
) -> None:
    refs = {"invoice_id": "inv-1", "customer_id": "cus-1"}
    assert_round_trip("payment", data | {"amount": amount, "currency": currency}, refs)


def test_connector_exposes_the_mapper_and_api() -> None:
    assert isinstance(CONNECTOR.mapper, Mapper)
    assert CONNECTOR.api is not None
    assert CONNECTOR.api.deletable == ("customer", "job", "invoice", "payment")
    assert Decimal(CONNECTOR.api.rate_limit.per_second) == Decimal(10)
