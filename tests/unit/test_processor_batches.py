"""When a batch may be handed over short: only when Kafka holds nothing more for it."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from services.processor.batches import _behind


@dataclass(frozen=True)
class Tp:
    topic: str
    partition: int


class Consumer:
    def __init__(self, highwaters: dict[Tp, int]) -> None:
        self.highwaters = highwaters

    def highwater(self, tp: Tp) -> int:
        if tp not in self.highwaters:
            raise AssertionError("partition is not assigned to this consumer")  # as aiokafka
        return self.highwaters[tp]


TP = Tp("changes.internal", 3)


def stream(consumer: Any) -> Any:
    return SimpleNamespace(app=SimpleNamespace(consumer=consumer))


def event(offset: int, tp: Tp = TP) -> Any:
    return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))


def test_a_partition_with_records_past_the_last_event_is_a_backlog() -> None:
    # Highwater is the offset the next record will get: 42 means 40 and 41 are waiting.
    assert _behind(stream(Consumer({TP: 42})), event(39))


def test_the_last_record_of_its_partition_is_no_backlog() -> None:
    assert not _behind(stream(Consumer({TP: 40})), event(39))


def test_an_unknown_highwater_is_no_backlog() -> None:
    assert not _behind(stream(Consumer({})), event(39))
    assert not _behind(stream(Consumer({TP: None})), event(39))  # type: ignore[dict-item]
    assert not _behind(SimpleNamespace(app=SimpleNamespace()), event(39))
    assert not _behind(stream(Consumer({TP: 42})), SimpleNamespace())
