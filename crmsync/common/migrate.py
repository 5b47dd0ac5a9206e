"""Apply the SQL migrations under ``infra/migrations`` once each, in order.

A migration is ``NNNN_description.sql``. Each runs in its own transaction together with
its row in ``schema_migrations``; a Postgres advisory lock lets several replicas start at
once without racing. Editing a migration that already ran is refused (checksum), because
the database would silently differ from what the file says.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from schemas.errors import Stop

# Arbitrary but fixed: the advisory-lock key every crmsync migrator agrees on.
_LOCK_KEY = 0x63726D73796E63  # "crmsync"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Stop):
    """The migration set or the database's record of it is inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise MigrationError(f"migrations directory not found: {directory}")
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: expected NNNN_description.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


@dataclass(frozen=True)
class MigrationResult:
    applied: list[Migration]
    already: int


async def migrate(conn: asyncpg.Connection, migrations: list[Migration]) -> MigrationResult:
    """Apply what has not run yet; return what ran now and how many were there before."""
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version    integer PRIMARY KEY,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        done = {r["version"]: r for r in rows}
        known = {m.version for m in migrations}
        for version, row in done.items():
            if version not in known:
                raise MigrationError(
                    f"database has migration {version:04d}_{row['name']} that is not on disk;"
                    " is this an older checkout?"
                )
        applied: list[Migration] = []
        for m in migrations:
            if m.version in done:
                if done[m.version]["checksum"] != m.checksum:
                    raise MigrationError(
                        f"{m.version:04d}_{m.name}.sql changed after it was applied;"
                        " add a new migration instead of editing an applied one"
                    )
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            applied.append(m)
        return MigrationResult(applied=applied, already=len(done))
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
