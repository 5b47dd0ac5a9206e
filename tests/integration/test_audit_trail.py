"""The admin audit trail and API-key usage (issue 20) against the real PostgreSQL: every
mutating call leaves one row with its actor, target and redacted change, refused calls
leave none, secrets never reach it, and each tenant sees only its own."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from crmsync.application import audit_trail
from tests.integration.test_admin_api import Admin, admin, new_connection

__all__ = ["admin"]  # the fixture, imported for pytest


async def _trail(admin: Admin, key: str | None = "", **query: str) -> list[dict[str, Any]]:
    page = await admin.ok("GET", "/v1/audit-log", key=key, params=query)
    items: list[dict[str, Any]] = page["items"]
    return items


async def _key_id(admin: Admin, key: str) -> str:
    async with admin.pool.acquire() as conn:
        found = await conn.fetchval("SELECT id FROM api_keys WHERE key_prefix = $1", key[:12])
    return str(found)


async def test_each_change_is_recorded_with_actor_target_and_change(admin: Admin) -> None:
    created = await new_connection(admin, "stripe", name="billing")
    conn_id = created["id"]
    await admin.ok("PATCH", f"/v1/connections/{conn_id}", json={"direction": "in"})
    await admin.ok("POST", f"/v1/connections/{conn_id}/disable")

    trail = await _trail(admin)
    actor = f"api-key:{await _key_id(admin, admin.key)}"
    assert [(e["action"], e["target_id"], e["actor"]) for e in trail] == [
        ("connection.set_status", conn_id, actor),
        ("connection.update", conn_id, actor),
        ("connection.create", conn_id, actor),
    ]
    assert trail[0]["change"] == {"status": "disabled"}
    assert trail[1]["change"] == {"direction": "in"}
    assert trail[2]["change"]["provider"] == "stripe"
    assert trail[2]["target_type"] == "connection"
    # Filters: by kind, by action, by target, and paging newest first.
    assert len(await _trail(admin, action="connection")) == 3
    assert [e["action"] for e in await _trail(admin, action="connection.update")] == [
        "connection.update"
    ]
    assert len(await _trail(admin, target=conn_id)) == 3
    first = await admin.ok("GET", "/v1/audit-log", params={"limit": "2"})
    rest = await admin.ok("GET", "/v1/audit-log", params={"cursor": first["next_cursor"]})
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in trail]


async def test_secrets_never_reach_the_trail(admin: Admin) -> None:
    secret = "whsec_" + uuid.uuid4().hex
    token = "sk_test_" + uuid.uuid4().hex
    created = await new_connection(
        admin, "stripe", webhook_secret=secret, credentials={"type": "api_key", "token": token}
    )
    conn_id = created["id"]
    rotated_to = "whsec_" + uuid.uuid4().hex
    await admin.ok(
        "POST", f"/v1/connections/{conn_id}/webhook-secret/rotate", json={"secret": rotated_to}
    )
    await admin.ok(
        "PUT",
        f"/v1/connections/{conn_id}/credentials",
        204,
        json={"type": "api_key", "token": token + "2"},
    )
    await admin.ok("POST", "/v1/api-keys", 201, json={"scope": "read"})
    async with admin.pool.acquire() as conn:
        stored = await conn.fetchval(
            "SELECT json_agg(a ORDER BY id)::text FROM admin_audit_log a WHERE tenant_id = $1",
            admin.tenant,
        )
    assert stored.count('"[redacted]"') >= 4, stored
    for value in (secret, token, rotated_to, "csk_"):
        assert value not in stored
    actions = [e["action"] for e in json.loads(stored)]
    assert actions == [
        "connection.create",
        "connection.rotate_secret",
        "connection.set_credentials",
        "api_key.create",
    ]


async def test_a_refused_change_leaves_no_row(admin: Admin) -> None:
    created = await new_connection(admin, "stripe")
    before = await _trail(admin)
    status, _ = await admin.call(
        "PATCH", f"/v1/connections/{created['id']}", json={"direction": "sideways"}
    )
    assert status == 422
    status, _ = await admin.call("POST", "/v1/connections", json={"provider": "stripe"})
    assert status == 409  # the name "stripe" is taken
    status, _ = await admin.call("POST", f"/v1/connections/{uuid.uuid4()}/disable")
    assert status == 404
    assert await _trail(admin) == before


async def test_reads_are_not_recorded_and_tenants_see_only_their_own(admin: Admin) -> None:
    await new_connection(admin, "stripe")
    await admin.ok("GET", "/v1/connections")
    await admin.ok("GET", "/v1/dead-letters")
    mine = await _trail(admin, key=admin.read_key)  # a read key may read the trail
    assert [e["action"] for e in mine] == ["connection.create"]
    assert await _trail(admin, key=admin.other_key) == []
    # A read key cannot change anything, so it never appears as an actor.
    status, _ = await admin.call(
        "POST", "/v1/connections", key=admin.read_key, json={"provider": "xero"}
    )
    assert status == 403
    assert len(await _trail(admin)) == 1


async def test_the_operation_itself_records_whoever_calls_it(admin: Admin) -> None:
    """The CLI and the console call the same operations: the trail is theirs too."""
    async with admin.pool.acquire() as conn:
        await audit_trail.record(
            conn,
            admin.tenant,
            "cli:alice",
            "sync_job.cancel",
            target_id=None,
            change=audit_trail.redact({"refresh_token": "r", "nested": [{"password": "p"}]}),
        )
    (entry,) = await _trail(admin, actor="cli:alice")
    assert entry["change"] == {
        "refresh_token": "[redacted]",
        "nested": [{"password": "[redacted]"}],
    }
    assert entry["target_type"] == "sync_job"


async def test_api_key_detail_counts_requests_per_day(admin: Admin) -> None:
    read_id = await _key_id(admin, admin.read_key)
    for _ in range(7):
        await admin.ok("GET", "/v1/connections", key=admin.read_key)
    # The recorder flushes every 0.05 s in this harness: wait until all seven are written.
    for _ in range(200):
        detail = await admin.ok("GET", f"/v1/api-keys/{read_id}")
        if detail["usage"] and detail["usage"][0]["requests"] >= 7:
            break
        await asyncio.sleep(0.05)
    assert detail["usage"] == [{"day": datetime.now(UTC).date().isoformat(), "requests": 7}]
    assert detail["last_used_at"] is not None
    # Another tenant's key is not found, usage or not.
    status, _ = await admin.call("GET", f"/v1/api-keys/{read_id}", key=admin.other_key)
    assert status == 404
