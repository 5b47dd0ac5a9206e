"""`crmsync connections add` end to end: what it prints is enough to send a webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.ingest_harness import PUBLIC_BASE, Ingest
from tests.signing import sign

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))


def _add(
    database_url: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_INGEST_PUBLIC_BASE_URL": PUBLIC_BASE,
        **(env or {}),
    }
    return subprocess.run(
        [CRMSYNC, "connections", "add", *args, "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("provider", ["stripe", "standard-webhooks", "shopify"])
async def test_printed_url_and_generated_secret_receive_a_webhook(
    database_url: str, ingest: Ingest, provider: str
) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    result = _add(database_url, "--provider", provider, "--tenant", tenant)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert {"id", "provider", "tenant", "webhook_url", "webhook_secret"} <= out.keys()
    assert out["webhook_url"] == f"{PUBLIC_BASE}/webhooks/{provider}/{out['id']}"

    body = b'{"id": "evt_cli"}'
    headers = sign(provider, out["webhook_secret"], body, now=time.time(), url=out["webhook_url"])
    path = out["webhook_url"].removeprefix(PUBLIC_BASE)
    resp = await ingest.client.post(path, data=body, headers=headers)
    assert resp.status == 200, await resp.text()


async def test_internal_connection_gets_a_working_api_key(
    database_url: str, ingest: Ingest
) -> None:
    result = _add(database_url, "--provider", "internal", "--tenant", "cli-internal")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert "webhook_secret" not in out
    change = {
        "event_id": "e1",
        "entity_type": "job",
        "op": "upsert",
        "external_id": "job-1",
        "occurred_at": "2026-11-21T10:00:00+00:00",
        "data": {"title": "Fix the boiler"},
    }
    resp = await ingest.client.post(
        "/v1/changes", json=change, headers={"Authorization": f"Bearer {out['api_key']}"}
    )
    assert resp.status == 202, await resp.text()
    # The key is stored only as a hash.
    stored = await ingest.pool.fetchval("SELECT key_hash FROM api_keys")
    assert out["api_key"] not in stored


async def test_secrets_are_stored_encrypted(database_url: str, ingest: Ingest) -> None:
    secret = "whsec_" + "z" * 32
    result = _add(
        database_url, "--provider", "stripe", "--tenant", "cli-enc", "--webhook-secret", secret
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["webhook_secret"] == secret
    stored = await ingest.pool.fetchval("SELECT secret_encrypted FROM webhook_secrets")
    assert stored.startswith("enc:v1:")
    assert secret not in stored


def test_unknown_provider_and_bad_tenant_are_refused(database_url: str) -> None:
    bad = _add(database_url, "--provider", "salesforce", "--tenant", "acme")
    assert bad.returncode == 1
    assert "unknown provider" in bad.stderr
    slug = _add(database_url, "--provider", "stripe", "--tenant", "Not A Slug")
    assert slug.returncode == 1
    assert "slug" in slug.stderr


def test_a_base_url_no_provider_can_have_is_refused(database_url: str) -> None:
    args = ("--provider", "xero", "--tenant", "acme", "--base-url", "https://169.254.169.254")
    deny = {"CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS": "false"}
    refused = _add(database_url, *args, env=deny)
    assert refused.returncode == 1, refused.stderr  # as this command's other refusals
    assert "--base-url" in refused.stderr
    assert "metadata" in refused.stderr
    allowed = _add(database_url, *args, env={"CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS": "true"})
    assert allowed.returncode == 0, allowed.stderr
