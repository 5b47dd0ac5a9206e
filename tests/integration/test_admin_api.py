"""The admin API against the real PostgreSQL: every endpoint's success, auth failures,
validation errors and pagination. Kafka-facing operations (redrive, replay) are in
test_admin_kafka.py, tenant isolation in test_admin_isolation.py, the schemathesis run
in test_admin_openapi.py."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from connectors.generic import load_mapping_file, mapping_settings
from crmsync.common.apikeys import create_key, ensure_tenant
from crmsync.common.connections import load_active
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from crmsync.common.settings import parse_settings
from crmsync.demo.sims import ACME_MAPPING
from crmsync.settings.admin import AdminSettings
from services.admin.app import create_app
from services.admin.routes import routes
from tests.generic_schemes import BAD_SCHEMES
from tests.ingest_harness import running_ingest

PUBLIC_BASE = "https://hooks.example.test"


@dataclass
class Admin:
    client: TestClient  # type: ignore[type-arg]
    pool: asyncpg.Pool
    keyring: KeyRing
    tenant: uuid.UUID
    key: str  # admin scope, tenant A
    read_key: str  # read scope, tenant A
    other_tenant: uuid.UUID
    other_key: str  # admin scope, tenant B

    async def call(
        self, method: str, path: str, *, key: str | None = "", **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(kwargs.pop("headers", {}))
        token = self.key if key == "" else key
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        resp = await self.client.request(method, path, headers=headers, **kwargs)
        body = await resp.json() if resp.content_type.endswith("json") else await resp.text()
        return resp.status, body

    async def ok(self, method: str, path: str, status: int = 200, **kwargs: Any) -> Any:
        got, body = await self.call(method, path, **kwargs)
        assert got == status, body
        return body


def admin_settings(
    database_url: str,
    *,
    kafka_bootstrap: str = "127.0.0.1:9092",
    topic_prefix: str = "",
    **overrides: Any,
) -> AdminSettings:
    """The admin service's settings for a test: this database, this broker and topic prefix,
    webhook URLs under PUBLIC_BASE. ``overrides``: more AdminSettings fields."""
    return parse_settings(
        AdminSettings,
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=topic_prefix,
        ingest_public_base_url=PUBLIC_BASE,
        **overrides,
    )


@asynccontextmanager
async def running_admin(
    database_url: str,
    *,
    kafka_bootstrap: str = "127.0.0.1:9092",
    topic_prefix: str = "",
    **overrides: Any,
) -> AsyncIterator[Admin]:
    """``overrides``: more AdminSettings fields."""
    settings = admin_settings(
        database_url, kafka_bootstrap=kafka_bootstrap, topic_prefix=topic_prefix, **overrides
    )
    pool = await create_pool(database_url, max_size=4)
    app = create_app(settings, pool=pool, last_used_flush_seconds=0.05)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        async with pool.acquire() as conn:
            tenant = await ensure_tenant(conn, "acme")
            other = await ensure_tenant(conn, "globex")
            key = await create_key(conn, tenant, "admin")
            read = await create_key(conn, tenant, "read")
            other_key = await create_key(conn, other, "admin")
        yield Admin(
            client,
            pool,
            KeyRing.parse(settings.master_keys.get_secret_value()),
            tenant,
            key.key,
            read.key,
            other,
            other_key.key,
        )
    finally:
        await client.close()
        await pool.close()


@pytest.fixture
async def admin(database_url: str) -> AsyncIterator[Admin]:
    async with running_admin(database_url) as harness:
        yield harness


async def new_connection(admin: Admin, provider: str = "stripe", **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await admin.ok(
        "POST", "/v1/connections", 201, json={"provider": provider, **body}
    )
    return created


# -- auth ---------------------------------------------------------------------------------


def _concrete(path: str) -> str:
    parts = [str(uuid.uuid4()) if p.startswith("{") else p for p in path.split("/")]
    return "/".join(parts)


async def test_every_route_refuses_a_missing_bad_revoked_or_expired_key(admin: Admin) -> None:
    async with admin.pool.acquire() as conn:
        revoked = await create_key(conn, admin.tenant, "admin")
        await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = $1", revoked.id)
        expired = await create_key(
            conn, admin.tenant, "admin", expires_at=datetime.now(UTC) - timedelta(seconds=1)
        )
    for route in routes():
        path = _concrete(route.path)
        for key in (None, "csk_not-a-key", revoked.key, expired.key):
            status, body = await admin.call(route.method, path, key=key, json={})
            assert status == 401, (route.method, route.path, body)
            assert body["status"] == 401
        resp = await admin.client.request(route.method, path, headers={"Authorization": "Basic x"})
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert resp.content_type == "application/problem+json"


async def test_read_and_publish_keys_cannot_change_anything(admin: Admin) -> None:
    conn_id = (await new_connection(admin, "internal"))["id"]
    async with admin.pool.acquire() as conn:
        publish = await create_key(conn, admin.tenant, "publish", connection_id=uuid.UUID(conn_id))
    for route in routes():
        path = _concrete(route.path)
        if route.scope == "admin":
            status, body = await admin.call(route.method, path, key=admin.read_key, json={})
            assert status == 403, (route.path, body)
        status, body = await admin.call(route.method, path, key=publish.key, json={})
        assert status == 403, (route.path, body)
    # A read key reads.
    listed = await admin.ok("GET", "/v1/connections", key=admin.read_key)
    assert [c["id"] for c in listed["items"]] == [conn_id]


async def test_last_used_time_is_recorded_in_batches(admin: Admin) -> None:
    for _ in range(5):
        await admin.ok("GET", "/v1/connections")
    for _ in range(100):
        used = await admin.pool.fetchval(
            "SELECT last_used_at FROM api_keys WHERE key_prefix = $1", admin.key[:12]
        )
        if used is not None:
            break
        await asyncio.sleep(0.05)
    assert used is not None
    # Keys never used stay unused.
    other = await admin.pool.fetchval(
        "SELECT last_used_at FROM api_keys WHERE key_prefix = $1", admin.other_key[:12]
    )
    assert other is None


# -- validation ---------------------------------------------------------------------------


async def test_unknown_fields_and_bad_values_are_422_with_per_field_errors(admin: Admin) -> None:
    status, body = await admin.call(
        "POST", "/v1/connections", json={"provider": "stripe", "colour": "red"}
    )
    assert status == 422
    assert body["errors"] == [
        {"loc": "/body/colour", "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    ]
    status, body = await admin.call("GET", "/v1/connections?limit=0&shape=round")
    assert status == 422
    assert {e["loc"] for e in body["errors"]} == {"/query/limit", "/query/shape"}
    status, body = await admin.call("GET", "/v1/connections/not-a-uuid")
    assert status == 422
    assert body["errors"][0]["loc"] == "/path/connection_id"
    status, body = await admin.call(
        "POST", "/v1/connections", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert status == 400
    status, body = await admin.call("POST", "/v1/connections", json={"provider": "salesforce"})
    assert status == 422
    assert body["errors"][0]["loc"] == "/body/provider"
    status, body = await admin.call("GET", "/v1/connections?cursor=garbage")
    assert status == 422
    assert body["errors"][0]["loc"] == "/query/cursor"


# Past any sane nesting: json.loads raised RecursionError on it, answered 500.
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "route", [r for r in routes() if r.body is not None], ids=lambda r: r.operation_id
)
async def test_a_deeply_nested_body_is_400_on_every_route_that_reads_one(
    admin: Admin, route: Any
) -> None:
    resp = await admin.client.request(
        route.method,
        _concrete(route.path),
        data=DEEP,
        headers={"Authorization": f"Bearer {admin.key}", "Content-Type": "application/json"},
    )
    assert resp.status == 400, await resp.text()
    assert resp.content_type == "application/problem+json"
    assert (await resp.json())["detail"].startswith("the body is not JSON")


async def test_unknown_paths_and_methods_answer_problem_details(admin: Admin) -> None:
    resp = await admin.client.get("/v1/nothing-here")
    assert resp.status == 404
    assert resp.content_type == "application/problem+json"
    resp = await admin.client.put("/v1/connections")
    assert resp.status == 405
    assert "Allow" in resp.headers


# -- connections --------------------------------------------------------------------------


async def test_create_connection_shows_url_and_secret_once(admin: Admin) -> None:
    created = await new_connection(admin, "stripe", webhook_secret="whsec_" + "a" * 32)
    assert created["webhook_url"] == f"{PUBLIC_BASE}/webhooks/stripe/{created['id']}"
    assert created["webhook_secret"] == "whsec_" + "a" * 32
    shown = await admin.ok("GET", f"/v1/connections/{created['id']}")
    assert "webhook_secret" not in shown
    assert shown["status"] == "active"
    stored = await admin.pool.fetchval("SELECT secret_encrypted FROM webhook_secrets")
    assert stored.startswith("enc:v1:")
    # A generated secret in the provider's format when none is given.
    generated = await new_connection(admin, "standard-webhooks", name="sw")
    assert generated["webhook_secret"].startswith("whsec_")
    # Internal connections get a publish key instead.
    internal = await new_connection(admin, "internal")
    assert internal["webhook_url"] is None
    assert internal["changes_url"] == f"{PUBLIC_BASE}/v1/changes"
    assert internal["api_key"].startswith("csk_")
    # Names are unique per tenant.
    status, body = await admin.call("POST", "/v1/connections", json={"provider": "stripe"})
    assert status == 409, body


@pytest.mark.parametrize(("scheme", "field"), BAD_SCHEMES)
async def test_a_bad_generic_scheme_is_422_naming_the_field(
    admin: Admin, scheme: dict[str, object], field: str
) -> None:
    status, body = await admin.call(
        "POST", "/v1/connections", json={"provider": "generic", "generic_config": scheme}
    )
    assert status == 422, body
    assert body["errors"][0]["loc"] == f"/body/generic_config/{field}"


async def test_connection_settings_update_merges_and_validates(admin: Admin) -> None:
    created = await new_connection(
        admin, "xero", settings={"direction": "in", "provider_settings": {"xero_tenant_id": "t1"}}
    )
    path = f"/v1/connections/{created['id']}"
    priority = str(uuid.uuid4())
    updated = await admin.ok(
        "PATCH",
        path,
        json={
            "entity_types": ["customer", "invoice"],
            "conflict_policy": {"default": {"kind": "source_priority", "priority": [priority]}},
            "rate_limit": {"rate": 30, "per_seconds": 60, "burst": 5},
            "base_url": "https://api.xero.example",
            "name": "xero-main",
        },
    )
    assert updated["name"] == "xero-main"
    assert updated["base_url"] == "https://api.xero.example"
    assert updated["settings"] == {
        "direction": "in",
        "xero_tenant_id": "t1",
        "entity_types": ["customer", "invoice"],
        "conflict_policy": {"default": {"kind": "source_priority", "priority": [priority]}},
        "rate_limit": {"rate": 30.0, "per_seconds": 60.0, "burst": 5},
    }
    assert updated["updated_at"] > created["updated_at"]
    # null resets a setting; untouched ones stay.
    reset = await admin.ok("PATCH", path, json={"direction": None, "rate_limit": None})
    assert "direction" not in reset["settings"]
    assert "rate_limit" not in reset["settings"]
    assert reset["settings"]["entity_types"] == ["customer", "invoice"]
    for bad, loc in [
        ({"direction": "sideways"}, "/body/direction"),
        ({"entity_types": ["spaceship"]}, "/body/entity_types/0"),
        (
            {"conflict_policy": {"default": {"kind": "coin_toss"}}},
            "/body/conflict_policy/default/kind",
        ),
        ({"field_mapping": {"a": 1}}, "/body/field_mapping"),
        ({"provider_settings": {"rate_limit": 1}}, "/body/provider_settings/rate_limit"),
        ({"rate_limit": {"rate": -1}}, "/body/rate_limit/rate"),
    ]:
        status, body = await admin.call("PATCH", path, json=bad)
        assert status == 422, (bad, body)
        assert body["errors"][0]["loc"].startswith(loc), (bad, body)


# OAuth2 credentials but for their token URL, which each case below points somewhere.
OAUTH2 = {
    "type": "oauth2",
    "access_token": "at",
    "refresh_token": "rt",
    "expires_at": "2031-01-01T00:00:00Z",
    "client_id": "cid",
    "client_secret": "cs",
}


async def test_provider_urls_on_private_addresses_are_422_per_field(database_url: str) -> None:
    """DESIGN invariant 12 at the door: base and token URLs must look like a provider's."""
    async with running_admin(database_url, allow_private_provider_urls=False) as admin:
        for body, loc in (
            ({"base_url": "http://api.xero.example"}, "/body/base_url"),
            ({"base_url": "https://127.0.0.1:9301"}, "/body/base_url"),
            ({"base_url": "https://user:pw@api.xero.example"}, "/body/base_url"),
            ({"base_url": "https://metadata.google.internal"}, "/body/base_url"),
            (
                {"credentials": {**OAUTH2, "token_url": "https://169.254.169.254/token"}},
                "/body/credentials/token_url",
            ),
        ):
            status, problem = await admin.call(
                "POST", "/v1/connections", json={"provider": "xero", **body}
            )
            assert status == 422, problem
            assert [e["loc"] for e in problem["errors"]] == [loc], problem
            assert "pw" not in str(problem)
        created = await new_connection(admin, "xero", base_url="https://api.xero.example")
        path = f"/v1/connections/{created['id']}"
        status, problem = await admin.call("PATCH", path, json={"base_url": "https://10.0.0.7"})
        assert status == 422, problem
        assert problem["errors"][0]["loc"] == "/body/base_url"
        assert "private" in problem["errors"][0]["msg"]
        signature, parsed = load_mapping_file(ACME_MAPPING)
        mapping = mapping_settings(parsed)
        mapping["api"]["base_url"] = "http://[::1]:8080"
        status, problem = await admin.call(
            "POST",
            "/v1/connections",
            json={
                "provider": "generic",
                "generic_config": signature.model_dump(mode="json"),
                "settings": {"field_mapping": mapping},
            },
        )
        assert status == 422, problem
        assert problem["errors"][0]["loc"] == "/body/field_mapping/api/base_url"
        status, problem = await admin.call(
            "PUT",
            f"{path}/credentials",
            json={**OAUTH2, "token_url": "http://localhost/token"},
        )
        assert status == 422, problem
        assert problem["errors"][0]["loc"] == "/body/token_url"


async def test_the_operator_setting_accepts_local_provider_urls(database_url: str) -> None:
    async with running_admin(database_url, allow_private_provider_urls=True) as admin:
        created = await new_connection(admin, "xero", base_url="http://127.0.0.1:9302")
        assert created["base_url"] == "http://127.0.0.1:9302"


async def test_disable_enable_and_delete(admin: Admin) -> None:
    created = await new_connection(admin)
    path = f"/v1/connections/{created['id']}"
    assert (await admin.ok("POST", f"{path}/disable"))["status"] == "disabled"
    active, _ = await load_active(admin.pool, admin.keyring)  # type: ignore[arg-type]
    assert uuid.UUID(created["id"]) not in active
    assert (await admin.ok("POST", f"{path}/enable"))["status"] == "active"
    await admin.ok("DELETE", path, 204)
    status, _ = await admin.call("GET", path)
    assert status == 404
    status, _ = await admin.call("DELETE", path)
    assert status == 404


async def test_rotating_the_webhook_secret_keeps_the_old_one_for_the_overlap(
    admin: Admin,
) -> None:
    created = await new_connection(admin, "stripe", webhook_secret="whsec_" + "o" * 32)
    before = datetime.now(UTC)
    rotated = await admin.ok(
        "POST",
        f"/v1/connections/{created['id']}/webhook-secret/rotate",
        json={"secret": "whsec_" + "n" * 32, "overlap_seconds": 600},
    )
    assert rotated["webhook_secret"] == "whsec_" + "n" * 32
    expire = datetime.fromisoformat(rotated["previous_expire_at"])
    assert before + timedelta(seconds=590) < expire < before + timedelta(seconds=700)
    active, _ = await load_active(admin.pool, admin.keyring)  # type: ignore[arg-type]
    secrets = active[uuid.UUID(created["id"])].secrets
    assert [s.value for s in secrets] == ["whsec_" + "n" * 32, "whsec_" + "o" * 32]
    assert secrets[0].expires_at is None
    # Generated when not given; an empty body is fine.
    again = await admin.ok("POST", f"/v1/connections/{created['id']}/webhook-secret/rotate")
    assert again["webhook_secret"].startswith("whsec_")
    internal = await new_connection(admin, "internal")
    status, _ = await admin.call("POST", f"/v1/connections/{internal['id']}/webhook-secret/rotate")
    assert status == 409


async def test_credentials_are_stored_encrypted_and_never_returned(admin: Admin) -> None:
    created = await new_connection(admin, "hubspot")
    path = f"/v1/connections/{created['id']}"
    assert created["has_credentials"] is False
    health = await admin.ok("GET", f"{path}/health")
    assert health["credentials"] == "none"
    expires = datetime(2031, 1, 1, tzinfo=UTC)
    await admin.pool.execute(
        "UPDATE connections SET status = 'needs_reauth' WHERE id = $1", uuid.UUID(created["id"])
    )
    await admin.ok(
        "PUT",
        f"{path}/credentials",
        204,
        json={
            "type": "oauth2",
            "access_token": "at-secret",
            "refresh_token": "rt-secret",
            "expires_at": expires.isoformat(),
            "client_id": "cid",
            "client_secret": "cs-secret",
            "token_url": "https://auth.example/token",
        },
    )
    shown = await admin.ok("GET", path)
    assert shown["has_credentials"] is True
    assert shown["status"] == "active"  # re-authorised
    assert "secret" not in str(shown)
    stored = await admin.pool.fetchval(
        "SELECT credentials_encrypted FROM connections WHERE id = $1", uuid.UUID(created["id"])
    )
    assert "at-secret" not in stored
    health = await admin.ok("GET", f"{path}/health")
    assert health["credentials"] == "oauth2"
    assert datetime.fromisoformat(health["token_expires_at"]) == expires
    await admin.ok("PUT", f"{path}/credentials", 204, json={"type": "api_key", "token": "tok"})
    assert (await admin.ok("GET", f"{path}/health"))["credentials"] == "api_key"
    status, body = await admin.call("PUT", f"{path}/credentials", json={"type": "password"})
    assert status == 422, body


async def test_health_reports_events_errors_circuit_and_queue(admin: Admin) -> None:
    created = await new_connection(admin, "ascora")
    cid = uuid.UUID(created["id"])
    entity = uuid.uuid4()
    await admin.pool.execute(
        """
        INSERT INTO sync_log (tenant_id, connection_id, direction, outcome, created_at)
        VALUES ($1, $2, 'in', 'applied', now() - interval '2 minutes'),
               ($1, $2, 'in', 'dead_lettered', now() - interval '1 minute'),
               ($1, $2, 'out', 'pushed', now()),
               ($1, $2, 'in', 'applied', now() - interval '3 hours')
        """,
        admin.tenant,
        cid,
    )
    await admin.pool.execute(
        """
        INSERT INTO push_jobs (tenant_id, connection_id, entity_type, entity_id, version,
                               last_error, next_attempt_at)
        VALUES ($1, $2, 'customer', $3, 1, 'circuit_open', now() + interval '30 seconds')
        """,
        admin.tenant,
        cid,
        entity,
    )
    health = await admin.ok("GET", f"/v1/connections/{cid}/health")
    assert health["events_in_window"] == 3
    assert health["errors_in_window"] == 1
    assert health["error_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert health["circuit"] == "open"
    assert health["pending_pushes"] == 1
    assert health["last_push_at"] is not None
    assert health["needs_reauth"] is False


# -- pagination ---------------------------------------------------------------------------


async def test_pages_walk_every_item_exactly_once(admin: Admin) -> None:
    made = {(await new_connection(admin, "stripe", name=f"s{i}"))["id"] for i in range(7)}
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await admin.ok("GET", f"/v1/connections{query}")
        seen += [c["id"] for c in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(made)
    assert len(seen) == len(set(seen))


# -- records ------------------------------------------------------------------------------


async def _customer(admin: Admin, data: dict[str, Any], **cols: Any) -> uuid.UUID:
    record_id: uuid.UUID = await admin.pool.fetchval(
        "INSERT INTO customers (tenant_id, data, updated_at) VALUES ($1, $2, $3) RETURNING id",
        cols.get("tenant", admin.tenant),
        data,
        cols.get("updated_at", datetime.now(UTC)),
    )
    return record_id


async def test_records_filter_by_fields_links_and_time(admin: Admin) -> None:
    stripe = await new_connection(admin, "stripe")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ann = await _customer(admin, {"name": "Ann", "email": "Ann@Example.com"}, updated_at=t0)
    bob = await _customer(
        admin, {"name": "Bob", "email": "bob@example.com"}, updated_at=t0 + timedelta(days=1)
    )
    await _customer(admin, {"name": "Eve"}, tenant=admin.other_tenant)
    await admin.pool.execute(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id, external_id)
        VALUES ($1, $2, 'customer', $3, 'cus_ann')
        """,
        admin.tenant,
        uuid.UUID(stripe["id"]),
        ann,
    )
    everyone = await admin.ok("GET", "/v1/customers")
    assert [c["id"] for c in everyone["items"]] == [str(ann), str(bob)]
    by_email = await admin.ok("GET", "/v1/customers", params={"email": " ann@example.COM "})
    assert [c["id"] for c in by_email["items"]] == [str(ann)]
    linked = await admin.ok(
        "GET", "/v1/customers", params={"connection": stripe["id"], "external_id": "cus_ann"}
    )
    assert [c["id"] for c in linked["items"]] == [str(ann)]
    assert linked["items"][0]["links"] == [
        {
            "connection_id": stripe["id"],
            "provider": "stripe",
            "external_id": "cus_ann",
            "last_pushed_version": None,
            "remote_updated_at": None,
            "updated_at": linked["items"][0]["links"][0]["updated_at"],
        }
    ]
    since = await admin.ok(
        "GET", "/v1/customers", params={"updated_since": (t0 + timedelta(hours=1)).isoformat()}
    )
    assert [c["id"] for c in since["items"]] == [str(bob)]
    shown = await admin.ok("GET", f"/v1/customers/{ann}")
    assert shown["data"]["name"] == "Ann"
    assert shown["entity_type"] == "customer"
    status, _ = await admin.call("GET", f"/v1/jobs/{ann}")  # a customer is not a job
    assert status == 404
    status, body = await admin.call("GET", "/v1/customers", params={"number": "1"})
    assert status == 422, body  # invoices-only filter


async def test_invoices_filter_by_number_and_status(admin: Admin) -> None:
    ids = []
    for number, status in [("INV-1", "paid"), ("INV-2", "open"), ("INV-3", "paid")]:
        ids.append(
            await admin.pool.fetchval(
                "INSERT INTO invoices (tenant_id, data) VALUES ($1, $2) RETURNING id",
                admin.tenant,
                {"number": number, "status": status, "currency": "EUR", "total": 100},
            )
        )
    paid = await admin.ok("GET", "/v1/invoices", params={"status": "paid"})
    assert {i["data"]["number"] for i in paid["items"]} == {"INV-1", "INV-3"}
    one = await admin.ok("GET", "/v1/invoices", params={"number": "INV-2"})
    assert [i["id"] for i in one["items"]] == [str(ids[1])]
    empty = await admin.ok("GET", "/v1/payments")
    assert empty == {"items": [], "next_cursor": None}


# -- sync log -----------------------------------------------------------------------------


async def _logged(
    admin: Admin,
    connection_id: uuid.UUID,
    outcome: str,
    *,
    latency_ms: int | None = None,
    entity_id: uuid.UUID | None = None,
    rule: str | None = None,
) -> None:
    """A customer's sync_log row: ``pushed`` went out, every other outcome came in."""
    await admin.pool.execute(
        """
        INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                              outcome, latency_ms, rule)
        VALUES ($1, $2, $3, 'customer', $4, $5, $6, $7)
        """,
        admin.tenant,
        connection_id,
        "out" if outcome == "pushed" else "in",
        entity_id,
        outcome,
        latency_ms,
        rule,
    )


async def test_sync_log_lists_newest_first_and_counts_outcomes(admin: Admin) -> None:
    created = await new_connection(admin)
    cid = uuid.UUID(created["id"])
    for outcome, latency in [("applied", 10), ("applied", 30), ("echo", 5), ("pushed", 50)]:
        await _logged(admin, cid, outcome, latency_ms=latency)
    log = await admin.ok("GET", "/v1/sync-log", params={"connection": str(cid), "limit": "3"})
    assert [e["outcome"] for e in log["items"]] == ["pushed", "echo", "applied"]
    rest = await admin.ok("GET", "/v1/sync-log", params={"cursor": log["next_cursor"]})
    assert [e["latency_ms"] for e in rest["items"]] == [10]
    inbound = await admin.ok("GET", "/v1/sync-log", params={"direction": "in", "outcome": "echo"})
    assert len(inbound["items"]) == 1
    summary = await admin.ok("GET", "/v1/sync-log/summary", params={"connection": str(cid)})
    counts = {(o["direction"], o["outcome"]): o["count"] for o in summary["outcomes"]}
    assert counts == {("in", "applied"): 2, ("in", "echo"): 1, ("out", "pushed"): 1}


async def test_sync_log_filters_by_record(admin: Admin) -> None:
    created = await new_connection(admin)
    cid = uuid.UUID(created["id"])
    one, other = uuid.uuid4(), uuid.uuid4()
    for entity_id, outcome in [(one, "applied"), (other, "applied"), (one, "pushed")]:
        await _logged(admin, cid, outcome, entity_id=entity_id)
    log = await admin.ok("GET", "/v1/sync-log", params={"entity_id": str(one)})
    assert [(e["entity_id"], e["outcome"]) for e in log["items"]] == [
        (str(one), "pushed"),
        (str(one), "applied"),
    ]
    status, problem = await admin.call("GET", "/v1/sync-log", params={"entity_id": "nope"})
    assert status == 422
    assert problem["errors"][0]["loc"] == "/query/entity_id"


async def test_sync_log_names_and_filters_the_rule_that_decided(admin: Admin) -> None:
    """Two echoes, of our last push (rule 5) and of an earlier one read back after a later
    push (rule 5a): one outcome, told apart by the rule (migration 0023)."""
    created = await new_connection(admin)
    cid = uuid.UUID(created["id"])
    for rule in ["echo", "earlier_push", "echo"]:
        await _logged(admin, cid, "echo", rule=rule)
    await _logged(admin, cid, "pushed")
    log = await admin.ok("GET", "/v1/sync-log", params={"connection": str(cid)})
    assert [(e["outcome"], e["rule"]) for e in log["items"]] == [
        ("pushed", None),
        ("echo", "echo"),
        ("echo", "earlier_push"),
        ("echo", "echo"),
    ]
    earlier = await admin.ok("GET", "/v1/sync-log", params={"rule": "earlier_push"})
    assert [(e["outcome"], e["rule"]) for e in earlier["items"]] == [("echo", "earlier_push")]
    # Not an error: the connection's health counts none.
    health = await admin.ok("GET", f"/v1/connections/{cid}/health")
    assert health["errors_in_window"] == 0


# -- dead letters (listing, discard; redrive is in test_admin_kafka) ----------------------


_offsets = itertools.count(7)


async def _dead_letter(admin: Admin, stage: str, reason: str, **cols: Any) -> uuid.UUID:
    dead_id: uuid.UUID = await admin.pool.fetchval(
        """
        INSERT INTO dead_letters (stage, reason, detail, tenant_id, connection_id, topic,
                                  kafka_partition, kafka_offset, record_key, payload)
        VALUES ($1, $2, 'why', $3, $4, $5, 0, $8, $6, $7) RETURNING id
        """,
        stage,
        reason,
        cols.get("tenant", admin.tenant),
        cols.get("connection"),
        cols.get("topic"),
        cols.get("key"),
        cols.get("payload", b'{"x": 1}'),
        # One dead letter per Kafka record (migration 0008): each its own offset.
        next(_offsets),
    )
    return dead_id


async def test_dead_letters_list_filter_show_and_discard(admin: Admin) -> None:
    a = await _dead_letter(admin, "processor", "schema_violation", topic="webhooks.raw")
    b = await _dead_letter(admin, "hydrate", "provider_4xx", payload=b"\xff\xfe")
    await _dead_letter(admin, "processor", "schema_violation", tenant=admin.other_tenant)
    listed = await admin.ok("GET", "/v1/dead-letters")
    assert {d["id"] for d in listed["items"]} == {str(a), str(b)}
    only = await admin.ok("GET", "/v1/dead-letters", params={"stage": "hydrate"})
    assert [d["id"] for d in only["items"]] == [str(b)]
    by_reason = await admin.ok("GET", "/v1/dead-letters", params={"reason": "schema_violation"})
    assert [d["id"] for d in by_reason["items"]] == [str(a)]
    shown = await admin.ok("GET", f"/v1/dead-letters/{a}")
    assert shown["payload_text"] == '{"x": 1}'
    assert shown["offset"] == 7
    binary = await admin.ok("GET", f"/v1/dead-letters/{b}")
    assert binary["payload_text"] is None
    assert binary["payload_base64"] == "//4="
    discarded = await admin.ok("POST", f"/v1/dead-letters/{b}/discard")
    assert discarded["discarded_at"] is not None
    status, _ = await admin.call("POST", f"/v1/dead-letters/{b}/discard")
    assert status == 409
    status, _ = await admin.call("POST", f"/v1/dead-letters/{b}/redrive")
    assert status == 409
    still_open = await admin.ok("GET", "/v1/dead-letters")
    assert [d["id"] for d in still_open["items"]] == [str(a)]
    gone = await admin.ok("GET", "/v1/dead-letters", params={"state": "discarded"})
    assert [d["id"] for d in gone["items"]] == [str(b)]


# -- sync jobs ----------------------------------------------------------------------------


async def test_sync_jobs_start_refuse_a_second_and_cancel(admin: Admin) -> None:
    created = await new_connection(admin, "stripe")
    job = await admin.ok(
        "POST", "/v1/sync-jobs", 201, json={"connection": created["id"], "kind": "backfill"}
    )
    assert job["status"] == "pending"
    assert job["entity_types"] == ["customer", "invoice", "payment"]
    assert job["requested_by"].startswith("api-key:")
    status, body = await admin.call(
        "POST", "/v1/sync-jobs", json={"connection": created["id"], "kind": "backfill"}
    )
    assert status == 409
    assert body["existing_job_id"] == job["id"]
    status, body = await admin.call(
        "POST",
        "/v1/sync-jobs",
        json={"connection": created["id"], "kind": "reconcile", "entity_types": ["job"]},
    )
    assert status == 422, body  # Stripe has no jobs
    # The runner reports progress in the row; the API shows it without provider cursors.
    await admin.pool.execute(
        """
        UPDATE sync_jobs SET status = 'running', records_seen = 120,
               checkpoint = '{"customer": {"cursor": "cus_9", "done": true, "seen": 120}}'
         WHERE id = $1
        """,
        uuid.UUID(job["id"]),
    )
    shown = await admin.ok("GET", f"/v1/sync-jobs/{job['id']}")
    assert shown["progress"] == {"customer": {"done": True, "seen": 120}}
    assert shown["records_seen"] == 120
    cancelled = await admin.ok("POST", f"/v1/sync-jobs/{job['id']}/cancel")
    assert cancelled["cancel_requested"] is True
    assert cancelled["status"] == "running"  # the runner stops it
    recon = await admin.ok(
        "POST", "/v1/sync-jobs", 201, json={"connection": created["id"], "kind": "reconcile"}
    )
    pending_cancel = await admin.ok("POST", f"/v1/sync-jobs/{recon['id']}/cancel")
    assert pending_cancel["status"] == "cancelled"
    status, body = await admin.call("POST", f"/v1/sync-jobs/{recon['id']}/cancel")
    assert status == 409
    assert body["status"] == 409
    listed = await admin.ok("GET", "/v1/sync-jobs", params={"kind": "reconcile"})
    assert [j["id"] for j in listed["items"]] == [recon["id"]]


# -- conflicts ----------------------------------------------------------------------------


async def test_resolving_a_conflict_changes_the_record_and_writes_the_outbox(
    admin: Admin,
) -> None:
    record = await _customer(admin, {"name": "Ann", "phone": "111"})
    conflict_ids = []
    for incoming in ("222", "333"):
        conflict_ids.append(
            await admin.pool.fetchval(
                """
                INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                                       incoming_value)
                VALUES ($1, 'customer', $2, 'phone', '"111"', $3) RETURNING id
                """,
                admin.tenant,
                record,
                incoming,
            )
        )
    listed = await admin.ok("GET", "/v1/conflicts")
    assert [c["id"] for c in listed["items"]] == [str(i) for i in conflict_ids]
    resolved = await admin.ok(
        "POST", f"/v1/conflicts/{conflict_ids[0]}/resolve", json={"choose": "incoming"}
    )
    assert resolved["resolution"]["value"] == "222"
    assert resolved["resolution"]["version"] == 2
    row = await admin.pool.fetchrow("SELECT data, version FROM customers WHERE id = $1", record)
    assert row["data"]["phone"] == "222"
    assert row["version"] == 2
    outbox = await admin.pool.fetchrow("SELECT version, payload FROM outbox")
    assert outbox["version"] == 2
    assert outbox["payload"]["state"]["phone"] == "222"
    assert outbox["payload"]["origin_connection_id"] is None
    status, _ = await admin.call(
        "POST", f"/v1/conflicts/{conflict_ids[0]}/resolve", json={"choose": "current"}
    )
    assert status == 409
    status, body = await admin.call(
        "POST", f"/v1/conflicts/{conflict_ids[1]}/resolve", json={"choose": "value", "value": 5}
    )
    assert status == 422, body
    assert body["errors"][0]["loc"] == "/body/value"
    kept = await admin.ok(
        "POST", f"/v1/conflicts/{conflict_ids[1]}/resolve", json={"choose": "current"}
    )
    assert kept["resolved_at"] is not None
    assert await admin.pool.fetchval("SELECT count(*) FROM outbox") == 1
    assert (await admin.ok("GET", "/v1/conflicts"))["items"] == []


# -- API keys -----------------------------------------------------------------------------


async def test_api_keys_create_rotate_and_revoke(admin: Admin) -> None:
    created = await admin.ok("POST", "/v1/api-keys", 201, json={"scope": "read"})
    assert created["key"].startswith("csk_")
    assert created["key_prefix"] == created["key"][:12]
    assert (await admin.ok("GET", "/v1/connections", key=created["key"]))["items"] == []
    listed = await admin.ok("GET", "/v1/api-keys")
    assert created["id"] in {k["id"] for k in listed["items"]}
    assert "key" not in listed["items"][0]
    rotated = await admin.ok(
        "POST", f"/v1/api-keys/{created['id']}/rotate", json={"overlap_seconds": 0}
    )
    assert rotated["scope"] == "read"
    await admin.ok("GET", "/v1/connections", key=rotated["key"])
    status, _ = await admin.call("GET", "/v1/connections", key=created["key"])
    assert status == 401  # no overlap: the old key stopped at once
    revoked = await admin.ok("POST", f"/v1/api-keys/{rotated['id']}/revoke")
    assert revoked["revoked_at"] is not None
    status, _ = await admin.call("GET", "/v1/connections", key=rotated["key"])
    assert status == 401
    status, body = await admin.call("POST", "/v1/api-keys", json={"scope": "publish"})
    assert status == 422, body
    status, body = await admin.call(
        "POST", "/v1/api-keys", json={"scope": "admin", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert status == 422, body
    internal = await new_connection(admin, "internal")
    publish = await admin.ok(
        "POST", "/v1/api-keys", 201, json={"scope": "publish", "connection": internal["id"]}
    )
    assert publish["connection_id"] == internal["id"]


async def test_ingest_records_when_a_publish_key_was_last_used(
    database_url: str, kafka_bootstrap: str, pipeline_topics: None
) -> None:
    async for ingest in running_ingest(
        database_url, kafka_bootstrap, ingest_connection_refresh_seconds=0.05
    ):
        created = await ingest.connect("internal", None)
        assert created.api_key is not None
        await ingest.post_change(created.api_key)
        used = None
        for _ in range(100):
            used = await ingest.pool.fetchval("SELECT last_used_at FROM api_keys")
            if used is not None:
                break
            await asyncio.sleep(0.05)
        assert used is not None


async def test_a_polled_provider_gets_no_webhook_url_or_secret(admin: Admin) -> None:
    """MYOB sends no webhooks: nothing to paste into it, nothing stored to verify with."""
    created = await new_connection(admin, "myob")
    assert created["webhook_url"] is None
    assert created["webhook_secret"] is None
    shown = await admin.ok("GET", f"/v1/connections/{created['id']}")
    assert shown["webhook_url"] is None
    stored = await admin.pool.fetchval(
        "SELECT count(*) FROM webhook_secrets WHERE connection_id = $1", uuid.UUID(created["id"])
    )
    assert stored == 0
    # Nor is there one to rotate: a 409 that says why, not a 500.
    status, problem = await admin.call(
        "POST", f"/v1/connections/{created['id']}/webhook-secret/rotate", json={}
    )
    assert status == 409, problem
    assert "sends no webhooks" in problem["detail"]
