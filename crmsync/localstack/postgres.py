"""Run a PostgreSQL cluster of the OS's packages for the local stack.

Debian's postgresql-common manages clusters (pg_createcluster / pg_ctlcluster); the
stack owns one named ``CRMSYNC_PG_CLUSTER`` on the port of ``CRMSYNC_DATABASE_URL`` and
provisions that URL's role and database. PostgreSQL refuses to run as root, so every
server-side command runs as the ``postgres`` OS user.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from crmsync.localstack.settings import LocalStackSettings
from crmsync.localstack.status import ComponentStatus, Say, StackError

PG_LIB = Path("/usr/lib/postgresql")
START_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Cluster:
    version: str
    name: str
    port: int
    status: str  # "online" / "down", as pg_lsclusters prints it


def _root_prefix() -> list[str]:
    return [] if os.geteuid() == 0 else ["sudo", "-n"]


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return ["sudo", "-n", "-u", "postgres", *argv]


def _run(argv: list[str], *, stdin: str | None = None) -> str:
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise StackError(
            f"{argv[0]} not found: PostgreSQL is not installed (run scripts/bootstrap)"
        ) from None
    if result.returncode != 0:
        raise StackError(f"{' '.join(argv[:3])}… failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


_PROVISION_SQL = """
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role')
\\gexec
ALTER ROLE :"role" LOGIN CREATEDB PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')
\\gexec
-- The cluster listens on loopback only (Debian's listen_addresses = 'localhost'): TLS there
-- protects nothing and costs CPU at both ends of every statement (bench/README.md), and
-- docker-compose's PostgreSQL has none. Sessions keep theirs until they reconnect.
ALTER SYSTEM SET ssl = off;
SELECT pg_reload_conf();
"""


def _psql_quote(value: str) -> str:
    """A psql meta-command argument in single quotes (psql unescapes \\ and '')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


class PostgresCluster:
    def __init__(self, settings: LocalStackSettings) -> None:
        self.settings = settings
        self.target = settings.db
        self.name = settings.pg_cluster

    @property
    def endpoint(self) -> str:
        return f"{self.target.host}:{self.target.port}/{self.target.database}"

    def installed_version(self) -> str:
        versions = sorted(
            (p.name for p in PG_LIB.glob("*") if (p / "bin" / "postgres").exists()),
            key=lambda v: [int(x) for x in re.findall(r"\d+", v)],
        )
        if not versions or shutil.which("pg_ctlcluster") is None:
            raise StackError("PostgreSQL is not installed: run scripts/bootstrap")
        return versions[-1]

    def find(self) -> Cluster | None:
        if shutil.which("pg_lsclusters") is None:
            return None
        for line in _run(["pg_lsclusters", "--no-header"]).splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[1] == self.name:
                return Cluster(fields[0], fields[1], int(fields[2]), fields[3])
        return None

    def _create(self, say: Say) -> Cluster:
        version = self.installed_version()
        say(f"postgres: creating cluster {version}/{self.name} on port {self.target.port}")
        _run(
            [
                *_root_prefix(), "pg_createcluster", version, self.name,
                "--port", str(self.target.port),
                # Started by `crmsync infra up`, not by the OS at boot.
                "--start-conf", "manual",
                "--", "--auth-local=peer", "--auth-host=scram-sha-256",
            ]
        )  # fmt: skip
        cluster = self.find()
        if cluster is None:
            raise StackError(f"pg_createcluster did not create {self.name}")
        return cluster

    def _psql(self, cluster: Cluster, script: str, database: str = "postgres") -> str:
        return _run(
            _as_postgres(
                ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                 "-p", str(cluster.port), "-d", database, "-f", "-"]
            ),
            stdin=script,
        )  # fmt: skip

    def _provision(self, cluster: Cluster) -> None:
        """Create or update the role and database named in CRMSYNC_DATABASE_URL."""
        t = self.target
        # Values travel as psql variables on stdin (not argv, where `ps` would show the
        # password); psql quotes them itself with :'name' (literal) and :"name" (identifier).
        # CREATEDB: the test suite gives every test a database of its own.
        variables = "".join(
            f"\\set {name} {_psql_quote(value)}\n"
            for name, value in (("role", t.user), ("password", t.password), ("db", t.database))
        )
        self._psql(cluster, variables + _PROVISION_SQL)

    async def up(self, say: Say) -> None:
        if not self.target.is_local:
            say(f"postgres: {self.target.host} is not local; not managed by this stack")
            return
        cluster = self.find() or self._create(say)
        if cluster.port != self.target.port:
            raise StackError(
                f"cluster {cluster.version}/{cluster.name} listens on port {cluster.port} but "
                f"CRMSYNC_DATABASE_URL says {self.target.port}; change one of them"
            )
        if cluster.status != "online":
            _run([*_root_prefix(), "pg_ctlcluster", cluster.version, cluster.name, "start"])
            say(f"postgres: started cluster {cluster.version}/{cluster.name}")
        await self._wait_accepting(cluster)
        self._provision(cluster)
        problem = await self.probe()
        if problem is not None:
            raise StackError(
                f"postgres is up but {self.endpoint} refuses the project role: {problem}"
            )
        say(f"postgres: ready on {self.endpoint}")

    async def _wait_accepting(self, cluster: Cluster) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            proc = await asyncio.create_subprocess_exec(
                "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(cluster.port)
            )
            if await proc.wait() == 0:
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"postgres cluster {cluster.name} did not accept connections within "
                    f"{START_TIMEOUT_SECONDS:g}s; see /var/log/postgresql/"
                    f"postgresql-{cluster.version}-{cluster.name}.log"
                )
            await asyncio.sleep(0.3)

    async def probe(self) -> str | None:
        """None when the project role can run a query in the project database."""
        try:
            conn = await asyncpg.connect(self.settings.database_url, timeout=5)
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()
        return None

    def down(self, say: Say) -> None:
        cluster = self.find() if self.target.is_local else None
        if cluster is None or cluster.status != "online":
            say("postgres: not running")
            return
        _run(
            [*_root_prefix(), "pg_ctlcluster", cluster.version, cluster.name, "stop", "-m", "fast"]
        )
        say(f"postgres: stopped cluster {cluster.version}/{cluster.name}")

    def purge(self, say: Say) -> None:
        cluster = self.find() if self.target.is_local else None
        if cluster is None:
            return
        _run([*_root_prefix(), "pg_dropcluster", "--stop", cluster.version, cluster.name])
        say(f"postgres: dropped cluster {cluster.version}/{cluster.name} and its data")

    async def status(self) -> ComponentStatus:
        problem = await self.probe()
        cluster = self.find() if self.target.is_local else None
        if problem is None:
            where = f"cluster {cluster.version}/{cluster.name}" if cluster else "external server"
            detail = f"{where} accepts {self.target.user}@{self.target.database}"
        elif cluster is None and self.target.is_local:
            detail = f"cluster {self.name} does not exist yet (crmsync infra up creates it)"
        elif cluster is not None and cluster.status != "online":
            detail = f"cluster {cluster.version}/{cluster.name} is {cluster.status}"
        else:
            detail = f"cannot connect: {problem}"
        return ComponentStatus("postgres", problem is None, detail, self.endpoint)
