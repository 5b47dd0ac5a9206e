"""`crmsync privacy export|erase` as an operator runs them: the bundle written to a file,
exit codes for bad input (2), nobody (3) and a system that could not be erased (1), and
the audit trail naming the OS user without the email."""

from __future__ import annotations

import getpass
import json
import os
import uuid
from pathlib import Path

import asyncpg

from crmsync.common.crypto import KeyRing
from crmsync.demo import sims
from tests.e2e.sync_harness import start_simulator
from tests.e2e.test_admin_cli import Cli, cli, pg

__all__ = ["cli", "pg"]  # fixtures, imported for pytest


async def _person(cli: Cli, pg: asyncpg.Pool, email: str) -> tuple[str, uuid.UUID]:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    cli.json("api-keys", "create", "--tenant", tenant, "--scope", "read")
    tenant_id = await pg.fetchval("SELECT id FROM tenants WHERE slug = $1", tenant)
    customer_id = await pg.fetchval(
        "INSERT INTO customers (tenant_id, data) VALUES ($1, $2) RETURNING id",
        tenant_id,
        {"email": email, "name": "Ada Lovelace"},
    )
    return tenant, customer_id


async def test_export_writes_the_bundle_and_bad_input_changes_nothing(
    cli: Cli, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    tenant, customer_id = await _person(cli, pg, "ada@example.com")
    out = tmp_path / "ada.json"
    done = cli(
        "privacy", "export", "--tenant", tenant, "--email", "ADA@example.com", "--out", str(out)
    )
    assert done.returncode == 0, done.stderr
    assert f"wrote {out}: 1 customer(s)" in done.stderr
    bundle = json.loads(out.read_text())
    assert [c["id"] for c in bundle["customers"]] == [str(customer_id)]
    assert bundle["customers"][0]["data"]["name"] == "Ada Lovelace"

    bad = cli("privacy", "erase", "--tenant", tenant, "--email", "not-an-address")
    assert bad.returncode == 2, bad.stderr
    assert "email" in bad.stderr
    nobody = cli("privacy", "erase", "--tenant", tenant, "--email", "nobody@example.com")
    assert nobody.returncode == 3, nobody.stderr
    assert await pg.fetchval("SELECT data->>'email' FROM customers") == "ada@example.com"
    assert await pg.fetchval("SELECT count(*) FROM privacy_tombstones") == 0


async def test_erase_exits_1_naming_a_system_it_could_not_reach_and_audits_no_email(
    cli: Cli, pg: asyncpg.Pool
) -> None:
    tenant, customer_id = await _person(cli, pg, "ada@example.com")
    stripe = await start_simulator("stripe")
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    connection_id = await sims.connect(
        pg, keyring, stripe, tenant=tenant, name="stripe", ingest_url="http://127.0.0.1:9"
    )
    held = stripe.sim.create("customer", {"email": "ada@example.com"}, notify=False)
    await pg.execute(
        """
        INSERT INTO entity_links (tenant_id, connection_id, entity_type, entity_id, external_id)
        SELECT tenant_id, $2, 'customer', id, $3 FROM customers WHERE id = $1
        """,
        customer_id,
        connection_id,
        held["id"],
    )
    await stripe.runner.cleanup()  # Stripe is unreachable

    done = cli("privacy", "erase", "--tenant", tenant, "--email", "ada@example.com")
    assert done.returncode == 1, done.stderr
    assert "run this again" in done.stderr
    assert "stripe/stripe" in done.stdout
    assert "failed" in done.stdout
    assert "network" in done.stdout
    # Postgres is erased whatever the systems said, and the audit trail has no address.
    assert await pg.fetchval("SELECT data FROM customers") == {}
    rows = await pg.fetch(
        "SELECT actor, action, change::text AS change FROM admin_audit_log"
        " WHERE target_type = 'privacy'"
    )
    assert {r["action"] for r in rows} == {"privacy.erase", "privacy.erase_systems"}
    assert {r["actor"] for r in rows} == {f"cli:{getpass.getuser()}"}
    assert "ada@example" not in " ".join(r["change"] for r in rows).lower()
