"""``crmsync backfill`` and ``crmsync reconcile``: list a connection's records into the
pipeline, here and now, with progress on a terminal.

The run is a sync_jobs row like the ones the outbound service runs: interrupt it (Ctrl-C,
a kill, a reboot) and the same command continues from its checkpoint. ``--detach``
only queues the run for the outbound service; in remote mode that is the only way (the
run needs the providers' credentials, which only the deployment holds), through
``POST /v1/sync-jobs``.

Exit status: 0 the run succeeded (or was queued), 1 it failed, was cancelled or is held
by another live process, 2 bad usage; 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from functools import partial
from typing import Any, TextIO

import asyncpg

from connectors.egress import provider_session
from connectors.runtime import ConnectionInfo
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.application.errors import AdminError
from crmsync.application.models import SyncJobCreate
from crmsync.application.sync import jobs
from crmsync.application.sync.jobs import JobBusyError, Kind, SyncJob
from crmsync.application.sync.runner import SyncFailedError, SyncRunner, runnable_types
from crmsync.cli.admin_common import EXIT_INVALID, CommandError, add_remote, command, model
from crmsync.cli.backend import (
    Backend,
    connection_arg,
    connection_id,
    is_remote,
    reach_stack,
    run,
)
from crmsync.common.connections import find_by_name, next_modified_since
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import create_pool
from crmsync.common.kafka import make_producer, start_with_retry
from crmsync.common.settings import ConfigError, parse_settings, topic_name
from crmsync.localstack.status import StackError
from crmsync.settings.outbound import OutboundSettings
from schemas import topics

ENTITY_TYPES = ("customer", "job", "invoice", "payment")
log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for verb, help_text in (
        ("backfill", "list every record of a connection into the pipeline (resumable)"),
        ("reconcile", "list records modified since the last run; --full also finds deletes"),
    ):
        p = sub.add_parser(verb, help=help_text, description=help_text)
        p.add_argument("connection", type=connection_arg, help="connection id, or TENANT/NAME")
        p.add_argument(
            "--entity",
            action="append",
            choices=ENTITY_TYPES,
            help="only this entity type (repeatable; default: every type it syncs inbound)",
        )
        p.add_argument(
            "--detach", action="store_true", help="queue the run for the outbound service"
        )
        p.add_argument("--json", action="store_true", help="print the run's result as JSON")
        add_remote(p)
        if verb == "reconcile":
            p.add_argument("--full", action="store_true", help="list everything and detect deletes")
        p.set_defaults(handler=command(partial(_main, verb=verb)))


def _main(args: argparse.Namespace, *, verb: str) -> int:
    kind: Kind = "backfill"
    if verb == "reconcile":
        kind = "full_reconcile" if args.full else "reconcile"
    if is_remote(args):
        if not args.detach:
            raise CommandError(
                f"in remote mode a {verb} runs in the deployment: add --detach to queue it "
                "(running it here needs local mode)",
                EXIT_INVALID,
            )
        return _queue_remote(args, kind)
    settings = parse_settings(OutboundSettings)
    try:
        keyring = KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
    return asyncio.run(
        _run(
            settings,
            keyring,
            ref=str(args.connection),
            kind=kind,
            entities=args.entity,
            detach=args.detach,
            as_json=args.json,
        )
    )


def _queue_remote(args: argparse.Namespace, kind: Kind) -> int:
    """``--detach`` through the admin API: the same output as a local ``--detach``."""
    args.tenant = None  # the API key's tenant; a TENANT/NAME is checked against it
    body = model(
        SyncJobCreate,
        connection=connection_id(args, args.connection),
        kind=kind,
        entity_types=args.entity,
    )

    async def queue(b: Backend) -> tuple[str, uuid.UUID, bool]:
        shown = await b.call("getConnection", {"connection_id": body.connection})
        try:
            job = await b.call("createSyncJob", {"body": body})
        except AdminError as exc:
            existing = exc.extensions.get("existing_job_id")
            if exc.status != 409 or existing is None:
                raise
            return shown.name, uuid.UUID(existing), False
        return shown.name, job.id, True

    name, job_id, queued = run(args, queue)
    _print_queued(name, job_id, queued, kind, as_json=args.json)
    return 0


async def resolve_connection(pool: asyncpg.Pool, ref: str) -> ConnectionInfo:
    """A connection by id or by ``tenant/name``; StackError when there is none."""
    connection_id: uuid.UUID | None = None
    try:
        connection_id = uuid.UUID(ref)
    except ValueError:
        tenant, _, name = ref.partition("/")
        if not tenant or not name:
            raise StackError(f"connection {ref!r}: give its id or TENANT/NAME") from None
        found = await find_by_name(pool, tenant=tenant, name=name)
        connection_id = found["id"] if found else None
    # Any tenant's: an operator's command names a connection of any tenant by its id.
    info = await load_connection(pool, connection_id, tenant_id=None) if connection_id else None
    if info is None:
        raise StackError(f"no connection {ref!r}")
    return info


async def _run(
    settings: OutboundSettings,
    keyring: KeyRing,
    *,
    ref: str,
    kind: Kind,
    entities: list[str] | None,
    detach: bool,
    as_json: bool,
) -> int:
    pool = await reach_stack(create_pool(settings.database_url, max_size=4))
    try:
        info = await resolve_connection(pool, ref)
        try:
            types = runnable_types(info, entities)
        except SyncFailedError as exc:
            raise StackError(str(exc)) from None
        since = await _modified_since(pool, info, kind, settings)
        if detach:
            return await _queue(pool, info, kind, types, since, as_json=as_json)
        return await _foreground(
            pool, settings, keyring, info=info, kind=kind, types=types, since=since, as_json=as_json
        )
    finally:
        await pool.close()


async def _modified_since(
    pool: asyncpg.Pool, info: ConnectionInfo, kind: Kind, settings: OutboundSettings
) -> Any:
    if kind != "reconcile":
        return None
    return await next_modified_since(
        pool, info.id, settings.outbound_reconcile_overlap_seconds, tenant_id=info.tenant_id
    )


async def _queue(
    pool: asyncpg.Pool,
    info: ConnectionInfo,
    kind: Kind,
    types: list[Any],
    since: Any,
    *,
    as_json: bool,
) -> int:
    job_id, queued = await jobs.queue(
        pool,
        tenant_id=info.tenant_id,
        connection_id=info.id,
        kind=kind,
        entity_types=types,
        modified_since=since,
        requested_by="cli",
    )
    _print_queued(info.name, job_id, queued, kind, as_json=as_json)
    return 0


def _print_queued(name: str, job_id: uuid.UUID, queued: bool, kind: Kind, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"id": str(job_id), "queued": queued, "kind": kind}))
    else:
        what = "queued" if queued else "already queued or running"
        print(f"{kind} of {name}: {what} as sync job {job_id}")


async def _foreground(
    pool: asyncpg.Pool,
    settings: OutboundSettings,
    keyring: KeyRing,
    *,
    info: ConnectionInfo,
    kind: Kind,
    types: list[Any],
    since: Any,
    as_json: bool,
) -> int:
    owner = jobs.owner_id("cli")
    producer = make_producer(settings.kafka_bootstrap_servers)
    await start_with_retry(producer.start, "producer", within_seconds=30.0, log=log)
    session = provider_session(allow_private=settings.allow_private_provider_urls)
    job: SyncJob | None = None
    try:
        runner = SyncRunner(
            pool,
            stored_clients(pool, keyring, session),
            producer,
            topic=topic_name(settings, topics.CHANGES_NORMALIZED.name),
            owner=owner,
        )
        try:
            job = await jobs.start(
                pool,
                connection_id=info.id,
                tenant_id=info.tenant_id,
                kind=kind,
                entity_types=types,
                owner=owner,
                lease_seconds=runner.policy.lease_seconds,
                modified_since=since,
                requested_by="cli",
            )
        except JobBusyError as exc:
            print(f"crmsync: {exc}", file=sys.stderr)
            return 1
        meter = ProgressMeter(sys.stderr, kind, info.name, resumed=job.resumed)
        task = asyncio.create_task(runner.run(job, meter.update))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            await jobs.release(pool, job.id, owner=owner)
            meter.close()
            print(
                f"crmsync: interrupted; `crmsync {_command(kind)} {info.id}` resumes sync job "
                f"{job.id} from its checkpoint",
                file=sys.stderr,
            )
            return 130
        meter.close()
        return _report(job=job, info=info, as_json=as_json)
    finally:
        await session.close()
        await producer.stop()


def _command(kind: Kind) -> str:
    return {"backfill": "backfill", "reconcile": "reconcile", "full_reconcile": "reconcile --full"}[
        kind
    ]


def _report(*, job: SyncJob, info: ConnectionInfo, as_json: bool) -> int:
    result = {
        "id": str(job.id),
        "connection": str(info.id),
        "kind": job.kind,
        "status": job.status,
        "records_seen": job.records_seen,
        "records_changed": job.records_changed,
        "records_deleted": job.records_deleted,
        "per_entity": {t: p.seen for t, p in job.progress.items()},
    }
    if as_json:
        print(json.dumps(result))
    else:
        per = ", ".join(f"{t} {p.seen:,}" for t, p in job.progress.items())
        print(
            f"{job.kind} of {info.name}: {job.status}; {job.records_seen:,} records listed "
            f"({per}), {job.records_changed:,} new or changed, {job.records_deleted:,} deleted"
        )
    return 0 if job.status == "succeeded" else 1


class ProgressMeter:
    """One self-rewriting line on a terminal; a line every few seconds otherwise."""

    def __init__(self, out: TextIO, kind: str, name: str, *, resumed: bool) -> None:
        self.out = out
        self.tty = out.isatty()
        self.kind = kind
        self.name = name
        self.started = time.monotonic()
        self.last = 0.0
        self.first_seen: int | None = None
        if resumed:
            print(f"{kind} of {name}: resuming from its checkpoint", file=out, flush=True)

    def update(self, job: SyncJob, entity_type: str) -> None:
        now = time.monotonic()
        if self.first_seen is None:
            self.first_seen = job.records_seen
        if not self.tty and now - self.last < 5.0:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = (job.records_seen - self.first_seen) / elapsed
        done = sum(p.done for p in job.progress.values())
        line = (
            f"{self.kind} {self.name}: {entity_type} {job.progress[entity_type].seen:,} · "
            f"total {job.records_seen:,} ({rate:,.0f}/s) · types done {done}/{len(job.progress)}"
        )
        if self.tty:
            self.out.write("\r\x1b[2K" + line)
        else:
            self.out.write(line + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()
