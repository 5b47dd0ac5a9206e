"""The operator console (services/admin/console) against the real PostgreSQL, through
aiohttp's test client: sign-in and out, the session cookie, CSRF, scopes, tenant
isolation and every page. The browser tests are tests/e2e/test_console_browser.py."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import ClientResponse

from crmsync.common.apikeys import create_key
from crmsync.demo.sims import ACME_MAPPING
from tests.integration.test_admin_api import Admin, admin, new_connection
from tests.integration.test_admin_isolation import _seed

__all__ = ["admin"]  # the fixture, imported for pytest

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(admin: Admin, key: str) -> ClientResponse:
    return await admin.client.post("/console/sign-in", data={"key": key}, allow_redirects=False)


async def page(admin: Admin, path: str, status: int = 200) -> str:
    resp = await admin.client.get(path, allow_redirects=False)
    text = await resp.text()
    assert resp.status == status, (path, resp.status, text[:2000])
    return text


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


async def post(
    admin: Admin, path: str, data: dict[str, Any] | None = None, *, csrf: str | None = None
) -> tuple[int, str]:
    """A form posted from the console's own overview page (its CSRF token)."""
    if csrf is None:
        csrf = csrf_of(await page(admin, "/console/"))
    resp = await admin.client.post(path, data={**(data or {}), "csrf": csrf}, allow_redirects=False)
    return resp.status, await resp.text()


# -- signing in and out ---------------------------------------------------------------------


async def test_pages_redirect_to_sign_in_without_a_session(admin: Admin) -> None:
    for path in ("/console/", "/console/events", "/console/dead-letters", "/console/api-keys"):
        resp = await admin.client.get(path, allow_redirects=False)
        assert resp.status == 303, path
        assert resp.headers["Location"] == "/console/sign-in"
    # htmx polling asks for a full-page redirect instead of following one in place.
    resp = await admin.client.get(
        "/console/events/rows", headers={"HX-Request": "true"}, allow_redirects=False
    )
    assert resp.status == 401
    assert resp.headers["HX-Redirect"] == "/console/sign-in"


async def test_a_bad_or_publish_key_does_not_sign_in(admin: Admin) -> None:
    internal = await new_connection(admin, "internal")
    for key in ("", "csk_not-a-key", internal["api_key"]):
        resp = await sign_in(admin, key)
        assert resp.status == 401, key
        assert "crmsync_console" not in resp.cookies
        assert "unknown, revoked or expired" in await resp.text()


async def test_the_session_cookie_holds_the_key_sealed_and_http_only(admin: Admin) -> None:
    resp = await sign_in(admin, admin.key)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/"
    cookie = resp.cookies["crmsync_console"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/console/"
    assert admin.key not in cookie.value
    # The key appears nowhere after sign-in: not in the redirect, not in any page.
    assert admin.key not in resp.headers["Location"]
    ids = await _seed(admin)
    for path in (
        "/console/",
        f"/console/connections/{ids['connection_id']}",
        "/console/events",
        "/console/api-keys",
        "/console/dead-letters",
        "/console/conflicts",
    ):
        html = await page(admin, path)
        assert admin.key not in html, path


async def test_a_tampered_cookie_is_no_session(admin: Admin) -> None:
    resp = await sign_in(admin, admin.key)
    sealed = resp.cookies["crmsync_console"].value
    forged = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    jar = admin.client.session.cookie_jar
    jar.clear()
    jar.update_cookies({"crmsync_console": forged})
    got = await admin.client.get("/console/", allow_redirects=False)
    assert got.status == 303
    jar.clear()
    jar.update_cookies({"crmsync_console": sealed})
    assert (await admin.client.get("/console/", allow_redirects=False)).status == 200


async def test_sign_out_clears_the_session(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    status, _ = await post(admin, "/console/sign-out")
    assert status == 303
    resp = await admin.client.get("/console/", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/sign-in"


async def test_a_revoked_key_signs_the_browser_out(admin: Admin) -> None:
    async with admin.pool.acquire() as conn:
        key = await create_key(conn, admin.tenant, "admin")
    await sign_in(admin, key.key)
    await page(admin, "/console/")
    await admin.ok("POST", f"/v1/api-keys/{key.id}/revoke")
    resp = await admin.client.get("/console/", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/sign-in"


async def test_pages_carry_a_strict_content_security_policy(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    resp = await admin.client.get("/console/")
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    # Only local assets: no CDN, works offline.
    assert re.findall(r'(?:src|href)="(https?:)?//', html) == []
    js = await admin.client.get("/console/static/htmx-2.0.11.min.js")
    assert js.status == 200
    assert "htmx" in (await js.text())[:100]


# -- CSRF and scopes --------------------------------------------------------------------


async def test_a_post_without_the_sessions_csrf_token_is_refused(admin: Admin) -> None:
    conn = await new_connection(admin)
    await sign_in(admin, admin.key)
    path = f"/console/connections/{conn['id']}/disable"
    for csrf in ("", "forged"):
        status, html = await post(admin, path, csrf=csrf)
        assert status == 403
        assert "The form expired" in html
    # A cross-site form post (Origin of another site) is refused even with the token.
    token = csrf_of(await page(admin, "/console/"))
    resp = await admin.client.post(
        path, data={"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert resp.status == 403
    assert (await admin.ok("GET", f"/v1/connections/{conn['id']}"))["status"] == "active"
    status, _ = await post(admin, path)
    assert status == 303
    assert (await admin.ok("GET", f"/v1/connections/{conn['id']}"))["status"] == "disabled"


async def test_a_read_key_sees_but_cannot_act(admin: Admin) -> None:
    ids = await _seed(admin)
    await sign_in(admin, admin.read_key)
    connection = await page(admin, f"/console/connections/{ids['connection_id']}")
    assert "Rotate the webhook secret" not in connection
    assert "Save settings" not in connection
    dead = await page(admin, f"/console/dead-letters/{ids['dead_letter_id']}")
    assert "Redrive" not in dead
    token = csrf_of(connection)
    cid, dlid, kid = ids["connection_id"], ids["dead_letter_id"], ids["key_id"]
    for path, data in (
        (f"/console/connections/{cid}/disable", {}),
        (f"/console/connections/{cid}/settings", {"name": "renamed"}),
        (f"/console/connections/{cid}/rotate-secret", {}),
        (f"/console/connections/{cid}/credentials", {"token": "t"}),
        (f"/console/connections/{cid}/sync-jobs", {"kind": "reconcile"}),
        ("/console/connections", {"provider": "xero"}),
        (f"/console/dead-letters/{dlid}/discard", {}),
        ("/console/dead-letters/redrive", {}),
        (f"/console/conflicts/{ids['conflict_id']}/resolve", {"choose": "incoming"}),
        ("/console/api-keys", {"scope": "admin"}),
        (f"/console/api-keys/{kid}/revoke", {}),
        (f"/console/connections/{cid}/delete", {}),
        (f"/console/connections/{cid}/pause", {"direction": "both"}),
        (f"/console/connections/{cid}/resume", {}),
        (f"/console/connections/{cid}/sync-jobs/{ids['job_id']}/cancel", {}),
        ("/console/freeze-windows", {"starts_at": "2031-01-01T00:00:00Z"}),
        (f"/console/freeze-windows/{ids['window_id']}/delete", {}),
        ("/console/notifications", {"url": "https://b.example/h"}),
        (f"/console/notifications/{ids['endpoint_id']}/test", {}),
        (f"/console/notifications/{ids['endpoint_id']}/delete", {}),
    ):
        status, html = await post(admin, path, data, csrf=token)
        assert status == 403, (path, html[:500])
        assert "this needs a key of scope admin" in html, path
    assert (await admin.ok("GET", f"/v1/connections/{cid}"))["status"] == "active"
    assert (await admin.ok("GET", f"/v1/dead-letters/{dlid}"))["discarded_at"] is None
    assert (await admin.ok("GET", f"/v1/api-keys/{kid}"))["revoked_at"] is None
    assert (await admin.ok("GET", f"/v1/sync-jobs/{ids['job_id']}"))["status"] == "pending"
    await admin.ok("GET", f"/v1/freeze-windows/{ids['window_id']}")
    await admin.ok("GET", f"/v1/notification-endpoints/{ids['endpoint_id']}")
    # And no button for them on the pages.
    for path in ("/console/freeze-windows", "/console/notifications"):
        assert "<button" not in (await page(admin, path)).split("</header>")[1], path
    assert "/delete" not in connection
    assert "/pause" not in connection


async def test_another_tenants_ids_are_not_found(admin: Admin) -> None:
    ids = await _seed(admin)
    await sign_in(admin, admin.other_key)
    for path in (
        f"/console/connections/{ids['connection_id']}",
        f"/console/dead-letters/{ids['dead_letter_id']}",
        f"/console/conflicts/{ids['conflict_id']}",
        f"/console/records/customer/{ids['customer']}",
        f"/console/notifications/{ids['endpoint_id']}",
    ):
        html = await page(admin, path, 404)
        assert "Not found" in html
    for path in (
        f"/console/connections/{ids['connection_id']}/delete",
        f"/console/connections/{ids['connection_id']}/pause",
        f"/console/connections/{ids['connection_id']}/sync-jobs/{ids['job_id']}/cancel",
        f"/console/freeze-windows/{ids['window_id']}/delete",
        f"/console/notifications/{ids['endpoint_id']}/delete",
    ):
        status, _ = await post(admin, path)
        assert status == 404, path
    assert ids["window_id"] not in await page(admin, "/console/freeze-windows")
    assert ids["endpoint_id"] not in await page(admin, "/console/notifications")
    assert ids["connection_id"] not in await page(admin, "/console/audit")
    # A record id of tenant A as an Events filter: nothing, not an error.
    events = await page(admin, f"/console/events?entity_id={ids['customer']}")
    assert "No events match" in events
    status, _ = await post(admin, f"/console/connections/{ids['connection_id']}/disable")
    assert status == 404
    status, _ = await post(admin, f"/console/dead-letters/{ids['dead_letter_id']}/discard")
    assert status == 404
    assert (await admin.ok("GET", f"/v1/connections/{ids['connection_id']}"))["status"] == (
        "active"
    )
    # And nothing of tenant A shows in B's lists.
    assert ids["connection_id"] not in await page(admin, "/console/")
    assert ids["dead_letter_id"] not in await page(admin, "/console/dead-letters")


async def test_a_malformed_id_is_a_readable_error(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    html = await page(admin, "/console/connections/not-a-uuid", 422)
    assert "invalid path parameter" in html


# -- pages ------------------------------------------------------------------------------


async def test_overview_lists_connections_problems_first(admin: Admin) -> None:
    healthy = await new_connection(admin, "stripe", name="healthy")
    troubled = await new_connection(admin, "xero", name="troubled")
    await admin.pool.execute(
        """
        INSERT INTO dead_letters (stage, reason, tenant_id, connection_id, topic, payload)
        VALUES ('processor', 'schema_violation', $1, $2, 'webhooks.raw', 'x')
        """,
        admin.tenant,
        uuid.UUID(troubled["id"]),
    )
    expiring = await new_connection(admin, "hubspot", name="expiring")
    soon = datetime.now(UTC) + timedelta(hours=3)
    await admin.ok(
        "PUT",
        f"/v1/connections/{expiring['id']}/credentials",
        204,
        json={
            "type": "oauth2",
            "access_token": "at",
            "refresh_token": "rt",
            "expires_at": soon.isoformat(),
            "client_id": "c",
            "client_secret": "s",
            "token_url": "https://auth.example.test/token",
        },
    )
    for direction, outcome, latency in (("in", "applied", 120), ("out", "pushed", 340)):
        await admin.pool.execute(
            """
            INSERT INTO sync_log (tenant_id, connection_id, direction, outcome, latency_ms)
            VALUES ($1, $2, $3, $4, $5)
            """,
            admin.tenant,
            uuid.UUID(healthy["id"]),
            direction,
            outcome,
            latency,
        )
    await sign_in(admin, admin.key)
    html = await page(admin, "/console/")
    assert html.index(troubled["id"]) < html.index(healthy["id"])
    assert html.index(expiring["id"]) < html.index(healthy["id"])
    assert "1 open dead letters" in html
    assert "token expires in 2h" in html
    assert "healthy</span>" in html
    lag = html[html.index("data-lag") : html.index("</p>", html.index("data-lag"))]
    assert "120 ms" in lag
    assert "340 ms" in lag


def settings_form(name: str, **changes: str) -> dict[str, str]:
    """The settings form of a fresh connection as the browser posts it, with ``changes``."""
    form = {
        "name": name,
        "direction": "both",
        "policy": "newest_wins",
        "rate": "",
        "per_seconds": "",
        "burst": "",
        "max_concurrency": "",
        "base_url": "",
        "provider_settings": "",
    }
    return form | changes


async def test_settings_errors_show_per_field_as_the_api_returns_them(admin: Admin) -> None:
    conn = await new_connection(admin)
    await sign_in(admin, admin.key)
    path = f"/console/connections/{conn['id']}/settings"
    status, html = await post(
        admin,
        path,
        settings_form(conn["name"], rate="fast", burst="0", max_concurrency="500"),
    )
    assert status == 422
    for loc in ("/body/rate_limit/rate", "/body/rate_limit/burst", "/body/max_concurrency"):
        assert f'data-loc="{loc}"' in html, loc
    assert 'value="fast"' in html  # what was typed stays in the form
    status, html = await post(admin, path, settings_form(conn["name"], provider_settings="{no"))
    assert status == 422
    assert 'data-loc="/body/provider_settings"' in html
    status, _ = await post(
        admin,
        path,
        settings_form(
            "renamed",
            direction="in",
            entity_types="invoice",
            rate="5",
            per_seconds="1",
            burst="2",
            provider_settings='{"statement_descriptor": "ACME"}',
        ),
    )
    assert status == 303
    got = await admin.ok("GET", f"/v1/connections/{conn['id']}")
    assert got["name"] == "renamed"
    assert got["settings"]["direction"] == "in"
    assert got["settings"]["entity_types"] == ["invoice"]
    assert got["settings"]["rate_limit"] == {"rate": 5.0, "per_seconds": 1.0, "burst": 2}
    assert got["settings"]["statement_descriptor"] == "ACME"
    html = await page(admin, f"/console/connections/{conn['id']}?done=settings")
    assert "Settings saved." in html


async def test_saving_the_form_keeps_the_settings_it_does_not_show(admin: Admin) -> None:
    other = await new_connection(admin, "xero")
    policies = {
        "default": {"kind": "source_priority", "priority": [other["id"]]},
        "invoice": {"kind": "manual", "priority": []},
    }
    conn = await new_connection(
        admin, settings={"conflict_policy": policies, "provider_settings": {"a": 1, "b": 2}}
    )
    await sign_in(admin, admin.key)
    form = settings_form("renamed", policy="source_priority", provider_settings='{"a": 1, "b": 2}')
    status, _ = await post(admin, f"/console/connections/{conn['id']}/settings", form)
    assert status == 303
    got = (await admin.ok("GET", f"/v1/connections/{conn['id']}"))["settings"]
    assert got["conflict_policy"] == policies
    # Changing the default policy keeps its priority list and the per-type policies;
    # deleting a provider setting from the text removes it.
    form |= {"policy": "newest_wins", "provider_settings": '{"a": 1}'}
    status, _ = await post(admin, f"/console/connections/{conn['id']}/settings", form)
    assert status == 303
    got = (await admin.ok("GET", f"/v1/connections/{conn['id']}"))["settings"]
    assert got["conflict_policy"]["default"] == {"kind": "newest_wins", "priority": [other["id"]]}
    assert got["conflict_policy"]["invoice"] == policies["invoice"]
    assert got["a"] == 1
    assert "b" not in got


async def test_rotating_the_secret_shows_it_once(admin: Admin) -> None:
    conn = await new_connection(admin)
    await sign_in(admin, admin.key)
    status, html = await post(admin, f"/console/connections/{conn['id']}/rotate-secret")
    assert status == 200
    secret = re.search(r'<pre class="secret">([^<]+)</pre>', html)
    assert secret
    assert secret.group(1) not in await page(admin, f"/console/connections/{conn['id']}")


async def test_credentials_and_a_sync_job_from_the_connection_page(admin: Admin) -> None:
    conn = await new_connection(admin)
    await sign_in(admin, admin.key)
    base = f"/console/connections/{conn['id']}"
    assert 'data-credentials="none"' in await page(admin, base)
    status, _ = await post(admin, f"{base}/credentials", {"token": "sk_test_123"})
    assert status == 303
    html = await page(admin, base)
    assert 'data-credentials="api_key"' in html
    assert "sk_test_123" not in html
    status, _ = await post(admin, f"{base}/sync-jobs", {"kind": "backfill"})
    assert status == 303
    jobs = await page(admin, f"{base}/sync-jobs")
    assert "backfill" in jobs
    assert "<progress" in jobs
    assert 'hx-trigger="every 2s"' in jobs  # pending: the bar keeps polling
    # A second backfill while one is active: the API's 409, shown on the page.
    status, html = await post(admin, f"{base}/sync-jobs", {"kind": "backfill"})
    assert status == 409
    assert 'class="error"' in html


async def test_connect_a_provider_shows_the_webhook_url_and_secret_once(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    status, html = await post(
        admin, "/console/connections", {"provider": "stripe", "name": "Stripe live"}
    )
    assert status == 200, html[:1000]
    assert "https://hooks.example.test/webhooks/stripe/" in html
    assert '<pre class="secret">' in html
    status, html = await post(admin, "/console/connections", {"provider": "nope"})
    assert status == 422
    assert 'data-loc="/body/provider"' in html


async def test_events_filter_and_open_the_record(admin: Admin) -> None:
    conn = await new_connection(admin, name="books")
    invoice = await admin.pool.fetchval(
        """
        INSERT INTO invoices (tenant_id, data, field_meta) VALUES ($1, $2, $3) RETURNING id
        """,
        admin.tenant,
        {"number": "INV-7", "currency": "JPY", "total": 1500, "subtotal": 1500},
        {"total": {"ts": "2026-12-01T10:00:00+00:00", "source": conn["id"]}},
    )
    for direction, outcome in (("in", "applied"), ("out", "pushed"), ("in", "dead_lettered")):
        await admin.pool.execute(
            """
            INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type, entity_id,
                                  external_id, outcome)
            VALUES ($1, $2, $3, 'invoice', $4, 'in_7', $5)
            """,
            admin.tenant,
            uuid.UUID(conn["id"]),
            direction,
            invoice,
            outcome,
        )
    await sign_in(admin, admin.key)
    html = await page(admin, "/console/events")
    assert html.count("data-event=") == 3
    assert 'hx-trigger="every 3s"' in html
    rows = await page(admin, f"/console/events/rows?direction=out&connection={conn['id']}")
    assert rows.count("data-event=") == 1
    assert "pushed" in rows
    assert f"/console/records/invoice/{invoice}" in rows
    bad = await page(admin, "/console/events?direction=sideways", 422)
    assert "/query/direction" in bad
    record = await page(admin, f"/console/records/invoice/{invoice}")
    assert "1,500 JPY" in record  # yen have no minor unit
    assert "INV-7" in record
    assert "Recent pushes" in record
    # Provenance: the connection that set the total, by name, and when.
    total = record[record.index('data-field="total"') :]
    total = total[: total.index("</tr>")]
    assert "books" in total
    assert "2026-12-01 10:00:00 UTC" in total
    api = await admin.ok("GET", f"/v1/invoices/{invoice}")
    assert api["provenance"] == {"total": {"source": conn["id"], "ts": "2026-12-01T10:00:00Z"}}


async def test_a_dead_letter_shows_text_and_hex_and_is_redriven_or_discarded(
    admin: Admin,
) -> None:
    ids = await _seed(admin)
    await sign_in(admin, admin.key)
    listing = await page(admin, "/console/dead-letters")
    assert ids["dead_letter_id"] in listing
    html = await page(admin, f"/console/dead-letters/{ids['dead_letter_id']}")
    assert "schema_violation" in html
    assert "00000000  78" in html  # 'x' in hex
    status, _ = await post(admin, f"/console/dead-letters/{ids['dead_letter_id']}/discard")
    assert status == 303
    assert ids["dead_letter_id"] not in await page(admin, "/console/dead-letters")
    # Discarded is final: the API's 409 appears as a message.
    status, html = await post(admin, f"/console/dead-letters/{ids['dead_letter_id']}/discard")
    assert status == 409
    assert 'class="error"' in html


@pytest.mark.parametrize(
    ("choose", "typed", "kept"),
    [
        ("incoming", "", "b"),
        ("current", "", None),  # the record keeps what it has (the seed has no name)
        ("value", "Ada Lovelace", "Ada Lovelace"),
        ("value", '"Ada"', "Ada"),  # typed JSON is read as JSON
    ],
)
async def test_a_conflict_is_resolved_from_its_page(
    admin: Admin, choose: str, typed: str, kept: Any
) -> None:
    ids = await _seed(admin)
    await sign_in(admin, admin.key)
    html = await page(admin, f"/console/conflicts/{ids['conflict_id']}")
    assert 'data-side="current">&#34;a&#34;' in html
    assert 'data-side="incoming">&#34;b&#34;' in html
    status, _ = await post(
        admin,
        f"/console/conflicts/{ids['conflict_id']}/resolve",
        {"choose": choose, "value": typed},
    )
    assert status == 303
    record = await admin.ok("GET", f"/v1/customers/{ids['customer']}")
    assert record["data"].get("name") == kept
    resolved = await admin.ok("GET", f"/v1/conflicts/{ids['conflict_id']}")
    assert resolved["resolution"]["choose"] == choose
    assert ids["conflict_id"] not in await page(admin, "/console/conflicts")


async def test_api_keys_are_created_shown_once_rotated_and_revoked(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    status, html = await post(admin, "/console/api-keys", {"scope": "read"})
    assert status == 200
    created = re.search(r'<pre class="secret">([^<]+)</pre>', html)
    assert created
    key = created.group(1)
    listing = await page(admin, "/console/api-keys")
    assert key not in listing
    assert key[:12] in listing  # the prefix names it
    key_id = (await admin.ok("GET", "/v1/api-keys?limit=100"))["items"]
    new_id = next(k["id"] for k in key_id if key.startswith(k["key_prefix"]))
    status, html = await post(admin, f"/console/api-keys/{new_id}/rotate")
    assert status == 200
    assert '<pre class="secret">' in html
    status, _ = await post(admin, f"/console/api-keys/{new_id}/revoke")
    assert status == 303
    assert (await admin.ok("GET", f"/v1/api-keys/{new_id}"))["revoked_at"] is not None
    status, html = await post(admin, "/console/api-keys", {"scope": "root"})
    assert status == 422
    assert "Input should be" in html


async def test_connect_an_oauth_provider_with_its_client_and_tokens(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    form = await page(admin, "/console/connections/new?provider=xero")
    for name in ("client_id", "client_secret", "access_token", "refresh_token", "expires_at"):
        assert f'name="{name}"' in form, name
    assert 'value="https://identity.xero.com/connect/token"' in form  # Xero's, prefilled
    assert 'name="token"' not in form  # Xero takes no API key
    oauth = {
        "provider": "xero",
        "name": "Xero books",
        "credentials_type": "oauth2",
        "client_id": "client-1",
        "client_secret": "shh-client",
        "access_token": "at-1",
        "refresh_token": "rt-1",
        "expires_at": "2031-01-01T00:00:00Z",
        "token_url": "https://identity.xero.com/connect/token",
    }
    # A missing field is said beside it; the secrets typed are not sent back.
    status, html = await post(admin, "/console/connections", oauth | {"refresh_token": ""})
    assert status == 422, html[:2000]
    assert 'data-loc="/body/credentials/oauth2/refresh_token"' in html
    assert "shh-client" not in html
    assert 'value="client-1"' in html
    status, html = await post(admin, "/console/connections", oauth)
    assert status == 200, html[:2000]
    created = (await admin.ok("GET", "/v1/connections", params={"provider": "xero"}))["items"]
    health = await admin.ok("GET", f"/v1/connections/{created[0]['id']}/health")
    assert health["credentials"] == "oauth2"
    assert health["token_expires_at"] == "2031-01-01T00:00:00Z"
    # Stripe takes one API key; an internal service none.
    assert 'name="client_id"' not in await page(admin, "/console/connections/new?provider=stripe")
    internal = await page(admin, "/console/connections/new?provider=internal")
    assert 'name="token"' not in internal
    assert 'name="webhook_secret"' not in internal


async def test_oauth_credentials_are_set_from_the_connection_page(admin: Admin) -> None:
    conn = await new_connection(admin, "quickbooks")
    await sign_in(admin, admin.key)
    base = f"/console/connections/{conn['id']}"
    html = await page(admin, base)
    assert 'value="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"' in html
    status, html = await post(
        admin,
        f"{base}/credentials",
        {"credentials_type": "oauth2", "client_id": "c", "expires_at": "tomorrow"},
    )
    assert status == 422, html[:2000]
    assert 'data-loc="/body/oauth2/expires_at"' in html
    assert 'data-loc="/body/oauth2/refresh_token"' in html
    status, _ = await post(
        admin,
        f"{base}/credentials",
        {
            "credentials_type": "oauth2",
            "client_id": "c",
            "client_secret": "s",
            "access_token": "a",
            "refresh_token": "r",
            "expires_at": "2031-01-01T00:00:00Z",
            "token_url": "https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
        },
    )
    assert status == 303
    html = await page(admin, base)
    assert 'data-credentials="oauth2"' in html
    assert "2031-01-01 00:00:00 UTC" in html


async def test_connect_a_generic_provider_with_its_mapping_file(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    form = await page(admin, "/console/connections/new?provider=generic")
    assert 'name="generic_config"' in form
    assert '<option value="oauth2"' in form  # its mapping decides: both offered
    status, html = await post(
        admin, "/console/connections", {"provider": "generic", "generic_config": "{nope"}
    )
    assert status == 422
    assert 'data-loc="/body/generic_config"' in html
    assert "not JSON" in html
    broken = json.loads(ACME_MAPPING.read_text())
    broken["webhook"]["items"] = 7
    status, html = await post(
        admin,
        "/console/connections",
        {"provider": "generic", "generic_config": json.dumps(broken)},
    )
    assert status == 422
    assert "webhook.items" in html
    status, html = await post(
        admin,
        "/console/connections",
        {"provider": "generic", "name": "acme", "generic_config": ACME_MAPPING.read_text()},
    )
    assert status == 200, html[:2000]
    listed = (await admin.ok("GET", "/v1/connections", params={"provider": "generic"}))["items"]
    assert listed[0]["settings"]["generic"]["signature_header"] == "x-hub-signature-256"
    assert "generic_mapping" in listed[0]["settings"]


async def test_a_job_is_cancelled_and_a_connection_paused_resumed_and_deleted(
    admin: Admin,
) -> None:
    conn = await new_connection(admin)
    await sign_in(admin, admin.key)
    base = f"/console/connections/{conn['id']}"
    status, _ = await post(admin, f"{base}/sync-jobs", {"kind": "backfill"})
    assert status == 303
    jobs = await page(admin, f"{base}/sync-jobs")
    job_id = re.search(r'data-job="([^"]+)"', jobs)
    assert job_id
    assert f"sync-jobs/{job_id.group(1)}/cancel" in jobs
    status, _ = await post(admin, f"{base}/sync-jobs/{job_id.group(1)}/cancel")
    assert status == 303
    assert (await admin.ok("GET", f"/v1/sync-jobs/{job_id.group(1)}"))["status"] == "cancelled"
    # Cancelling it again: the API's 409, said on the connection page.
    status, html = await post(admin, f"{base}/sync-jobs/{job_id.group(1)}/cancel")
    assert status == 409
    assert "already finished" in html

    status, _ = await post(admin, f"{base}/pause", {"direction": "out", "reason": "audit"})
    assert status == 303
    html = await page(admin, f"{base}?done=paused")
    assert "Paused outbound" in html
    assert (await admin.ok("GET", f"/v1/connections/{conn['id']}/health"))["paused_outbound"]
    overview = await page(admin, "/console/")
    row = overview[overview.index(f'data-connection="{conn["id"]}"') :]
    row = row[: row.index("</tr>")]
    assert "<li>paused outbound</li>" in row
    assert "active, paused out" in row
    status, html = await post(admin, f"{base}/pause", {"until": "soon"})
    assert status == 422
    assert 'data-loc="/body/until"' in html
    status, _ = await post(admin, f"{base}/resume")
    assert status == 303
    health = await admin.ok("GET", f"/v1/connections/{conn['id']}/health")
    assert not health["paused_outbound"]

    status, _ = await post(admin, f"{base}/delete")
    assert status == 303
    await page(admin, base, 404)
    audit = await page(admin, f"/console/audit?target={conn['id']}")
    for action in ("connection.delete", "connection.pause", "connection.resume"):
        assert action in audit, action


async def test_api_keys_and_the_audit_trail_page(admin: Admin) -> None:
    async with admin.pool.acquire() as conn:
        for _ in range(55):
            await create_key(conn, admin.tenant, "read")
    await sign_in(admin, admin.key)
    first = await page(admin, "/console/api-keys")
    assert first.count("data-key=") == 50
    more = re.search(r'href="/console/api-keys\?([^"]+)" rel="next"', first)
    assert more, "no next page link"
    second = await page(admin, "/console/api-keys?" + more.group(1).replace("&amp;", "&"))
    assert second.count("data-key=") >= 5
    assert set(re.findall(r'data-key="([^"]+)"', first)).isdisjoint(
        re.findall(r'data-key="([^"]+)"', second)
    )
    # What the console did is in the audit trail, by the key that did it.
    status, _ = await post(admin, "/console/api-keys", {"scope": "read"})
    assert status == 200
    audit = await page(admin, "/console/audit?action=api_key")
    assert "api_key.create" in audit
    assert "api-key:" in audit
    bad = await page(admin, "/console/audit?target=nope", 422)
    assert 'data-loc="/query/target"' in bad


async def test_notification_endpoints_are_added_tested_and_deleted(admin: Admin) -> None:
    await sign_in(admin, admin.key)
    status, html = await post(
        admin, "/console/notifications", {"url": "ftp://nope", "description": "ops"}
    )
    assert status == 422
    assert 'data-loc="/body/url"' in html
    status, html = await post(
        admin,
        "/console/notifications",
        {"url": "https://ops.example/hooks", "event_types": "sync_job.failed"},
    )
    assert status == 200, html[:2000]
    secret = re.search(r'<pre class="secret">(whsec_[^<]+)</pre>', html)
    assert secret
    listed = await page(admin, "/console/notifications")
    assert secret.group(1) not in listed
    endpoint_id = re.search(r'data-endpoint="([^"]+)"', listed)
    assert endpoint_id
    base = f"/console/notifications/{endpoint_id.group(1)}"
    status, _ = await post(admin, f"{base}/test")
    assert status == 303
    detail = await page(admin, base)
    assert "data-delivery=" in detail
    assert "<code>test</code>" in detail
    status, _ = await post(admin, f"{base}/delete")
    assert status == 303
    await page(admin, base, 404)


async def test_freeze_windows_are_scheduled_and_removed(admin: Admin) -> None:
    conn = await new_connection(admin, name="books")
    await sign_in(admin, admin.key)
    status, html = await post(
        admin,
        "/console/freeze-windows",
        {"starts_at": "2031-01-02T00:00:00Z", "ends_at": "2031-01-01T00:00:00Z"},
    )
    assert status == 422
    assert "ends_at must be after starts_at" in html
    status, _ = await post(
        admin,
        "/console/freeze-windows",
        {
            "connection": conn["id"],
            "direction": "in",
            "starts_at": "2031-01-01T00:00:00Z",
            "ends_at": "2031-01-02T00:00:00Z",
            "reason": "wedding day",
        },
    )
    assert status == 303
    html = await page(admin, "/console/freeze-windows")
    window_id = re.search(r'data-window="([^"]+)"', html)
    assert window_id
    assert "wedding day" in html
    assert "books" in html
    assert "wedding day" in await page(admin, f"/console/connections/{conn['id']}")
    status, _ = await post(admin, f"/console/freeze-windows/{window_id.group(1)}/delete")
    assert status == 303
    assert "data-window=" not in await page(admin, "/console/freeze-windows")


async def test_a_conflict_on_money_shows_both_sides_with_the_currency(admin: Admin) -> None:
    invoice = await admin.pool.fetchval(
        "INSERT INTO invoices (tenant_id, data) VALUES ($1, $2) RETURNING id",
        admin.tenant,
        {"number": "INV-9", "currency": "AUD", "total": 123456},
    )
    conflict_id = await admin.pool.fetchval(
        """
        INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                               incoming_value)
        VALUES ($1, 'invoice', $2, 'total', '123456', '99') RETURNING id
        """,
        admin.tenant,
        invoice,
    )
    await sign_in(admin, admin.key)
    html = await page(admin, f"/console/conflicts/{conflict_id}")
    assert 'data-side="current">1,234.56 AUD' in html
    assert 'data-side="incoming">0.99 AUD' in html
