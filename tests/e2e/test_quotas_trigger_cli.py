"""`crmsync quotas` and `crmsync trigger` as a script uses them: --json output, exit codes,
nothing changed by bad input, and a triggered sample accepted by a running ingest."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from crmsync.common.db import create_pool
from schemas import topics
from tests.e2e.test_admin_cli import Cli
from tests.ingest_harness import PUBLIC_BASE, Ingest, Tap


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=2)
    yield pool
    await pool.close()


def cli_for(database_url: str) -> Cli:
    cli = Cli(database_url)
    cli.env["CRMSYNC_INGEST_PUBLIC_BASE_URL"] = PUBLIC_BASE
    return cli


async def test_quotas_show_set_and_refuse(database_url: str, pg: asyncpg.Pool) -> None:
    cli = cli_for(database_url)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    assert cli("connections", "add", "--provider", "stripe", "--tenant", tenant).returncode == 0
    shown = cli.json("quotas", "show", "--tenant", tenant)
    assert shown["connections"] == {"limit": None, "usage": 1}

    set_ = cli.json(
        "quotas", "set", "--tenant", tenant, "--max-connections", "1", "--events-per-minute", "120"
    )
    assert set_["connections"] == {"limit": 1, "usage": 1}
    assert set_["events_per_minute"]["limit"] == 120

    full = cli("connections", "add", "--provider", "xero", "--tenant", tenant)
    assert full.returncode == 4, full.stderr
    assert "quota allows 1" in full.stderr

    for bad in (["--max-connections", "-1"], ["--max-records", "lots"], []):
        done = cli("quotas", "set", "--tenant", tenant, *bad)
        assert done.returncode == 2, (bad, done.stderr)
    lifted = cli.json("quotas", "set", "--tenant", tenant, "--max-connections", "none")
    assert lifted["connections"]["limit"] is None
    assert lifted["events_per_minute"]["limit"] == 120
    table = cli("quotas", "show", "--tenant", tenant)
    assert table.returncode == 0
    assert "events_per_minute" in table.stdout
    actions = await pg.fetch(
        "SELECT action FROM admin_audit_log a JOIN tenants t ON t.id = a.tenant_id"
        " WHERE t.slug = $1 AND action LIKE 'quota.%' ORDER BY a.id",
        tenant,
    )
    assert [a["action"] for a in actions] == ["quota.update", "quota.update"]
    assert cli("quotas", "show", "--tenant", "nobody-here").returncode == 3


async def test_trigger_sends_a_signed_sample_to_a_running_ingest(
    database_url: str, ingest: Ingest, kafka_bootstrap: str
) -> None:
    cli = cli_for(database_url)
    listed = cli.json("trigger", "--list")
    assert "customer.created" in listed["providers"]["stripe"]

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    created = cli.json("connections", "add", "--provider", "stripe", "--tenant", tenant)
    tap = Tap(kafka_bootstrap, topics.WEBHOOKS_RAW.name)
    await tap.start()
    try:
        base = str(ingest.client.make_url("")).rstrip("/")

        async def trigger(
            provider: str, event: str, connection: str, *more: str
        ) -> subprocess.CompletedProcess[str]:
            return await asyncio.to_thread(
                cli, "trigger", provider, event, "--connection", connection,
                "--ingest-url", base, *more,
            )  # fmt: skip

        by_name = await trigger("stripe", "customer.created", f"{tenant}/stripe", "--json")
        assert by_name.returncode == 0, by_name.stderr
        by_id = await trigger("stripe", "customer_created", created["id"], "--json")
        assert by_id.returncode == 0, by_id.stderr
        results = [json.loads(by_name.stdout), json.loads(by_id.stdout)]
        assert [r["ingest_status"] for r in results] == [200, 200]
        assert results[0]["delivery_id"] != results[1]["delivery_id"]
        assert len(await tap.read(created["id"].encode(), 2)) == 2

        wrong = await trigger("xero", "contact.update", created["id"])
        assert wrong.returncode == 2, wrong.stderr
        unknown = await trigger("stripe", "customer.created", f"{tenant}/nope")
        assert unknown.returncode == 3, unknown.stderr
        assert await tap.nothing_for(created["id"].encode())
    finally:
        await tap.stop()
