"""``crmsync simulate``: simulators on their ports, seeded, connected to a tenant; a second
run adopts the same connections instead of making new ones; Ctrl-C stops it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import asyncpg

from crmsync.localstack.ports import free_port_run


def start(database_url: str, port_base: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable, "-m", "crmsync.cli.main", "simulate",
            "--providers", "ascora,stripe", "--seed", "3", "--tenant", "simtest",
            "--port-base", str(port_base),
        ],
        env={**os.environ, "CRMSYNC_DATABASE_URL": database_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def read_table(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Lines until the control-API hint: provider -> (API URL, connection id)."""
    assert proc.stdout is not None
    rows: dict[str, Any] = {}
    for line in proc.stdout:
        if line.startswith("Control API"):
            return rows
        match = re.match(r"^(ascora|stripe)\s+(http://\S+)\s+(\S+)$", line.strip())
        if match:
            rows[match[1]] = (match[2], match[3])
    raise AssertionError(f"simulate ended early: {proc.stderr.read() if proc.stderr else ''}")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    return proc.returncode


async def test_simulators_serve_seeded_records_and_adopt_their_connections(
    database_url: str,
) -> None:
    base = free_port_run(2)
    proc = start(database_url, base)
    try:
        first = read_table(proc)
        assert first["ascora"][0] == f"http://127.0.0.1:{base + 1}"
        assert first["stripe"][0] == f"http://127.0.0.1:{base + 2}"
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{first['stripe'][0]}/v1/customers?limit=10",
                headers={"Authorization": "Bearer sim-token"},
            ) as response,
        ):
            body = await response.json()
        assert [c["object"] for c in body["data"]] == ["customer"] * 3
    finally:
        assert stop(proc) == 0

    again = start(database_url, base)
    try:
        second = read_table(again)
    finally:
        assert stop(again) == 0
    assert {p: c for p, (_, c) in second.items()} == {p: c for p, (_, c) in first.items()}
    conn = await asyncpg.connect(database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM connections c JOIN tenants t ON t.id = c.tenant_id"
            " WHERE t.slug = 'simtest'"
        )
    finally:
        await conn.close()
    assert count == 2
