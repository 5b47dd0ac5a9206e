"""`crmsync connections add` end to end: what it prints is enough to send a webhook."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.ingest_harness import PUBLIC_BASE, Ingest
from tests.signing import sign

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
# A callback handshake as FreshBooks posts it (form-encoded), with a verifier of its own.
CALLBACK = b"name=callback.verify&verifier=Tz8rQ2vJpX9&object_id=2001&account_id=6BApk"


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


def _added(database_url: str, provider: str) -> dict[str, Any]:
    """What ``connections add --provider provider`` printed for a new tenant; it must
    succeed."""
    result = _add(database_url, "--provider", provider, "--tenant", f"cli-{uuid.uuid4().hex[:8]}")
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


@pytest.mark.parametrize("provider", ["stripe", "standard-webhooks", "shopify"])
async def test_printed_url_and_generated_secret_receive_a_webhook(
    database_url: str, ingest: Ingest, provider: str
) -> None:
    out = _added(database_url, provider)
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
    await ingest.post_change(out["api_key"])
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


async def test_a_catalogue_provider_is_a_generic_connection_from_its_mapping_file(
    database_url: str, ingest: Ingest
) -> None:
    out = _added(database_url, "woocommerce")
    assert (out["provider"], out["name"]) == ("generic", "woocommerce")
    assert out["webhook_url"] == f"{PUBLIC_BASE}/webhooks/generic/{out['id']}"
    settings = await ingest.pool.fetchval(
        "SELECT settings FROM connections WHERE id = $1", uuid.UUID(out["id"])
    )
    assert settings["generic"]["signature_header"] == "x-wc-webhook-signature"
    assert set(settings["generic_mapping"]["entities"]) == {"customer", "invoice"}

    body = b'{"id": 7, "date_created_gmt": "2024-03-14T09:30:00", "email": "a@b.example"}'
    digest = hmac.new(out["webhook_secret"].encode(), body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "X-WC-Webhook-Topic": "customer.created",
        "X-WC-Webhook-Signature": base64.b64encode(digest).decode(),
    }
    path = out["webhook_url"].removeprefix(PUBLIC_BASE)
    resp = await ingest.client.post(path, data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    headers["X-WC-Webhook-Signature"] = base64.b64encode(b"x" * 32).decode()
    resp = await ingest.client.post(path, data=body, headers=headers)
    assert resp.status == 401


async def test_a_url_token_provider_gets_its_secret_in_the_printed_url(
    database_url: str, ingest: Ingest
) -> None:
    out = _added(database_url, "mailchimp")
    base = f"{PUBLIC_BASE}/webhooks/generic/{out['id']}"
    assert out["webhook_url"] == f"{base}?token={out['webhook_secret']}"
    body = b"type=profile&fired_at=2024-03-14+09%3A30%3A00&data%5Bemail%5D=a%40b.example"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    path = out["webhook_url"].removeprefix(PUBLIC_BASE)
    resp = await ingest.client.post(path, data=body, headers=form)
    assert resp.status == 200, await resp.text()
    for wrong in (base, f"{base}?token=guess"):
        resp = await ingest.client.post(wrong.removeprefix(PUBLIC_BASE), data=body, headers=form)
        assert resp.status == 401


def test_a_catalogue_provider_refuses_a_second_mapping(database_url: str, tmp_path: Path) -> None:
    scheme = tmp_path / "scheme.json"
    scheme.write_text('{"signature_header": "x-sig"}')
    result = _add(
        database_url, "--provider", "mautic", "--tenant", "cli-x", "--generic-config", str(scheme)
    )
    assert result.returncode != 0
    assert "drop --generic-config" in result.stderr


async def test_a_myob_connection_prints_its_poll_interval_not_a_webhook(
    database_url: str, ingest: Ingest
) -> None:
    """MYOB sends no webhooks: nothing to paste into it, and ingest has no door for it."""
    out = _added(database_url, "myob")
    assert out["provider"] == "myob"
    assert out["polled_every_seconds"] == 60
    assert "webhook_url" not in out
    assert "webhook_secret" not in out
    resp = await ingest.client.post(f"/webhooks/myob/{out['id']}", data=b"{}")
    assert resp.status == 404


async def test_freshbooks_gets_no_secret_of_ours_and_takes_its_callback_handshake(
    database_url: str, ingest: Ingest
) -> None:
    out = _added(database_url, "freshbooks")
    # FreshBooks issues the secrets (each callback's code): one of ours would sign nothing.
    assert "webhook_secret" not in out
    assert out["handshakes_until"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    path = out["webhook_url"].removeprefix(PUBLIC_BASE)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    resp = await ingest.client.post(path, data=CALLBACK, headers=form)
    assert resp.status == 202, await resp.text()


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRMSYNC_DATABASE_URL": database_url}
    return subprocess.run(
        [CRMSYNC, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_await_handshake_opens_a_window_only_where_the_mapping_declares_one(
    database_url: str, ingest: Ingest
) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    made = _add(
        database_url,
        "--provider",
        "freshbooks",
        "--tenant",
        tenant,
        "--webhook-secret",
        "given-verifier-1",
    )
    assert made.returncode == 0, made.stderr
    freshbooks = json.loads(made.stdout)
    assert freshbooks["webhook_secret"] == "given-verifier-1"  # an operator's own: no window
    path = freshbooks["webhook_url"].removeprefix(PUBLIC_BASE)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert (await ingest.client.post(path, data=CALLBACK, headers=form)).status == 409

    opened = _cli(
        database_url,
        "connections",
        "await-handshake",
        f"{tenant}/freshbooks",
        "--seconds",
        "600",
        "--json",
    )
    assert opened.returncode == 0, opened.stderr
    assert json.loads(opened.stdout)["handshakes_until"] is not None
    assert (await ingest.client.post(path, data=CALLBACK, headers=form)).status == 202

    stripe = _add(database_url, "--provider", "stripe", "--tenant", tenant)
    assert stripe.returncode == 0, stripe.stderr
    refused = _cli(database_url, "connections", "await-handshake", f"{tenant}/stripe")
    assert refused.returncode != 0
    assert "declares no webhook handshake" in refused.stderr
