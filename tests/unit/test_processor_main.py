"""The processor's composition root keeps the garbage collector off its start-up heap."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from services.processor.__main__ import GC_YOUNG_THRESHOLD, quiet_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_start_up_objects_leave_the_collected_generations() -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0

    quiet_collector()

    # Every object alive at start-up (this test module included) is frozen, none left to walk.
    assert gc.get_freeze_count() > 1000
    assert gc.get_count()[2] == 0


@pytest.mark.usefixtures("restored_collector")
def test_young_generation_is_collected_less_often_and_the_older_ones_as_before() -> None:
    _, older, oldest = gc.get_threshold()

    quiet_collector()

    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, older, oldest)
