"""Kafka clients built one way everywhere, so durability settings cannot drift apart."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError


class KafkaUnavailableError(Exception):
    """The broker could not be reached or did not acknowledge in time."""


@dataclass(frozen=True)
class TopicConfig:
    name: str
    partitions: int
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()


def make_producer(bootstrap_servers: str, **overrides: Any) -> AIOKafkaProducer:
    """A durable producer: every acknowledged record is on all in-sync replicas.

    ``enable_idempotence`` keeps broker-side retries from duplicating or reordering within
    a partition; both are what invariant 1 (no accepted event is lost) stands on.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        # A few ms of batching buys much throughput under load and costs little latency.
        "linger_ms": 2,
        "request_timeout_ms": 10_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    bootstrap_servers: str, *topics: str, group_id: str | None, **overrides: Any
) -> AIOKafkaConsumer:
    """A consumer that commits only what the caller says it finished."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


def make_admin(bootstrap_servers: str, **overrides: Any) -> AIOKafkaAdminClient:
    options: dict[str, Any] = {"bootstrap_servers": bootstrap_servers, "request_timeout_ms": 10_000}
    options.update(overrides)
    return AIOKafkaAdminClient(**options)


async def ensure_topics(admin: AIOKafkaAdminClient, topics: Iterable[TopicConfig]) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    wanted = {t.name: t for t in topics}
    try:
        existing = set(await admin.list_topics())
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot list topics: {exc}") from None
    missing = [t for name, t in wanted.items() if name not in existing]
    if not missing:
        return []
    new = [
        NewTopic(
            name=t.name,
            num_partitions=t.partitions,
            replication_factor=t.replication_factor,
            topic_configs=dict(t.config),
        )
        for t in missing
    ]
    try:
        response = await admin.create_topics(new)
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot create topics: {exc}") from None
    created = []
    # The broker answers per topic; an error code there is not raised by aiokafka.
    for name, code, *rest in response.topic_errors:
        if code == 0:
            created.append(name)
        elif code != TopicAlreadyExistsError.errno:
            # Already existing means another process won the race: same outcome.
            message = rest[0] if rest else ""
            raise KafkaUnavailableError(f"cannot create topic {name}: error {code} {message}")
    return created


async def check_topics(client: AIOKafkaClient, topics: Iterable[str]) -> None:
    """Readiness: the broker answers metadata and every topic we need exists."""
    try:
        metadata = await client.fetch_all_metadata()
    except KafkaError as exc:
        raise KafkaUnavailableError(f"broker metadata unavailable: {exc}") from None
    missing = sorted(set(topics) - metadata.topics())
    if missing:
        raise KafkaUnavailableError(
            f"missing topics {', '.join(missing)} (create them with: crmsync topics ensure)"
        )


async def start_with_retry(
    start: Callable[[], Awaitable[None]],
    what: str,
    *,
    within_seconds: float,
    log: logging.Logger,
) -> None:
    """Start a client, retrying with capped backoff while the broker comes up.

    Services and the broker often start together (compose, a reboot); failing on the first
    refused connection would turn an ordinary start-up race into a crash loop.
    """
    deadline = asyncio.get_running_loop().time() + within_seconds
    delay = 0.2
    while True:
        try:
            await start()
            return
        except KafkaError as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise KafkaUnavailableError(
                    f"{what}: Kafka not reachable after {within_seconds:g}s: {exc}"
                ) from None
            log.warning("%s: Kafka not reachable yet, retrying in %.1fs: %s", what, delay, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
