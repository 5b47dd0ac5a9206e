"""Per-connection field-mapping overrides on built-in connectors (custom fields): read
and written both ways, validated with errors that name the field, and full webhooks of
an overridden type hydrated so the override sees the provider's object."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.ascora.mapping import Mapper as AscoraMapper
from connectors.overrides import validate
from connectors.spec import MappingError
from connectors.stripe.mapping import Mapper as StripeMapper

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
ASCORA = {"company_code": "DEMO"}
HEADERS = {"webhook-id": "msg_1"}


def with_overrides(base: dict[str, Any], **by_type: list[dict[str, Any]]) -> dict[str, Any]:
    return {**base, "field_overrides": by_type}


def ascora_customer(**extra: Any) -> dict[str, Any]:
    body = json.loads((FIXTURES / "ascora" / "customer_updated.json").read_text())["body"]
    return {**body["data"], **extra}


def test_an_ascora_custom_field_becomes_a_canonical_field_and_goes_back_there() -> None:
    settings = with_overrides(
        ASCORA, customer=[{"canonical": "notes", "path": "customFields.crmNotes"}]
    )
    obj = ascora_customer(customFields={"crmNotes": "Gate code 4411"}, notes="built-in")
    mapper = AscoraMapper()
    record = mapper.to_canonical("customer", obj, settings)
    assert record.data["notes"] == "Gate code 4411"
    # Untouched fields still come from the built-in mapping.
    assert record.data["name"] == "Pipedream"
    body = mapper.from_canonical("customer", record.data, {}, settings)
    assert body["customFields"] == {"crmNotes": "Gate code 4411"}
    # Without overrides the same object maps as before.
    assert mapper.to_canonical("customer", obj, ASCORA).data["notes"] == "built-in"


def test_a_path_the_object_lacks_leaves_the_built_in_value() -> None:
    settings = with_overrides(
        ASCORA, customer=[{"canonical": "notes", "path": "customFields.crmNotes"}]
    )
    record = AscoraMapper().to_canonical("customer", ascora_customer(notes="kept"), settings)
    assert record.data["notes"] == "kept"


def test_stripe_metadata_round_trips_with_a_direction_and_a_transform() -> None:
    settings = {
        "field_overrides": {
            "customer": [
                {"canonical": "company", "path": "metadata.trading_name"},
                {
                    "canonical": "notes",
                    "path": "metadata.priority",
                    "direction": "outbound",
                    "transform": "constant",
                    "value": "gold",
                },
            ]
        }
    }
    mapper = StripeMapper()
    body = mapper.from_canonical(
        "customer", {"name": "Jo", "company": "Jo's Plumbing"}, {}, settings
    )
    assert body["metadata"]["trading_name"] == "Jo's Plumbing"
    assert body["metadata"]["priority"] == "gold"
    obj = {
        "id": "cus_1",
        "object": "customer",
        "created": 1_700_000_000,
        "name": "Jo",
        "email": None,
        "phone": None,
        "metadata": {"trading_name": "Jo's Plumbing Pty"},
    }
    assert mapper.to_canonical("customer", obj, settings).data["company"] == "Jo's Plumbing Pty"


def test_full_webhooks_of_an_overridden_type_are_hydrated() -> None:
    raw = json.loads((FIXTURES / "ascora" / "customer_updated.json").read_text())["body"]
    body = json.dumps(raw).encode()
    plain = AscoraMapper().parse_webhook(body, HEADERS, ASCORA)
    assert plain.items[0].record is not None
    settings = with_overrides(
        ASCORA, customer=[{"canonical": "notes", "path": "customFields.crmNotes"}]
    )
    thin = AscoraMapper().parse_webhook(body, HEADERS, settings)
    assert thin.items[0].record is None
    assert thin.items[0].external_id == plain.items[0].external_id
    # Outbound-only overrides need no hydration.
    out_only = with_overrides(
        ASCORA,
        customer=[{"canonical": "notes", "path": "customFields.x", "direction": "outbound"}],
    )
    assert AscoraMapper().parse_webhook(body, HEADERS, out_only).items[0].record is not None


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"customer": [{"canonical": "favourite_colour", "path": "x"}]}, "favourite_colour"),
        ({"customer": [{"canonical": "notes"}]}, "needs both"),
        ({"widget": [{"canonical": "notes", "path": "x"}]}, "widget"),
        ({"customer": [{"canonical": "notes", "path": "x", "colour": 1}]}, "colour"),
    ],
)
def test_invalid_overrides_are_refused_with_what_is_wrong(raw: Any, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        validate(raw)
    with pytest.raises(MappingError) as caught:
        AscoraMapper().to_canonical("customer", ascora_customer(), {"field_overrides": raw})
    assert caught.value.reason == "invalid_settings"
