"""How an agent handles one batch so that nothing is acknowledged unfinished and nothing
stops the partition.

1. The whole batch, with transient errors (PostgreSQL or Kafka away) retried in place
   for as long as they last: the events were acknowledged to a provider, so waiting is
   the only right answer to an outage.
2. Any other error is retried a few times (it may still be an outage in disguise), then
   the batch is taken apart and each event handled alone: the events that go through
   go through, and the one that still fails becomes a dead letter (``internal_error``,
   with the exception) holding its original bytes, redrivable after a fix.
3. If even the dead letter cannot be written, the agent keeps trying with backoff: a
   partition stuck on a bug, visible in ``/readyz`` and ``crmsync_task_failing``, is
   recoverable; an acknowledged event thrown away is not.

The agent returns from ``run`` only when every event of the batch is accounted for;
``take_batches`` acknowledges the batch only then.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from crmsync.common.faults import Backoff, describe
from crmsync.common.supervise import TaskHealth
from services.processor import metrics
from services.processor.deadletters import Source, dead_letter
from services.processor.failures import Action, action_for, unexpected_detail

log = logging.getLogger(__name__)
T = TypeVar("T")

# Tries of a batch that fails with an error that is not transient before it is taken
# apart: one more than a connection-level error needs to surface as a transient one on
# the next try (a broken connection is replaced when it goes back to the pool).
UNEXPECTED_ATTEMPTS = 3


class BatchGuard:
    def __init__(
        self,
        pool: asyncpg.Pool,
        health: TaskHealth,
        *,
        topic: str,
        backoff: Callable[[], Backoff] = Backoff,
        unexpected_attempts: int = UNEXPECTED_ATTEMPTS,
    ) -> None:
        self.pool = pool
        self.health = health
        # The topic's unprefixed name, as the events metric labels it.
        self.topic = topic
        self.backoff = backoff
        self.unexpected_attempts = unexpected_attempts

    async def run(
        self, sources: Sequence[Source], handle: Callable[[Sequence[Source]], Awaitable[Any]]
    ) -> None:
        """Handle ``sources`` completely: applied, or dead-lettered one by one."""
        try:
            await self._until_done(lambda: handle(sources))
            return
        except Exception as exc:
            if len(sources) == 1:
                await self._park(sources[0], exc)
                return
            log.exception(
                "%s: a batch of %d failed; handling its events one by one",
                self.health.name,
                len(sources),
            )
        for source in sources:
            try:
                await self._until_done(_alone(handle, source))
            except Exception as exc:  # noqa: BLE001 - this event is the culprit
                await self._park(source, exc)
        self.health.succeeded()

    async def _until_done(self, operation: Callable[[], Awaitable[T]]) -> T:
        backoff = self.backoff()
        unexpected = 0
        while True:
            try:
                result = await operation()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.health.failed(exc)
                transient = action_for(exc) is Action.RETRY
                metrics.BATCH_RETRIES.labels(
                    self.health.name, "transient" if transient else "unexpected"
                ).inc()
                if not transient:
                    unexpected += 1
                    if unexpected >= self.unexpected_attempts:
                        raise
                delay = backoff.next_delay()
                log.warning("%s: %s; retrying in %.1fs", self.health.name, describe(exc), delay)
                await asyncio.sleep(delay)
                continue
            self.health.succeeded()
            return result

    async def _park(self, source: Source, exc: BaseException) -> None:
        log.error(
            "%s: event at %s[%d]@%d failed %d times, parking it: %s",
            self.health.name,
            source.topic,
            source.partition,
            source.offset,
            self.unexpected_attempts,
            describe(exc),
            exc_info=exc,
        )
        tenant_id, connection_id = named_owner(source.value)
        reason, detail = unexpected_detail(exc)
        backoff = self.backoff()
        while True:
            try:
                async with self.pool.acquire() as conn:
                    await dead_letter(
                        conn,
                        source,
                        stage="processor",
                        reason=reason,
                        detail=detail,
                        tenant_id=tenant_id,
                        connection_id=connection_id,
                    )
                metrics.EVENTS.labels(self.topic, "dead_lettered").inc()
                return
            except asyncio.CancelledError:
                raise
            except Exception as park_exc:  # noqa: BLE001 - keep trying: never drop it
                self.health.failed(park_exc)
                delay = backoff.next_delay()
                log.error(
                    "%s: cannot park the event (%s); retrying in %.1fs",
                    self.health.name,
                    describe(park_exc),
                    delay,
                )
                await asyncio.sleep(delay)


def _alone(
    handle: Callable[[Sequence[Source]], Awaitable[Any]], source: Source
) -> Callable[[], Awaitable[Any]]:
    return lambda: handle([source])


def named_owner(value: bytes) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """The tenant and connection an envelope or change names, when it can be read at all:
    its operators then find the dead letter under their tenant."""
    try:
        doc = json.loads(value)
        return _uuid(doc.get("tenant_id")), _uuid(doc.get("connection_id"))
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None, None


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value is not None else None
    except ValueError:
        return None
