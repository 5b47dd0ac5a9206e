"""Kafka clients built one way everywhere, so durability settings cannot drift apart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiokafka.errors
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, UnknownTopicOrPartitionError
from prometheus_client import Gauge

from schemas.errors import RetryLater
from schemas.topics import Topic

log = logging.getLogger(__name__)


class KafkaUnavailableError(RetryLater):
    """The broker could not be reached or did not acknowledge in time."""


@dataclass(frozen=True)
class TopicConfig:
    name: str
    partitions: int
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()
    # At least this; see raise_message_limits for topics that already exist.
    max_message_bytes: int | None = None

    @classmethod
    def of(
        cls, topic: Topic, name: str, *, partitions: int | None = None, replication_factor: int = 1
    ) -> TopicConfig:
        """``topic`` as created under ``name`` (prefixed in tests and benchmarks)."""
        return cls(
            name,
            topic.partitions if partitions is None else partitions,
            replication_factor,
            max_message_bytes=topic.max_message_bytes,
        )

    def topic_configs(self) -> dict[str, str]:
        configs = dict(self.config)
        if self.max_message_bytes is not None:
            configs[MAX_MESSAGE_BYTES] = str(self.max_message_bytes)
        return configs


MAX_MESSAGE_BYTES = "max.message.bytes"
# DescribeConfigs' config_source of a value set on the topic itself (not a default).
_DYNAMIC_TOPIC_CONFIG = 1


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


# The broker no longer knows the producer's id or sequence (it restarted, or expired the
# producer's state): an idempotent producer stays refused after it, for ever (aiokafka
# #1017). A new producer gets a new id; what it re-sends is deduplicated downstream.
LOST_PRODUCER_STATE: tuple[type[BaseException], ...] = (
    aiokafka.errors.OutOfOrderSequenceNumber,
    aiokafka.errors.UnknownProducerId,
    aiokafka.errors.InvalidProducerEpoch,
    aiokafka.errors.InvalidProducerIdMapping,
    aiokafka.errors.ProducerFenced,
)


class RenewableProducer:
    """An idempotent producer that is replaced when the broker lost its state.

    Measured: Kafka restarted mid-load, the outbox relay's producer answered
    OutOfOrderSequenceNumber to every retry for minutes and 212 committed changes waited
    unpublished. ``send_all`` replaces the producer on such an error, then raises it, so
    the caller's retry (it is transient) sends again through the new one.
    """

    def __init__(self, make: Callable[[], AIOKafkaProducer]) -> None:
        self._make = make
        self.producer = make()
        self._lock = asyncio.Lock()
        self.renewals = 0

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def send_all(self, topic: str, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        """Send ``(key, value)`` records and wait until every one is acknowledged."""
        producer = self.producer
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
        except LOST_PRODUCER_STATE as exc:
            await self.renew(producer, exc)
            raise

    async def renew(self, failed: AIOKafkaProducer, exc: BaseException) -> None:
        """Replace ``failed`` with a started new producer, once however many callers saw
        it fail."""
        async with self._lock:
            if self.producer is not failed:
                return  # another caller renewed it already
            log.warning("kafka producer lost its broker state (%r): starting a new one", exc)
            fresh = self._make()
            try:
                await fresh.start()
            except BaseException:
                # Kafka still away, or the caller's deadline: nothing half-started is kept.
                with contextlib.suppress(Exception):
                    await fresh.stop()
                raise
            self.producer = fresh
            self.renewals += 1
        with contextlib.suppress(Exception):
            await failed.stop()


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
            topic_configs=t.topic_configs(),
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
    await _until_described(admin, created)
    return created


# KRaft answers CreateTopics once the controller has the topic; the broker learns it from
# the metadata log a moment later and until then describes it as unknown (10 topics made
# at once and described at once: unknown 100 of 100 times here). Whoever made a topic
# reads its configs next (raise_message_limits, record_lifetimes), so creation ends only
# once the broker describes it. Measured: well under a second on one local broker.
_VISIBLE_TIMEOUT_SECONDS = 10.0


async def _until_described(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    pending = set(names)
    deadline = asyncio.get_running_loop().time() + _VISIBLE_TIMEOUT_SECONDS
    while pending:
        try:
            responses = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(pending)]
            )
        except KafkaError as exc:
            raise KafkaUnavailableError(f"cannot describe topic configs: {exc}") from None
        for response in responses:
            for code, _message, _type, name, entries in response.resources:
                if code == 0 and entries:
                    pending.discard(name)
        if not pending:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise KafkaUnavailableError(
                f"topics created but not described by the broker after "
                f"{_VISIBLE_TIMEOUT_SECONDS:.0f} s: {', '.join(sorted(pending))}"
            )
        await asyncio.sleep(0.05)


async def raise_message_limits(
    admin: AIOKafkaAdminClient, topics: Iterable[TopicConfig]
) -> list[tuple[str, int, int]]:
    """Raise max.message.bytes of existing topics to at least what each one needs.

    A topic created before its limit was declared (or by hand) keeps the broker's 1 MiB,
    and a larger record would be refused for ever. A larger limit an operator chose is
    kept, and so are the topic's other settings: AlterConfigs replaces a topic's whole
    set, so the values set on the topic are read first and sent back with ours.
    Returns (topic, old limit, new limit) for each topic raised.
    """
    wanted = {t.name: t.max_message_bytes for t in topics if t.max_message_bytes is not None}
    if not wanted:
        return []
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted]
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot describe topic configs: {exc}") from None
    raised = []
    for response in responses:
        for code, message, _type, name, entries in response.resources:
            if code != 0:
                raise KafkaUnavailableError(f"cannot describe topic {name}: error {code} {message}")
            values = {entry[0]: entry[1] for entry in entries}
            current = int(values[MAX_MESSAGE_BYTES])
            if current >= wanted[name]:
                continue
            own = {entry[0]: entry[1] for entry in entries if entry[3] == _DYNAMIC_TOPIC_CONFIG}
            own[MAX_MESSAGE_BYTES] = str(wanted[name])
            await _alter_topic_configs(admin, name, own)
            raised.append((name, current, wanted[name]))
    return raised


async def record_lifetimes(
    admin: AIOKafkaAdminClient, names: Iterable[str]
) -> dict[str, float | None]:
    """The longest a record may stay readable in each topic, in seconds; None for ever.

    Kafka deletes whole segments, and only once the newest record of a segment is older
    than ``retention.ms``; a segment is closed after ``segment.ms`` at the latest. So a
    record can outlive ``retention.ms`` by up to ``segment.ms`` (both default to 7 days:
    up to 14 days). ``retention.ms`` -1 or a compacted topic keep records for ever.
    """
    try:
        responses = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot describe topic configs: {exc}") from None
    lifetimes: dict[str, float | None] = {}
    for response in responses:
        for code, message, _type, name, entries in response.resources:
            if code == UnknownTopicOrPartitionError.errno:
                continue  # not created yet: it holds nothing to outlive anything
            if code != 0:
                raise KafkaUnavailableError(f"cannot describe topic {name}: error {code} {message}")
            values = {entry[0]: entry[1] for entry in entries}
            retention_ms = int(values.get("retention.ms") or -1)
            compacted = "compact" in (values.get("cleanup.policy") or "")
            if retention_ms < 0 or compacted:
                lifetimes[name] = None
            else:
                segment_ms = int(values.get("segment.ms") or 0)
                lifetimes[name] = (retention_ms + segment_ms) / 1000
    return lifetimes


async def _alter_topic_configs(
    admin: AIOKafkaAdminClient, name: str, configs: dict[str, str]
) -> None:
    try:
        responses = await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)]
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(f"cannot alter topic {name}: {exc}") from None
    for response in responses:
        for code, message, *_ in response.resources:
            if code != 0:
                raise KafkaUnavailableError(f"cannot alter topic {name}: error {code} {message}")


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


CONSUMER_LAG = Gauge(
    "crmsync_kafka_consumer_lag",
    "Messages not yet consumed (end offset minus committed offset), per partition.",
    ["group", "topic", "partition"],
)
# Lag is a trend, not an alarm bell by itself: every 10 s is plenty and costs two requests.
LAG_INTERVAL_SECONDS = 10.0


async def consumer_lag(
    admin: AIOKafkaAdminClient, offsets: AIOKafkaConsumer, group: str, topics: Iterable[str]
) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition) of ``group`` on ``topics``; a partition the group never
    committed counts from the start of the log, as its consumer (earliest) would."""
    described = await admin.describe_topics(sorted(set(topics)))
    partitions = [
        TopicPartition(d["topic"], p["partition"])
        for d in described
        if not d.get("error_code")
        for p in d["partitions"]
    ]
    committed = await admin.list_consumer_group_offsets(group)
    if not partitions:
        return {}
    ends = await offsets.end_offsets(partitions)
    begins = await offsets.beginning_offsets(partitions)
    lag: dict[tuple[str, int], int] = {}
    for tp in partitions:
        meta = committed.get(tp)
        done = meta.offset if meta is not None and meta.offset >= 0 else begins[tp]
        lag[(tp.topic, tp.partition)] = max(0, ends[tp] - done)
    return lag


async def report_consumer_lag(
    bootstrap_servers: str, group: str, topics: Iterable[str], log: logging.Logger
) -> None:
    """Keep the lag gauge of ``group`` current until cancelled; Kafka trouble is logged
    and retried, never fatal for the service reporting."""
    names = list(topics)
    admin = make_admin(bootstrap_servers)
    # A group-less consumer only asks for offsets; it never joins or commits anything.
    offsets = make_consumer(bootstrap_servers, group_id=None)
    started = False
    try:
        while True:
            try:
                if not started:
                    await admin.start()
                    await offsets.start()
                    started = True
                for (topic, partition), value in (
                    await consumer_lag(admin, offsets, group, names)
                ).items():
                    CONSUMER_LAG.labels(group, topic, str(partition)).set(value)
            except (KafkaError, OSError) as exc:
                log.warning("consumer lag of %s unavailable: %s", group, exc)
            await asyncio.sleep(LAG_INTERVAL_SECONDS)
    finally:
        if started:
            await offsets.stop()
            await admin.close()
