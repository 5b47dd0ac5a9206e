from __future__ import annotations

from services.processor.deadletters import Source
from services.processor.pipeline import partition_groups


def batch(partitions: list[int]) -> list[Source]:
    return [Source("t", p, offset, b"k", b"v") for offset, p in enumerate(partitions)]


def test_one_group_keeps_the_batch_as_it_is() -> None:
    assert partition_groups(batch([3, 1, 3, 2]), 1) == [[0, 1, 2, 3]]


def test_whole_partitions_in_offset_order_balanced_by_size() -> None:
    sources = batch([0, 1, 0, 2, 0, 1, 2, 2, 2])
    groups = partition_groups(sources, 2)
    assert len(groups) == 2
    assert sorted(i for g in groups for i in g) == list(range(len(sources)))
    for group in groups:
        partitions = {sources[i].partition for i in group}
        # a partition never spans two groups, and keeps its order inside one
        for p in partitions:
            mine = [i for i in group if sources[i].partition == p]
            assert mine == [i for i, s in enumerate(sources) if s.partition == p]
    assert sorted(len(g) for g in groups) == [4, 5]


def test_never_more_groups_than_partitions() -> None:
    assert partition_groups(batch([5, 5, 5]), 4) == [[0, 1, 2]]
    assert partition_groups([], 2) == []


def test_a_group_smaller_than_min_group_is_not_split_off() -> None:
    # Nine changes over three partitions, at least five a transaction: one transaction.
    assert partition_groups(batch([0, 1, 0, 2, 0, 1, 2, 2, 2]), 2, min_group=5) == [list(range(9))]
    # Ten: two of five each.
    assert sorted(len(g) for g in partition_groups(batch([0, 1] * 5), 2, min_group=5)) == [5, 5]
