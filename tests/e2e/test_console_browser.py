"""The operator console in a real browser: Debian's chromium driven by Playwright.

The first test runs the whole pipeline (ingest, the processor worker, outbound, two
simulated Ascora companies) beside the admin service: a webhook shows up live in Events
and in the connection's health, and a conflict resolved in the browser reaches both
simulators. The second needs only the admin service and Kafka: a dead letter is redriven
and disappears, a read key cannot act, another tenant's ids are not found.

Every page visited is screenshotted; with CRMSYNC_CONSOLE_SCREENSHOTS set to a directory
the PNGs land there (that is how docs/screenshots/ is made), else in the test's tmp_path.
Chromium comes from the OS (scripts/bootstrap installs Debian's package): Playwright's own
browser download is not used.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, async_playwright, expect

from crmsync.common.apikeys import create_key, ensure_tenant
from crmsync.common.db import create_pool
from crmsync.demo.sims import ACME_MAPPING
from services.admin.app import create_app
from tests.conftest import TopicFactory
from tests.e2e.sync_harness import SimulatedCrm, Stack, running_stack, start_simulator
from tests.integration.test_admin_api import admin_settings

# The browser may wait this long for the pipeline (a webhook through Kafka, the processor
# and outbound): measured at 2-5 s on an idle laptop, far more on a loaded CI runner.
PIPELINE_MS = 60_000
# The viewport of the screenshots in docs/screenshots/.
VIEWPORT = {"width": 1400, "height": 900}


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium is not installed: scripts/bootstrap installs it (apt chromium)")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium_path(), headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    wanted = os.environ.get("CRMSYNC_CONSOLE_SCREENSHOTS")
    out = Path(wanted) if wanted else tmp_path / "screenshots"
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class Console:
    base: str  # http://127.0.0.1:port
    pool: asyncpg.Pool

    def url(self, path: str = "/console/") -> str:
        return self.base + path


@asynccontextmanager
async def running_console(
    database_url: str, kafka_bootstrap: str, prefix: str = "", pool: asyncpg.Pool | None = None
) -> AsyncIterator[Console]:
    settings = admin_settings(database_url, kafka_bootstrap=kafka_bootstrap, topic_prefix=prefix)
    own = pool is None
    used = pool or await create_pool(database_url, max_size=4)
    server = TestServer(create_app(settings, pool=used), host="127.0.0.1")
    await server.start_server()
    try:
        yield Console(str(server.make_url("")).rstrip("/"), used)
    finally:
        await server.close()
        if own:
            await used.close()


async def sign_in(page: Page, console: Console, key: str) -> None:
    await page.goto(console.url("/console/sign-in"))
    await page.fill("input[name=key]", key)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Connections")
    assert key not in page.url
    assert key not in await page.content()


async def shot(page: Page, shots: Path, name: str) -> None:
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


# -- the whole flow ---------------------------------------------------------------------


@dataclass
class Pipeline:
    stack: Stack
    a: SimulatedCrm
    b: SimulatedCrm
    console: Console
    tenant: uuid.UUID
    key: str


@pytest.fixture
async def pipeline(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    """Two simulated Ascora companies connected to the whole pipeline, and the console on
    the same database and topics, with an admin key of the tenant."""
    a = await start_simulator("ascora", company_code="A")
    b = await start_simulator("ascora", company_code="B")
    try:
        async with running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack:
            await stack.connect(a, "ascora-a", {"company_code": "A"})
            await stack.connect(b, "ascora-b", {"company_code": "B"})
            async with stack.pool.acquire() as conn:
                tenant = await ensure_tenant(conn, stack.tenant)
                key = await create_key(conn, tenant, "admin")
            async with running_console(
                database_url, kafka_bootstrap, topic_prefix, stack.pool
            ) as console:
                yield Pipeline(stack, a, b, console, tenant, key.key)
    finally:
        for crm in (a, b):
            await crm.runner.cleanup()


async def _wait_for(predicate: Callable[[], bool], seconds: float = PIPELINE_MS / 1000) -> None:
    for _ in range(int(seconds / 0.2)):
        if predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError("timed out")


async def test_a_webhook_shows_live_and_a_resolved_conflict_reaches_the_simulators(
    pipeline: Pipeline, browser: Browser, shots: Path
) -> None:
    stack, a, b, console = pipeline.stack, pipeline.a, pipeline.b, pipeline.console
    page = await browser.new_page(viewport=VIEWPORT)
    await sign_in(page, console, pipeline.key)
    assert await page.locator("tr[data-connection]").count() == 2

    # Events is open before the webhook arrives: the row appears without a reload.
    await page.goto(console.url("/console/events"))
    await expect(page.locator("tr[data-event]")).to_have_count(0)
    a.sim.create(
        "customer",
        {
            "customerName": "Harbour Plumbing",
            "emailAddress": "office@harbourplumbing.example",
            "phoneNumber": "+61 2 5550 1234",
        },
    )
    row = page.locator("tr[data-event]", has_text="ascora-a").filter(has_text="customer")
    await expect(row.first).to_be_visible(timeout=PIPELINE_MS)
    # The push to B shows too (direction out).
    pushed = page.locator("tr[data-event]", has_text="ascora-b").filter(has_text="pushed")
    await expect(pushed.first).to_be_visible(timeout=PIPELINE_MS)
    await shot(page, shots, "events")
    # Filtered to outbound: only pushes.
    await page.select_option("select[name=direction]", "out")
    await page.click("button:has-text('Filter')")
    await expect(pushed.first).to_be_visible()
    await expect(page.locator("tr[data-event]", has_text="ascora-a")).to_have_count(0)

    # The connection's health counts it.
    await page.goto(console.url("/console/"))
    healthy = page.locator("tr[data-connection]", has_text="ascora-a")
    await expect(healthy.locator("td").nth(2)).not_to_have_text("never")
    await shot(page, shots, "overview")
    await healthy.locator("a").first.click()
    await expect(page.locator("h1")).to_contain_text("ascora-a")
    await expect(page.locator("dd", has_text="ago").first).to_be_visible()
    await shot(page, shots, "connection")

    # The record, opened from its event.
    await page.goto(console.url("/console/events"))
    await row.first.locator("a").click()
    await expect(page.locator("h1")).to_contain_text("Customer")
    await expect(page.locator("body")).to_contain_text("Harbour Plumbing")
    # Field provenance: the name was set by the connection the webhook came from.
    await expect(page.locator("tr[data-field=name] td.source")).to_contain_text("ascora-a")
    customer_id = uuid.UUID(page.url.rsplit("/", 1)[1])
    # Linked in both systems, and the push to B listed.
    for name in ("ascora-a", "ascora-b"):
        await expect(page.locator("section.cards table a", has_text=name)).to_be_visible()
    await expect(page.locator("li", has_text="pushed to ascora-b").first).to_be_visible()
    await shot(page, shots, "record")

    # A conflict parked on the phone is resolved with a typed value; it is pushed to
    # both simulators.
    conflict_id = await stack.pool.fetchval(
        """
        INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                               incoming_value, incoming_connection_id)
        SELECT $1, 'customer', $2, 'phone', '"+61 2 5550 1234"', '"+61 2 5550 4321"', id
          FROM connections WHERE tenant_id = $1 AND name = 'ascora-b'
        RETURNING id
        """,
        pipeline.tenant,
        customer_id,
    )
    await page.goto(console.url("/console/conflicts"))
    await page.locator(f"tr[data-conflict='{conflict_id}'] a").first.click()
    await expect(page.locator("[data-side=incoming]")).to_contain_text("5550 4321")
    await shot(page, shots, "conflict")
    await page.fill("textarea[name=value]", "+61 2 5550 7777")
    await page.click("text=Keep this value")
    await expect(page.locator(".notice")).to_have_text("Conflict resolved.")
    await _wait_for(lambda: "7777" in str(a.sim.live("customer")))
    await _wait_for(lambda: "7777" in str(b.sim.live("customer")))
    await page.goto(console.url(f"/console/records/customer/{customer_id}"))
    await expect(page.locator("tr[data-field=phone] td.source")).to_contain_text("an operator")


# -- dead letters, scopes, tenants ------------------------------------------------------


async def test_dead_letters_are_redriven_and_a_read_key_or_another_tenant_cannot_act(
    database_url: str,
    kafka_bootstrap: str,
    new_topic: TopicFactory,
    browser: Browser,
    shots: Path,
) -> None:
    topic = await new_topic("console")
    async with running_console(database_url, kafka_bootstrap) as console:
        async with console.pool.acquire() as conn:
            tenant = await ensure_tenant(conn, "acme")
            other = await ensure_tenant(conn, "globex")
            admin_key = await create_key(conn, tenant, "admin")
            read_key = await create_key(conn, tenant, "read")
            other_key = await create_key(conn, other, "admin")
        page = await browser.new_page(viewport=VIEWPORT)
        await sign_in(page, console, admin_key.key)

        # Connect a provider: the webhook URL and secret, shown once.
        await page.click("text=Connect a provider")
        await page.select_option("select[name=provider]", "stripe")
        await page.fill("input[name=name]", "Stripe")
        await shot(page, shots, "connect")
        await page.click("button:has-text('Connect')")
        await expect(page.locator("pre.url")).to_contain_text("/webhooks/stripe/")
        await expect(page.locator("pre.secret")).to_be_visible()
        await page.click("text=Open the connection")
        connection_id = page.url.rsplit("/", 1)[1]

        # A settings error appears beside its field, as the API words it.
        await page.fill("input[name=rate]", "fast")
        await page.click("text=Save settings")
        error = page.locator("[data-loc='/body/rate_limit/rate']")
        await expect(error).to_contain_text("valid number")

        # A generic connection takes its mapping file, as `--generic-config` does.
        await page.click("text=Connect a provider")
        await page.select_option("#pick-provider select[name=provider]", "generic")
        await page.fill("textarea[name=generic_config]", ACME_MAPPING.read_text())
        await page.fill("input[name=name]", "acme")
        await page.click("button:has-text('Connect')")
        await expect(page.locator("pre.url")).to_contain_text("/webhooks/generic/")
        await expect(page.locator("pre.secret")).to_be_visible()

        dead = []
        for n in range(3):
            dead.append(
                await console.pool.fetchval(
                    """
                    INSERT INTO dead_letters (stage, reason, detail, tenant_id, connection_id,
                                              topic, record_key, payload)
                    VALUES ('processor', 'schema_violation', 'customer.email: not an email',
                            $1, $2, $3, 'k', $4)
                    RETURNING id
                    """,
                    tenant,
                    uuid.UUID(connection_id),
                    topic,
                    f'{{"type": "customer.updated", "n": {n}, "email": "nope"}}'.encode(),
                )
            )
        await page.click("nav >> text=Dead letters")
        await expect(page.locator("tr[data-dead-letter]")).to_have_count(3)
        await shot(page, shots, "dead-letters")
        # One discarded: gone from the open ones, listed as discarded.
        await page.locator(f"tr[data-dead-letter='{dead[2]}'] a").click()
        await page.click("button:has-text('Discard')")
        await expect(page.locator(".notice")).to_have_text("Discarded.")
        await expect(page.locator("tr[data-dead-letter]")).to_have_count(2)
        await page.select_option("select[name=state]", "discarded")
        await page.click("button:has-text('Filter')")
        await expect(page.locator(f"tr[data-dead-letter='{dead[2]}']")).to_contain_text("discarded")
        await page.click("nav >> text=Dead letters")
        await page.locator(f"tr[data-dead-letter='{dead[0]}'] a").click()
        await expect(page.locator("pre.hex")).to_contain_text('{"type": "custom')
        await shot(page, shots, "dead-letter")
        await page.click("button:has-text('Redrive')")
        await expect(page.locator(".notice")).to_contain_text("Redriven")
        await expect(page.locator("tr[data-dead-letter]")).to_have_count(1)
        # The rest, by filter.
        await page.click("text=Redrive all that match")
        await expect(page.locator(".notice")).to_contain_text("Redrove 1")
        await expect(page.locator("tr[data-dead-letter]")).to_have_count(0)

        await page.click("nav >> text=API keys")
        await shot(page, shots, "api-keys")
        await page.click("text=Sign out")
        await expect(page.locator("h1")).to_have_text("Sign in")
        await page.goto(console.url("/console/"))
        await expect(page.locator("h1")).to_have_text("Sign in")

        # A read key sees the connection but has no buttons, and a forged post is refused.
        await sign_in(page, console, read_key.key)
        await page.goto(console.url(f"/console/connections/{connection_id}"))
        await expect(page.locator("h1")).to_contain_text("Stripe")
        await expect(page.locator("button:has-text('Disable')")).to_have_count(0)
        csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
        refused = await page.request.post(
            console.url(f"/console/connections/{connection_id}/disable"),
            form={"csrf": csrf or ""},
            headers={"Origin": console.base},
        )
        assert refused.status == 403
        assert "this needs a key of scope admin" in await refused.text()
        status = await console.pool.fetchval(
            "SELECT status FROM connections WHERE id = $1", uuid.UUID(connection_id)
        )
        assert status == "active"
        await page.click("text=Sign out")

        # Another tenant's admin key: the connection and dead letter are not there.
        await sign_in(page, console, other_key.key)
        assert connection_id not in await page.content()
        for path in (f"/console/connections/{connection_id}", f"/console/dead-letters/{dead[1]}"):
            response = await page.goto(console.url(path))
            assert response is not None
            assert response.status == 404
            await expect(page.locator("h1")).to_have_text("Not found")
        shown = re.sub(r"\s+", " ", await page.locator("main").inner_text())
        assert "no dead letter" in shown


# -- connections, the tenant's pages, paging --------------------------------------------


async def test_an_oauth_connection_is_paused_cancelled_and_deleted_and_the_tenant_pages_act(
    database_url: str, kafka_bootstrap: str, browser: Browser, shots: Path
) -> None:
    async with running_console(database_url, kafka_bootstrap) as console:
        async with console.pool.acquire() as conn:
            tenant = await ensure_tenant(conn, f"console-{uuid.uuid4().hex[:8]}")
            admin_key = await create_key(conn, tenant, "admin")
            read_key = await create_key(conn, tenant, "read")
            # More keys than a page holds (50).
            for _ in range(52):
                await create_key(conn, tenant, "read")
            other = await ensure_tenant(conn, f"console-{uuid.uuid4().hex[:8]}")
            other_key = await create_key(conn, other, "admin")
        page = await browser.new_page(viewport=VIEWPORT)
        # Everything the pages load comes from the admin service: no CDN, works offline.
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        await sign_in(page, console, admin_key.key)

        # Connect Xero: choosing it swaps in OAuth's fields (htmx, no button pressed), its
        # token URL prefilled.
        await page.click("text=Connect a provider")
        await expect(page.locator("input[name=client_id]")).to_have_count(0)
        await page.select_option("#pick-provider select[name=provider]", "xero")
        await expect(page.locator("input[name=client_id]")).to_be_visible()
        await expect(page.locator("input[name=token_url]")).to_have_value(
            "https://identity.xero.com/connect/token"
        )
        await expect(page.locator("input[name=token]")).to_have_count(0)
        await page.fill("input[name=name]", "Xero books")
        await page.fill("input[name=client_id]", "client-1")
        await page.fill("input[name=client_secret]", "client-secret")
        await page.fill("input[name=access_token]", "access-1")
        await page.fill("input[name=expires_at]", "2031-01-01T00:00:00Z")
        # The refresh token is missing: said beside its field, the secrets not sent back.
        await page.click("button:has-text('Connect')")
        await expect(
            page.locator("[data-loc='/body/credentials/oauth2/refresh_token']")
        ).to_be_visible()
        await expect(page.locator("input[name=client_id]")).to_have_value("client-1")
        await expect(page.locator("input[name=client_secret]")).to_have_value("")
        for name, value in (
            ("client_secret", "client-secret"),
            ("access_token", "access-1"),
            ("refresh_token", "refresh-1"),
        ):
            await page.fill(f"input[name={name}]", value)
        await shot(page, shots, "connect-oauth")
        await page.click("button:has-text('Connect')")
        await expect(page.locator("pre.url")).to_contain_text("/webhooks/xero/")
        await page.click("text=Open the connection")
        connection_id = page.url.rsplit("/", 1)[1]
        await expect(page.locator("[data-credentials]")).to_have_text("OAuth2 tokens")
        await expect(page.locator("dd", has_text="2031-01-01 00:00:00 UTC")).to_be_visible()

        # A backfill starts with its progress bar, and is cancelled.
        await page.select_option("select[name=kind]", "backfill")
        await page.click("button:has-text('Start')")
        await expect(page.locator(".notice")).to_have_text("Sync job started.")
        job = page.locator("tr[data-job]").first
        await expect(job.locator("progress")).to_be_visible()
        await expect(job).to_contain_text("pending")
        await job.locator("button:has-text('Cancel')").click()
        await expect(page.locator(".notice")).to_contain_text("Sync job cancelled")
        await expect(page.locator("tr[data-job]").first).to_contain_text("cancelled")

        # Paused outbound, then resumed; the secret rotated and shown once.
        await page.select_option("form[action$='/pause'] select[name=direction]", "out")
        await page.fill("form[action$='/pause'] input[name=reason]", "month end")
        await page.click("button:has-text('Pause')")
        await expect(page.locator("[data-state]")).to_contain_text("Paused outbound")
        await shot(page, shots, "connection-paused")
        await page.click("button:has-text('Resume')")
        await expect(page.locator("[data-state]")).to_contain_text("Receiving and pushing")
        await page.click("button:has-text('Disable')")
        await expect(page.locator("[data-state]")).to_contain_text("Disabled")
        await page.click("nav >> text=Overview")
        listed = page.locator("tr[data-connection]", has_text="Xero books")
        await expect(listed.locator("ul.problems")).to_contain_text("disabled")
        await listed.locator("a").first.click()
        await page.click("button:has-text('Enable')")
        await expect(page.locator(".notice")).to_have_text("The connection is enabled.")
        await page.click("text=Rotate the webhook secret")
        await expect(page.locator(".shown-once pre.secret")).to_be_visible()

        # A freeze window for it, listed on its page too, then removed.
        await page.click("nav >> text=Freeze windows")
        await page.select_option("form.settings select[name=connection]", connection_id)
        await page.fill("input[name=starts_at]", "2031-02-14T06:00:00+11:00")
        await page.fill("input[name=ends_at]", "2031-02-14T06:00:00+11:00")
        await page.fill("input[name=reason]", "wedding day")
        await page.click("text=Schedule the window")
        await expect(page.locator(".field-error")).to_contain_text("ends_at must be after")
        await page.fill("input[name=ends_at]", "2031-02-15T06:00:00+11:00")
        await page.click("text=Schedule the window")
        await expect(page.locator(".notice")).to_have_text("Freeze window scheduled.")
        window = page.locator("tr[data-window]", has_text="wedding day")
        await expect(window).to_contain_text("Xero books")
        await shot(page, shots, "freeze-windows")
        await page.goto(console.url(f"/console/connections/{connection_id}"))
        await expect(page.locator("ul.windows")).to_contain_text("wedding day")
        await page.click("nav >> text=Freeze windows")
        await window.locator("button:has-text('Remove')").click()
        await expect(page.locator("tr[data-window]")).to_have_count(0)

        # A notification endpoint: its signing secret shown once; a test message queued.
        await page.click("nav >> text=Notifications")
        await page.fill("input[name=url]", "https://ops.example.test/hooks/crmsync")
        await page.fill("input[name=description]", "on-call")
        await page.check("input[value='sync_job.failed']")
        await page.click("text=Add endpoint")
        await expect(page.locator(".shown-once pre.secret")).to_contain_text("whsec_")
        await shot(page, shots, "notifications")
        await page.click("nav >> text=Notifications")
        await expect(page.locator(".shown-once")).to_have_count(0)
        await page.click("tr[data-endpoint] a")
        await page.click("text=Send a test message")
        await expect(page.locator("tr[data-delivery]")).to_contain_text("test")
        await shot(page, shots, "notification")

        # The audit trail has what this browser did, by its key; filtered by the connection.
        await page.click("nav >> text=Audit trail")
        await expect(page.locator("tr[data-audit]").first).to_contain_text("api-key:")
        await page.fill("input[name=target]", connection_id)
        await page.click("button:has-text('Filter')")
        for action in ("connection.create", "connection.pause", "connection.resume"):
            await expect(page.locator("tr[data-audit]", has_text=action)).to_have_count(1)
        await shot(page, shots, "audit")
        await page.fill("input[name=target]", "not-an-id")
        await page.click("button:has-text('Filter')")
        await expect(page.locator("[data-loc='/query/target']")).to_be_visible()

        # Long lists page: 54 keys over two pages.
        await page.click("nav >> text=API keys")
        await expect(page.locator("tr[data-key]")).to_have_count(50)
        await page.click("text=More keys")
        await expect(page.locator("tr[data-key]")).to_have_count(4)
        # Created and rotated (each shown once), then revoked.
        await page.select_option("select[name=scope]", "admin")
        await page.click("text=Create a key")
        created = page.locator(".shown-once pre.secret")
        await expect(created).to_contain_text("csk_")
        new_key = (await created.inner_text()).strip()
        # Keys list oldest first: the new one is on the second page.
        new_row = page.locator("tr[data-key]", has_text=new_key[:12])
        await page.click("text=More keys")
        await new_row.locator("button:has-text('Rotate')").click()
        await expect(page.locator(".shown-once pre.secret")).not_to_have_text(new_key)
        await page.click("text=More keys")
        await new_row.locator("button:has-text('Revoke')").click()
        await expect(page.locator(".notice")).to_have_text("Key revoked.")
        revoked = await console.pool.fetchval(
            "SELECT revoked_at FROM api_keys WHERE tenant_id = $1 AND $2 LIKE key_prefix || '%'",
            tenant,
            new_key,
        )
        assert revoked is not None

        # Events by record: only that record's rows; money shows with its currency.
        invoice = await console.pool.fetchval(
            "INSERT INTO invoices (tenant_id, data) VALUES ($1, $2) RETURNING id",
            tenant,
            {"number": "INV-42", "currency": "AUD", "total": 123456},
        )
        for entity_id in (invoice, uuid.uuid4()):
            await console.pool.execute(
                """
                INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type,
                                      entity_id, outcome)
                VALUES ($1, $2, 'in', 'invoice', $3, 'applied')
                """,
                tenant,
                uuid.UUID(connection_id),
                entity_id,
            )
        await page.click("nav >> text=Events")
        await expect(page.locator("tr[data-event]")).to_have_count(2)
        await page.fill("input[name=entity_id]", str(invoice))
        await page.click("button:has-text('Filter')")
        await expect(page.locator("tr[data-event]")).to_have_count(1)
        await page.locator("tr[data-event] a").click()
        await expect(page.locator("tr[data-field=total] td").first).to_have_text("1,234.56 AUD")

        # Deleted from its page; the overview says so and lists it no more.
        await page.goto(console.url(f"/console/connections/{connection_id}"))
        await page.click("summary:has-text('Delete this connection')")
        await page.click("button:has-text('for good')")
        await expect(page.locator(".notice")).to_contain_text("Connection deleted")
        await expect(page.locator("tr[data-connection]")).to_have_count(0)

        # A read key sees the tenant's pages but not one button, and a forged post is refused.
        await page.click("text=Sign out")
        await sign_in(page, console, read_key.key)
        for path in ("/console/freeze-windows", "/console/notifications", "/console/audit"):
            await page.goto(console.url(path))
            await expect(page.locator("main form[method=post]")).to_have_count(0)
        csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
        refused = await page.request.post(
            console.url("/console/freeze-windows"),
            form={
                "csrf": csrf or "",
                "starts_at": "2031-01-01T00:00:00Z",
                "ends_at": "2031-01-02T00:00:00Z",
            },
            headers={"Origin": console.base},
        )
        assert refused.status == 403
        assert "this needs a key of scope admin" in await refused.text()
        await page.goto(console.url("/console/freeze-windows?include_past=1"))
        await expect(page.locator("tr[data-window]")).to_have_count(0)
        await page.goto(console.url("/console/notifications"))
        endpoint_id = await page.locator("tr[data-endpoint]").get_attribute("data-endpoint")
        await page.click("text=Sign out")

        # Another tenant: the endpoint is not there, nor the audit trail of this one.
        await sign_in(page, console, other_key.key)
        response = await page.goto(console.url(f"/console/notifications/{endpoint_id}"))
        assert response is not None
        assert response.status == 404
        await expect(page.locator("h1")).to_have_text("Not found")
        await page.goto(console.url("/console/audit"))
        await expect(page.locator("tr[data-audit]")).to_have_count(0)
        await page.goto(console.url("/console/notifications"))
        await expect(page.locator("tr[data-endpoint]")).to_have_count(0)

        assert requested
        assert all(url.startswith(console.base + "/") for url in requested), {
            url for url in requested if not url.startswith(console.base + "/")
        }
