"""What the generic connector learnt for the catalogue of mapping files (issue 21), each in
general terms: URL-token webhooks, form bodies, event types from a header or from the key
an item is grouped under, per-event id paths, timestamp fallbacks, joined fields, create-
or update-only fields, blank strings as null, offset paging and lists keyed by id."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import SignatureError, WebhookRequest
from connectors.generic import auth_for, connector_for, load_mapping_file, mapping_settings
from connectors.generic.client import _next_cursor
from connectors.generic.config import GenericMapping, MappingFileError, Pagination
from connectors.generic.mapping import Mapper, form_document
from connectors.generic.signature import GenericScheme, GenericSchemeConfig
from connectors.spec import MappingError

MAPPER = Mapper()
CUSTOMER: dict[str, Any] = {
    "id": "id",
    "updated_at": {"path": "modified", "fallbacks": ["created"]},
    "fields": [
        {"canonical": "name", "transform": "join", "paths": ["first", "last"]},
        {"canonical": "email", "path": "email", "blank_is_null": True},
        {"canonical": "phone", "path": "phone"},
    ],
    "webhook": {"entity_id": "id", "delivery": "full", "record": "$"},
}


def settings(
    hooks: dict[str, Any], signature: dict[str, Any] | None = None, **customer: Any
) -> dict[str, Any]:
    document = {
        "signature": signature or {"signature_header": "x-sig", "encoding": "base64"},
        "webhook": hooks,
        "entities": {"customer": {**CUSTOMER, **customer}},
    }
    config, mapping = load_mapping_file(json.dumps(document))
    return {"generic": config.model_dump(mode="json"), "generic_mapping": mapping_settings(mapping)}


# --- signatures ---------------------------------------------------------------------------------

TOKEN = GenericSchemeConfig(kind="url_token", token_param="key")


def _request(url: str, body: bytes = b"type=profile") -> WebhookRequest:
    return WebhookRequest("POST", url, {}, body)


def test_url_token_verifies_the_secret_in_the_query_and_says_which() -> None:
    verified = GenericScheme(TOKEN).verify(
        _request("https://in.example/webhooks/generic/c1?key=s2"), ["s1", "s2"], now=0
    )
    assert verified.secret_index == 1
    assert verified.provider_event_id.startswith("sha256:")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("https://in.example/w", "missing_header"),
        ("https://in.example/w?key=", "malformed_header"),
        ("https://in.example/w?key=s1&key=s1", "malformed_header"),
        ("https://in.example/w?key=s3", "bad_signature"),
        ("https://in.example/w?token=s1", "missing_header"),
    ],
)
def test_url_token_refuses_a_missing_repeated_or_wrong_token(url: str, reason: str) -> None:
    with pytest.raises(SignatureError) as caught:
        GenericScheme(TOKEN).verify(_request(url), ["s1"], now=0)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "url_token", "signature_header": "x-sig"},
        {"kind": "url_token", "timestamp_header": "x-ts"},
        {"signature_header": "x-sig", "token_param": "key"},
        {},
        {"signature_header": "x-sig", "keep_headers": [" "]},
    ],
    ids=["token-with-signature", "token-with-timestamp", "hmac-with-token", "hmac-bare", "blank"],
)
def test_rejects_incoherent_schemes(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GenericSchemeConfig.model_validate(fields)


def test_stored_dump_of_every_kind_validates_again() -> None:
    # Settings store the full dump; a default compared as "set" would refuse it.
    for config in (TOKEN, GenericSchemeConfig(signature_header="x-sig", keep_headers=("X-T",))):
        assert GenericSchemeConfig.model_validate(config.model_dump(mode="json")) == config


def test_kept_headers_reach_the_connector() -> None:
    config = GenericSchemeConfig(signature_header="x-sig", keep_headers=("X-WC-Webhook-Topic",))
    assert connector_for(config).kept_headers == ("content-type", "x-wc-webhook-topic")


# --- webhooks ----------------------------------------------------------------------------------


def test_event_type_from_a_kept_header() -> None:
    hooks = settings(
        {
            "event_type_header": "X-Topic",
            "occurred_at": {"path": "modified", "fallbacks": ["created"]},
            "events": {"customer.updated": {"entity_type": "customer", "op": "upsert"}},
        },
        {"signature_header": "x-sig", "keep_headers": ["x-topic"]},
    )
    body = json.dumps({"id": 7, "created": "2024-03-14T09:30:00", "first": "Ann"}).encode()
    parsed = MAPPER.parse_webhook(body, {"x-topic": "customer.updated"}, hooks)
    (item,) = parsed.items
    assert (item.external_id, item.op, item.occurred_at.isoformat()) == (
        "7",
        "upsert",
        "2024-03-14T09:30:00+00:00",
    )
    assert item.record is not None
    assert item.record.data == {"name": "Ann"}
    ignored = MAPPER.parse_webhook(body, {"x-topic": "coupon.updated"}, hooks)
    assert (ignored.items, ignored.ignored) == ((), 1)
    with pytest.raises(MappingError, match="x-topic header: missing"):
        MAPPER.parse_webhook(body, {}, hooks)


def test_an_event_type_header_the_signature_does_not_keep_is_refused() -> None:
    document = {
        "signature": {"signature_header": "x-sig"},
        "webhook": {
            "event_type_header": "X-Topic",
            "occurred_at": {"path": "modified"},
            "events": {"c": {"entity_type": "customer", "op": "upsert"}},
        },
        "entities": {"customer": CUSTOMER},
    }
    with pytest.raises(MappingFileError, match="keep_headers"):
        load_mapping_file(json.dumps(document))


@pytest.mark.parametrize(
    "where",
    [
        {},
        {"event_type": "type", "groups": "$"},
        {"event_type": "type", "event_type_header": "x-t"},
        {"groups": "$", "items": "events[*]"},
    ],
)
def test_the_event_type_is_in_exactly_one_place(where: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        GenericMapping.model_validate(
            {
                "webhook": {
                    **where,
                    "occurred_at": {"path": "t"},
                    "events": {"c": {"entity_type": "customer", "op": "upsert"}},
                },
                "entities": {"customer": CUSTOMER},
            }
        )


GROUPED = {
    "groups": "$",
    "occurred_at": {"path": "timestamp"},
    "events": {
        "saved": {"entity_type": "customer", "op": "upsert"},
        "gone": {"entity_type": "customer", "op": "delete", "entity_id": "deleted_id"},
    },
}


def test_grouped_webhooks_yield_every_item_typed_by_its_group() -> None:
    body = {
        "saved": [
            {"id": 1, "timestamp": "2024-03-14T09:30:00+00:00", "modified": "2024-03-14T09:29:59Z"},
            {"id": 2, "timestamp": "2024-03-14T09:30:01+00:00", "modified": "2024-03-14T09:29:59Z"},
        ],
        "gone": {"deleted_id": 3, "id": None, "timestamp": "2024-03-14T09:31:00+00:00"},
        "noted": [{"timestamp": "2024-03-14T09:31:00+00:00"}],
        "timestamp": "2024-03-14T09:31:02+00:00",
    }
    parsed = MAPPER.parse_webhook(json.dumps(body).encode(), {}, settings(GROUPED))
    assert [(i.external_id, i.op) for i in parsed.items] == [
        ("1", "upsert"),
        ("2", "upsert"),
        ("3", "delete"),
    ]
    assert parsed.ignored == 1
    # No item ids: the delivery's hash plus each item's position, stable on redelivery.
    assert [i.event_id.rsplit(":", 1)[1] for i in parsed.items] == ["0", "1", "2"]


def test_a_group_item_that_is_not_an_object_names_its_place() -> None:
    body = json.dumps({"saved": [1], "timestamp": "x"}).encode()
    with pytest.raises(MappingError, match=r"saved\[0\]: expected an object"):
        MAPPER.parse_webhook(body, {}, settings(GROUPED))


def test_timestamps_fall_back_in_order_and_name_every_path_when_none_is_there() -> None:
    hooks = settings(
        {
            "event_type": "type",
            "occurred_at": {"path": "at", "fallbacks": ["modified", "created"]},
            "events": {"c": {"entity_type": "customer", "op": "upsert"}},
        }
    )
    item = {"type": "c", "id": 1, "modified": None, "created": "2024-01-02T03:04:05Z"}
    (parsed,) = MAPPER.parse_webhook(json.dumps(item).encode(), {}, hooks).items
    assert parsed.occurred_at.isoformat() == "2024-01-02T03:04:05+00:00"
    del item["created"]  # the record's own time, read first, has no fallback left either
    with pytest.raises(MappingError, match="modified or created: missing"):
        MAPPER.parse_webhook(json.dumps(item).encode(), {}, hooks)


def test_form_bodies_are_read_as_the_objects_their_names_spell() -> None:
    text = (
        "type=profile&fired_at=2024-03-14+09%3A30%3A00"
        "&data[merges][FNAME]=Ann&data[id]=x&l[]=1&l[]=2"
    )
    assert form_document(text) == {
        "type": "profile",
        "fired_at": "2024-03-14 09:30:00",
        "data": {"merges": {"FNAME": "Ann"}, "id": "x"},
        "l": ["1", "2"],
    }


@pytest.mark.parametrize(
    "text",
    ["a=1&a[b]=2", "a[b]=2&a=1", "a=1&a=2", "[x]=1", "a[]=1&a[b]=2", "a" + "[x]" * 32 + "=1"],
)
def test_form_bodies_with_clashing_names_are_schema_violations(text: str) -> None:
    with pytest.raises(MappingError) as caught:
        form_document(text)
    assert caught.value.reason == "schema_violation"


def test_a_form_webhook_maps_like_a_json_one() -> None:
    hooks = settings(
        {
            "format": "form",
            "event_type": "type",
            "occurred_at": {"path": "fired_at", "format": "%Y-%m-%d %H:%M:%S"},
            "events": {"profile": {"entity_type": "customer", "op": "upsert"}},
        },
        webhook={"entity_id": "data.id", "delivery": "full", "record": "data"},
    )
    body = (
        b"type=profile&fired_at=2024-03-14+09%3A30%3A00"
        b"&data[id]=a1&data[first]=Ann&data[created]=2024-03-14T09:30:00Z"
    )
    (item,) = MAPPER.parse_webhook(body, {}, hooks).items
    assert item.record is not None
    assert (item.external_id, item.record.data) == ("a1", {"name": "Ann"})
    with pytest.raises(MappingError, match="not UTF-8") as caught:
        MAPPER.parse_webhook(b"type=\xff", {}, hooks)
    assert caught.value.reason == "unparseable"


# --- fields ------------------------------------------------------------------------------------

PLAIN = settings(
    {
        "event_type": "type",
        "occurred_at": {"path": "t"},
        "events": {"c": {"entity_type": "customer", "op": "upsert"}},
    }
)


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [("Ann Lee", "Ann", "Lee"), ("Mary Ann Lee", "Mary", "Ann Lee"), ("Cher", "Cher", "")],
)
def test_a_joined_field_splits_back_to_what_joins_to_it_again(
    name: str, first: str, last: str
) -> None:
    body = MAPPER.from_canonical("customer", {"name": name}, {}, PLAIN)
    assert (body["first"], body["last"]) == (first, last)
    record = MAPPER.to_canonical("customer", {**body, "id": 1, "created": "2024-01-01"}, PLAIN)
    assert record.data["name"] == name


def test_a_joined_field_reads_null_when_every_part_is_blank_and_clears_every_part() -> None:
    obj = {"id": 1, "created": "2024-01-01", "first": " ", "last": None}
    assert MAPPER.to_canonical("customer", obj, PLAIN).data == {"name": None}
    assert MAPPER.from_canonical("customer", {"name": None}, {}, PLAIN) == {
        "first": None,
        "last": None,
    }


def test_blank_strings_are_null_where_the_mapping_says_so() -> None:
    obj = {"id": 1, "created": "2024-01-01", "email": "  ", "phone": ""}
    assert MAPPER.to_canonical("customer", obj, PLAIN).data == {"email": None, "phone": ""}


def test_only_on_fields_go_into_one_operation_s_bodies() -> None:
    fields = [
        *CUSTOMER["fields"],
        {
            "path": "status",
            "transform": "constant",
            "value": "new",
            "direction": "outbound",
            "only_on": "create",
        },
        {"canonical": "company", "path": "status", "only_on": "update"},
    ]
    hooks = settings(
        {
            "event_type": "type",
            "occurred_at": {"path": "t"},
            "events": {"c": {"entity_type": "customer", "op": "upsert"}},
        },
        fields=fields,
    )
    data = {"email": "a@b.example", "company": "Acme"}
    assert MAPPER.from_canonical("customer", data, {}, hooks, operation="create")["status"] == "new"
    assert (
        MAPPER.from_canonical("customer", data, {}, hooks, operation="update")["status"] == "Acme"
    )
    assert "status" not in MAPPER.from_canonical("customer", data, {}, hooks)


def test_two_unconditional_writes_of_one_path_are_still_refused() -> None:
    fields = [*CUSTOMER["fields"], {"canonical": "company", "path": "first", "only_on": "create"}]
    document = {
        "signature": {"signature_header": "x-sig"},
        "entities": {"customer": {**CUSTOMER, "fields": fields}},
    }
    with pytest.raises(MappingFileError, match="'first' is already written by fields"):
        load_mapping_file(json.dumps(document))


# --- paging ------------------------------------------------------------------------------------


def _offset(**fields: Any) -> Pagination:
    return Pagination.model_validate({"style": "offset", "items": "rows", "page_size": 2, **fields})


@pytest.mark.parametrize(
    ("body", "offset", "count", "following"),
    [
        ({}, 0, 2, "2"),
        ({}, 2, 1, None),
        ({}, 4, 0, None),
        ({"total": 4}, 2, 2, None),
        ({"total": "5"}, 2, 2, "4"),
    ],
)
def test_offset_paging_ends_on_a_short_page_or_the_total(
    body: dict[str, Any], offset: int, count: int, following: str | None
) -> None:
    assert _next_cursor(_offset(total="total"), body, offset, count) == following


@pytest.mark.parametrize(
    "fields",
    [
        {"style": "page", "total": "total"},
        {"style": "page", "offset_param": "start"},
        {"style": "offset", "has_more": "more"},
        {"style": "offset", "next_cursor": "next"},
    ],
)
def test_paging_parameters_of_another_style_are_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Pagination.model_validate({"items": "rows", **fields})


def test_hmac_signature_of_a_form_body_still_verifies_over_the_raw_bytes() -> None:
    config = GenericSchemeConfig(signature_header="x-sig", encoding="base64")
    body = b"a[b]=1"
    signature = base64.b64encode(hmac.new(b"k", body, hashlib.sha256).digest()).decode()
    request = WebhookRequest("POST", "https://in.example/w", {"x-sig": signature}, body)
    assert GenericScheme(config).verify(request, ["k"], now=0).secret_index == 0


# --- credentials -------------------------------------------------------------------------------


def test_basic_auth_takes_the_stored_token_as_user_and_password() -> None:
    # The runtime hands a generic connection's stored credential over as a token; a mapping
    # whose API takes HTTP Basic (WooCommerce keys, Mailchimp, Mautic) must still get a header.
    mapping = GenericMapping.model_validate(
        {"entities": {"customer": CUSTOMER}, "api": {"auth": {"kind": "basic"}}}
    )
    auth = auth_for(mapping, token="ck_1:cs_2:3")
    expected = "Basic " + base64.b64encode(b"ck_1:cs_2:3").decode()
    assert asyncio.run(auth.headers()) == {"Authorization": expected}
    with pytest.raises(ValueError, match="user:password"):
        auth_for(mapping, token="no-colon")


def test_a_reference_value_that_means_none_is_no_reference() -> None:
    invoice = {
        "id": "id",
        "updated_at": {"path": "modified"},
        "fields": [{"canonical": "number", "path": "number"}],
        "refs": {"customer_id": {"path": "customer_id", "none": [0, ""]}, "job_id": "job"},
    }
    mapping = GenericMapping.model_validate({"entities": {"invoice": invoice}})
    hooks = {"generic_mapping": mapping_settings(mapping)}
    base = {"id": 9, "modified": "2024-01-01T00:00:00Z", "number": "9", "job": 4}
    guest = MAPPER.to_canonical("invoice", {**base, "customer_id": 0}, hooks)
    assert guest.refs == {"job_id": "4"}
    known = MAPPER.to_canonical("invoice", {**base, "customer_id": 12}, hooks)
    assert known.refs == {"customer_id": "12", "job_id": "4"}
    body = MAPPER.from_canonical("invoice", {}, {"customer_id": "12"}, hooks)
    assert body == {"customer_id": "12"}


# --- a signature over the form re-encoded as JSON (FreshBooks) --------------------------------

# The form of FreshBooks' SDK documentation (its "identity_id=1234user_id=1" typo mended).
FORM = (
    b"name=invoice.create&object_id=1234567&account_id=6BApk&business_id=6543"
    b"&identity_id=1234&user_id=1"
)


def _freshbooks_signature(verifier: str, body: bytes) -> str:
    """FreshBooks' published Python example, verbatim in effect: the form as a dict,
    ``json.dumps``, HMAC-SHA256 with the verifier, base64."""
    from urllib.parse import parse_qsl  # noqa: PLC0415 - the example's own parsing

    data = json.dumps(dict(parse_qsl(body.decode())))
    digest = hmac.new(verifier.encode("utf-8"), msg=data.encode("utf-8"), digestmod=hashlib.sha256)
    return base64.b64encode(digest.digest()).decode()


def test_a_form_signed_as_json_verifies_as_the_provider_example_signs_it() -> None:
    config = GenericSchemeConfig(
        signature_header="X-FreshBooks-Hmac-SHA256", encoding="base64", signed_payload="form_json"
    )
    signature = _freshbooks_signature("verifier-1", FORM)
    # Pinned: the JSON text signed is {"name": "invoice.create", "object_id": "1234567", …}
    # with Python's separators; a change in them or in the order would break every webhook.
    assert signature == "zzjv7UyYON1Nh/Blir0SWKGfFfjlcUkxHVsUbQd6dTU="
    request = WebhookRequest(
        "POST", "https://in.example/w", {"x-freshbooks-hmac-sha256": signature}, FORM
    )
    assert GenericScheme(config).verify(request, ["old", "verifier-1"], now=0).secret_index == 1
    tampered = WebhookRequest(
        "POST", "https://in.example/w", {"x-freshbooks-hmac-sha256": signature}, FORM + b"&x=1"
    )
    with pytest.raises(SignatureError) as caught:
        GenericScheme(config).verify(tampered, ["verifier-1"], now=0)
    assert caught.value.reason == "bad_signature"


def _freshbooks_settings() -> dict[str, Any]:
    from connectors.generic import CATALOGUE  # noqa: PLC0415

    _, mapping = load_mapping_file(CATALOGUE["freshbooks"])
    return {"generic_mapping": mapping_settings(mapping)}


@pytest.mark.parametrize("callback", ["..", ".", "2001/..", "%2e%2e", "a b", "x" * 129])
def test_a_handshake_value_that_could_move_the_confirm_call_is_refused(callback: str) -> None:
    # Its values are unsigned and fill the confirm URL's path: quote(safe="") leaves ".."
    # as it is, and a ".." segment would send our credentials' PUT one level up.
    from urllib.parse import urlencode  # noqa: PLC0415

    body = urlencode(
        {"name": "callback.verify", "verifier": "abc", "object_id": callback, "account_id": "A1"}
    ).encode()
    with pytest.raises(MappingError) as caught:
        Mapper().verification(body, {}, _freshbooks_settings())
    assert "object_id" in caught.value.detail


def test_a_body_that_is_no_handshake_reads_as_none_not_an_error() -> None:
    settings = _freshbooks_settings()
    assert Mapper().verification(b"\xff\xfe", {}, settings) is None
    assert Mapper().verification(b"verifier=abc", {}, settings) is None  # no event name
    found = Mapper().verification(
        b"name=callback.verify&verifier=Tz8rQ2vJpX9&object_id=2001&account_id=6BApk",
        {},
        settings,
    )
    assert found is not None
    assert found.values == {"account_id": "6BApk", "callback_id": "2001"}
