"""Shared fixtures: the real Kafka and PostgreSQL of the local stack, isolated per test.

Every test gets topics with a unique suffix and a database of its own (cloned from a
migrated template), so tests never see each other's data and run in any order.
`scripts/test` starts the stack; running pytest alone needs `crmsync infra up` first.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import hypothesis
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from crmsync.common.crypto import generate_master_key
from crmsync.common.db import create_pool, drop_database
from crmsync.common.kafka import TopicConfig, ensure_topics, make_admin, raise_message_limits
from crmsync.common.migrate import load_migrations, migrate
from crmsync.common.settings import CommonSettings, repo_root
from schemas import topics
from tests.ingest_harness import Ingest, Tap, running_ingest, tapping

# No per-example deadlines: they are timing assertions, and these machines are shared and
# noisy. No example database either: every run starts from the same seeds' coverage.
hypothesis.settings.register_profile("crmsync", deadline=None, database=None)
hypothesis.settings.load_profile("crmsync")

# Services and the CLI under test need a key ring; every process of the session shares it.
os.environ.setdefault("CRMSYNC_MASTER_KEYS", generate_master_key("test"))
# The simulators the tests call listen on 127.0.0.1, which provider URLs may not reach by
# default (DESIGN invariant 12). Tests of that refusal build their sessions and settings
# with allow_private_provider_urls=False explicitly.
os.environ.setdefault("CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS", "true")

# A shell starts a background job (`nohup .ci/run &`) with SIGINT ignored, and an ignored
# signal stays ignored through exec: every `crmsync` the tests stop with Ctrl-C would go on
# running (test_admin_cli's --follow timed out so, twice). A handled signal is reset to its
# default in each child, so the children get their Ctrl-C back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

MIGRATIONS = repo_root() / "infra" / "migrations"
STACK_HINT = "start the local stack first: `crmsync infra up` (scripts/test does this)"


@pytest.fixture(scope="session")
def common_settings() -> CommonSettings:
    return CommonSettings()


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def _admin_connect(settings: CommonSettings) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(settings.database_url, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.fail(f"PostgreSQL at {settings.database_url} unreachable ({exc}); {STACK_HINT}")


@pytest.fixture(scope="session")
def template_database(common_settings: CommonSettings) -> Iterator[str]:
    """A database with every migration applied, cloned by each test that needs one."""
    name = f"crmsync_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def create() -> None:
        target = await asyncpg.connect(await _create_database(common_settings, name, None))
        try:
            await migrate(target, load_migrations(MIGRATIONS))
        finally:
            await target.close()

    asyncio.run(create())
    yield name
    asyncio.run(_drop_database(common_settings, name))


async def _create_database(settings: CommonSettings, name: str, template: str | None) -> str:
    conn = await _admin_connect(settings)
    try:
        clause = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await conn.close()
    return with_database(settings.database_url, name)


async def _drop_database(settings: CommonSettings, name: str) -> None:
    conn = await _admin_connect(settings)
    try:
        await drop_database(conn, name)
    finally:
        await conn.close()


@pytest.fixture
async def database_url(
    common_settings: CommonSettings, template_database: str
) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"crmsync_t_{uuid.uuid4().hex[:12]}"
    yield await _create_database(common_settings, name, template_database)
    await _drop_database(common_settings, name)


@pytest.fixture
async def empty_database_url(common_settings: CommonSettings) -> AsyncIterator[str]:
    """A database with no migrations applied, for testing the migrator itself."""
    name = f"crmsync_e_{uuid.uuid4().hex[:12]}"
    yield await _create_database(common_settings, name, None)
    await _drop_database(common_settings, name)


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, max_size=4)
    yield p
    await p.close()


@pytest.fixture
def kafka_bootstrap(common_settings: CommonSettings) -> str:
    return common_settings.kafka_bootstrap_servers


KafkaClient = TypeVar("KafkaClient", AIOKafkaProducer, AIOKafkaConsumer, AIOKafkaAdminClient)
TopicFactory = Callable[..., Awaitable[str]]


@asynccontextmanager
async def started(client: KafkaClient) -> AsyncIterator[KafkaClient]:
    """``client`` started, and stopped (an admin client: closed) however the block ends."""
    await client.start()
    try:
        yield client
    finally:
        if isinstance(client, AIOKafkaAdminClient):
            await client.close()
        else:
            await client.stop()


@pytest.fixture
async def new_topic(kafka_bootstrap: str) -> AsyncIterator[TopicFactory]:
    """Create topics unique to this test; they are deleted afterwards."""
    admin = make_admin(kafka_bootstrap)
    try:
        await admin.start()
    except KafkaError as exc:
        pytest.fail(f"Kafka at {kafka_bootstrap} unreachable ({exc}); {STACK_HINT}")
    created: list[str] = []

    async def factory(prefix: str = "test", partitions: int = 1) -> str:
        name = f"{prefix}.{uuid.uuid4().hex[:12]}"
        await ensure_topics(admin, [TopicConfig(name, partitions)])
        created.append(name)
        return name

    yield factory
    if created:
        await admin.delete_topics(created)
    await admin.close()


@pytest.fixture
async def pipeline_topics(kafka_bootstrap: str) -> None:
    """The pipeline's fixed topics, as `crmsync topics ensure` makes them (idempotent)."""
    async with started(make_admin(kafka_bootstrap)) as admin:
        wanted = [TopicConfig.of(t, t.name) for t in topics.ALL]
        await ensure_topics(admin, wanted)
        await raise_message_limits(admin, wanted)


@pytest.fixture
async def raw_tap(kafka_bootstrap: str, pipeline_topics: None) -> AsyncIterator[Tap]:
    """What ingest publishes to webhooks.raw from now on."""
    async with tapping(kafka_bootstrap, topics.WEBHOOKS_RAW.name) as tap:
        yield tap


@pytest.fixture
async def changes_tap(kafka_bootstrap: str, pipeline_topics: None) -> AsyncIterator[Tap]:
    """What ingest publishes to changes.internal from now on."""
    async with tapping(kafka_bootstrap, topics.CHANGES_INTERNAL.name) as tap:
        yield tap


@pytest.fixture
async def ingest(
    database_url: str, kafka_bootstrap: str, pipeline_topics: None
) -> AsyncIterator[Ingest]:
    """The ingest app on this test's database and the suite's Kafka."""
    async for harness in running_ingest(database_url, kafka_bootstrap):
        yield harness


@asynccontextmanager
async def prefixed_topics(kafka_bootstrap: str, partitions: int) -> AsyncIterator[str]:
    """Topics of one test alone, ``partitions`` each: the same names behind a unique prefix
    (the prefix), deleted after it."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    async with started(make_admin(kafka_bootstrap)) as admin:
        await ensure_topics(
            admin, [TopicConfig.of(t, prefix + t.name, partitions=partitions) for t in topics.ALL]
        )
        yield prefix
        await admin.delete_topics([prefix + t.name for t in topics.ALL])


@pytest.fixture
async def topic_prefix(kafka_bootstrap: str) -> AsyncIterator[str]:
    """Topics of this test alone: the same names behind a unique prefix."""
    async with prefixed_topics(kafka_bootstrap, 3) as prefix:
        yield prefix
