"""``crmsync infra``, ``migrate``, ``topics`` and ``schemas``: bring the stack to a state."""

from __future__ import annotations

import json
import sys

import asyncpg
from aiokafka.errors import KafkaError

from crmsync.common.db import DatabaseUnavailableError, connect
from crmsync.common.kafka import (
    KafkaUnavailableError,
    TopicConfig,
    make_admin,
    raise_message_limits,
)
from crmsync.common.kafka import ensure_topics as create_missing_topics
from crmsync.common.migrate import MigrationError, load_migrations
from crmsync.common.migrate import migrate as apply_migrations
from crmsync.common.settings import parse_settings, repo_root, topic_name
from crmsync.localstack.kafka import KafkaNode
from crmsync.localstack.keys import ensure_master_key, export_master_key, key_file
from crmsync.localstack.postgres import PostgresCluster
from crmsync.localstack.settings import LocalStackSettings
from crmsync.localstack.status import ComponentStatus, Say, StackError
from schemas import export, topics

MIGRATIONS_DIR = repo_root() / "infra" / "migrations"


def local_settings() -> LocalStackSettings:
    return parse_settings(LocalStackSettings)


async def _components(settings: LocalStackSettings) -> list[ComponentStatus]:
    return [await PostgresCluster(settings).status(), await KafkaNode(settings).status()]


async def healthy(settings: LocalStackSettings) -> bool:
    """True when both components already answer (so a caller knows not to stop them)."""
    return all(s.healthy for s in await _components(settings))


async def up(say: Say) -> int:
    settings = local_settings()
    if ensure_master_key(settings):
        say(f"secrets: generated the local master key into {key_file(settings)}")
        export_master_key(settings)
    # Postgres first: it is quick, and a missing OS package shows up before a long jar fetch.
    await PostgresCluster(settings).up(say)
    await KafkaNode(settings).up(say)
    await ensure_topics(say, settings)
    return 0


def down(say: Say, *, purge: bool) -> int:
    settings = local_settings()
    kafka, postgres = KafkaNode(settings), PostgresCluster(settings)
    kafka.down(say)
    postgres.down(say)
    if purge:
        kafka.purge(say)
        postgres.purge(say)
    return 0


async def status(*, as_json: bool) -> int:
    components = await _components(local_settings())
    healthy = all(c.healthy for c in components)
    if as_json:
        print(json.dumps({"healthy": healthy, "components": [c.as_dict() for c in components]}))
    else:
        for c in components:
            mark = "healthy" if c.healthy else "UNHEALTHY"
            print(f"{c.name:<9} {mark:<10} {c.endpoint:<28} {c.detail}")
    return 0 if healthy else 1


async def migrate(say: Say, *, as_json: bool) -> int:
    settings = local_settings()
    try:
        migrations = load_migrations(MIGRATIONS_DIR)
        conn = await connect(settings.database_url)
    except MigrationError as exc:
        raise StackError(str(exc)) from None
    except DatabaseUnavailableError as exc:
        raise StackError(f"{exc}; is `crmsync infra up` done?") from None
    try:
        result = await apply_migrations(conn, migrations)
    except (MigrationError, asyncpg.PostgresError) as exc:
        raise StackError(f"migration failed: {exc}") from None
    finally:
        await conn.close()
    names = [f"{m.version:04d}_{m.name}" for m in result.applied]
    if as_json:
        print(json.dumps({"applied": names, "already_applied": result.already}))
    else:
        for name in names:
            say(f"migrate: applied {name}")
        say(f"migrate: {len(names)} applied now, {result.already} already applied")
    return 0


async def ensure_topics(say: Say, settings: LocalStackSettings | None = None) -> int:
    settings = settings or local_settings()
    admin = make_admin(settings.kafka_bootstrap_servers)
    try:
        await admin.start()
        wanted = [
            TopicConfig.of(
                t,
                topic_name(settings, t.name),
                replication_factor=settings.kafka_replication_factor,
            )
            for t in topics.ALL
        ]
        created = await create_missing_topics(admin, wanted)
        raised = await raise_message_limits(admin, wanted)
    except (KafkaUnavailableError, KafkaError, OSError) as exc:
        raise StackError(f"topics: {exc}") from None
    finally:
        await admin.close()
    say(f"topics: created {', '.join(created)}" if created else "topics: all present")
    for name, old, new in raised:
        say(f"topics: {name}: max.message.bytes raised from {old} to {new}")
    return 0


def export_schemas() -> int:
    changed = export.export()
    print("\n".join(changed) if changed else "schemas up to date", file=sys.stderr)
    return 0
