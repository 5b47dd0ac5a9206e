"""The generic connector's mapping file and mapper, driven by the AcmeCRM example."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.generic import api_spec, connector_for, load_mapping_file, mapping_settings
from connectors.generic.config import GenericMapping, MappingFileError
from connectors.generic.mapping import Mapper
from connectors.generic.paths import MISSING, read, select, write
from connectors.simulators import simulator_for
from connectors.spec import MappingError
from schemas.records import ENTITY_MODELS

ROOT = Path(__file__).resolve().parents[3]
ACME = ROOT / "connectors" / "generic" / "examples" / "acme.json"
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "generic").glob("*.json"))
SIGNATURE, MAPPING = load_mapping_file(ACME)
SETTINGS: dict[str, Any] = {
    "generic": SIGNATURE.model_dump(mode="json"),
    "generic_mapping": mapping_settings(MAPPING),
}
MAPPER = Mapper()


def body_of(document: Any) -> bytes:
    return json.dumps(document).encode()


def acme_raw() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(ACME.read_text())
    return loaded


def with_mapping(change: dict[str, Any]) -> dict[str, Any]:
    """SETTINGS with the mapping part replaced by ``change`` applied to acme.json."""
    raw = acme_raw()
    raw.pop("signature")
    raw.update(change)
    return {"generic": SETTINGS["generic"], "generic_mapping": raw}


# --- the mapping file --------------------------------------------------------------------------


def test_loads_the_acme_example() -> None:
    assert SIGNATURE.signature_header == "x-hub-signature-256"
    assert SIGNATURE.event_id_header == "x-acme-delivery"
    assert set(MAPPING.entities) == {"customer", "job", "invoice"}
    assert MAPPING.webhook is not None
    assert MAPPING.webhook.events["work_order.deleted"].op == "delete"


def test_loads_from_text_as_from_a_path() -> None:
    assert load_mapping_file(ACME.read_text()) == (SIGNATURE, MAPPING)


def test_stored_settings_give_back_the_same_mapping() -> None:
    stored = json.loads(json.dumps(SETTINGS["generic_mapping"]))
    assert GenericMapping.model_validate(stored) == MAPPING


def test_api_spec_comes_from_the_mapping() -> None:
    spec = connector_for(SIGNATURE, MAPPING).api
    assert spec is not None
    assert spec.entity_types == ("customer", "job", "invoice")
    assert spec.deletable == ("customer", "job")
    assert (spec.rate_limit.rate, spec.rate_limit.per_seconds, spec.rate_limit.burst) == (
        120,
        60,
        20,
    )
    assert spec.auth_kind == "bearer"
    assert spec.default_base_url == "https://api.acmecrm.example"


def test_connector_without_a_mapping_still_maps_from_settings() -> None:
    connector = connector_for(SIGNATURE)
    assert connector.mapper is not None
    assert connector.api == api_spec()
    # Its simulator is test code, so the registry of simulators holds it, not the connector.
    assert simulator_for("generic").provider == "acme"


def _broken(edit: str, replacement: str) -> str:
    text = ACME.read_text()
    assert edit in text, edit
    return text.replace(edit, replacement, 1)


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


@pytest.mark.parametrize(
    ("edit", "replacement", "path", "needle", "words"),
    [
        (
            '"version": "revision",\n      "deleted"',
            '"version": "revision",\n      "colour": "red",\n      "deleted"',
            "entities.customer.colour",
            '"colour"',
            "Extra inputs",
        ),
        (
            '"page_size": 100,',
            '"page_size": "lots",',
            "entities.customer.pagination.page_size",
            '"page_size": "lots"',
            "valid integer",
        ),
        (
            '"path": "issued", "transform": "date"',
            '"path": "issued", "transform": "dmy"',
            "entities.invoice.fields[3].transform",
            '"transform": "dmy"',
            "'money'",
        ),
        (
            '"fetch": "GET {base}/api/work-orders/{id}"',
            '"fetch": "GET {base}/api/work-orders/{ident}"',
            "entities.job.endpoints.fetch",
            "{ident}",
            "unknown placeholder {ident}",
        ),
        (
            '{"canonical": "title", "path": "summary"}',
            '{"canonical": "headline", "path": "summary"}',
            "entities.job.fields[0].canonical",
            '"headline"',
            "no field 'headline'",
        ),
        (
            '"work_order.deleted": {"entity_type": "job"',
            '"work_order.deleted": {"entity_type": "payment"',
            "webhook.events.work_order.deleted.entity_type",
            '"entity_type": "payment"',
            "not in entities",
        ),
        (
            '{"canonical": "email", "path": "email_address"}',
            '{"canonical": "email", "path": "email_address", "currency": "AUD"}',
            "entities.customer.fields[1]",
            '"currency": "AUD"',
            '"currency" applies only to transform money',
        ),
    ],
    ids=[
        "unknown-key",
        "wrong-type",
        "bad-transform",
        "bad-placeholder",
        "unknown-canonical-field",
        "unmapped-entity",
        "misplaced-parameter",
    ],
)
def test_reports_path_and_line_of_each_problem(
    edit: str, replacement: str, path: str, needle: str, words: str
) -> None:
    text = _broken(edit, replacement)
    with pytest.raises(MappingFileError) as caught:
        load_mapping_file(text)
    [(where, line, message)] = caught.value.problems
    assert where == path
    assert words in message
    # The offending key's own line, or (for a whole-object rule) the line its object opens.
    assert line is not None
    assert line <= _line_of(text, needle)
    assert _line_of(text, needle) - line < 3
    assert f"{path} (line {line})" in str(caught.value)


def test_reports_every_problem_not_just_the_first() -> None:
    text = _broken('"page_size": 100,', '"page_size": -1, "colour": 1,')
    with pytest.raises(MappingFileError) as caught:
        load_mapping_file(text)
    paths = {where for where, _, _ in caught.value.problems}
    assert paths == {
        "entities.customer.pagination.page_size",
        "entities.customer.pagination.colour",
    }


def test_reports_the_line_of_invalid_json() -> None:
    text = _broken('"first_page": 1,', '"first_page": 1,,')
    with pytest.raises(MappingFileError) as caught:
        load_mapping_file(text)
    [(where, line, message)] = caught.value.problems
    assert (where, line) == ("$", _line_of(text, "1,,"))
    assert message.startswith("not JSON")


def test_rejects_an_ambiguous_enum_without_outbound_values() -> None:
    text = _broken('"late": "overdue"', '"late": "open"')
    with pytest.raises(MappingFileError) as caught:
        load_mapping_file(text)
    [(where, _, message)] = caught.value.problems
    assert where == "entities.invoice.fields[1]"
    assert "outbound_values" in message


@pytest.mark.parametrize(
    ("edit", "replacement", "words"),
    [
        (
            '{"canonical": "title", "path": "summary"}',
            '{"canonical": "customer_id", "path": "summary"}',
            "is a reference: map it under",
        ),
        (
            '{"canonical": "number", "path": "reference"}',
            '{"canonical": "number", "path": "reference", "transform": "money", "currency": "AUD"}',
            "takes transform none or enum",
        ),
    ],
    ids=["reference-among-the-fields", "money-transform-on-a-text-field"],
)
def test_rejects_a_field_its_kind_forbids(edit: str, replacement: str, words: str) -> None:
    with pytest.raises(MappingFileError, match=words):
        load_mapping_file(_broken(edit, replacement))


# --- fixtures -----------------------------------------------------------------------------------


def _fixture(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_fixture_maps_to_its_expected_items(path: Path) -> None:
    fixture = _fixture(path)
    assert fixture["source"] == "connectors/generic/examples/acme.json"
    parsed = MAPPER.parse_webhook(body_of(fixture["body"]), {}, SETTINGS)
    assert len(parsed.items) == len(fixture["expected"])
    for item, expected in zip(parsed.items, fixture["expected"], strict=True):
        assert (item.entity_type, item.external_id, item.op) == (
            expected["entity_type"],
            expected["external_id"],
            expected["op"],
        )
        record = item.record
        if item.op == "upsert" and record is None:
            entity = MAPPING.entities[item.entity_type]
            fetched = fixture["api_objects"][item.entity_type][item.external_id]
            obj = read(fetched, entity.response_record) if entity.response_record else fetched
            record = MAPPER.to_canonical(item.entity_type, obj, SETTINGS)
        if record is None:
            assert expected["data"] == {}
            assert expected["refs"] == {}
            continue
        assert record.external_id == item.external_id
        assert {k: record.data.get(k, MISSING) for k in expected["data"]} == expected["data"]
        assert record.refs == expected["refs"]
        ENTITY_MODELS[item.entity_type].model_validate(record.data)
        assert record.updated_at.tzinfo is UTC


def test_full_webhook_carries_the_record_with_version_and_time() -> None:
    fixture = _fixture(ROOT / "tests/fixtures/generic/contact_updated_full.json")
    [item] = MAPPER.parse_webhook(body_of(fixture["body"]), {}, SETTINGS).items
    assert item.event_id == "evt_009817"
    assert item.occurred_at == datetime(2024, 3, 14, 9, 30, 0, 123000, tzinfo=UTC)
    assert item.record is not None
    assert item.record.version == "7"
    assert item.record.updated_at == datetime(2024, 3, 14, 9, 30, 0, 123000, tzinfo=UTC)
    assert item.record.deleted is False


def test_thin_webhook_items_have_no_record_and_ignored_events_are_counted() -> None:
    fixture = _fixture(ROOT / "tests/fixtures/generic/batch_thin_work_order_and_invoice.json")
    parsed = MAPPER.parse_webhook(body_of(fixture["body"]), {}, SETTINGS)
    assert parsed.ignored == 1
    assert [i.record for i in parsed.items] == [None, None]
    assert [i.event_id for i in parsed.items] == ["evt_009818", "evt_009820"]


def test_archived_contact_is_a_deleted_record() -> None:
    fixture = _fixture(ROOT / "tests/fixtures/generic/work_order_deleted_and_contact_archived.json")
    items = MAPPER.parse_webhook(body_of(fixture["body"]), {}, SETTINGS).items
    assert items[1].record is not None
    assert items[1].record.deleted is True


def test_event_ids_fall_back_to_the_delivery_header_and_position() -> None:
    settings = with_mapping({})
    settings["generic_mapping"]["webhook"].pop("event_id")
    fixture = _fixture(ROOT / "tests/fixtures/generic/batch_thin_work_order_and_invoice.json")
    body = body_of(fixture["body"])
    parsed = MAPPER.parse_webhook(body, {"x-acme-delivery": "dlv_000413"}, settings)
    assert [i.event_id for i in parsed.items] == ["dlv_000413:0", "dlv_000413:2"]
    without_header = MAPPER.parse_webhook(body, {}, settings)
    assert without_header.items[0].event_id.startswith("sha256:")
    assert without_header.items[0].event_id.endswith(":0")


def test_single_item_body_and_empty_batch() -> None:
    raw = acme_raw()
    raw["webhook"]["items"] = "$"
    settings = with_mapping({"webhook": raw["webhook"]})
    event = _fixture(ROOT / "tests/fixtures/generic/contact_deleted.json")["body"]["events"][0]
    [item] = MAPPER.parse_webhook(body_of(event), {}, settings).items
    assert (item.external_id, item.op) == ("con_000043", "delete")
    empty = MAPPER.parse_webhook(b'{"delivery": "d", "events": []}', {}, SETTINGS)
    assert (empty.items, empty.ignored) == ((), 0)


# --- malformed bodies ---------------------------------------------------------------------------


def _event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": "evt_1",
        "type": "work_order.updated",
        "occurred_at": "2024-03-14T09:30:00Z",
        "resource": {"type": "work_order", "id": "wo_1"},
    }
    event.update(overrides)
    return event


def _reason(body: bytes, settings: dict[str, Any] | None = None) -> tuple[str, str]:
    with pytest.raises(MappingError) as caught:
        MAPPER.parse_webhook(body, {}, SETTINGS if settings is None else settings)
    return caught.value.reason, caught.value.detail


@pytest.mark.parametrize(
    ("body", "reason", "detail"),
    [
        (b"not json", "unparseable", "body: not JSON"),
        (b'{"delivery": "d"}', "schema_violation", "events[*]: no webhook items"),
        (body_of({"events": ["x"]}), "schema_violation", "events[0]: expected an object"),
        (body_of({"events": [_event(type=None)]}), "schema_violation", "events[0].type"),
        (body_of({"events": [_event(resource={})]}), "schema_violation", "events[0].resource.id"),
        (
            body_of({"events": [_event(occurred_at="14/03/2024")]}),
            "schema_violation",
            "events[0].occurred_at: '14/03/2024' does not match iso8601",
        ),
        (
            body_of(
                {"events": [_event(type="contact.updated", data={"id": "con_1", "modified_ms": 1})]}
            ),
            "schema_violation",
            "events[0].data: record 'con_1' in an event about 'wo_1'",
        ),
        (
            body_of(
                {
                    "events": [
                        _event(
                            type="contact.updated",
                            resource={"id": "con_1"},
                            data={"id": "con_1", "modified_ms": 1, "full_name": 7},
                        )
                    ]
                }
            ),
            "schema_violation",
            "events[0].data.full_name -> name: Input should be a valid string",
        ),
        (
            body_of(
                {
                    "events": [
                        _event(
                            type="contact.updated", resource={"id": "con_1"}, data={"id": "con_1"}
                        )
                    ]
                }
            ),
            "schema_violation",
            "events[0].data.modified_ms: missing",
        ),
    ],
    ids=[
        "not-json",
        "no-items",
        "item-not-object",
        "no-event-type",
        "no-entity-id",
        "bad-occurred-at",
        "record-of-another-id",
        "record-field-wrong-type",
        "record-without-updated-at",
    ],
)
def test_malformed_webhooks_name_reason_and_path(body: bytes, reason: str, detail: str) -> None:
    got_reason, got_detail = _reason(body)
    assert got_reason == reason
    assert detail in got_detail


def test_unknown_event_types_can_be_errors() -> None:
    raw = acme_raw()
    raw["webhook"]["unknown_events"] = "error"
    settings = with_mapping({"webhook": raw["webhook"]})
    reason, detail = _reason(body_of({"events": [_event(type="note.added")]}), settings)
    assert (reason, detail) == ("unknown_event_type", "events[0].type: 'note.added' is not mapped")


def test_a_broken_mapping_in_settings_is_an_invalid_mapping() -> None:
    reason, detail = _reason(b"{}", {"generic_mapping": {"entities": {}}})
    assert reason == "invalid_mapping"
    assert detail.startswith("generic_mapping:")
    reason, _ = _reason(b"{}", {})
    assert reason == "invalid_mapping"


def test_unmapped_entity_is_unsupported() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("payment", {"id": "p"}, SETTINGS)
    assert caught.value.reason == "unsupported_entity"


def test_unknown_enum_value_names_the_provider_path() -> None:
    obj = {"id": "wo_1", "modified_ms": 1, "summary": "x", "state": "paused"}
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("job", obj, SETTINGS)
    assert caught.value.reason == "schema_violation"
    assert caught.value.detail.startswith("state: 'paused' is not one of")


def test_canonical_without_a_provider_word_is_refused() -> None:
    raw = acme_raw()
    raw["entities"]["job"]["fields"][2]["values"].pop("called_off")
    settings = with_mapping({"entities": raw["entities"]})
    with pytest.raises(MappingError, match="'cancelled' has no value at the provider"):
        MAPPER.from_canonical("job", {"status": "cancelled"}, {}, settings)


# --- money ------------------------------------------------------------------------------------


def _invoice(**fields: Any) -> dict[str, Any]:
    return {"id": "inv_1", "modified_ms": 1_710_000_000_000, "currency": "AUD", **fields}


def test_decimal_amounts_become_exact_minor_units() -> None:
    record = MAPPER.to_canonical(
        "invoice",
        _invoice(
            items=[
                {"text": "a", "qty": "1", "unit_price": "0.10", "gst": "0.01"},
                {"text": "b", "qty": "1", "unit_price": "0.20", "gst": "0.02"},
            ],
            net="0.30",
            gst="0.03",
            gross="0.33",
        ),
        SETTINGS,
    )
    assert (record.data["subtotal"], record.data["tax"], record.data["total"]) == (30, 3, 33)
    assert [line["unit_amount"] for line in record.data["lines"]] == [10, 20]


def test_json_numbers_with_fractions_are_read_exactly() -> None:
    body = (
        b'{"events": [{"id": "e", "type": "contact.updated", "occurred_at": "2024-03-14T09:30:00Z",'
        b' "resource": {"id": "c"}, "data": {"id": "c", "modified_ms": 1710408600123.0,'
        b' "full_name": "N"}}]}'
    )
    [item] = MAPPER.parse_webhook(body, {}, SETTINGS).items
    assert item.record is not None
    assert item.record.updated_at == datetime(2024, 3, 14, 9, 30, 0, 123000, tzinfo=UTC)
    as_float = MAPPER.to_canonical("invoice", _invoice(net=0.3, gst=0.1, gross=0.4), SETTINGS)
    assert (as_float.data["subtotal"], as_float.data["tax"], as_float.data["total"]) == (30, 10, 40)


@pytest.mark.parametrize(
    ("currency", "text", "units"),
    [
        ("JPY", "1250", 1250),
        ("AUD", "12.50", 1250),
        ("KWD", "1.250", 1250),
        ("CLF", "0.1250", 1250),
    ],
)
def test_currency_exponents_both_ways(currency: str, text: str, units: int) -> None:
    record = MAPPER.to_canonical("invoice", _invoice(currency=currency, net=text), SETTINGS)
    assert record.data["subtotal"] == units
    body = MAPPER.from_canonical("invoice", {"currency": currency, "subtotal": units}, {}, SETTINGS)
    assert body["net"] == text


def test_more_decimals_than_the_currency_has_is_refused() -> None:
    with pytest.raises(MappingError) as caught:
        MAPPER.to_canonical("invoice", _invoice(currency="JPY", net="12.5"), SETTINGS)
    assert caught.value.detail == "net: '12.5' has more than 0 decimals for JPY"


def test_an_amount_without_a_currency_is_refused() -> None:
    with pytest.raises(MappingError, match="no currency"):
        MAPPER.from_canonical("invoice", {"subtotal": 100}, {}, SETTINGS)


# --- round trips ------------------------------------------------------------------------------

text = st.text(st.characters(codec="utf-8"), max_size=40)
maybe_text = st.none() | text
addresses = st.fixed_dictionaries(
    {},
    optional={
        "line1": maybe_text,
        "line2": maybe_text,
        "city": maybe_text,
        "region": maybe_text,
        "postal_code": st.none() | st.text("0123456789 ", max_size=10),
        "country": st.none() | st.sampled_from(["AU", "NZ", "XK", "GB"]),
    },
).filter(bool)  # an address with no parts at all has nothing to write
emails = st.builds(
    lambda local, domain: f"{local}@{domain}.example",
    st.text("abcdefghij.+_-", min_size=1, max_size=20).filter(lambda s: s[0] not in ".-"),
    st.text("abcdefghij", min_size=1, max_size=10),
)
customers = st.fixed_dictionaries(
    {},
    optional={
        "name": maybe_text,
        "email": st.none() | emails,
        "phone": maybe_text,
        "company": maybe_text,
        "notes": maybe_text,
        "address": addresses,
    },
)
# Acme keeps appointment windows to the minute.
minutes = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
).map(lambda d: d.replace(second=0, microsecond=0))


@st.composite
def jobs(draw: st.DrawFn) -> dict[str, Any]:
    job: dict[str, Any] = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "title": maybe_text,
                "description": maybe_text,
                "status": st.sampled_from(
                    ["draft", "scheduled", "in_progress", "completed", "cancelled"]
                ),
                "priority": st.sampled_from(["low", "normal", "high", "urgent"]),
                "site_address": addresses,
            },
        )
    )
    if draw(st.booleans()):
        start = draw(minutes)
        job["scheduled_start"] = start.isoformat().replace("+00:00", "Z")
        length = draw(st.integers(min_value=0, max_value=10_000))
        job["scheduled_end"] = (
            (start + timedelta(minutes=length)).isoformat().replace("+00:00", "Z")
        )
    return job


@st.composite
def invoices(draw: st.DrawFn) -> dict[str, Any]:
    currency = draw(st.sampled_from(["AUD", "JPY", "KWD", "USD", "NZD"]))
    amounts = st.integers(min_value=0, max_value=10**15)
    lines = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "quantity": st.decimals(
                        min_value=0, max_value=10_000, places=3, allow_nan=False
                    ).map(lambda d: format(d.normalize(), "f")),
                    "unit_amount": st.integers(min_value=-(10**12), max_value=10**12),
                    "tax_amount": st.integers(min_value=-(10**10), max_value=10**10),
                },
                optional={"description": maybe_text},
            ),
            max_size=4,
        )
    )
    subtotal, tax = draw(amounts), draw(amounts)
    day = draw(st.dates(min_value=datetime(2000, 1, 1).date()))
    return {
        "currency": currency,
        "number": draw(maybe_text),
        "status": draw(st.sampled_from(["draft", "open", "paid", "void", "overdue"])),
        "issued_on": day.isoformat(),
        "due_on": (day + timedelta(days=draw(st.integers(0, 90)))).isoformat(),
        "lines": lines,
        "subtotal": subtotal,
        "tax": tax,
        "total": subtotal + tax,
        "amount_due": draw(amounts),
    }


def _echo(entity_type: str, data: dict[str, Any], refs: dict[str, str]) -> Any:
    """canonical -> provider body -> the object Acme would store -> canonical."""
    entity = MAPPING.entities[entity_type]  # type: ignore[index]
    body = MAPPER.from_canonical(entity_type, data, refs, SETTINGS)  # type: ignore[arg-type]
    obj = read(body, entity.request_wrap) if entity.request_wrap else body
    stored = json.loads(json.dumps({**obj, "id": "x_1", "modified_ms": 1_710_000_000_000}))
    return MAPPER.to_canonical(entity_type, stored, SETTINGS)  # type: ignore[arg-type]


def _canonical(entity_type: str, data: dict[str, Any]) -> dict[str, Any]:
    model = ENTITY_MODELS[entity_type].model_validate(data)
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_unset=True)
    return dumped


@given(customers)
def test_customer_round_trip_keeps_every_field(data: dict[str, Any]) -> None:
    assert _echo("customer", data, {}).data == _canonical("customer", data)


@given(jobs(), st.sampled_from([{}, {"customer_id": "con_000001"}]))
def test_job_round_trip_keeps_every_field_and_ref(
    data: dict[str, Any], refs: dict[str, str]
) -> None:
    record = _echo("job", data, refs)
    assert record.data == _canonical("job", data)
    assert record.refs == refs


@given(invoices())
def test_invoice_round_trip_keeps_every_field_and_refs(data: dict[str, Any]) -> None:
    refs = {"customer_id": "con_000001", "job_id": "wo_000002"}
    record = _echo("invoice", data, refs)
    assert record.data == _canonical("invoice", data)
    assert record.refs == refs


def test_provider_round_trip_of_an_acme_work_order() -> None:
    fixture = _fixture(ROOT / "tests/fixtures/generic/batch_thin_work_order_and_invoice.json")
    original = fixture["api_objects"]["job"]["wo_000107"]["work_order"]
    record = MAPPER.to_canonical("job", original, SETTINGS)
    body = MAPPER.from_canonical("job", record.data, record.refs, SETTINGS)["work_order"]
    written = {
        k: v
        for k, v in original.items()
        if k not in {"id", "revision", "created_ms", "modified_ms"}
    }
    assert body == written


def test_reference_fields_in_data_are_not_written() -> None:
    body = MAPPER.from_canonical(
        "job",
        {"title": "T", "customer_id": "6f1c1f4e-2c1a-4a8e-9f59-0d5cbd3b7a10"},
        {"customer_id": "con_9"},
        SETTINGS,
    )
    assert body == {"work_order": {"summary": "T", "contact_id": "con_9"}}


def test_cleared_fields_are_written_as_null() -> None:
    body = MAPPER.from_canonical("customer", {"email": None, "address": None}, {}, SETTINGS)
    assert body["email_address"] is None
    assert body["postal"] == dict.fromkeys(
        ("street", "street2", "suburb", "state", "postcode", "country")
    )


def test_constants_in_both_directions() -> None:
    raw = acme_raw()
    fields = raw["entities"]["invoice"]["fields"]
    fields[2] = {
        "canonical": "currency",
        "transform": "constant",
        "value": "JPY",
        "direction": "inbound",
    }
    # Outbound, amounts fall back to the field's own currency when the record has none.
    fields[6]["currency"] = "JPY"
    fields.append(
        {"path": "source", "transform": "constant", "value": "crmsync", "direction": "outbound"}
    )
    settings = with_mapping({"entities": raw["entities"]})
    record = MAPPER.to_canonical("invoice", {"id": "i", "modified_ms": 1, "net": "700"}, settings)
    assert (record.data["currency"], record.data["subtotal"]) == ("JPY", 700)
    body = MAPPER.from_canonical("invoice", {"subtotal": 700}, {}, settings)
    assert body == {"net": "700", "source": "crmsync"}


# --- paths -------------------------------------------------------------------------------------


def test_paths_read_select_and_write() -> None:
    doc = {"a": {"b": [{"c": 1}, {"c": 2}]}, "n": None}
    assert read(doc, "a.b[1].c") == 2
    assert read(doc, "a.b.0.c") == 1
    assert read(doc, "$.a.x") is MISSING
    assert read(doc, "n.x") is MISSING
    assert read(doc, "n.x", null_through=True) is None
    assert select(doc, "a.b[*].c") == [("a.b[0].c", 1), ("a.b[1].c", 2)]
    out: dict[str, Any] = {}
    write(out, "x.y[1].z", Decimal("1.5"))
    assert out == {"x": {"y": [None, {"z": Decimal("1.5")}]}}


@pytest.mark.parametrize("bad", ["a..b", "a[x]", "a.", "a[*", "[1]x"])
def test_paths_reject_malformed_syntax(bad: str) -> None:
    with pytest.raises(ValueError, match="path"):
        select({}, bad)


def test_the_readme_second_example_loads_and_maps_a_webhook() -> None:
    readme = (ROOT / "connectors" / "generic" / "README.md").read_text()
    example = readme.split("## A second, tiny example")[1].split("```json")[1].split("```")[0]
    signature, mapping = load_mapping_file(example)
    settings = {
        "generic": signature.model_dump(mode="json"),
        "generic_mapping": mapping_settings(mapping),
    }
    body = body_of(
        {
            "event": "customer.saved",
            "event_id": "ev_1",
            "ts": 1_700_000_000,
            "customer": {"id": 42, "name": "Ada", "updated": "2023-11-14 22:13:20"},
        }
    )
    [item] = MAPPER.parse_webhook(body, {}, settings).items
    assert item.record is not None
    assert (item.external_id, item.record.data) == ("42", {"name": "Ada"})
    assert item.record.updated_at == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
