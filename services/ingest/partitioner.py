"""The producer's partitioner: aiokafka's default (Java's murmur2), its hashes remembered.

aiokafka hashes every key in pure Python (about 20 µs for a connection id, a few per cent
of a webhook's CPU at full load), and ingest sends the same few keys over and over: a
webhook is keyed by its connection. The partition of a key must never change (per-key
order rests on it), so this computes exactly what ``DefaultPartitioner`` does, with
aiokafka's own ``murmur2``, and only remembers the hash of recently seen keys.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence

from aiokafka.partitioner import murmur2

# Webhooks: one key per connection. /v1/changes keys by entity, which is unbounded, so the
# memory is bounded: 16,384 keys of ~40-80 bytes is about 2 MB at most.
HASH_CACHE_SIZE = 16_384

_hash = functools.lru_cache(maxsize=HASH_CACHE_SIZE)(murmur2)


def _murmur2_positive(key: bytes) -> int:
    # bytes only: a bytearray key would be unhashable, and memoryview compares by content
    # but could change under us; both fall through to the uncached hash.
    return int((_hash(key) if type(key) is bytes else murmur2(key)) & 0x7FFFFFFF)


class CachedMurmur2Partitioner:
    """Same partition as ``aiokafka.partitioner.DefaultPartitioner`` for every key."""

    def __call__(
        self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
    ) -> int:
        if key is None:
            # As the default does: any available partition, else any partition.
            return random.choice(available or all_partitions)  # noqa: S311 - not security
        return all_partitions[_murmur2_positive(key) % len(all_partitions)]
