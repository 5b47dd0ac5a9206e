"""Our partitioners pick the partition aiokafka's default (Java's murmur2) picks, for every
key, on the first call and from the cache: per-key order on every topic depends on it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.partitioner import CachedMurmur2Partitioner, Murmur2Partitioner, murmur2

Partition = Callable[[bytes | None, Sequence[int], Sequence[int]], int]
DEFAULT = DefaultPartitioner()
PARTITIONERS: list[Partition] = [Murmur2Partitioner(), CachedMurmur2Partitioner()]
ids = ["plain", "cached"]


@pytest.mark.parametrize("partitioner", PARTITIONERS, ids=ids)
@pytest.mark.parametrize(
    ("key", "partition"),
    # Partitions of 1,000 that Kafka's Java client picks, as aiokafka's tests record them.
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_matches_the_java_client(partitioner: Partition, key: bytes, partition: int) -> None:
    partitions = list(range(1000))
    for _ in range(2):  # computed, then (cached) remembered
        assert partitioner(key, partitions, partitions) == partition


@given(key=st.binary(max_size=300), count=st.integers(min_value=1, max_value=256))
def test_matches_aiokafkas_default_for_any_key(key: bytes, count: int) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)
    partitions = list(range(count))
    expected = DEFAULT(key, partitions, partitions)
    for partitioner in PARTITIONERS:
        assert partitioner(key, partitions, partitions) == expected
        assert partitioner(key, partitions, partitions) == expected
        assert partitioner(bytearray(key), partitions, partitions) == expected  # type: ignore[arg-type]


def test_matches_aiokafkas_default_for_the_keys_we_send() -> None:
    """Connection ids (webhooks), tenant:entity:id (changes), and records.changed keys."""
    keys = [str(uuid.uuid4()).encode() for _ in range(1000)]
    keys += [f"{uuid.uuid4()}:customer:cust-{i}".encode() for i in range(1000)]
    keys += [f"{uuid.uuid4()}:customer:{uuid.uuid4()}".encode() for _ in range(1000)]
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for key in keys + keys:
            expected = DEFAULT(key, partitions, partitions)
            assert all(p(key, partitions, partitions) == expected for p in PARTITIONERS)


@pytest.mark.parametrize("partitioner", PARTITIONERS, ids=ids)
def test_a_key_keeps_its_partition_when_others_are_unavailable(partitioner: Partition) -> None:
    """Like the default: the key decides among all partitions, not the available ones."""
    partitions = list(range(12))
    key = str(uuid.uuid4()).encode()
    chosen = DEFAULT(key, partitions, partitions)
    others = [p for p in partitions if p != chosen]
    assert partitioner(key, partitions, others) == chosen


@pytest.mark.parametrize("partitioner", PARTITIONERS, ids=ids)
def test_no_key_goes_to_an_available_partition(partitioner: Partition) -> None:
    assert partitioner(None, list(range(12)), [7]) == 7
    assert partitioner(None, list(range(12)), []) in range(12)
