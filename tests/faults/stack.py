"""An isolated stack per scenario: its own Kafka node, its own PostgreSQL cluster, its own
service processes, so a fault injected here never touches the shared local stack.

Kafka and PostgreSQL come from the local-stack manager (``crmsync.localstack``) with
free ports, a state directory of their own and a cluster name of their own; the services
run as ``python -m services.<name>`` configured only through ``CRMSYNC_*`` variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import asyncpg
from aiokafka.errors import KafkaError

from crmsync.common.crypto import generate_master_key
from crmsync.common.kafka import (
    KafkaUnavailableError,
    TopicConfig,
    consumer_lag,
    ensure_topics,
    make_admin,
    make_consumer,
    raise_message_limits,
)
from crmsync.common.migrate import load_migrations, migrate
from crmsync.common.settings import repo_root
from crmsync.localstack.kafka import KafkaNode, kafka_version
from crmsync.localstack.ports import free_port
from crmsync.localstack.postgres import PostgresCluster
from crmsync.localstack.procs import reap, service_env, until_ready
from crmsync.localstack.settings import LocalStackSettings
from schemas import topics

ROOT = repo_root()
MIGRATIONS = ROOT / "infra" / "migrations"
Say = Callable[[str], None]
# A faust worker imports a lot and joins its group before /readyz answers; on two shared
# cores that has taken 40 s.
READY_SECONDS = 120.0
# How long a fault keeps its component down: long enough that clients see it gone
# (connections refused, requests failing), short enough for a quick suite.
DOWN_SECONDS = 3.0
# The processor's consumer group (faust app id) and outbound's, as the services default.
PROCESSOR_GROUP = "crmsync-processor"
OUTBOUND_GROUP = "crmsync-outbound"


# Seen once in 20 fresh brokers: "unknown topic" right after creating it.
TOPIC_ATTEMPTS = 10


class StackError(Exception):
    """The isolated stack could not start, or a process of it misbehaved."""


def _kafka_cache_dir() -> Path:
    """Where the Kafka jars already are, so an isolated node starts offline.

    A worktree has no ``.crmsync/cache`` of its own; the checkout named by
    ``CRMSYNC_STATE_DIR`` (or ``CRMSYNC_CACHE_DIR``) usually has the jars.
    """
    base = LocalStackSettings()
    marker = Path(f"kafka-{kafka_version()}") / "libs" / ".complete"
    for candidate in (base.cache_dir, base.state_dir / "cache"):
        if (candidate / marker).exists():
            return candidate
    return base.cache_dir


def _wait_gone(pid: int) -> None:
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.05)


def brief_log(lines: list[str], keep: int) -> list[str]:
    """Warning-and-worse JSON log lines, shortened; other lines (a crash's stderr) kept."""
    shown: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            shown.append(line[:300])
            continue
        if not isinstance(entry, dict) or entry.get("level") in ("debug", "info"):
            continue
        text = f"{str(entry.get('ts', ''))[11:23]} {entry.get('level')} {entry.get('logger')}: "
        text += str(entry.get("msg", ""))[:300]
        exc = str(entry.get("exc") or "").strip().splitlines()
        if exc:
            text += f" | {exc[-1][:200]}"
        shown.append(text)
    return shown[-keep:]


@dataclass
class Proc:
    """One service process: started, watched, signalled, restarted, its log kept."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    ready_url: str
    proc: subprocess.Popen[bytes] | None = None
    exits: list[int] = field(default_factory=list)
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise StackError(f"{self.name} is running already")
        self._log = self.log_path.open("ab")
        self._log.write(f"--- {self.name} started {time.strftime('%H:%M:%S')} ---\n".encode())
        self._log.flush()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=self._log,
            stderr=self._log,
            stdin=subprocess.DEVNULL,
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        await until_ready(
            session,
            self.ready_url,
            self.proc,
            name=self.name,
            within=READY_SECONDS,
            pause=0.25,
            error=StackError,
            log_tail=self.log_tail,
        )

    async def stop(self, sig: int = signal.SIGTERM, within: float = 30.0) -> int | None:
        """Signal the process and reap it (SIGKILL after ``within`` seconds)."""
        if self.proc is None:
            return None
        code = await reap(self.proc, sig, within)
        self.exits.append(code)
        if self._log is not None:
            self._log.write(f"--- {self.name} exited {code} ---\n".encode())
            self._log.close()
            self._log = None
        self.proc = None
        return code

    def log_tail(self, lines: int = 25) -> str:
        """The last warnings and errors, one short line each (a traceback's last line)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(brief_log(text.splitlines(), lines))


@dataclass
class IsolatedStack:
    workdir: Path
    kafka: KafkaNode
    postgres: PostgresCluster
    master_keys: str
    say: Say
    procs: list[Proc] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return self.kafka.settings.kafka_bootstrap_servers

    @property
    def database_url(self) -> str:
        return self.postgres.settings.database_url

    # --- service processes -----------------------------------------------------------

    def env(self, **extra: object) -> dict[str, str]:
        return service_env(
            self.database_url,
            self.bootstrap,
            self.master_keys,
            self.workdir / "state",
            "INFO",
            **extra,
        )

    def _proc(self, name: str, module: str, port: int, **extra: object) -> Proc:
        proc = Proc(
            name,
            [sys.executable, "-m", module],
            # Named in pg_stat_activity: a fault can wait for a service's first session.
            self.env(database_url=f"{self.database_url}?application_name={name}", **extra),
            self.workdir / f"{name}.log",
            f"http://127.0.0.1:{port}/readyz",
        )
        self.procs.append(proc)
        return proc

    def ingest(self) -> tuple[Proc, str]:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        return (
            self._proc(
                "ingest",
                "services.ingest",
                port,
                ingest_port=port,
                ingest_public_base_url=base,
            ),
            base,
        )

    def processor(self, name: str = "processor") -> Proc:
        port = free_port()
        return self._proc(
            name,
            "services.processor",
            port,
            processor_port=port,
            processor_data_dir=self.workdir / name,
        )

    def outbound(self, name: str = "outbound", **extra: object) -> Proc:
        """``extra``: more CRMSYNC_OUTBOUND_* settings, over these."""
        port = free_port()
        settings: dict[str, object] = {
            "outbound_port": port,
            # Only the pushes under test: no scheduled reconciliations.
            "outbound_sync_concurrency": 0,
            # A push claimed by a SIGKILLed worker is retried after the lease; the default
            # minute would only make the suite slower.
            "outbound_lease_seconds": 15,
        }
        return self._proc(name, "services.outbound", port, **(settings | extra))

    # --- faults ----------------------------------------------------------------------

    async def restart_postgres(self, down_seconds: float = DOWN_SECONDS) -> None:
        """Stop the cluster (fast: sessions are cut, as in a crash or failover), keep it
        down a while, start it again."""
        await self.stop_postgres_now()
        await asyncio.sleep(down_seconds)
        await self.postgres.up(self.say)

    async def stop_postgres_now(self) -> None:
        """SIGINT to the postmaster, what ``pg_ctl stop -m fast`` sends, without the
        second pg_ctlcluster takes to start: a fault aimed at a moment must land on it."""
        cluster = self.postgres.find()
        pid_file = (
            Path(f"/var/lib/postgresql/{cluster.version}/{cluster.name}/postmaster.pid")
            if cluster
            else None
        )
        try:
            pid = int(pid_file.read_text().split()[0]) if pid_file else None
        except (OSError, ValueError, IndexError):
            pid = None
        if pid is None:
            await asyncio.to_thread(self.postgres.down, self.say)
            return
        os.kill(pid, signal.SIGINT)
        await asyncio.to_thread(_wait_gone, pid)
        self.say(f"postgres: stopped (postmaster {pid} shut down fast)")

    async def restart_kafka(self, down_seconds: float = DOWN_SECONDS) -> None:
        """Stop the broker (controlled shutdown), keep it down a while, start it again."""
        await asyncio.to_thread(self.kafka.down, self.say)
        await asyncio.sleep(down_seconds)
        await self.kafka.up(self.say)

    async def advisory_lock_holder(self, key: int) -> str | None:
        """The service (its application_name) whose session holds the advisory lock
        ``key`` now, if any."""
        conn = await asyncpg.connect(self.database_url, timeout=3)
        try:
            holder: str | None = await conn.fetchval(
                """
                SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
                """,
                key >> 32,
                key & 0xFFFFFFFF,
            )
        finally:
            await conn.close()
        return holder

    async def kill_lock_holder(self, key: int, procs: list[Proc]) -> Proc:
        """SIGKILL the one of ``procs`` whose session holds advisory lock ``key``, while
        it holds it: stopped first (a stopped process cannot end its transaction), seen
        holding it still, then killed. A transaction-scoped lock is held for milliseconds
        at a time, so it is looked for every few."""
        by_name = {p.name: p for p in procs}
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            holder = await self.advisory_lock_holder(key)
            proc = by_name.get(holder or "")
            if proc is None or proc.proc is None:
                await asyncio.sleep(0.002)
                continue
            proc.proc.send_signal(signal.SIGSTOP)
            if await self.advisory_lock_holder(key) == holder:
                await proc.stop(signal.SIGKILL)
                return proc
            proc.proc.send_signal(signal.SIGCONT)
        raise StackError(f"nobody was seen holding advisory lock {key:#x} within 60s")

    async def sessions(self, application_name: str) -> int:
        """PostgreSQL sessions a service holds now (0 while PostgreSQL is unreachable)."""
        try:
            conn = await asyncpg.connect(self.database_url, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return 0
        try:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    application_name,
                )
            )
        finally:
            await conn.close()

    # --- diagnostics -----------------------------------------------------------------

    async def consumer_lag(self) -> dict[str, int]:
        """Messages not yet consumed per group and topic (summed over partitions)."""
        wanted = {
            PROCESSOR_GROUP: [t.name for t in (topics.WEBHOOKS_RAW, *APPLY_TOPICS)],
            OUTBOUND_GROUP: [topics.RECORDS_CHANGED.name],
        }
        admin = make_admin(self.bootstrap, request_timeout_ms=5000)
        offsets = make_consumer(self.bootstrap, group_id=None)
        found: dict[str, int] = {}
        try:
            await admin.start()
            await offsets.start()
            for group, names in wanted.items():
                for (topic, _partition), lag in (
                    await consumer_lag(admin, offsets, group, names)
                ).items():
                    found[f"{group} {topic}"] = found.get(f"{group} {topic}", 0) + lag
        finally:
            await offsets.stop()
            await admin.close()
        return found

    def postgres_log_tail(self, lines: int = 20) -> str:
        cluster = self.postgres.find()
        if cluster is None:
            return ""
        path = Path(f"/var/log/postgresql/postgresql-{cluster.version}-{cluster.name}.log")
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_tails(self, lines: int = 25) -> str:
        chunks = [
            f"===== {p.name} (exits {p.exits}) =====\n{p.log_tail(lines)}" for p in self.procs
        ]
        chunks.append(f"===== kafka =====\n{self.kafka.log_tail(8)}")
        chunks.append(f"===== postgres =====\n{self.postgres_log_tail(12)}")
        return "\n".join(chunks)


APPLY_TOPICS = (topics.CHANGES_INTERNAL, topics.CHANGES_NORMALIZED)


async def _create_topics(bootstrap: str) -> None:
    """The pipeline's topics with production partition counts. A broker seconds old may
    not know a topic it just created when asked to describe it: retried, not failed."""
    wanted = [TopicConfig.of(t, t.name) for t in topics.ALL]
    for attempt in range(TOPIC_ATTEMPTS):
        admin = make_admin(bootstrap)
        try:
            await admin.start()
            await ensure_topics(admin, wanted)
            await raise_message_limits(admin, wanted)
            return
        except (KafkaError, KafkaUnavailableError, OSError) as exc:
            if attempt == TOPIC_ATTEMPTS - 1:
                raise StackError(f"could not create the pipeline's topics: {exc}") from None
            await asyncio.sleep(1.0)
        finally:
            await admin.close()


@contextlib.asynccontextmanager
async def isolated_stack(workdir: Path, say: Say) -> AsyncIterator[IsolatedStack]:
    """Kafka and PostgreSQL of this scenario alone, migrated and with the pipeline's
    topics; every process and the cluster are gone afterwards, also on failure."""
    suffix = uuid.uuid4().hex[:8]
    settings = LocalStackSettings(
        state_dir=workdir / "state",
        cache_dir=_kafka_cache_dir(),
        kafka_bootstrap_servers=f"127.0.0.1:{free_port()}",
        kafka_controller_port=free_port(),
        kafka_heap="384m",
        database_url=f"postgresql://faults:faults@127.0.0.1:{free_port()}/faults",
        pg_cluster=f"crmsync_faults_{suffix}",
    )
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    stack = IsolatedStack(
        workdir,
        KafkaNode(settings),
        PostgresCluster(settings),
        generate_master_key(f"faults{suffix}"),
        say,
    )
    try:
        await asyncio.gather(stack.kafka.up(say), stack.postgres.up(say))
        conn = await asyncpg.connect(stack.database_url)
        try:
            await migrate(conn, load_migrations(MIGRATIONS))
        finally:
            await conn.close()
        await _create_topics(stack.bootstrap)
        yield stack
    finally:
        for proc in reversed(stack.procs):
            await proc.stop(signal.SIGTERM, 15.0)
        await asyncio.to_thread(stack.kafka.down, say)
        # Kafka's data only: the service logs stay in the workdir for a post-mortem.
        await asyncio.to_thread(stack.kafka.purge, say)
        await asyncio.to_thread(stack.postgres.purge, say)
