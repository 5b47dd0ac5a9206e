"""Throwaway resources on the local stack, and the service processes under test.

Every run gets its own database (created, migrated, dropped) and its own topic prefix
(topics created and deleted, faust's internal topics too), so a benchmark never touches
the local stack's data or another engineer's tests. Services run as real processes,
``python -m services.<name>``, configured only through CRMSYNC_* variables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg

from crmsync.common.db import drop_database
from crmsync.common.kafka import TopicConfig, ensure_topics, make_admin
from crmsync.common.migrate import load_migrations, migrate
from crmsync.common.settings import CommonSettings, repo_root
from crmsync.localstack.ports import free_port
from crmsync.localstack.procs import reap, service_env, until_ready
from schemas import topics

ROOT = repo_root()
MIGRATIONS = ROOT / "infra" / "migrations"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """The benchmark could not run (stack down, a service failed to start)."""


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def new_database_name() -> str:
    return f"crmsync_bench_{uuid.uuid4().hex[:10]}"


@contextlib.asynccontextmanager
async def scratch_database(
    common: CommonSettings, name: str, *, keep: bool = False
) -> AsyncIterator[str]:
    """A new, migrated database of this run alone; dropped afterwards unless ``keep`` (a
    failed run's sync log and field provenance, to read why)."""
    try:
        admin = await asyncpg.connect(common.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BenchError(
            f"PostgreSQL at {common.database_url} unreachable ({exc}); run `crmsync infra up`"
        ) from None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = _with_database(common.database_url, name)
    try:
        target = await asyncpg.connect(url)
        try:
            await migrate(target, load_migrations(MIGRATIONS))
        finally:
            await target.close()
        yield url
    finally:
        if not keep:
            await _drop_database(common, name)


async def _drop_database(common: CommonSettings, name: str) -> None:
    admin = await asyncpg.connect(common.database_url, timeout=5)
    try:
        await drop_database(admin, name)
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def scratch_topics(bootstrap: str, prefix: str) -> AsyncIterator[None]:
    """The pipeline's topics behind ``prefix``, with their production partition counts.
    Deleted afterwards, with every topic faust made under an app id starting with it."""
    admin = make_admin(bootstrap)
    try:
        await admin.start()
    except Exception as exc:  # noqa: BLE001 - any failure here means the stack is down
        raise BenchError(
            f"Kafka at {bootstrap} unreachable ({exc}); run `crmsync infra up`"
        ) from None
    try:
        await ensure_topics(admin, [TopicConfig.of(t, prefix + t.name) for t in topics.ALL])
        yield
    finally:
        names = [
            n for n in await admin.list_topics() if n.startswith((prefix, f"crmsync-{prefix}"))
        ]
        if names:
            await admin.delete_topics(names)
        await admin.close()


def read_status_kib(pid: int, key: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak resident set size)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


@dataclass
class Service:
    """A process of ours: started with its environment, watched, stopped, measured."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str | None = None
    stdout_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    peak_rss_kib: int = 0
    _files: list[IO[bytes]] = field(default_factory=list, repr=False)

    def start(self) -> None:
        log = self.log_path.open("ab")
        out = self.stdout_path.open("wb") if self.stdout_path else log
        self._files = [log, out]
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )

    @property
    def started(self) -> subprocess.Popen[bytes]:
        if self.proc is None:
            raise BenchError(f"{self.name} was never started")
        return self.proc

    @property
    def pid(self) -> int:
        return self.started.pid

    def running(self) -> bool:
        return self.started.poll() is None

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def sample_rss(self) -> int:
        """Record the process's peak RSS so far (it only grows); KiB."""
        if self.proc is not None and self.proc.poll() is None:
            self.peak_rss_kib = max(self.peak_rss_kib, read_status_kib(self.pid, "VmHWM") or 0)
        return self.peak_rss_kib

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, session: aiohttp.ClientSession, within: float = 120.0) -> None:
        proc, url = self.started, self.ready_url
        if url is None:
            raise BenchError(f"{self.name} has no readiness URL")
        await until_ready(
            session,
            url,
            proc,
            name=self.name,
            within=within,
            pause=0.2,
            error=BenchError,
            log_tail=self.log_tail,
        )

    async def stop(self, within: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        self.sample_rss()
        await reap(self.proc, signal.SIGTERM, within)
        for f in self._files:
            f.close()
        return self.proc.returncode


@dataclass
class Stack:
    """What every service of one benchmark section shares: database, topics, keys."""

    common: CommonSettings
    database_url: str
    prefix: str
    master_keys: str
    workdir: Path
    # ``bench/run --set``: settings for every service; the stack's own (ports, groups,
    # topics) still win, so a run cannot point a service at someone else's.
    settings: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)

    def env(self, **extra: Any) -> dict[str, str]:
        # --set's settings first: the stack's own (ports, database, topics) and extra win.
        chosen = {f"CRMSYNC_{k.upper()}": v for k, v in self.settings.items()}
        return chosen | service_env(
            self.database_url,
            self.common.kafka_bootstrap_servers,
            self.master_keys,
            self.workdir / "state",
            "WARNING",
            **{"kafka_topic_prefix": self.prefix, **extra},
        )

    def spawn(
        self,
        name: str,
        argv: list[str],
        ready_url: str | None = None,
        stdout_path: Path | None = None,
        **extra: Any,
    ) -> Service:
        """Start a process with this stack's environment (``extra``: more CRMSYNC_ vars)."""
        service = Service(
            name,
            argv,
            self.env(**extra),
            self.workdir / f"{name}-{len(self.services)}.log",
            ready_url,
            stdout_path,
        )
        service.start()
        self.services.append(service)
        return service

    def _service(self, name: str, module: str, ready_url: str, **extra: Any) -> Service:
        return self.spawn(name, [sys.executable, "-m", module], ready_url, **extra)

    def ingest(self) -> tuple[Service, str]:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        service = self._service(
            "ingest",
            "services.ingest",
            f"{base}/readyz",
            ingest_port=port,
            ingest_public_base_url=base,
        )
        return service, base

    def processor(self, worker: int = 1, **extra: Any) -> Service:
        """Worker ``worker`` of the processor: every worker joins the same consumer group
        (faust app id); each keeps its own data directory."""
        port = free_port()
        return self._service(
            "processor",
            "services.processor",
            f"http://127.0.0.1:{port}/readyz",
            processor_port=port,
            processor_app_id=f"crmsync-{self.prefix}processor",
            processor_data_dir=self.workdir / f"processor-{worker}",
            **extra,
        )

    def outbound(self, **extra: Any) -> Service:
        """``extra``: more CRMSYNC_ variables (``outbound_sync_concurrency=2`` lets it run
        sync jobs, which a benchmark of pushes leaves off)."""
        port = free_port()
        settings: dict[str, Any] = {
            "outbound_port": port,
            "outbound_consumer_group": f"crmsync-{self.prefix}outbound",
            # No scheduled reconciliations: only the pushes under test.
            "outbound_sync_concurrency": 0,
        }
        return self._service(
            "outbound",
            "services.outbound",
            f"http://127.0.0.1:{port}/readyz",
            **(settings | extra),
        )

    async def stop_all(self) -> None:
        for service in reversed(self.services):
            await service.stop()
