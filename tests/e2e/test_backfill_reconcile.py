"""Backfill and reconciliation end to end: a simulated Ascora's list API → the pipeline →
Postgres, on the real Kafka and processor worker.

- ``crmsync backfill`` of 10,000 customers, killed (SIGKILL) midway and run again,
  resumes from its checkpoint and ends with exactly 10,000 canonical customers.
- A webhook the CRM never delivered is caught by the outbound service's scheduled
  modified-since reconciliation; a delete whose webhook was lost is found by a full one.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.sync_harness import (
    POLLED_EVERY_SECOND,
    QUICK_SCHEDULE,
    Crm,
    SimulatedCrm,
    Stack,
    Sync,
    running_stack,
    start_simulator,
)

RECORDS = 10_000
JOB = "SELECT status, records_seen, records_changed, records_deleted FROM sync_jobs"


def cli(stack_env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "crmsync.cli.main", *args],
        env={**os.environ, **stack_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def env_for(database_url: str, kafka_bootstrap: str, prefix: str) -> dict[str, str]:
    return {
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRMSYNC_KAFKA_TOPIC_PREFIX": prefix,
        "CRMSYNC_LOG_LEVEL": "WARNING",
    }


async def kill_a_third_in(
    stack: Stack, run: subprocess.Popen[bytes], records: int, *, seconds: float
) -> None:
    """SIGKILL the CLI's run once it has seen a third of its ``records`` (it must not have
    ended by then): its job is left running, with its checkpoint."""
    seen = 0
    for _ in range(int(seconds / 0.05)):
        seen = await stack.count("SELECT coalesce(max(records_seen), 0) FROM sync_jobs")
        if seen >= records // 3 or run.poll() is not None:
            break
        await asyncio.sleep(0.05)
    assert run.poll() is None, f"the run ended before it could be killed: {seen}"
    run.send_signal(signal.SIGKILL)
    run.wait()
    run.communicate()


async def resumes(
    stack: Stack,
    env: dict[str, str],
    command: str,
    conn_id: uuid.UUID,
    records: int,
    *,
    within: float,
) -> None:
    """Run again, the killed run resumes from its checkpoint and succeeds: one run, whose
    listing counted every record once, checkpoint included."""
    second = cli(env, command, str(conn_id), "--json")
    out, err = await asyncio.to_thread(second.communicate, timeout=within)
    assert second.returncode == 0, err.decode()
    assert b"resuming from its checkpoint" in err
    result = json.loads(out)
    assert result["status"] == "succeeded"
    assert result["records_seen"] == records
    assert await stack.count("SELECT count(*) FROM sync_jobs") == 1


@pytest.fixture
async def crm() -> AsyncIterator[SimulatedCrm]:
    crm = await start_simulator("ascora", company_code="A")
    try:
        yield crm
    finally:
        await crm.runner.cleanup()


async def test_a_backfill_killed_midway_resumes_and_ends_with_exactly_every_record(
    crm: SimulatedCrm,
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
) -> None:
    for i in range(RECORDS):
        crm.sim.create("customer", crm.sim.seed_object("customer", i), notify=False)
    # No runner in the service: the resumed run must be the CLI's own.
    async with running_stack(
        database_url, kafka_bootstrap, topic_prefix, tmp_path, outbound_sync_concurrency=0
    ) as stack:
        conn_id = await stack.connect(
            crm,
            "ascora",
            {
                "company_code": "A",
                "page_size": 100,
                "entity_types": ["customer"],
                "rate_limit": {"rate": 200, "per_seconds": 1, "burst": 50},
            },
        )
        env = env_for(database_url, kafka_bootstrap, topic_prefix)
        first = cli(env, "backfill", str(conn_id), "--json")
        await kill_a_third_in(stack, first, RECORDS, seconds=30)
        status, seen_at_kill, *_ = await stack.pool.fetchrow(JOB)
        assert status == "running"
        assert 0 < seen_at_kill < RECORDS

        await resumes(stack, env, "backfill", conn_id, RECORDS, within=180)
        # Only the pages after the checkpoint were listed again.
        pages = [r for r in crm.requests("GET") if "/customers" in r["path"]]
        assert len(pages) <= RECORDS // 100 + 2

        got = await stack.wait("SELECT count(*) FROM customers", RECORDS, seconds=180)
        assert got == RECORDS
        links = await stack.count(
            "SELECT count(DISTINCT external_id) FROM entity_links WHERE connection_id = $1",
            conn_id,
        )
        assert links == RECORDS
        # The repeated page was absorbed: nothing beyond the 10,000 was created.
        await asyncio.sleep(1.0)
        assert await stack.count("SELECT count(*) FROM customers") == RECORDS


async def wait_for(stack: Stack, sql: str, want: object, *args: object) -> object:
    got: object = None
    for _ in range(400):
        got = await stack.pool.fetchval(sql, *args)
        if got == want:
            return got
        await asyncio.sleep(0.1)
    return got


async def test_reconciliation_catches_a_lost_update_and_a_full_run_a_lost_delete(
    sync: Sync, database_url: str, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = {"company_code": "A", "entity_types": ["customer"], **POLLED_EVERY_SECOND}
    polled = Crm("ascora", settings=settings, simulator={"company_code": "A"})
    async with sync(polled, **QUICK_SCHEDULE) as (stack, (crm,)):
        conn_id = crm.connection_id
        keep = crm.sim.create("customer", {"customerName": "Keep Me", "emailAddress": "k@x.io"})
        gone = crm.sim.create("customer", {"customerName": "Delete Me", "emailAddress": "d@x.io"})
        assert await stack.wait("SELECT count(*) FROM customers", 2) == 2

        # The CRM changes a phone number and the webhook never arrives.
        crm.sim.drop_webhooks = 1
        keep_id = next(i for i, o in crm.sim.store["customer"].items() if o is keep)
        crm.sim.update("customer", keep_id, {"phoneNumber": "+61 2 5550 0000"})
        assert crm.sim.log.webhooks[-1].get("dropped") is True
        phone = await wait_for(
            stack,
            "SELECT data->>'phone' FROM customers WHERE data->>'email' = 'k@x.io'",
            "+61 2 5550 0000",
        )
        assert phone == "+61 2 5550 0000", "the scheduled reconciliation did not catch it"
        caught = await stack.count(
            "SELECT count(*) FROM sync_jobs WHERE kind = 'reconcile' AND status = 'succeeded'"
            " AND records_changed >= 1 AND requested_by = 'schedule'"
        )
        assert caught >= 1

        # A delete whose webhook was lost: only a full comparison can notice it.
        crm.sim.drop_webhooks = 1
        gone_id = next(i for i, o in crm.sim.store["customer"].items() if o is gone)
        crm.sim.delete("customer", gone_id)
        proc = cli(
            env_for(database_url, kafka_bootstrap, topic_prefix),
            "reconcile",
            f"{stack.tenant}/ascora",
            "--full",
            "--json",
        )
        out, err = await asyncio.to_thread(proc.communicate, timeout=120)
        if proc.returncode != 0 and b"is running in" in err:
            # The scheduled poll held the lease at that moment; a full run is its own kind,
            # so this only happens on a pathological schedule. Fail loudly, never retry.
            pytest.fail(err.decode())
        assert proc.returncode == 0, err.decode()
        result = json.loads(out)
        assert result["records_deleted"] == 1
        assert result["records_seen"] == 1
        deleted = await wait_for(
            stack,
            "SELECT deleted_at IS NOT NULL FROM customers WHERE data->>'email' = 'd@x.io'",
            True,
        )
        assert deleted is True
        still = await stack.pool.fetchval(
            "SELECT deleted_at IS NULL FROM customers WHERE data->>'email' = 'k@x.io'"
        )
        assert still is True
        last_full = await stack.pool.fetchval(
            "SELECT last_full_reconcile_at FROM connections WHERE id = $1", conn_id
        )
        assert last_full is not None
        assert uuid.UUID(result["id"])
