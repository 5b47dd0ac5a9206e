"""``bench/run --quick`` runs every benchmark section at tiny sizes and writes its JSON
report, so the harness cannot rot between full runs. Only the report's shape is checked,
never a timing (machines are shared and noisy); and that the run cleaned up after itself.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import subprocess
from pathlib import Path

import asyncpg

from crmsync.common.kafka import make_admin
from crmsync.common.settings import CommonSettings, repo_root

SECTIONS = ("ingest.", "e2e.", "processor.", "backfill.", "limiter.", "memory.")
# The figures the issue asks for, by name; quick sizes name rates after their own loads.
REQUIRED = (
    "ingest.stripe.throughput",
    "ingest.standard-webhooks.throughput",
    "processor.upserts",
    "backfill.wall",
    "memory.ingest.peak_rss",
    "memory.processor.peak_rss",
    "memory.outbound.peak_rss",
)


async def test_quick_run_reports_every_section_and_leaves_nothing_behind(
    tmp_path: Path, common_settings: CommonSettings, kafka_bootstrap: str
) -> None:
    report = tmp_path / "bench.json"
    done = await asyncio.to_thread(
        subprocess.run,
        [str(repo_root() / "bench" / "run"), "--quick", "--json", str(report)],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard, not a timing assertion
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads(report.read_text())
    assert isinstance(results, list)
    names = [r["name"] for r in results]
    assert len(names) == len(set(names)), "result names are unique"
    for prefix in SECTIONS:
        assert any(n.startswith(prefix) for n in names), f"no {prefix}* results"
    for name in REQUIRED:
        assert name in names
    assert any(re.fullmatch(r"ingest\.rate_\d+\.p99", n) for n in names)
    assert any(re.fullmatch(r"e2e\.rate_\d+\.crm\.p99", n) for n in names)
    # Where the time went (bench/hops.py): every hop of the e2e events.
    for hop in ("ingest", "normalize", "apply", "relay", "outbound"):
        assert any(re.fullmatch(rf"e2e\.rate_\d+\.hop\.{hop}\.p50", n) for n in names), hop
    # The floor (bench/floor.py) ran at each rate: its latencies and each process's CPU per
    # event are the baselines of the e2e figures.
    by_name = {r["name"]: r for r in results}
    for name, r in by_name.items():
        if re.fullmatch(r"e2e\.rate_\d+\.(postgres|crm)\.p(50|99)", name):
            assert "baseline" in r, name
    assert "e2e.highest_rate_holding_crm_p99_1s" in by_name
    for kind in ("ingest", "processor", "outbound", "postgres", "kafka", "pipeline"):
        cpu = [r for n, r in by_name.items() if re.fullmatch(rf"e2e\.rate_\d+\.cpu\.{kind}", n)]
        assert cpu, kind
        assert all(r["unit"] == "ms CPU/event" and "baseline" in r for r in cpu), kind

    for r in results:
        assert isinstance(r["name"], str)
        assert isinstance(r["unit"], str)
        assert r["unit"]
        assert isinstance(r["value"], int | float)
        assert math.isfinite(r["value"])
        assert ("baseline" in r) == ("ratio" in r), r
        if "baseline" in r:
            assert isinstance(r["baseline"], int | float)
            assert r["baseline"] > 0
            assert math.isclose(r["ratio"], r["value"] / r["baseline"], rel_tol=1e-9)
        assert ("target" in r) == ("met" in r), r
        if "met" in r:
            assert isinstance(r["met"], bool)
            assert isinstance(r["target"], str)
    # The table went to stdout too, one line per result plus a header and a rule.
    assert len(done.stdout.strip().splitlines()) == len(results) + 2

    # Every database and topic the run announced is gone.
    databases = re.findall(r"database (crmsync_bench_\w+)", done.stderr)
    prefixes = re.findall(r"topic prefix (bench\w+\.)", done.stderr)
    # One each for ingest, e2e, processor, backfill and limiter.
    assert len(databases) == len(prefixes) == 5
    conn = await asyncpg.connect(common_settings.database_url)
    try:
        left = await conn.fetch(
            "SELECT datname FROM pg_database WHERE datname = ANY($1::text[])", databases
        )
    finally:
        await conn.close()
    assert left == []
    assert await _topics_left(kafka_bootstrap, prefixes) == []


async def _topics_left(bootstrap: str, prefixes: list[str]) -> list[str]:
    """Topics under these prefixes; deletion completes asynchronously, so ask a few times."""
    admin = make_admin(bootstrap)
    await admin.start()
    try:
        left: list[str] = []
        for _ in range(20):
            left = [t for t in await admin.list_topics() if any(p in t for p in prefixes)]
            if not left:
                break
            await asyncio.sleep(0.5)
        return left
    finally:
        await admin.close()
