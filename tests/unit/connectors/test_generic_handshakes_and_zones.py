"""What the generic connector learnt for FreshBooks (issue 21), each in general terms: time
zones with daylight saving, webhooks that carry no time, notices nothing tells apart, a
subscription handshake whose code goes back through a confirm endpoint, and soft deletes
written as an update."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.generic import load_mapping_file, mapping_settings
from connectors.generic.config import Endpoint, Verification, WebhookMapping
from connectors.generic.convert import format_timestamp, parse_timestamp, parse_zone
from connectors.generic.mapping import Mapper
from connectors.spec import MappingError, WebhookItem
from schemas.envelope import WebhookEnvelope
from services.processor.normalize import Normalizer, item_key

MAPPER = Mapper()
EASTERN = parse_zone("America/New_York")
CUSTOMER: dict[str, Any] = {
    "id": "id",
    "updated_at": {"path": "updated", "format": "%Y-%m-%d %H:%M:%S", "timezone": "UTC"},
    "deleted": {"path": "vis_state", "value": 1},
    "fields": [{"canonical": "name", "path": "name"}],
    "webhook": {"entity_id": "object_id", "delivery": "thin"},
    "endpoints": {"fetch": "GET {base}/clients/{id}"},
}
VERIFICATION: dict[str, Any] = {
    "event": "callback.verify",
    "verifier": "verifier",
    "confirm": "PUT {origin}/events/account/{account_id}/events/callbacks/{callback_id}",
    "placeholders": {"account_id": "account_id", "callback_id": "object_id"},
    "body": "callback.verifier",
}
HOOKS: dict[str, Any] = {
    "format": "form",
    "event_type": "name",
    "occurred_at": "received",
    "events": {
        "client.update": {"entity_type": "customer", "op": "upsert"},
        "client.delete": {"entity_type": "customer", "op": "delete"},
    },
    "verification": VERIFICATION,
}


def _document(
    hooks: dict[str, Any] | None = None,
    signature: dict[str, Any] | None = None,
    **customer: Any,
) -> dict[str, Any]:
    return {
        "signature": signature or {"signature_header": "x-sig", "encoding": "base64"},
        "webhook": hooks or HOOKS,
        "entities": {"customer": {**CUSTOMER, **customer}},
    }


def settings(document: dict[str, Any]) -> dict[str, Any]:
    config, mapping = load_mapping_file(json.dumps(document))
    return {"generic": config.model_dump(mode="json"), "generic_mapping": mapping_settings(mapping)}


# --- time zones with daylight saving -------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "utc"),
    [
        ("2024-07-01 12:00:00", datetime(2024, 7, 1, 16, tzinfo=UTC)),  # EDT
        ("2024-01-15 12:00:00", datetime(2024, 1, 15, 17, tzinfo=UTC)),  # EST
        # The autumn's repeated hour reads as its first (daylight) occurrence.
        ("2024-11-03 01:30:00", datetime(2024, 11, 3, 5, 30, tzinfo=UTC)),
    ],
)
def test_a_named_zone_reads_naive_times_with_that_day_s_offset(local: str, utc: datetime) -> None:
    assert parse_timestamp(local, "%Y-%m-%d %H:%M:%S", EASTERN) == utc


def test_a_named_zone_writes_in_that_day_s_offset() -> None:
    summer = datetime(2024, 7, 1, 16, tzinfo=UTC)
    assert format_timestamp(summer, "%Y-%m-%d %H:%M:%S", EASTERN) == "2024-07-01 12:00:00"
    assert format_timestamp(summer, "iso8601", EASTERN) == "2024-07-01T12:00:00-04:00"


@pytest.mark.parametrize("zone", ["EST", "Mars/Olympus", "America/../etc", "/etc/localtime"])
def test_zones_that_are_not_region_names_are_refused(zone: str) -> None:
    with pytest.raises(ValueError, match="timezone"):
        parse_zone(zone)


def test_an_unknown_zone_in_a_file_is_reported_with_its_path_and_line() -> None:
    document = _document(
        updated_at={"path": "updated", "format": "%Y-%m-%d", "timezone": "America/Springfield"}
    )
    text = json.dumps(document, indent=2)
    with pytest.raises(ValueError, match=r"entities\.customer\.updated_at\.timezone \(line \d+\)"):
        load_mapping_file(text)


# --- webhooks without a time, and notices nothing tells apart -------------------------------------


def test_a_webhook_without_a_time_gives_items_without_one() -> None:
    document = _document()
    del document["entities"]["customer"]["deleted"]  # a provider that removes records
    parsed = MAPPER.parse_webhook(b"name=client.delete&object_id=7", {}, settings(document))
    (item,) = parsed.items
    assert (item.external_id, item.op, item.occurred_at, item.per_receipt) == (
        "7",
        "delete",
        None,
        True,
    )


def test_a_thin_delete_of_a_record_the_provider_keeps_is_hydrated_to_learn_when() -> None:
    # The fetched record reads as deleted (its flag) with the provider's own updated-at,
    # the clock its updates were ordered by; a receipt time could fall before the last one.
    parsed = MAPPER.parse_webhook(b"name=client.delete&object_id=7", {}, settings(_document()))
    (item,) = parsed.items
    assert (item.op, item.record, item.occurred_at) == ("upsert", None, None)
    full = _document(webhook={"entity_id": "object_id", "delivery": "full", "record": "$"})
    parsed = MAPPER.parse_webhook(b"name=client.delete&object_id=7", {}, settings(full))
    assert [i.op for i in parsed.items] == ["delete"]


def test_notices_with_an_id_are_keyed_by_it_not_by_their_receipt() -> None:
    by_path = {**HOOKS, "event_id": "event_id"}
    parsed = MAPPER.parse_webhook(
        b"name=client.update&object_id=7&event_id=e1", {}, settings(_document(by_path))
    )
    assert [(i.event_id, i.per_receipt) for i in parsed.items] == [("e1", False)]
    by_header = _document(signature={"signature_header": "x-sig", "event_id_header": "x-id"})
    parsed = MAPPER.parse_webhook(
        b"name=client.update&object_id=7", {"x-id": "d1"}, settings(by_header)
    )
    assert [(i.event_id, i.per_receipt) for i in parsed.items] == [("d1:0", False)]


def _envelope(received_at: datetime) -> WebhookEnvelope:
    return WebhookEnvelope(
        tenant_id=uuid.uuid4(),
        connection_id=uuid.uuid4(),
        provider="generic",
        received_at=received_at,
        body=b"name=client.delete&object_id=7",
    )


def test_a_notice_keyed_by_receipt_is_a_new_event_on_each_receipt() -> None:
    item = WebhookItem("sha256:abc:0", "customer", "7", "delete", None, per_receipt=True)
    first, second = _envelope(datetime.now(UTC)), _envelope(datetime.now(UTC))
    assert item_key(first, item) == item_key(first, item) != item_key(second, item)
    keyed = WebhookItem("evt_1", "customer", "7", "delete", None)
    assert item_key(first, keyed) == item_key(second, keyed) == "evt_1"


def test_a_delete_without_a_time_is_ordered_by_when_it_was_received() -> None:
    received = datetime(2024, 7, 1, 16, 0, 3, tzinfo=UTC)
    envelope = _envelope(received)
    info = SimpleNamespace(tenant_id=envelope.tenant_id, id=envelope.connection_id)
    item = WebhookItem("k", "customer", "7", "delete", None, per_receipt=True)
    output = Normalizer._change(envelope, info, item, "k", None)  # type: ignore[arg-type]
    change = json.loads(output.value)["change"]
    assert (change["op"], datetime.fromisoformat(change["occurred_at"])) == ("delete", received)


# --- the subscription handshake ------------------------------------------------------------------


def test_a_handshake_gives_its_code_and_the_confirm_endpoint_s_values() -> None:
    body = b"name=callback.verify&verifier=abc123&object_id=2001&account_id=xazq5&user_id=1"
    handshake = MAPPER.verification(body, {}, settings(_document()))
    assert handshake is not None
    assert (handshake.verifier, handshake.values) == (
        "abc123",
        {"account_id": "xazq5", "callback_id": "2001"},
    )
    assert "abc123" not in repr(handshake)
    confirm = Verification.model_validate(VERIFICATION).confirm_endpoint()
    assert confirm.url("https://api.example.com/accounting/account/xazq5", **handshake.values) == (
        "https://api.example.com/events/account/xazq5/events/callbacks/2001"
    )


def test_a_handshake_is_no_record_even_where_unknown_events_are_errors() -> None:
    strict = settings(_document({**HOOKS, "unknown_events": "error"}))
    body = b"name=callback.verify&verifier=abc123&object_id=2001&account_id=xazq5"
    assert MAPPER.parse_webhook(body, {}, strict).ignored == 1
    assert MAPPER.verification(b"name=client.update&object_id=7", {}, strict) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"confirm": "PUT {origin}/callbacks/{id}"}, "unknown placeholder {id}"),
        ({"confirm": "PUT https://x.example/{callback_id}"}, "must start with {base} or {origin}"),
        ({"placeholders": {"base": "object_id"}}, "not a name of its own"),
        ({"verifier": "items[*].code"}, "must name one value"),
        ({"own": {"user_id": "account"}}, "not one of the placeholders"),
        ({"own": {"account_id": "a-b"}}, "not a setting name"),
    ],
)
def test_an_incoherent_verification_is_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Verification.model_validate({**VERIFICATION, **change})


def test_a_handshake_of_another_account_than_the_connection_s_own_is_refused() -> None:
    own = {**VERIFICATION, "own": {"account_id": "freshbooks_account_id"}}
    document = settings(_document({**HOOKS, "verification": own}))
    body = b"name=callback.verify&verifier=abc123&object_id=2001&account_id=xazq5"
    mine = {**document, "freshbooks_account_id": "xazq5"}
    assert MAPPER.verification(body, {}, mine) is not None
    with pytest.raises(MappingError, match="'xazq5' is not this connection's account_id"):
        MAPPER.verification(body, {}, {**document, "freshbooks_account_id": "6BApk"})
    # A connection that does not say which account it is cannot tell another's.
    assert MAPPER.verification(body, {}, document) is not None


def test_the_handshake_s_event_is_not_also_a_record_event() -> None:
    events = {**HOOKS["events"], "callback.verify": {"entity_type": "customer", "op": "upsert"}}
    with pytest.raises(ValidationError, match="verification's event"):
        WebhookMapping.model_validate({**HOOKS, "events": events})


# --- soft deletes --------------------------------------------------------------------------------


def test_a_put_delete_needs_the_deleted_flag_it_writes() -> None:
    document = _document(
        deleted=None, endpoints={"fetch": "GET {base}/c/{id}", "delete": "PUT {base}/c/{id}"}
    )
    del document["entities"]["customer"]["deleted"]
    with pytest.raises(ValueError, match='writes the record\'s "deleted" flag'):
        load_mapping_file(json.dumps(document))


def test_entity_endpoints_still_start_at_the_connection_s_base() -> None:
    document = _document(endpoints={"fetch": "GET {origin}/c/{id}"})
    with pytest.raises(ValueError, match=r"must start with \{base\}"):
        load_mapping_file(json.dumps(document))
    assert Endpoint(method="GET", template="{base}/c/{id}").url("https://a.example/x/", "1 2") == (
        "https://a.example/x/c/1%202"
    )
