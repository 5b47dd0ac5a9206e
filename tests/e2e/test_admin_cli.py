"""The admin commands of `crmsync` as a script uses them: --json output, exit codes, and a
key from `api-keys create` that the admin API accepts."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from crmsync.common.db import create_pool
from crmsync.common.settings import parse_settings
from crmsync.settings.admin import AdminSettings
from services.admin.app import create_app

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
PUBLIC_BASE = "https://hooks.example.test"


class Cli:
    def __init__(self, database_url: str) -> None:
        self.env = {
            **os.environ,
            "CRMSYNC_DATABASE_URL": database_url,
            "CRMSYNC_INGEST_PUBLIC_BASE_URL": PUBLIC_BASE,
        }

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CRMSYNC, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def json(self, *args: str) -> Any:
        done = self(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(database_url: str) -> Cli:
    return Cli(database_url)


@pytest.fixture
async def pg(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=2)
    yield pool
    await pool.close()


async def test_a_created_admin_key_works_against_the_api(database_url: str, cli: Cli) -> None:
    created = cli.json("api-keys", "create", "--tenant", "acme", "--scope", "admin")
    assert {"key", "id"} <= created.keys()
    assert created["key"].startswith("csk_")
    settings = parse_settings(AdminSettings, database_url=database_url)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        resp = await client.get(
            "/v1/api-keys", headers={"Authorization": f"Bearer {created['key']}"}
        )
        assert resp.status == 200
        assert [k["id"] for k in (await resp.json())["items"]] == [created["id"]]
    finally:
        await client.close()
    listed = cli("api-keys", "list", "--tenant", "acme")
    assert listed.returncode == 0
    assert listed.stdout.splitlines()[0].split()[:3] == ["id", "scope", "prefix"]
    assert created["key"] not in listed.stdout
    revoked = cli.json("api-keys", "revoke", "--tenant", "acme", created["id"])
    assert revoked["revoked_at"] is not None


def test_exit_codes_say_not_found_invalid_and_conflict(cli: Cli) -> None:
    assert cli("api-keys", "list", "--tenant", "nobody").returncode == 3
    cli.json("api-keys", "create", "--tenant", "acme", "--scope", "read")
    missing = cli("connections", "show", "--tenant", "acme", str(uuid.uuid4()))
    assert missing.returncode == 3
    assert "no connection" in missing.stderr
    bad = cli("api-keys", "create", "--tenant", "acme", "--scope", "publish")
    assert bad.returncode == 2
    assert "internal connection" in bad.stderr
    usage = cli("connections", "show", "--tenant", "acme", "not-an-id")
    assert usage.returncode == 2
    stripe = cli.json("connections", "add", "--provider", "stripe", "--tenant", "acme")
    first = cli("sync-jobs", "start", "--tenant", "acme", "--connection", stripe["id"],
                "--kind", "backfill")  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = cli("sync-jobs", "start", "--tenant", "acme", "--connection", stripe["id"],
                "--kind", "backfill")  # fmt: skip
    assert again.returncode == 4
    assert "already pending or running" in again.stderr


async def test_connection_actions_mirror_the_api(cli: Cli, pg: asyncpg.Pool) -> None:
    created = cli.json("connections", "add", "--provider", "xero", "--tenant", "acme")
    cid = created["id"]
    listed = cli.json("connections", "list", "--tenant", "acme")
    assert [c["id"] for c in listed["items"]] == [cid]
    updated = cli.json(
        "connections", "update", "--tenant", "acme", cid, "--direction", "in",
        "--entity-types", "customer,invoice", "--set", '{"rate_limit": {"rate": 2}}',
    )  # fmt: skip
    assert updated["settings"]["direction"] == "in"
    assert updated["settings"]["entity_types"] == ["customer", "invoice"]
    assert updated["settings"]["rate_limit"]["rate"] == 2.0
    bad = cli("connections", "update", "--tenant", "acme", cid, "--set", '{"colour": 1}')
    assert bad.returncode == 2
    assert "colour" in bad.stderr
    assert cli.json("connections", "disable", "--tenant", "acme", cid)["status"] == "disabled"
    assert cli.json("connections", "enable", "--tenant", "acme", cid)["status"] == "active"
    rotated = cli.json("connections", "rotate-secret", "--tenant", "acme", cid)
    assert rotated["webhook_secret"]
    assert await pg.fetchval("SELECT count(*) FROM webhook_secrets") == 2
    done = cli(
        "connections", "set-credentials", "--tenant", "acme", cid, "--provider-api-key", "tok"
    )
    assert done.returncode == 0, done.stderr
    health = cli.json("connections", "health", "--tenant", "acme", cid)
    assert health["credentials"] == "api_key"
    table = cli("connections", "health", "--tenant", "acme", cid)
    assert "circuit" in table.stdout
    assert cli("connections", "delete", "--tenant", "acme", cid).returncode == 0
    assert cli("connections", "show", "--tenant", "acme", cid).returncode == 3


async def test_records_dead_letters_and_conflicts(cli: Cli, pg: asyncpg.Pool) -> None:
    cli.json("api-keys", "create", "--tenant", "acme", "--scope", "read")
    ascora = cli.json("connections", "add", "--provider", "ascora", "--tenant", "acme")
    tenant = await pg.fetchval("SELECT id FROM tenants WHERE slug = 'acme'")
    customer = await pg.fetchval(
        "INSERT INTO customers (tenant_id, data) VALUES ($1, $2) RETURNING id",
        tenant,
        {"name": "Ann", "email": "ann@example.com", "phone": "1"},
    )
    found = cli.json(
        "records", "list", "customers", "--tenant", "acme", "--email", "ANN@example.com"
    )
    assert [r["id"] for r in found["items"]] == [str(customer)]
    shown = cli.json("records", "show", "customers", str(customer), "--tenant", "acme")
    assert shown["data"]["name"] == "Ann"
    assert cli("records", "list", "jobs", "--tenant", "acme", "--email", "x").returncode == 2

    payload = json.dumps(
        {"connection_id": ascora["id"], "entity_type": "customer", "entity_id": str(customer)}
    ).encode()
    dead = await pg.fetchval(
        """
        INSERT INTO dead_letters (stage, reason, tenant_id, connection_id, payload)
        VALUES ('outbound', 'provider_4xx', $1, $2, $3) RETURNING id
        """,
        tenant,
        uuid.UUID(ascora["id"]),
        payload,
    )
    listed = cli.json("dead-letters", "list", "--tenant", "acme", "--stage", "outbound")
    assert [d["id"] for d in listed["items"]] == [str(dead)]
    redriven = cli.json("dead-letters", "redrive", "--tenant", "acme", str(dead))
    assert redriven["redriven_at"] is not None
    job = await pg.fetchrow("SELECT connection_id, entity_id, version FROM push_jobs")
    assert (str(job["connection_id"]), job["entity_id"], job["version"]) == (
        ascora["id"],
        customer,
        1,
    )
    assert cli("dead-letters", "redrive", "--tenant", "acme", str(dead)).returncode == 4

    conflict = await pg.fetchval(
        """
        INSERT INTO conflicts (tenant_id, entity_type, entity_id, field, current_value,
                               incoming_value)
        VALUES ($1, 'customer', $2, 'phone', '"1"', '"2"') RETURNING id
        """,
        tenant,
        customer,
    )
    open_ = cli.json("conflicts", "list", "--tenant", "acme")
    assert [c["id"] for c in open_["items"]] == [str(conflict)]
    resolved = cli.json(
        "conflicts", "resolve", "--tenant", "acme", str(conflict), "--choose", "value",
        "--value", '"3"',
    )  # fmt: skip
    assert resolved["resolution"]["value"] == "3"
    assert (await pg.fetchval("SELECT data FROM customers WHERE id = $1", customer))["phone"] == "3"


def test_the_audit_log_names_the_os_user_and_keeps_no_secret(cli: Cli) -> None:
    secret = "whsec_" + uuid.uuid4().hex
    created = cli.json(
        "connections",
        "add",
        "--provider",
        "stripe",
        "--tenant",
        "acme",
        "--webhook-secret",
        secret,
        "--provider-api-key",
        "sk_test_cli_audit",
    )
    cli.json("connections", "update", "--tenant", "acme", created["id"], "--direction", "in")
    key = cli.json("api-keys", "create", "--tenant", "acme", "--scope", "read")
    page = cli.json("audit-log", "--tenant", "acme")
    actor = f"cli:{getpass.getuser()}"
    assert [(e["action"], e["actor"]) for e in page["items"]] == [
        ("api_key.create", actor),
        ("connection.update", actor),
        ("connection.create", actor),
    ]
    assert page["items"][2]["target_id"] == created["id"]
    text = json.dumps(page)
    assert secret not in text
    assert "sk_test_cli_audit" not in text
    assert key["key"] not in text
    assert page["items"][2]["change"]["webhook_secret"] == "[redacted]"
    # Filters and the table form.
    only = cli.json("audit-log", "--tenant", "acme", "--action", "api_key")
    assert [e["action"] for e in only["items"]] == ["api_key.create"]
    table = cli("audit-log", "--tenant", "acme")
    assert table.returncode == 0
    assert "connection.update" in table.stdout
    # A key's detail has its (empty) usage; the version is printed.
    shown = cli.json("api-keys", "show", "--tenant", "acme", key["id"])
    assert shown["usage"] == []
    assert shown["last_used_at"] is None
    version = cli("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("crmsync ")


async def test_sync_log_lists_and_follows(cli: Cli, pg: asyncpg.Pool) -> None:
    cli.json("api-keys", "create", "--tenant", "acme", "--scope", "read")  # the tenant
    tenant = await pg.fetchval("SELECT id FROM tenants WHERE slug = 'acme'")
    insert = (
        "INSERT INTO sync_log (tenant_id, direction, entity_type, external_id, outcome)"
        " VALUES ($1, 'out', 'invoice', $2, 'pushed')"
    )
    await pg.execute(insert, tenant, "inv-1")
    listed = cli.json("sync-log", "--tenant", "acme", "--direction", "out")
    assert [e["external_id"] for e in listed["items"]] == ["inv-1"]
    tail = await asyncio.create_subprocess_exec(
        CRMSYNC,
        *("sync-log", "--tenant", "acme", "--follow", "--json", "--interval", "0.1"),
        env=cli.env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert tail.stdout is not None
    try:
        first = await asyncio.wait_for(tail.stdout.readline(), 30)
        assert json.loads(first)["external_id"] == "inv-1"
        await pg.execute(insert, tenant, "inv-2")
        second = await asyncio.wait_for(tail.stdout.readline(), 30)
        assert json.loads(second)["external_id"] == "inv-2"
    finally:
        tail.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(tail.communicate(), 30)
    assert tail.returncode == 0, err
    # One record's events.
    record = uuid.uuid4()
    await pg.execute(
        "INSERT INTO sync_log (tenant_id, direction, entity_type, entity_id, external_id,"
        " outcome) VALUES ($1, 'in', 'invoice', $2, 'inv-r', 'applied')",
        tenant,
        record,
    )
    by_record = cli.json("sync-log", "--tenant", "acme", "--entity-id", str(record))
    assert [e["external_id"] for e in by_record["items"]] == ["inv-r"]
    # The echoes an earlier push's read-back made (rule 5a), apart from the other echoes.
    await pg.execute(
        "INSERT INTO sync_log (tenant_id, direction, entity_type, external_id, outcome, rule)"
        " VALUES ($1, 'in', 'invoice', 'inv-e', 'echo', 'echo'),"
        " ($1, 'in', 'invoice', 'inv-5a', 'echo', 'earlier_push')",
        tenant,
    )
    by_rule = cli.json("sync-log", "--tenant", "acme", "--rule", "earlier_push")
    assert [(e["external_id"], e["rule"]) for e in by_rule["items"]] == [("inv-5a", "earlier_push")]
