"""``crmsync`` in remote mode against a real admin service process: each command family
prints what local mode prints for the same data, refusals keep their exit codes, a key
reaches only its own tenant, and a wrong key or an unreachable URL says so."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from crmsync.common.crypto import generate_master_key
from crmsync.localstack.ports import free_port
from tests.e2e.helpers import stop, wait_until_ready

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))
PUBLIC_BASE = "https://hooks.example.test"


class Cli:
    """``crmsync`` locally (on the test database) or, with ``remote=True``, through the
    admin API with ``key``."""

    def __init__(self, env: dict[str, str], url: str) -> None:
        self.env = env
        self.url = url
        self.key = ""

    def run(
        self, *args: str, remote: bool = False, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if remote:
            env |= {"CRMSYNC_API_URL": self.url, "CRMSYNC_API_KEY": self.key}
        env |= extra
        return subprocess.run(
            [CRMSYNC, *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    def json(self, *args: str, remote: bool = False) -> Any:
        done = self.run(*args, "--json", remote=remote)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def both(self, *args: str, ignore: tuple[str, ...] = ()) -> Any:
        """The command's --json output, asserted the same in both modes (but for the
        ``ignore``d fields of a page's items)."""
        local = self.json(*args, "--tenant", "acme")
        remote = self.json(*args, remote=True)
        if ignore:
            local, remote = _without(local, *ignore), _without(remote, *ignore)
        assert remote == local, args
        return remote

    def refused_alike(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The command refused with the same exit status and message in both modes."""
        local = self.run(*args, "--tenant", "acme")
        remote = self.run(*args, remote=True)
        assert local.returncode != 0, local.stdout
        assert (remote.returncode, remote.stderr) == (local.returncode, local.stderr), args
        return remote


@pytest.fixture
def cli(database_url: str) -> Iterator[Cli]:
    env = {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_INGEST_PUBLIC_BASE_URL": PUBLIC_BASE,
        "CRMSYNC_MASTER_KEYS": generate_master_key(),
        # Notification endpoints on this machine.
        "CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS": "true",
        # No pipeline topics under this prefix: replay is refused alike in both modes.
        "CRMSYNC_KAFKA_TOPIC_PREFIX": f"remote-{uuid.uuid4().hex[:8]}.",
    }
    for name in ("CRMSYNC_API_URL", "CRMSYNC_API_KEY"):
        env.pop(name, None)
    port = free_port()
    admin = subprocess.Popen(
        [sys.executable, "-m", "services.admin"],
        env={**env, "CRMSYNC_ADMIN_PORT": str(port), "CRMSYNC_LOG_LEVEL": "WARNING"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/readyz", admin)
        made = Cli(env, url)
        made.key = made.json("api-keys", "create", "--tenant", "acme", "--scope", "admin")["key"]
        yield made
    finally:
        stop(admin)


def _without(page: dict[str, Any], *fields: str) -> dict[str, Any]:
    return {
        **page,
        "items": [{k: v for k, v in i.items() if k not in fields} for i in page["items"]],
    }


def test_connections_keys_and_records_print_the_same_in_both_modes(cli: Cli) -> None:
    added = cli.json("connections", "add", "--provider", "stripe", "--name", "stripe", remote=True)
    local_added = cli.json("connections", "add", "--provider", "xero", "--tenant", "acme")
    assert added.keys() == local_added.keys()
    assert added["tenant"] == "acme"
    assert added["webhook_url"] == f"{PUBLIC_BASE}/webhooks/stripe/{added['id']}"
    cid = added["id"]
    cli.json("connections", "add", "--provider", "stripe", "--tenant", "globex")

    listed = cli.both("connections", "list")
    assert [c["name"] for c in listed["items"]] == ["stripe", "xero"]
    assert cli.both("connections", "show", cid) == cli.both("connections", "show", "acme/stripe")
    assert cli.both("connections", "list", "--name", "xero")["items"][0]["provider"] == "xero"
    updated = cli.json("connections", "update", "acme/stripe", "--direction", "in", remote=True)
    assert updated["settings"]["direction"] == "in"
    assert cli.both("connections", "show", cid) == updated
    done = cli.run("connections", "set-credentials", cid, "--provider-api-key", "sk_x", remote=True)
    assert done.returncode == 0, done.stderr
    assert cli.both("connections", "health", cid)["credentials"] == "api_key"
    assert cli.json("connections", "disable", cid, remote=True)["status"] == "disabled"
    assert cli.json("connections", "enable", cid, remote=True)["status"] == "active"
    rotated = cli.json("connections", "rotate-secret", cid, remote=True)
    assert rotated["connection_id"] == cid

    # Same refusals, same exit statuses and messages.
    assert cli.refused_alike("connections", "show", str(uuid.uuid4())).returncode == 3
    assert cli.refused_alike("connections", "show", "acme/nope").returncode == 3
    bad = cli.refused_alike("connections", "update", cid, "--set", '{"colour": 1}')
    assert bad.returncode == 2
    assert "colour" in bad.stderr
    taken = cli.run("connections", "add", "--provider", "xero", remote=True)
    assert taken.returncode == 4, taken.stderr

    # last_used_at moves with every remote call the key makes (flushed every few seconds).
    assert len(cli.both("api-keys", "list", ignore=("last_used_at",))["items"]) == 1
    read = cli.json("api-keys", "create", "--scope", "read", remote=True)
    assert read["key"].startswith("csk_")
    keys = cli.both("api-keys", "list", ignore=("last_used_at",))
    assert read["id"] in [k["id"] for k in keys["items"]]
    assert cli.json("api-keys", "revoke", read["id"], remote=True)["revoked_at"]
    shown_local = cli.json("api-keys", "show", read["id"], "--tenant", "acme")
    assert cli.json("api-keys", "show", read["id"], remote=True) == shown_local

    assert cli.both("records", "list", "customers") == {"items": [], "next_cursor": None}
    assert cli.refused_alike("records", "show", "customers", str(uuid.uuid4())).returncode == 3
    assert cli.json("connections", "delete", "acme/xero", remote=True) == {}
    assert [c["name"] for c in cli.both("connections", "list")["items"]] == ["stripe"]


async def _log_twice(database_url: str, connection_id: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        tenant = await conn.fetchval("SELECT id FROM tenants WHERE slug = 'acme'")
        for name in ("cus_1", "cus_2"):
            await conn.execute(
                "INSERT INTO sync_log (tenant_id, connection_id, direction, entity_type,"
                " external_id, outcome) VALUES ($1, $2, 'in', 'customer', $3, 'applied')",
                tenant,
                uuid.UUID(connection_id),
                name,
            )
    finally:
        await conn.close()


def test_operations_families_print_the_same_in_both_modes(cli: Cli, database_url: str) -> None:
    cid = cli.json("connections", "add", "--provider", "stripe", "--tenant", "acme")["id"]
    cli.run("connections", "set-credentials", cid, "--provider-api-key", "sk_x", "--tenant", "acme")
    asyncio.run(_log_twice(database_url, cid))

    log = cli.both("sync-log", "--connection", "acme/stripe")
    assert [e["external_id"] for e in log["items"]] == ["cus_2", "cus_1"]
    with subprocess.Popen(
        [CRMSYNC, "sync-log", "--follow", "--json", "--interval", "0.2"],
        env={**cli.env, "CRMSYNC_API_URL": cli.url, "CRMSYNC_API_KEY": cli.key},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as follow:
        assert follow.stdout is not None
        try:
            lines = [json.loads(follow.stdout.readline()) for _ in range(2)]
        finally:
            follow.terminate()
        assert [e["external_id"] for e in lines] == ["cus_1", "cus_2"]

    assert cli.both("dead-letters", "list", "--state", "all") == {"items": [], "next_cursor": None}
    assert cli.refused_alike("dead-letters", "show", str(uuid.uuid4())).returncode == 3
    assert cli.both("conflicts", "list") == {"items": [], "next_cursor": None}
    assert cli.refused_alike("conflicts", "show", str(uuid.uuid4())).returncode == 3
    replay = cli.refused_alike("replay", "--connection", "acme/stripe", "--from-offset", "0")
    assert replay.returncode == 1
    assert "does not exist" in replay.stderr

    job = cli.json(
        "sync-jobs", "start", "--connection", "acme/stripe", "--kind", "backfill", remote=True
    )
    assert cli.both("sync-jobs", "show", job["id"]) == job
    assert cli.both("sync-jobs", "list")["items"] == [job]
    busy = cli.refused_alike("sync-jobs", "start", "--connection", cid, "--kind", "backfill")
    assert busy.returncode == 4
    # backfill --detach: the same answer either way, the job already queued.
    queued = {"id": job["id"], "queued": False, "kind": "backfill"}
    assert cli.json("backfill", "acme/stripe", "--detach", remote=True) == queued
    assert cli.json("backfill", "acme/stripe", "--detach") == queued
    foreground = cli.run("backfill", "acme/stripe", remote=True)
    assert foreground.returncode == 2
    assert "add --detach" in foreground.stderr
    assert cli.json("sync-jobs", "cancel", job["id"], remote=True)["status"] == "cancelled"

    paused = cli.json("connections", "pause", "acme/stripe", "--direction", "out", remote=True)
    assert paused["outbound"]
    assert not paused["inbound"]
    window = cli.json(
        "freeze-windows", "add", "--starts-at", "2030-06-01T08:00:00+00:00",
        "--ends-at", "2030-06-01T20:00:00+00:00", "--reason", "wedding", remote=True,
    )  # fmt: skip
    assert cli.both("freeze-windows", "show", window["id"]) == window
    assert window in cli.both("freeze-windows", "list")["items"]
    assert cli.json("freeze-windows", "delete", window["id"], remote=True) == {}
    cli.json("connections", "resume", cid, remote=True)
    assert cli.both("freeze-windows", "list") == {"items": [], "next_cursor": None}

    endpoint = cli.json("notifications", "add", "--url", "http://127.0.0.1:9/n", remote=True)
    assert endpoint["secret"]
    shown = cli.both("notifications", "show", endpoint["id"])
    assert shown["url"] == "http://127.0.0.1:9/n"
    test = cli.json("notifications", "test", endpoint["id"], remote=True)
    deliveries = cli.both("notifications", "deliveries", endpoint["id"])
    assert [d["id"] for d in deliveries["items"]] == [test["id"]]
    assert cli.json("notifications", "delete", endpoint["id"], remote=True) == {}

    trail = cli.both("audit-log")
    actors = {e["actor"].split(":")[0] for e in trail["items"]}
    assert actors == {"cli", "api-key"}


def test_a_key_reaches_only_its_tenant_and_refusals_say_why(cli: Cli) -> None:
    other = cli.json("connections", "add", "--provider", "stripe", "--tenant", "globex")
    mine = cli.json("connections", "add", "--provider", "stripe", "--tenant", "acme")

    named = cli.run("connections", "show", "globex/stripe", remote=True)
    assert named.returncode == 2
    assert "the API key is tenant acme's; it cannot reach connection globex/stripe" in named.stderr
    by_id = cli.run("connections", "show", other["id"], remote=True)
    assert by_id.returncode == 3
    assert f"no connection {other['id']}" in by_id.stderr
    flag = cli.run("connections", "list", "--tenant", "globex", remote=True)
    assert flag.returncode == 2
    assert "cannot reach tenant globex" in flag.stderr
    assert cli.run("connections", "list", "--tenant", "acme", remote=True).returncode == 0
    pause = cli.run("connections", "pause", other["id"], remote=True)
    assert pause.returncode == 3

    wrong = cli.run("connections", "list", remote=True, CRMSYNC_API_KEY="csk_" + "x" * 43)
    assert wrong.returncode == 2
    assert "refused the API key" in wrong.stderr
    assert "CRMSYNC_API_KEY" in wrong.stderr
    read = cli.json("api-keys", "create", "--tenant", "acme", "--scope", "read")["key"]
    scoped = cli.run("connections", "disable", mine["id"], remote=True, CRMSYNC_API_KEY=read)
    assert scoped.returncode == 2
    assert "this needs a key of scope admin" in scoped.stderr
    assert cli.run("connections", "list", remote=True, CRMSYNC_API_KEY=read).returncode == 0
    no_key = cli.run("connections", "list", remote=True, CRMSYNC_API_KEY="")
    assert no_key.returncode == 2

    gone = f"http://127.0.0.1:{free_port()}"
    unreachable = cli.run("connections", "list", remote=True, CRMSYNC_API_URL=gone)
    assert unreachable.returncode == 1
    assert f"cannot reach the admin API at {gone}" in unreachable.stderr
    not_admin = cli.run("connections", "list", remote=True, CRMSYNC_API_URL=cli.url + "/healthz")
    assert not_admin.returncode == 2
    assert "is not a crmsync admin API" in not_admin.stderr

    local_only = cli.run("migrate", remote=True)
    assert local_only.returncode == 2
    assert "works on this machine's stack only" in local_only.stderr
    # The options work as the variables do.
    flags = cli.run("connections", "list", "--json", "--api-url", cli.url, "--api-key", cli.key)
    assert flags.returncode == 0, flags.stderr
    assert [c["id"] for c in json.loads(flags.stdout)["items"]] == [mine["id"]]
    stray = cli.run("connections", "list", "--api-key", cli.key)
    assert stray.returncode == 2
    assert "--provider-api-key" in stray.stderr
