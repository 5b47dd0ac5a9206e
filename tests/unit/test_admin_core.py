"""The admin API's pure parts: cursors, settings merge, and the generated document."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from crmsync.application import pagination
from crmsync.application.connections import merge_settings
from crmsync.application.errors import InvalidError
from crmsync.application.models import ConnectionSettingsIn, CredentialsIn
from crmsync.application.operations import OPERATIONS
from services.admin.api import Route, arguments, openapi, takes_now
from services.admin.routes import routes


def test_a_cursor_round_trips_its_sort_key() -> None:
    at = datetime(2026, 11, 21, 9, 30, 0, 123456, tzinfo=UTC)
    ident = uuid.uuid4()
    assert pagination.decode(pagination.encode(at, ident), datetime, uuid.UUID) == (at, ident)
    assert pagination.decode(pagination.encode(42), int) == (42,)


@pytest.mark.parametrize(
    "cursor",
    ["", "!!!", "bm90IGpzb24", pagination.encode(1, 2), pagination.encode("x"), "W10"],
)
def test_a_cursor_we_did_not_issue_is_a_422(cursor: str) -> None:
    with pytest.raises(InvalidError) as caught:
        pagination.decode(cursor, datetime, uuid.UUID)
    assert caught.value.status == 422
    assert caught.value.extensions["errors"][0]["loc"] == "/query/cursor"


def test_settings_merge_changes_only_what_was_given() -> None:
    current = {"direction": "in", "xero_tenant_id": "t1", "rate_limit": {"rate": 1}}
    update = ConnectionSettingsIn.model_validate(
        {"direction": None, "entity_types": ["customer"], "provider_settings": {"x": 1}}
    )
    assert merge_settings(current, update, "xero") == {
        "xero_tenant_id": "t1",
        "rate_limit": {"rate": 1},
        "entity_types": ["customer"],
        "x": 1,
    }
    assert current["direction"] == "in"  # the input is not modified


def test_reserved_keys_cannot_be_smuggled_through_provider_settings() -> None:
    update = ConnectionSettingsIn.model_validate({"provider_settings": {"generic": {}}})
    with pytest.raises(InvalidError):
        merge_settings({}, update, "generic")


def test_the_document_has_every_route_with_its_error_answers() -> None:
    table = routes()
    document = openapi(table, title="t", version="1")
    operations = [(m.upper(), p) for p, ops in document["paths"].items() for m in ops]
    assert sorted(operations) == sorted((r.method, r.path) for r in table)
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))
    for ops in document["paths"].values():
        for op in ops.values():
            assert {"401", "403", "422"} <= set(op["responses"])
    schemas = document["components"]["schemas"]
    assert "secret" not in str(schemas["ConnectionOut"]["properties"])


def test_every_operation_takes_what_its_route_gives() -> None:
    given = {r.operation_id: takes_now(r) for r in routes()}
    # The operations that stamp what they write with the request's time.
    assert {op for op, now in given.items() if now} == {
        "rotateWebhookSecret",
        "awaitWebhookHandshake",
        "getConnectionHealth",
        "getSyncLogSummary",
        "getLedger",
        "resolveConflict",
        "createApiKey",
        "rotateApiKey",
        "testNotificationEndpoint",
        "pauseConnection",
        "resumeConnection",
        "createFreezeWindow",
        "listFreezeWindows",
        "deleteFreezeWindow",
        "exportPerson",
        "erasePerson",
        "getQuotas",
        "setQuotas",
        "updateQuotas",
        "triggerWebhook",
    }


def test_a_route_whose_operation_cannot_take_its_path_id_fails_when_added(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def get(conn: object, ctx: object, job_id: uuid.UUID) -> None:
        return None

    monkeypatch.setitem(OPERATIONS, "getThing", get)
    route = Route("GET", "/v1/things/{thing_id}", "read", "s", "t", "getThing")
    with pytest.raises(TypeError, match="getThing"):
        takes_now(route)


def test_a_root_model_body_reaches_the_operation_as_its_value() -> None:
    route = next(r for r in routes() if r.operation_id == "setConnectionCredentials")
    body = CredentialsIn.model_validate({"type": "api_key", "token": "k"})
    connection_id = uuid.uuid4()
    given = arguments(route, {"connection_id": connection_id}, None, body, None)
    assert given == {"connection_id": connection_id, "body": body.root}
