"""Ingest's partitioner picks the partition aiokafka's default (Java's murmur2) picks, for
every key, on the first call and from its cache: per-key order depends on it."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from services.ingest.partitioner import CachedMurmur2Partitioner

DEFAULT = DefaultPartitioner()


@pytest.mark.parametrize(
    ("key", "partition"),
    # Partitions of 1,000 that Kafka's Java client picks, as aiokafka's tests record them.
    [(b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742)],
)
def test_matches_the_java_client(key: bytes, partition: int) -> None:
    partitions = list(range(1000))
    partitioner = CachedMurmur2Partitioner()
    for _ in range(2):  # computed, then remembered
        assert partitioner(key, partitions, partitions) == partition


@given(key=st.binary(max_size=256), count=st.integers(min_value=1, max_value=256))
def test_matches_aiokafkas_default_for_any_key(key: bytes, count: int) -> None:
    partitions = list(range(count))
    partitioner = CachedMurmur2Partitioner()
    expected = DEFAULT(key, partitions, partitions)
    assert partitioner(key, partitions, partitions) == expected
    assert partitioner(key, partitions, partitions) == expected
    assert partitioner(bytearray(key), partitions, partitions) == expected


def test_matches_aiokafkas_default_for_connection_and_entity_keys() -> None:
    """The keys ingest sends: connection ids, and tenant:entity:id for internal changes."""
    partitioner = CachedMurmur2Partitioner()
    keys = [str(uuid.uuid4()).encode() for _ in range(2000)]
    keys += [f"{uuid.uuid4()}:customer:cust-{i}".encode() for i in range(2000)]
    for count in (1, 3, 12, 50):
        partitions = list(range(count))
        for key in keys + keys:
            assert partitioner(key, partitions, partitions) == DEFAULT(key, partitions, partitions)


def test_a_key_keeps_its_partition_when_others_are_unavailable() -> None:
    """Like the default: the key decides among all partitions, not the available ones."""
    partitions = list(range(12))
    key = str(uuid.uuid4()).encode()
    chosen = DEFAULT(key, partitions, partitions)
    others = [p for p in partitions if p != chosen]
    assert CachedMurmur2Partitioner()(key, partitions, others) == chosen


def test_no_key_goes_to_an_available_partition() -> None:
    partitioner = CachedMurmur2Partitioner()
    assert partitioner(None, list(range(12)), [7]) == 7
    assert partitioner(None, list(range(12)), []) in range(12)
