"""Run one fault scenario end to end and count the result.

A scenario: an isolated stack (`stack.py`), a source of events (an internal service
posting to ``/v1/changes``, or a simulated Xero whose thin webhooks the processor must
hydrate through its API), a simulated Ascora as the target every change is pushed to,
a bounded load spread over some seconds, a fault injected when the pipeline is a given
way through it, a wait until nothing moves, and the ledger (`ledger.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp
import asyncpg

from connectors.simkit import SimLog
from crmsync.application.ledger import Ledger as AuditLedger
from crmsync.application.ledger_io import ledger as audit_ledger
from crmsync.common.connections import create_connection
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from crmsync.demo import sims
from crmsync.demo.sims import RunningSim
from services.processor.outbox import RELAY_LOCK
from tests.faults.ledger import Ledger, Load, count_ledger, email_of
from tests.faults.stack import (
    READY_SECONDS,
    IsolatedStack,
    Proc,
    Say,
    StackError,
    isolated_stack,
)

# Pushes and hydrations unthrottled on our side: the suite tests delivery, not a
# provider's published limit (Xero's 55 calls a minute would make a run take an hour).
UNLIMITED = {"rate": 100_000, "per_seconds": 1, "burst": 10_000}
# Internal changes per POST /v1/changes request (it takes up to 500).
CHUNK = 5
# A client retries a 503 or a refused connection this long, as a provider would.
RETRY_SECONDS = 120.0
# Offered load at most this many events a second: the faults land mid-stream at any size.
MAX_RATE = 150.0
# Nothing moved for this long and nothing is pending: the pipeline is done, whatever it
# delivered. Longer than the outbound lease, so a killed worker's pushes count as pending.
STALL_SECONDS = 30.0
# Complete and unchanged for this long: done (late duplicates would show up within it).
SETTLE_SECONDS = 3.0
# The outbox relay's failover, as the README states it: PostgreSQL ends a SIGKILLed
# holder's transaction (and its lock) as soon as the socket closes, and the other relay
# tries every outbox.POLL_SECONDS (0.5 s) or at the next commit's NOTIFY.
RELAY_FAILOVER_SECONDS = 5.0
# How long joined workers get to take a share of the work, and then stay, before they
# leave.
JOINED_WORK_SECONDS = 30.0
JOINED_STAY_SECONDS = 8.0
# Ingest acknowledges again within this long of Kafka coming back: its producer reconnects
# (or is renewed) at the first request, and the load retries a 503 within 4 s.
INGEST_RECOVERY_SECONDS = 30.0

Source = Literal["internal", "xero"]
Progress = Literal["applied", "pushed"]


class ScenarioError(Exception):
    """The scenario could not run to the end: a fault never triggered, never quiet."""


@dataclass
class Run:
    """One scenario's running world, what faults act on."""

    stack: IsolatedStack
    session: aiohttp.ClientSession
    load: Load
    tenant_id: uuid.UUID
    source_id: uuid.UUID
    target: RunningSim
    origin: RunningSim | None
    processors: list[Proc]
    outbound: Proc
    say: Say
    notes: list[str] = field(default_factory=list)
    # Set when outbound, started late on a backlog, is launched.
    outbound_started: asyncio.Event = field(default_factory=asyncio.Event)

    async def applied(self) -> int:
        """Canonical records of this tenant (0 while PostgreSQL is unreachable)."""
        try:
            conn = await asyncpg.connect(self.stack.database_url, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return 0
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM customers WHERE tenant_id = $1", self.tenant_id
                )
            )
        except (OSError, asyncpg.PostgresError):
            return 0
        finally:
            await conn.close()

    def pushed(self) -> int:
        return len(self.target.sim.store["customer"])

    async def count(self, what: Progress) -> int:
        return await self.applied() if what == "applied" else self.pushed()

    async def reach(self, what: Progress, fraction: float, within: float = 300.0) -> int:
        """Wait until ``fraction`` of the events sent are applied or pushed."""
        want = max(1, int(len(self.load.keys) * fraction))
        deadline = time.monotonic() + within
        got = 0
        while time.monotonic() < deadline:
            got = await self.count(what)
            if got >= want:
                return got
            await asyncio.sleep(0.1)
        raise ScenarioError(
            f"the fault never triggered: {got} {what} after {within:g}s, waiting for {want}"
        )

    def note(self, text: str) -> None:
        self.notes.append(f"{time.strftime('%H:%M:%S')} {text}")
        self.say(text)


Inject = Callable[[Run], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class Scenario:
    name: str
    what: str
    source: Source
    inject: Inject
    # Outbound starts only once everything is applied: a backlog on records.changed.
    backlog_first: bool = False
    # The load is spread over at least this long, so the fault lands mid-stream.
    min_load_seconds: float = 10.0


@dataclass
class Outcome:
    scenario: str
    size: int
    seconds: float
    ledger: Ledger | None
    statuses: dict[str, int]
    problem: str | None
    notes: list[str]
    diagnostics: str
    # The project's own ledger (`crmsync audit`) of the scenario's tenant, read once the
    # pipeline went quiet: it must agree that everything is accounted for and settled.
    audit: AuditLedger | None = None

    @property
    def ok(self) -> bool:
        return (
            self.problem is None
            and self.ledger is not None
            and self.ledger.ok
            and self.audit is not None
            and self.audit.settled
        )

    def report(self) -> str:
        lines = [f"{self.scenario} (size {self.size}, {self.seconds:.0f} s)"]
        lines += [f"  fault: {n}" for n in self.notes]
        if self.problem:
            lines.append(f"  PROBLEM: {self.problem}")
        lines.append(f"  ingest answers (final per request or delivery): {self.statuses}")
        if self.ledger is not None:
            lines.append(f"  {self.ledger.summary()}")
            lines += [f"  FAIL: {p}" for p in self.ledger.problems()]
        if self.audit is not None:
            state = "settled" if self.audit.settled else "NOT settled"
            lines.append(f"  crmsync audit: {state}, {self.audit.in_flight} in flight")
            lines += [f"  AUDIT: {p}" for p in self.audit.problems()]
        if not self.ok:
            lines.append(self.diagnostics)
        return "\n".join(lines)


# --- sources of events -------------------------------------------------------------------


async def send_internal(
    session: aiohttp.ClientSession, ingest_url: str, api_key: str, load: Load, seconds: float
) -> None:
    """Internal changes, CHUNK per request, spread evenly over ``seconds``; a request
    ingest refuses with 5xx (or cannot take) is retried as its publisher would."""
    chunks = [load.keys[i : i + CHUNK] for i in range(0, len(load.keys), CHUNK)]
    interval = seconds / max(1, len(chunks))
    started = time.monotonic()

    async def one(index: int, keys: list[str]) -> None:
        await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
        now = datetime.now(UTC).isoformat()
        body = [
            {
                "event_id": key,
                "entity_type": "customer",
                "op": "upsert",
                "external_id": key,
                "occurred_at": now,
                "data": {"name": f"Fault {key}", "email": email_of(key)},
            }
            for key in keys
        ]
        deadline = time.monotonic() + RETRY_SECONDS
        delay = 0.25
        while True:
            status = "error"
            try:
                async with session.post(
                    f"{ingest_url}/v1/changes",
                    json=body,
                    headers={"Authorization": f"Bearer {api_key}"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    status = str(response.status)
                    await response.read()
            except (aiohttp.ClientError, TimeoutError):
                pass
            load.statuses[status] += 1
            if status.startswith("2"):
                load.accepted.update(keys)
                return
            retryable = status == "error" or status.startswith("5") or status == "429"
            if not retryable or time.monotonic() > deadline:
                load.refused.update(keys)
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    await asyncio.gather(*(one(i, keys) for i, keys in enumerate(chunks)))


async def send_xero(source: RunningSim, load: Load, seconds: float) -> None:
    """Contacts created in the simulated Xero, spread over ``seconds``: each announces
    itself in a thin, signed webhook the simulator delivers (with its retries)."""
    interval = seconds / max(1, len(load.keys))
    started = time.monotonic()
    for index, key in enumerate(load.keys):
        await asyncio.sleep(max(0.0, started + index * interval - time.monotonic()))
        contact = source.sim.create(
            "customer", {"Name": f"Fault {key}", "EmailAddress": email_of(key)}
        )
        load.external_ids[key] = contact["ContactID"]
    await source.sim.drained()
    by_id = {v: k for k, v in load.external_ids.items()}
    for delivery in source.sim.log.webhooks:
        status = delivery.get("status")
        load.statuses[str(status)] += 1
        for _entity, record_id, _op in delivery.get("changes", ()):
            sent = by_id.get(record_id)
            if sent is None:
                continue
            if status is not None and 200 <= status < 300:
                load.accepted.add(sent)
            else:
                load.refused.add(sent)


# --- quiescence -----------------------------------------------------------------------------


async def _snapshot(run: Run) -> tuple[int, ...] | None:
    try:
        conn = await asyncpg.connect(run.stack.database_url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return None
    try:
        row = await conn.fetchrow(
            """
            SELECT (SELECT count(*) FROM customers) AS records,
                   (SELECT count(*) FROM sync_log) AS log,
                   (SELECT count(*) FROM outbox) AS outbox,
                   (SELECT count(*) FROM push_jobs) AS push_jobs,
                   (SELECT count(*) FROM push_jobs WHERE next_attempt_at > now()) AS waiting,
                   (SELECT count(*) FROM dead_letters) AS dead
            """
        )
    except (OSError, asyncpg.PostgresError):
        return None
    finally:
        await conn.close()
    assert row is not None
    target = run.target.sim
    origin = len(run.origin.sim.log.requests) if run.origin else 0
    return (*(int(v) for v in row.values()), len(target.log.requests), origin)


async def _lag(run: Run) -> int | None:
    try:
        return sum((await run.stack.consumer_lag()).values())
    except Exception:  # noqa: BLE001 - Kafka unreachable reads as "unknown", not fatal
        return None


async def wait_until_quiet(run: Run, within: float) -> str:
    """Until nothing moves. Complete: every accepted event pushed, nothing pending, every
    consumer caught up. Quiet: nothing changed for STALL_SECONDS with nothing pending.
    Stuck: nothing changed for twice that though rows or messages wait, none of them
    scheduled for later (no push in a backoff): what waits counts as lost. Raises
    ScenarioError when the pipeline still moves, or waits on a backoff, after ``within``."""
    deadline = time.monotonic() + within
    last: tuple[int, ...] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        snap = await _snapshot(run)
        now = time.monotonic()
        if snap is None or snap != last:
            last, since = snap, now
        elif snap is not None:
            records, _log, outbox, push_jobs, waiting, _dead, _requests, _origin = snap
            accepted = len(run.load.accepted)
            complete = records >= accepted and run.pushed() >= accepted
            still = now - since
            pending = outbox + push_jobs
            if pending == 0 and still >= (SETTLE_SECONDS if complete else STALL_SECONDS):
                lag = await _lag(run)
                if lag == 0:
                    return "complete" if complete else f"quiet for {still:.0f}s, incomplete"
            if waiting == 0 and still >= 2 * STALL_SECONDS:
                return (
                    f"stuck: nothing moved for {still:.0f}s with {outbox} outbox rows and "
                    f"{push_jobs} push jobs due, consumer lag {await _lag_detail(run)}"
                )
        await asyncio.sleep(0.5)
    raise ScenarioError(
        f"not quiet after {within:.0f}s: last counts (records, sync_log, outbox, push_jobs, "
        f"push jobs in backoff, dead_letters, target requests, origin requests) = {last}, "
        f"consumer lag {await _lag_detail(run)}"
    )


async def _lag_detail(run: Run) -> object:
    try:
        return await run.stack.consumer_lag()
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        return exc


# --- one scenario ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def simulators(source: Source) -> AsyncIterator[tuple[RunningSim, RunningSim | None]]:
    target = await sims.start_simulator("ascora")
    origin = await sims.start_simulator("xero") if source == "xero" else None
    try:
        for running in (target, origin):
            if running is not None:
                # Keep every request and webhook: the ledger counts them all.
                running.sim.log = SimLog(requests=deque(), webhooks=deque())
        yield target, origin
    finally:
        for running in (origin, target):
            if running is not None:
                await running.stop()


async def _connect(
    stack: IsolatedStack,
    tenant: str,
    target: RunningSim,
    origin: RunningSim | None,
    ingest_url: str,
) -> tuple[uuid.UUID, uuid.UUID, str | None]:
    """The target and source connections: (tenant id, source connection id, API key)."""
    keyring = KeyRing.parse(stack.master_keys)
    pool = await create_pool(stack.database_url, max_size=2)
    try:
        await sims.connect(
            pool, keyring, target, tenant=tenant, name="target", ingest_url=ingest_url,
            settings={"rate_limit": UNLIMITED},
        )  # fmt: skip
        # No echoes from the target: the pushes are what is counted there.
        target.sim.webhook_url = None
        if origin is not None:
            source_id = await sims.connect(
                pool, keyring, origin, tenant=tenant, name="source", ingest_url=ingest_url,
                settings={"rate_limit": UNLIMITED},
            )  # fmt: skip
            api_key = None
        else:
            async with pool.acquire() as conn:
                created = await create_connection(
                    conn,
                    keyring,
                    tenant=tenant,
                    provider="internal",
                    name="source",
                    webhook_secret=None,
                )
            source_id, api_key = created.id, created.api_key
        tenant_id = await pool.fetchval("SELECT id FROM tenants WHERE slug = $1", tenant)
    finally:
        await pool.close()
    return tenant_id, source_id, api_key


async def _wait_applied(run: Run, within: float) -> None:
    """Until every accepted event is applied, or the count stops moving."""
    deadline = time.monotonic() + within
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        got = await run.applied()
        if got >= len(run.load.accepted):
            return
        if got != last:
            last, since = got, time.monotonic()
        elif time.monotonic() - since > STALL_SECONDS:
            run.note(f"backlog: only {got}/{len(run.load.accepted)} applied; outbound starts")
            return
        await asyncio.sleep(0.2)


async def run_scenario(scenario: Scenario, size: int, workdir: Path, say: Say) -> Outcome:
    started = time.monotonic()
    load = Load.new(size)
    ledger: Ledger | None = None
    problem: str | None = None
    notes: list[str] = []
    diagnostics = ""
    audit: AuditLedger | None = None
    timeout = 180.0 + size * 0.1
    try:
        async with (
            isolated_stack(workdir, say) as stack,
            aiohttp.ClientSession() as session,
            simulators(scenario.source) as (target, origin),
        ):
            ingest, ingest_url = stack.ingest()
            tenant_id, source_id, api_key = await _connect(
                stack, f"faults-{load.run_id}", target, origin, ingest_url
            )
            processor = stack.processor()
            outbound = stack.outbound()
            run = Run(
                stack, session, load, tenant_id, source_id, target, origin,
                [processor], outbound, say, notes,
            )  # fmt: skip
            first = [ingest, processor] + ([] if scenario.backlog_first else [outbound])
            for proc in first:
                proc.start()
            await asyncio.gather(*(p.wait_ready(session) for p in first))
            try:
                seconds = max(scenario.min_load_seconds, size / MAX_RATE)
                if origin is not None:
                    sending = send_xero(origin, load, seconds)
                else:
                    assert api_key is not None
                    sending = send_internal(session, ingest_url, api_key, load, seconds)
                fault = asyncio.create_task(scenario.inject(run), name=f"fault {scenario.name}")
                await sending
                if scenario.backlog_first:
                    await _wait_applied(run, timeout)
                    outbound.start()
                    run.outbound_started.set()
                    await outbound.wait_ready(session)
                await fault
                try:
                    state = await wait_until_quiet(run, timeout)
                except ScenarioError as exc:
                    # Still counted: what never arrived shows as lost.
                    problem, state = str(exc), "not quiet"
                run.note(f"pipeline {state}")
                ledger = await count_ledger(
                    stack.database_url,
                    tenant_id=tenant_id,
                    source_id=source_id,
                    load=load,
                    targets=[target.sim],
                    origin=origin.sim if origin else None,
                )
                audit = await _audit(stack.database_url, stack.bootstrap, tenant_id)
            except (ScenarioError, StackError) as exc:
                problem = str(exc)
            if (
                problem is not None
                or ledger is None
                or not ledger.ok
                or not (audit and audit.settled)
            ):
                lag = await _lag_detail(run)
                diagnostics = f"consumer lag: {lag}\n{stack.log_tails()}"
    except (ScenarioError, StackError) as exc:
        problem = str(exc)
    return Outcome(
        scenario.name,
        size,
        time.monotonic() - started,
        ledger,
        dict(load.statuses),
        problem,
        notes,
        diagnostics,
        audit,
    )


async def _audit(database_url: str, bootstrap: str, tenant_id: uuid.UUID) -> AuditLedger:
    """The project's ledger of the tenant; a read in flight (a push finishing as the
    ledger reads) is read again, a few times, before it counts."""
    pool = await create_pool(database_url, max_size=2)
    try:
        for _ in range(10):
            found = await audit_ledger(pool, bootstrap, tenant=tenant_id)
            if found.settled:
                break
            await asyncio.sleep(1)
        return found
    finally:
        await pool.close()


# --- the faults ---------------------------------------------------------------------------


def restart_at(system: Literal["PostgreSQL", "Kafka"], what: Progress, fraction: float) -> Inject:
    """``system`` restarted once ``fraction`` of the load has reached ``what``."""

    async def inject(run: Run) -> None:
        restart = {"PostgreSQL": run.stack.restart_postgres, "Kafka": run.stack.restart_kafka}
        got = await run.reach(what, fraction)
        run.note(f"{system} stopped at {got} {what}")
        await restart[system]()
        run.note(f"{system} started again ({await run.count(what)} {what})")

    return inject


async def restart_postgres_with_outbox_backlog(run: Run) -> None:
    """While the relay has rows to publish: the outbox is not empty."""
    await run.reach("applied", 0.1)
    deadline = time.monotonic() + 120.0
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(run.stack.database_url, timeout=3)
        try:
            waiting = int(await conn.fetchval("SELECT count(*) FROM outbox"))
        finally:
            await conn.close()
        if waiting > 0:
            run.note(f"PostgreSQL stopped with {waiting} outbox rows unpublished")
            await run.stack.restart_postgres()
            run.note("PostgreSQL started again")
            return
        await asyncio.sleep(0.02)
    raise ScenarioError("the outbox was never seen holding a row: the fault never triggered")


async def restart_postgres_as_outbound_takes_backlog(run: Run) -> None:
    """PostgreSQL goes away as outbound starts reading the backlog of records.changed
    into its push queue: right after its pool opened its first session, while its
    consumer joins the group and fetches (a backlog of a few hundred records is read
    within a second of that, far too quick to aim at by counting pushes)."""
    await run.outbound_started.wait()
    deadline = time.monotonic() + READY_SECONDS
    while await run.stack.sessions("outbound") == 0:
        if time.monotonic() > deadline:
            raise ScenarioError("outbound never opened a PostgreSQL session")
        await asyncio.sleep(0.01)
    run.note(f"PostgreSQL stopped as outbound starts on the backlog ({run.pushed()} pushed)")
    await run.stack.restart_postgres()
    run.note(f"PostgreSQL started again ({run.pushed()} pushed)")


async def restart_kafka_under_ingest(run: Run) -> None:
    """Kafka restarted while ingest acknowledges internal changes: ingest answers 503
    while Kafka is away, and acknowledges again once it is back (its producer renewed if
    the broker lost its state, aiokafka #1017), never an event Kafka did not take."""
    want = max(1, len(run.load.keys) // 10)
    deadline = time.monotonic() + 120.0
    while len(run.load.accepted) < want:
        if time.monotonic() > deadline:
            raise ScenarioError(f"ingest acknowledged {len(run.load.accepted)} of {want}")
        await asyncio.sleep(0.05)
    run.note(f"Kafka stopped at {len(run.load.accepted)} acknowledged by ingest")
    await run.stack.restart_kafka()
    back = time.monotonic()
    before = len(run.load.accepted)
    run.note(f"Kafka started again ({before} acknowledged)")
    while len(run.load.accepted) == before and len(run.load.accepted) < len(run.load.keys):
        if time.monotonic() - back > INGEST_RECOVERY_SECONDS:
            raise ScenarioError(
                f"ingest acknowledged nothing for {INGEST_RECOVERY_SECONDS:g} s after Kafka"
                " came back"
            )
        await asyncio.sleep(0.05)
    run.note(f"ingest acknowledging again {time.monotonic() - back:.1f} s after Kafka came back")


async def kill_processor(run: Run) -> None:
    got = await run.reach("applied", 0.25)
    processor = run.processors[0]
    await processor.stop(signal.SIGKILL)
    run.note(f"processor SIGKILLed at {got} applied")
    processor.start()
    await processor.wait_ready(run.session)
    run.note(f"processor ready again ({await run.applied()} applied)")


async def kill_outbound(run: Run) -> None:
    got = await run.reach("pushed", 0.2)
    await run.outbound.stop(signal.SIGKILL)
    run.note(f"outbound SIGKILLed at {got} pushed")
    run.outbound.start()
    await run.outbound.wait_ready(run.session)
    run.note(f"outbound ready again ({run.pushed()} pushed)")


async def second_worker_joins_and_leaves(run: Run) -> None:
    got = await run.reach("applied", 0.1)
    second = run.stack.processor("processor-2")
    run.processors.append(second)
    second.start()
    run.note(f"second processor starting at {got} applied")
    await second.wait_ready(run.session)
    run.note(f"second processor ready at {await run.applied()} applied")
    # Let the group rebalance onto it and it take batches, then it leaves mid-stream.
    await asyncio.sleep(5.0)
    await second.stop(signal.SIGTERM)
    run.note(f"second processor left (SIGTERM) at {await run.applied()} applied")


async def metric(run: Run, proc: Proc, name: str) -> float:
    """A counter or gauge of a service, summed over its labels (0 when unreachable)."""
    url = proc.ready_url.removesuffix("/readyz") + "/metrics"
    try:
        async with run.session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError):
        return 0.0
    return sum(
        float(line.rpartition(" ")[2])
        for line in text.splitlines()
        if line.startswith((f"{name} ", f"{name}{{"))
    )


async def second_workers_join_and_leaves(run: Run) -> None:
    """Issue 18: a second processor and a second outbound join the consumer groups (and
    the push queue's leases) mid-load, take a share of the work, then leave mid-load."""
    got = await run.reach("applied", 0.1)
    processor = run.stack.processor("processor-2")
    outbound = run.stack.outbound("outbound-2")
    run.processors.append(processor)
    for proc in (processor, outbound):
        proc.start()
    run.note(f"second processor and outbound starting at {got} applied")
    await asyncio.gather(processor.wait_ready(run.session), outbound.wait_ready(run.session))
    run.note(f"both ready at {await run.applied()} applied, {run.pushed()} pushed")
    deadline = time.monotonic() + JOINED_WORK_SECONDS
    applied = pushed = 0.0
    while time.monotonic() < deadline:
        applied = await metric(run, processor, "crmsync_processor_events_total")
        pushed = await metric(run, outbound, "crmsync_outbound_pushes_total")
        if applied > 0 and pushed > 0:
            break
        await asyncio.sleep(0.5)
    # A while longer at work (across more than one batch and lease), then they leave.
    await asyncio.sleep(JOINED_STAY_SECONDS)
    applied = await metric(run, processor, "crmsync_processor_events_total")
    pushed = await metric(run, outbound, "crmsync_outbound_pushes_total")
    if len(run.load.accepted) + len(run.load.refused) >= len(run.load.keys):
        raise ScenarioError("the load was all sent before the second workers left: not mid-load")
    if not (applied > 0 and pushed > 0):
        raise ScenarioError(
            f"the second workers took no share within {JOINED_WORK_SECONDS:g}s: "
            f"processor-2 applied {applied:g}, outbound-2 pushed {pushed:g}"
        )
    await asyncio.gather(processor.stop(signal.SIGTERM), outbound.stop(signal.SIGTERM))
    run.note(
        f"both left (SIGTERM) after applying {applied:g} and pushing {pushed:g}, "
        f"at {await run.applied()} applied, {run.pushed()} pushed"
    )


async def relay_leader_killed(run: Run) -> None:
    """Issue 18: the outbox relay is single-leader (an advisory lock); its holder is
    SIGKILLed while it holds the lock, and the other processor's relay publishes every row
    that was waiting within RELAY_FAILOVER_SECONDS."""
    second = run.stack.processor("processor-2")
    run.processors.append(second)
    second.start()
    await second.wait_ready(run.session)
    await run.reach("applied", 0.2)
    killed = await run.stack.kill_lock_holder(RELAY_LOCK, run.processors)
    killed_at = time.monotonic()
    holder = killed.name
    # Everything committed by the kill (and a little after): the survivor's to publish.
    waiting = await _outbox_max_id(run)
    run.note(f"{holder} SIGKILLed holding the outbox relay's lock, outbox up to id {waiting}")
    while await _outbox_count_upto(run, waiting) > 0:
        if time.monotonic() - killed_at > 3 * RELAY_FAILOVER_SECONDS:
            break
        await asyncio.sleep(0.05)
    took = time.monotonic() - killed_at
    run.note(f"the other relay published every row waiting at the kill {took:.2f}s after it")
    if took > RELAY_FAILOVER_SECONDS:
        raise ScenarioError(
            f"the outbox relay failed over in {took:.2f}s, over {RELAY_FAILOVER_SECONDS:g}s"
        )


async def _outbox_max_id(run: Run) -> int:
    conn = await asyncpg.connect(run.stack.database_url, timeout=3)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox"))
    finally:
        await conn.close()


async def _outbox_count_upto(run: Run, last_id: int) -> int:
    conn = await asyncpg.connect(run.stack.database_url, timeout=3)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE id <= $1", last_id))
    finally:
        await conn.close()


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "pg-restart-normalize",
            "PostgreSQL restarted while thin Xero webhooks are normalised and hydrated",
            "xero",
            restart_at("PostgreSQL", "applied", 0.25),
        ),
        Scenario(
            "pg-restart-apply",
            "PostgreSQL restarted while internal changes are applied",
            "internal",
            restart_at("PostgreSQL", "applied", 0.25),
        ),
        Scenario(
            "pg-restart-outbound-backlog",
            "PostgreSQL restarted while outbound consumes a backlog of records.changed",
            "internal",
            restart_postgres_as_outbound_takes_backlog,
            backlog_first=True,
            min_load_seconds=2.0,
        ),
        Scenario(
            "pg-restart-outbox-relay",
            "PostgreSQL restarted while the outbox relay has rows to publish",
            "internal",
            restart_postgres_with_outbox_backlog,
            min_load_seconds=2.0,
        ),
        Scenario(
            "kafka-restart-processor",
            "Kafka broker restarted while the processor applies internal changes",
            "internal",
            restart_at("Kafka", "applied", 0.25),
        ),
        Scenario(
            "kafka-restart-ingest",
            "Kafka broker restarted while ingest acknowledges internal changes",
            "internal",
            restart_kafka_under_ingest,
            min_load_seconds=30.0,
        ),
        Scenario(
            "kafka-restart-outbound",
            "Kafka broker restarted while outbound consumes a backlog",
            "internal",
            restart_at("Kafka", "pushed", 0.2),
            backlog_first=True,
            min_load_seconds=2.0,
        ),
        Scenario(
            "processor-sigkill-webhooks",
            "processor SIGKILLed and restarted on the webhooks.raw path (Xero, hydrated)",
            "xero",
            kill_processor,
        ),
        Scenario(
            "outbound-sigkill",
            "outbound SIGKILLed mid-push with a backlog, restarted",
            "internal",
            kill_outbound,
            backlog_first=True,
            min_load_seconds=2.0,
        ),
        Scenario(
            "processor-rebalance",
            "a second processor joins, then leaves mid-batch (Xero, hydrated)",
            "xero",
            second_worker_joins_and_leaves,
            min_load_seconds=20.0,
        ),
        Scenario(
            "workers-join-leave",
            "a second processor and a second outbound join, take work, then leave mid-load"
            " (Xero, hydrated)",
            "xero",
            second_workers_join_and_leaves,
            min_load_seconds=60.0,
        ),
        Scenario(
            "relay-leader-sigkill",
            "the processor holding the outbox relay's lock SIGKILLed; the other publishes",
            "internal",
            relay_leader_killed,
            min_load_seconds=40.0,
        ),
    )
}
