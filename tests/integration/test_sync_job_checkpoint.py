"""A backfill's checkpoint is a jsonb object, so listing and showing runs that made
progress works (issue 17 item 7: it was stored as a JSON string inside jsonb)."""

from __future__ import annotations

import json
import uuid

from crmsync.application.sync import jobs
from crmsync.common.migrate import load_migrations
from crmsync.common.settings import repo_root
from tests.integration.test_admin_api import Admin, admin, new_connection

__all__ = ["admin"]  # the fixture, imported for pytest


async def test_a_checkpointed_run_lists_and_shows_its_progress(admin: Admin) -> None:
    created = await new_connection(admin, "stripe")
    queued = await admin.ok(
        "POST", "/v1/sync-jobs", 201, json={"connection": created["id"], "kind": "backfill"}
    )
    job = await jobs.claim_next(admin.pool, owner="test:host:1:x", lease_seconds=60)
    assert job is not None
    assert str(job.id) == queued["id"]
    job.progress["customer"].cursor = "cus_9"
    job.progress["customer"].seen = 3
    await jobs.checkpoint(admin.pool, job, owner="test:host:1:x", lease_seconds=60)

    kind = await admin.pool.fetchval(
        "SELECT jsonb_typeof(checkpoint) FROM sync_jobs WHERE id = $1", job.id
    )
    assert kind == "object"
    listed = await admin.ok("GET", "/v1/sync-jobs")
    assert listed["items"][0]["progress"]["customer"] == {"done": False, "seen": 3}
    shown = await admin.ok("GET", f"/v1/sync-jobs/{job.id}")
    assert shown["progress"]["customer"] == {"done": False, "seen": 3}
    # The runner reads back what it wrote: a resumed run continues from the cursor.
    await jobs.finish(admin.pool, job, owner="test:host:1:x", status="succeeded")
    row = await admin.pool.fetchrow("SELECT * FROM sync_jobs WHERE id = $1", job.id)
    assert jobs.SyncJob.from_row(row).progress["customer"].cursor == "cus_9"


async def test_migration_0011_turns_string_checkpoints_into_objects(admin: Admin) -> None:
    created = await new_connection(admin, "stripe")
    queued = await admin.ok(
        "POST", "/v1/sync-jobs", 201, json={"connection": created["id"], "kind": "backfill"}
    )
    job_id = uuid.UUID(queued["id"])
    stored = {"customer": {"cursor": "cus_1", "done": True, "seen": 7}}
    # What the old code wrote: the object's JSON text, as a jsonb string.
    await admin.pool.execute(
        "UPDATE sync_jobs SET checkpoint = to_jsonb($2::text) WHERE id = $1",
        job_id,
        json.dumps(stored),
    )
    (migration,) = [
        m for m in load_migrations(repo_root() / "infra" / "migrations") if m.version == 11
    ]
    async with admin.pool.acquire() as conn:
        await conn.execute(migration.sql)
    row = await admin.pool.fetchrow(
        "SELECT jsonb_typeof(checkpoint) AS kind, checkpoint FROM sync_jobs WHERE id = $1", job_id
    )
    assert row["kind"] == "object"
    assert row["checkpoint"] == stored
    shown = await admin.ok("GET", f"/v1/sync-jobs/{job_id}")
    assert shown["progress"] == {"customer": {"done": True, "seen": 7}}
