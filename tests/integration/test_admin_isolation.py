"""Tenant isolation: another tenant's admin key walks every route of the API with this
tenant's ids and sees or changes nothing of it (404 wherever an id of it is named)."""

from __future__ import annotations

import uuid
from typing import Any

from services.admin.routes import routes
from tests.integration.test_admin_api import Admin, admin, new_connection

__all__ = ["admin"]  # the fixture, imported for pytest

# Tenant A's customer's email: another tenant can neither export nor erase the person.
PERSON = "ada@tenant-a.example"


async def _seed(admin: Admin) -> dict[str, str]:
    """One of everything in tenant A."""
    conn = await new_connection(admin, "stripe")
    internal = await new_connection(admin, "internal")
    ids: dict[str, str] = {"connection_id": conn["id"], "internal": internal["id"]}
    ids["person"] = str(
        await admin.pool.fetchval(
            "INSERT INTO customers (tenant_id, data) VALUES ($1, $2) RETURNING id",
            admin.tenant,
            {"email": PERSON},
        )
    )
    for table, key in (
        ("customers", "customer"),
        ("jobs", "job"),
        ("invoices", "invoice"),
        ("payments", "payment"),
    ):
        ids[key] = str(
            await admin.pool.fetchval(
                f"INSERT INTO {table} (tenant_id, data) VALUES ($1, '{{}}') RETURNING id",  # noqa: S608
                admin.tenant,
            )
        )
    ids["dead_letter_id"] = str(
        await admin.pool.fetchval(
            """
            INSERT INTO dead_letters (stage, reason, tenant_id, connection_id, topic, payload)
            VALUES ('processor', 'schema_violation', $1, $2, 'webhooks.raw', 'x') RETURNING id
            """,
            admin.tenant,
            uuid.UUID(conn["id"]),
        )
    )
    job = await admin.ok(
        "POST", "/v1/sync-jobs", 201, json={"connection": conn["id"], "kind": "backfill"}
    )
    ids["job_id"] = job["id"]
    ids["conflict_id"] = str(
        await admin.pool.fetchval(
            """
            INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                                   incoming_value)
            VALUES ($1, 'customer', $2, 'name', '"a"', '"b"') RETURNING id
            """,
            admin.tenant,
            uuid.UUID(ids["customer"]),
        )
    )
    ids["key_id"] = (await admin.ok("POST", "/v1/api-keys", 201, json={"scope": "read"}))["id"]
    await admin.ok("PATCH", "/v1/quotas", json={"max_connections": 50})
    ids["window_id"] = (
        await admin.ok(
            "POST",
            "/v1/freeze-windows",
            201,
            json={"starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"},
        )
    )["id"]
    ids["endpoint_id"] = (
        await admin.ok(
            "POST", "/v1/notification-endpoints", 201, json={"url": "https://a.example/h"}
        )
    )["id"]
    return ids


def _cases(ids: dict[str, str]) -> dict[tuple[str, str], tuple[dict[str, Any], int]]:
    """(method, path) -> (request options, the status another tenant gets)."""
    conn = ids["connection_id"]
    by_conn = {"params": {"connection": conn}}
    cases: dict[tuple[str, str], tuple[dict[str, Any], int]] = {
        ("GET", "/v1/tenant"): ({}, 200),
        ("POST", "/v1/connections"): ({"json": {"provider": "stripe", "name": "b"}}, 201),
        ("GET", "/v1/connections"): ({}, 200),
        ("GET", "/v1/connections/{connection_id}"): ({}, 404),
        ("PATCH", "/v1/connections/{connection_id}"): ({"json": {"direction": "in"}}, 404),
        ("DELETE", "/v1/connections/{connection_id}"): ({}, 404),
        ("POST", "/v1/connections/{connection_id}/disable"): ({}, 404),
        ("POST", "/v1/connections/{connection_id}/enable"): ({}, 404),
        ("POST", "/v1/connections/{connection_id}/webhook-secret/rotate"): ({"json": {}}, 404),
        ("POST", "/v1/connections/{connection_id}/webhook-handshake/await"): ({"json": {}}, 404),
        ("PUT", "/v1/connections/{connection_id}/credentials"): (
            {"json": {"type": "api_key", "token": "t"}},
            404,
        ),
        ("GET", "/v1/connections/{connection_id}/health"): ({}, 404),
        ("GET", "/v1/sync-log"): (by_conn, 404),
        ("GET", "/v1/sync-log/summary"): (by_conn, 404),
        ("GET", "/v1/audit/ledger"): (by_conn, 404),
        ("GET", "/v1/audit-log"): ({"params": {"target": conn}}, 200),
        ("GET", "/v1/dead-letters"): (by_conn, 404),
        ("GET", "/v1/dead-letters/{dead_letter_id}"): ({}, 404),
        ("POST", "/v1/dead-letters/{dead_letter_id}/redrive"): ({}, 404),
        ("POST", "/v1/dead-letters/{dead_letter_id}/discard"): ({}, 404),
        ("POST", "/v1/dead-letters/redrive"): ({"json": {"ids": [ids["dead_letter_id"]]}}, 404),
        ("POST", "/v1/replay"): ({"json": {"connection": conn, "from_offset": 0}}, 404),
        ("POST", "/v1/sync-jobs"): ({"json": {"connection": conn, "kind": "reconcile"}}, 404),
        ("GET", "/v1/sync-jobs"): (by_conn, 404),
        ("GET", "/v1/sync-jobs/{job_id}"): ({}, 404),
        ("POST", "/v1/sync-jobs/{job_id}/cancel"): ({}, 404),
        ("GET", "/v1/conflicts"): ({}, 200),
        ("GET", "/v1/conflicts/{conflict_id}"): ({}, 404),
        ("POST", "/v1/conflicts/{conflict_id}/resolve"): ({"json": {"choose": "incoming"}}, 404),
        ("POST", "/v1/api-keys"): (
            {"json": {"scope": "publish", "connection": ids["internal"]}},
            404,
        ),
        ("GET", "/v1/api-keys"): ({}, 200),
        ("GET", "/v1/api-keys/{key_id}"): ({}, 404),
        ("POST", "/v1/api-keys/{key_id}/revoke"): ({}, 404),
        ("POST", "/v1/api-keys/{key_id}/rotate"): ({"json": {}}, 404),
        ("POST", "/v1/connections/{connection_id}/pause"): ({"json": {}}, 404),
        ("POST", "/v1/connections/{connection_id}/resume"): ({"json": {}}, 404),
        ("POST", "/v1/freeze-windows"): (
            {
                "json": {
                    "connection": conn,
                    "starts_at": "2030-01-01T00:00:00Z",
                    "ends_at": "2030-01-02T00:00:00Z",
                }
            },
            404,
        ),
        ("GET", "/v1/freeze-windows"): (by_conn, 404),
        ("GET", "/v1/freeze-windows/{window_id}"): ({}, 404),
        ("DELETE", "/v1/freeze-windows/{window_id}"): ({}, 404),
        ("POST", "/v1/notification-endpoints"): ({"json": {"url": "https://b.example/h"}}, 201),
        ("GET", "/v1/notification-endpoints"): ({}, 200),
        # Quotas are the caller's tenant's: another tenant sets its own, never ours.
        ("GET", "/v1/quotas"): ({}, 200),
        ("PUT", "/v1/quotas"): (
            {"json": {"max_connections": 1, "events_per_minute": 1, "max_records": 1}},
            200,
        ),
        ("PATCH", "/v1/quotas"): ({"json": {"max_records": 2}}, 200),
        ("GET", "/v1/webhook-samples"): ({}, 200),
        ("POST", "/v1/connections/{connection_id}/trigger"): (
            {"json": {"event": "customer.created"}},
            404,
        ),
        ("GET", "/v1/notification-endpoints/{endpoint_id}"): ({}, 404),
        ("DELETE", "/v1/notification-endpoints/{endpoint_id}"): ({}, 404),
        ("POST", "/v1/notification-endpoints/{endpoint_id}/test"): ({}, 404),
        ("GET", "/v1/notification-endpoints/{endpoint_id}/deliveries"): ({}, 404),
        ("POST", "/v1/privacy/export"): ({"json": {"email": PERSON}}, 404),
        ("POST", "/v1/privacy/erase"): ({"json": {"email": PERSON}}, 404),
    }
    for collection, entity in (
        ("customers", "customer"),
        ("jobs", "job"),
        ("invoices", "invoice"),
        ("payments", "payment"),
    ):
        cases[("GET", f"/v1/{collection}")] = (by_conn, 404)
        cases[("GET", f"/v1/{collection}/{{record_id}}")] = ({"record_id": ids[entity]}, 404)
    return cases


async def test_another_tenants_key_sees_and_changes_nothing_on_any_route(admin: Admin) -> None:
    ids = await _seed(admin)
    cases = _cases(ids)
    table = routes()
    assert set(cases) == {(r.method, r.path) for r in table}, "a route has no isolation case"
    mine = set(ids.values())
    for route in table:
        options, expected = cases[(route.method, route.path)]
        options = dict(options)
        path = route.path
        for name in route.path_params:
            path = path.replace(f"{{{name}}}", options.pop(name, None) or ids[name])
        status, body = await admin.call(route.method, path, key=admin.other_key, **options)
        assert status == expected, (route.method, route.path, body)
        if status == 200 and "items" in body:
            # A list of the other tenant's own things: none of ours in it.
            seen = {str(item.get("id")) for item in body.get("items", [])}
            assert not seen & mine, (route.path, seen & mine)
        # Unfiltered lists show none of ours either.
        if route.method == "GET" and route.query is not None:
            status, body = await admin.call("GET", route.path, key=admin.other_key)
            if "items" in body:
                assert not {str(i.get("id")) for i in body["items"]} & mine, route.path

    # The key's tenant is the other tenant, never ours.
    tenant = await admin.ok("GET", "/v1/tenant", key=admin.other_key)
    assert tenant["id"] == str(admin.other_tenant)

    # The other tenant's audit trail holds its own changes (it created a connection above)
    # and none of ours; ours holds none of its.
    theirs = (await admin.ok("GET", "/v1/audit-log", key=admin.other_key))["items"]
    assert theirs
    assert not {str(e["target_id"]) for e in theirs} & mine
    ours = (await admin.ok("GET", "/v1/audit-log"))["items"]
    assert not {e["id"] for e in ours} & {e["id"] for e in theirs}

    # Nothing of tenant A changed.
    shown = await admin.ok("GET", f"/v1/connections/{ids['connection_id']}")
    assert shown["status"] == "active"
    assert "direction" not in shown["settings"]
    assert (await admin.ok("GET", f"/v1/dead-letters/{ids['dead_letter_id']}"))[
        "redriven_at"
    ] is None
    assert (await admin.ok("GET", f"/v1/sync-jobs/{ids['job_id']}"))["status"] == "pending"
    assert (await admin.ok("GET", f"/v1/conflicts/{ids['conflict_id']}"))["resolved_at"] is None
    assert (await admin.ok("GET", f"/v1/api-keys/{ids['key_id']}"))["revoked_at"] is None
    await admin.ok("GET", f"/v1/notification-endpoints/{ids['endpoint_id']}")
    await admin.ok("GET", f"/v1/freeze-windows/{ids['window_id']}")
    health = await admin.ok("GET", f"/v1/connections/{ids['connection_id']}/health")
    assert (health["paused_inbound"], health["paused_outbound"]) == (False, False)
    person = await admin.ok("GET", f"/v1/customers/{ids['person']}")
    assert person["data"] == {"email": PERSON}
    assert await admin.pool.fetchval("SELECT count(*) FROM privacy_tombstones") == 0
    quotas = await admin.ok("GET", "/v1/quotas")
    assert quotas["connections"]["limit"] == 50
    assert (quotas["events_per_minute"]["limit"], quotas["records"]["limit"]) == (None, None)
