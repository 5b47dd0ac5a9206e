"""Producing back onto the pipeline's topics (redrive, replay): a short-lived durable
producer per operation. Operators redrive and replay rarely; a producer held open for
them would be one more thing to keep healthy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from aiokafka.errors import KafkaError

from crmsync.application.context import KafkaTarget
from crmsync.application.errors import UnavailableError
from crmsync.common.kafka import make_producer

# Longest wait for the broker: to connect, and for the acknowledgements of one batch.
KAFKA_TIMEOUT_SECONDS = 30.0

Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]] | None]
Send = Callable[[Sequence[Record]], Awaitable[None]]


@asynccontextmanager
async def producer(target: KafkaTarget) -> AsyncIterator[Send]:
    """A ``send(records)`` that returns once Kafka acknowledged every record (acks=all)."""
    client = make_producer(target.bootstrap_servers)
    try:
        try:
            await asyncio.wait_for(client.start(), KAFKA_TIMEOUT_SECONDS)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise UnavailableError(f"Kafka unreachable: {exc}") from None

        async def send(records: Sequence[Record]) -> None:
            try:
                futures = [
                    await client.send(topic, value, key=key, headers=headers)
                    for topic, key, value, headers in records
                ]
                await asyncio.wait_for(asyncio.gather(*futures), KAFKA_TIMEOUT_SECONDS)
            except (KafkaError, OSError, TimeoutError) as exc:
                raise UnavailableError(f"Kafka did not take the records: {exc}") from None

        yield send
    finally:
        await client.stop()


async def produce(target: KafkaTarget, records: Sequence[Record]) -> None:
    """Send (topic, key, value, headers) records; return once all are acknowledged."""
    if not records:
        return
    async with producer(target) as send:
        await send(records)
