"""Backfill: N customers listed from a simulated Ascora into Postgres, wall time.

``crmsync backfill CONNECTION --json`` (its own process, as an operator runs it) pages
through the simulator's list API onto ``changes.normalized``; the running processor
applies them. Wall time runs from the command's start to the last customer committed.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import asyncpg

from bench.e2e import start_sims
from bench.harness import Run, add_connection, wait_for_count
from bench.report import Result, Target
from bench.sims import API_TOKEN, COMPANY_CODE

# The target: 100,000 records in under 60 s.
WALL_TARGET = Target("<", 60.0)
COUNT = "SELECT count(*) FROM customers WHERE tenant_id = $1"
# The connection settings the issue names: full pages, the client-side limit lifted.
SETTINGS = {
    "company_code": COMPANY_CODE,
    "page_size": 100,
    "entity_types": ["customer"],
    "rate_limit": {"rate": 1000, "per_seconds": 1, "burst": 100},
}


async def run_backfill(run: Run) -> list[Result]:
    n = run.sizes.backfill_records
    async with run.stack("backfill") as stack:
        run.say(f"backfill: seeding a simulated Ascora with {n:,} customers")
        sims, (crm_url,) = await start_sims(stack, 1, seed=n)
        crm = await add_connection(
            stack,
            run.keyring,
            tenant="bench-backfill",
            provider="ascora",
            name="ascora",
            base_url=crm_url,
            token=API_TOKEN,
            settings=SETTINGS,
        )
        processor = stack.processor()
        await run.ready(processor)
        run.say(f"backfill: crmsync backfill of {n:,} customers")
        out_path = stack.workdir / "backfill.json"
        started = time.monotonic()
        cpu_before = {s.name: s.cpu() for s in (processor, sims)}
        cli = stack.spawn(
            "backfill-cli",
            [sys.executable, "-m", "crmsync.cli.main", "backfill", str(crm.id), "--json"],
            stdout_path=out_path,
        )
        listed_at: list[float] = []
        cli_cpu: list[float] = [0.0]

        async def watch_cli() -> None:
            while cli.running():
                cli.sample_rss()
                cli_cpu[0] = max(cli_cpu[0], cli.cpu())
                await asyncio.sleep(0.2)
            listed_at.append(time.monotonic())

        watcher = asyncio.create_task(watch_cli())
        db = await asyncpg.connect(stack.database_url)
        try:
            done, done_at = await wait_for_count(db, COUNT, n, crm.tenant_id, stall_seconds=60.0)
        finally:
            await db.close()
        await watcher
        cpu = {s.name: s.cpu() - cpu_before[s.name] for s in (processor, sims)}
        status = cli.started.returncode
        try:
            job = json.loads(out_path.read_text())
        except (OSError, ValueError):
            job = {"status": f"exit {status}"}
    wall = done_at - started
    return [
        Result(
            "backfill.wall",
            wall,
            "s",
            targets=(WALL_TARGET,) if n >= 100_000 else (),
            note=f"{done:,} of {n:,} customers in Postgres; run {job.get('status')}",
        ),
        Result(
            "backfill.listing",
            listed_at[0] - started,
            "s",
            note=f"the command's own run time; its CPU {cli_cpu[0]:.1f} s (sampled every 0.2 s)",
        ),
        Result("backfill.records", done / wall if wall > 0 else 0.0, "records/s"),
        Result(
            "backfill.cpu",
            cpu["processor"],
            "s",
            note=f"processor CPU s; simulator {cpu['simulators']:.1f} s",
        ),
    ]
