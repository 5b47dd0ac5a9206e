"""A real Prometheus (the Debian binary) scrapes the four services, run as processes,
during a short run of real traffic; then every dashboard panel query and every recording
rule must return data through Prometheus's HTTP API, and the services' JSON logs must
lead to their dead letters.

Traffic: two simulated Ascora CRMs (one with an API token, one with OAuth2 tokens) and a
third Ascora connection without credentials, one tenant. A customer created in A travels
to B (whose first API call fails once: a failed push and a retry) and dead-letters for C;
B's echo comes back as no change; an internal service publishes a change by API key; a
webhook arrives with a bad signature; an unparseable record lands on webhooks.raw.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import yaml

from connectors.http import OAuthTokens
from connectors.registry import connector
from connectors.runtime import credentials_json
from connectors.simkit import Fault
from crmsync.common.connections import CreatedConnection, create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from crmsync.common.settings import repo_root
from crmsync.localstack.ports import free_port
from schemas import topics
from services.processor.housekeeping import count_dead_letters
from tests.e2e.helpers import stop, wait_until_ready
from tests.e2e.sync_harness import SimulatedCrm, start_simulator
from tests.e2e.test_processor_pipeline import produce

ROOT = repo_root()
PROMETHEUS_DIR = ROOT / "infra" / "prometheus"
DASHBOARDS = ROOT / "infra" / "grafana" / "dashboards"
SERVICES = ("ingest", "processor", "outbound", "admin")
# Grafana's value for "All" of the Outbound dashboard's provider picker.
GRAFANA_VARIABLES = {"$provider": ".*"}
# Scrape and evaluate every second so a few seconds of traffic give rates and rules data.
FAST = {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"}


def rule_files() -> list[Path]:
    return sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))


def recording_rules() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            found.update({r["record"]: r["expr"] for r in group["rules"] if "record" in r})
    return found


def panel_queries() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                expr = target["expr"]
                for variable, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(variable, value)
                found[f"{path.name} {panel['title']!r} {target['refId']}"] = expr
    return found


def prometheus_config(ports: dict[str, int], rules: list[Path]) -> dict[str, Any]:
    """The repository's prometheus.yml, its targets moved to this test's ports."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"] = {**config.get("global", {}), **FAST}
    config["rule_files"] = [str(p) for p in rules]
    for job in config["scrape_configs"]:
        service = job["job_name"].removeprefix("crmsync-")
        assert service in ports, f"prometheus.yml scrapes {job['job_name']}, not started here"
        # A service compose scales out is found by DNS there; here it has one address.
        if job.pop("dns_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": []}]
        for static in job["static_configs"]:
            static["targets"] = [f"127.0.0.1:{ports[service]}"]
    return config


@dataclass
class Services:
    ports: dict[str, int]
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    def log_lines(self, service: str) -> list[str]:
        return [line for line in self.logs[service].read_text().splitlines() if line.strip()]


@pytest.fixture
def services_env(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> dict[str, str]:
    return {
        **os.environ,
        "CRMSYNC_DATABASE_URL": database_url,
        "CRMSYNC_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "CRMSYNC_KAFKA_TOPIC_PREFIX": topic_prefix,
        "CRMSYNC_PROCESSOR_APP_ID": f"crmsync-{topic_prefix}processor",
        "CRMSYNC_PROCESSOR_DATA_DIR": str(tmp_path / "processor"),
        "CRMSYNC_OUTBOUND_CONSUMER_GROUP": f"crmsync-{topic_prefix}outbound",
        "CRMSYNC_LOG_FORMAT": "json",
        "CRMSYNC_LOG_LEVEL": "INFO",
    }


@pytest.fixture
def running_services(services_env: dict[str, str], tmp_path: Path) -> Iterator[Services]:
    ports = {name: free_port() for name in SERVICES}
    env = {**services_env, **{f"CRMSYNC_{n.upper()}_PORT": str(p) for n, p in ports.items()}}
    running = Services(ports, {name: tmp_path / f"{name}.log" for name in SERVICES})
    try:
        for name in SERVICES:
            with running.logs[name].open("wb") as log:
                running.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", f"services.{name}"],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
        yield running
    finally:
        for proc in running.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in running.procs.values():
            stop(proc, None)


@pytest.fixture
def prometheus(running_services: Services, tmp_path: Path) -> Iterator[str]:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.fail("prometheus not found: install the Debian package `prometheus`")
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(running_services.ports, rule_files())))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                exe,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@dataclass
class Tenant:
    a: CreatedConnection
    b: CreatedConnection
    c: CreatedConnection
    internal: CreatedConnection


@pytest.fixture
async def crms() -> AsyncIterator[tuple[SimulatedCrm, SimulatedCrm]]:
    a = await start_simulator("ascora", company_code="A")
    b = await start_simulator("ascora", company_code="B")
    try:
        yield a, b
    finally:
        for crm in (a, b):
            await crm.runner.cleanup()


async def connect(pool: asyncpg.Pool, ingest_url: str, a: SimulatedCrm, b: SimulatedCrm) -> Tenant:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    tenant = f"t-{uuid.uuid4().hex[:10]}"
    issued = b.sim.issue_tokens()
    b_tokens = OAuthTokens(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=time.time() + issued["expires_in"],
        client_id="client",
        client_secret="secret",
        token_url="/oauth/token",
    )
    made: dict[str, CreatedConnection] = {}
    async with pool.acquire() as conn:
        for key, crm, credentials in (
            ("a", a, credentials_json(token=a.sim.api_token)),
            ("b", b, credentials_json(oauth=b_tokens)),
        ):
            secret = connector("ascora").scheme.generate_secret()
            made[key] = await create_connection(
                conn,
                keyring,
                tenant=tenant,
                provider="ascora",
                name=f"ascora-{key}",
                webhook_secret=secret,
                base_url=crm.base_url,
                api_credentials=credentials,
                settings={"company_code": key.upper()},
            )
            crm.connection_id = made[key].id
            crm.sim.webhook_url = f"{ingest_url}/webhooks/ascora/{made[key].id}"
            crm.sim.webhook_secret = secret
        # Connected for webhooks only, no API credentials: every push to it dead-letters.
        made["c"] = await create_connection(
            conn,
            keyring,
            tenant=tenant,
            provider="ascora",
            name="ascora-c",
            webhook_secret=connector("ascora").scheme.generate_secret(),
        )
        made["internal"] = await create_connection(
            conn, keyring, tenant=tenant, provider="internal", name="erp", webhook_secret=None
        )
    return Tenant(**made)


async def wait_for(what: str, check: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what} after {seconds:g}s")
        await asyncio.sleep(0.2)


async def query(http: aiohttp.ClientSession, prometheus: str, expr: str) -> list[Any]:
    async with http.get(f"{prometheus}/api/v1/query", params={"query": expr}) as resp:
        body = await resp.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return list(body["data"]["result"])


async def empty_queries(
    http: aiohttp.ClientSession, prometheus: str, queries: dict[str, str]
) -> dict[str, str]:
    results = await asyncio.gather(*(query(http, prometheus, q) for q in queries.values()))
    return {name: q for (name, q), r in zip(queries.items(), results, strict=True) if not r}


@dataclass
class Run:
    """Everything one run of the test touches."""

    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    services: Services
    prometheus: str
    a: SimulatedCrm
    b: SimulatedCrm
    tenant: Tenant


@pytest.fixture
def stack(
    crms: tuple[SimulatedCrm, SimulatedCrm], running_services: Services, prometheus: str
) -> tuple[SimulatedCrm, SimulatedCrm, Services, str]:
    return (*crms, running_services, prometheus)


async def drive_traffic(run: Run, kafka_bootstrap: str, topic_prefix: str) -> None:
    a, b, tenant, ingest = run.a, run.b, run.tenant, run.services.url("ingest")
    # B's first API call (the push of A's new customer) fails once: a failure and a retry.
    b.sim.faults.append(Fault(500, 1, None))
    a.sim.create(
        "customer",
        {
            "customerName": "Harbour Plumbing",
            "emailAddress": "office@harbourplumbing.example",
            "phoneNumber": "+61 2 5550 1234",
        },
    )

    async def pushed_to_b() -> bool:
        return bool(b.sim.live("customer"))

    await wait_for("the push to B", pushed_to_b)
    b_id = next(iter(b.sim.store["customer"]))
    b.sim.update("customer", b_id, {"phoneNumber": "+61 2 5550 9999"})

    async with run.http.post(
        f"{ingest}/v1/changes",
        headers={"Authorization": f"Bearer {tenant.internal.api_key}"},
        json={
            "event_id": "erp-1",
            "entity_type": "customer",
            "op": "upsert",
            "external_id": "erp-c-1",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"name": "Riverside Electrical", "email": "jobs@riverside.example"},
        },
    ) as resp:
        assert resp.status == 202, await resp.text()
    async with run.http.post(
        f"{ingest}/webhooks/ascora/{tenant.a.id}",
        data=b'{"type": "customer.updated"}',
        headers={"webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time()))},
    ) as resp:
        assert resp.status == 401
    await produce(
        kafka_bootstrap, topic_prefix + topics.WEBHOOKS_RAW.name, [(b"junk", b"not an envelope")]
    )

    async def settled() -> bool:
        stages = await count_dead_letters(run.pool)
        return (
            stages["processor"] >= 1
            and stages["outbound"] >= 1
            and any(r["method"] == "PATCH" for r in a.writes())
            and await run.pool.fetchval("SELECT count(*) FROM customers") == 2
        )

    await wait_for("the traffic to settle", settled)


async def assert_every_query_has_data(run: Run) -> None:
    recorded = recording_rules()
    queries = {
        **{f"rule {name}": expr for name, expr in recorded.items()},
        # The recorded series themselves: Prometheus loaded and evaluated the rule.
        **{f"recorded {name}": name for name in recorded},
        **{f"panel {where}": expr for where, expr in panel_queries().items()},
    }
    # Rates need two scrapes of a series, recorded series one evaluation after that.
    empty = dict(queries)
    deadline = time.monotonic() + 60
    while empty and time.monotonic() < deadline:
        empty = await empty_queries(run.http, run.prometheus, empty)
        await asyncio.sleep(1)
    assert empty == {}, "queries without any series: " + json.dumps(empty, indent=1)

    up = await query(run.http, run.prometheus, 'up{job=~"crmsync-.*"} == 1')
    assert sorted(r["metric"]["service"] for r in up) == sorted(SERVICES)
    async with run.http.get(f"{run.prometheus}/api/v1/rules") as resp:
        groups = (await resp.json())["data"]["groups"]
    rules = [r for g in groups for r in g["rules"]]
    alerts = [
        r
        for path in rule_files()
        for g in yaml.safe_load(path.read_text())["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert sum(r["type"] == "recording" for r in rules) == len(recorded)
    assert sum(r["type"] == "alerting" for r in rules) == len(alerts)
    assert [(r["name"], r.get("lastError")) for r in rules if r["health"] != "ok"] == []


async def test_every_dashboard_query_and_recording_rule_returns_data_and_logs_find_dead_letters(
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    stack: tuple[SimulatedCrm, SimulatedCrm, Services, str],
) -> None:
    a, b, services, prometheus_url = stack
    pool = await create_pool(database_url, max_size=2)
    try:
        tenant = await connect(pool, services.url("ingest"), a, b)
        for name in SERVICES:
            await asyncio.to_thread(
                wait_until_ready, f"{services.url(name)}/readyz", services.procs[name]
            )
        async with aiohttp.ClientSession() as http:
            run = Run(pool, http, services, prometheus_url, a, b, tenant)
            await drive_traffic(run, kafka_bootstrap, topic_prefix)
            await assert_every_query_has_data(run)
    finally:
        await pool.close()
        # SIGTERM, then wait: the logs are complete once each service exited.
        for proc in services.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in services.procs.values():
            await asyncio.to_thread(stop, proc, None)

    await check_logs(database_url, services, tenant)


async def check_logs(database_url: str, services: Services, tenant: Tenant) -> None:
    """Every line is one JSON object; dead letters and refusals name what they concern."""
    lines: dict[str, list[dict[str, Any]]] = {}
    for name in SERVICES:
        raw = services.log_lines(name)
        assert raw, f"{name} logged nothing"
        parsed = []
        for line in raw:
            try:
                doc = json.loads(line)
            except ValueError:
                raise AssertionError(f"{name} logged a line that is not JSON: {line!r}") from None
            assert isinstance(doc, dict)
            assert {"ts", "level", "service", "msg"} <= doc.keys(), line
            assert doc["service"] == name, line
            parsed.append(doc)
        lines[name] = parsed

    conn = await asyncpg.connect(database_url)
    try:
        rows = {
            str(r["id"]): r
            for r in await conn.fetch(
                "SELECT id, stage, reason, tenant_id, connection_id FROM dead_letters"
            )
        }
    finally:
        await conn.close()

    processor = [d for d in lines["processor"] if "dead_letter_id" in d]
    assert processor, "the processor logged no dead letter"
    for doc in processor:
        row = rows[doc["dead_letter_id"]]  # the id finds it in the table the admin API reads
        assert (row["stage"], doc["stage"]) == ("processor", "processor")
        assert {"topic", "partition", "offset"} <= doc.keys()

    outbound = [d for d in lines["outbound"] if "dead_letter_id" in d]
    assert outbound, "outbound logged no dead letter"
    for doc in outbound:
        row = rows[doc["dead_letter_id"]]
        assert row["stage"] == "outbound"
        assert doc["tenant"] == str(tenant.c.tenant_id) == str(row["tenant_id"])
        assert doc["connection"] == str(tenant.c.id) == str(row["connection_id"])
        assert doc["provider"] == "ascora"
    assert len({d["dead_letter_id"] for d in processor + outbound}) == len(rows)

    retried = [d for d in lines["outbound"] if d["msg"].startswith("push failed, retrying")]
    assert retried, "the failed push to B was not logged"
    assert retried[0]["connection"] == str(tenant.b.id)
    assert retried[0]["tenant"] == str(tenant.b.tenant_id)
    assert (retried[0]["provider"], retried[0]["status"]) == ("ascora", 500)

    refused = [d for d in lines["ingest"] if d["msg"].startswith("webhook signature refused")]
    assert len(refused) == 1
    assert refused[0]["tenant"] == str(tenant.a.tenant_id)
    assert refused[0]["connection"] == str(tenant.a.id)
    assert refused[0]["provider"] == "ascora"
