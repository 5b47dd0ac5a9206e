"""The rate meter's decisions (crmsync.common.quotas.RateMeter): pure, time passed in."""

from __future__ import annotations

import uuid

from crmsync.common.quotas import Limits, RateMeter, WindowUsage, window_start

T = uuid.uuid4()
# 12:00:10 UTC on some day: 50 s left in its minute.
NOW = 1_800_000_000.0 - 1_800_000_000.0 % 60 + 10


def meter(limit: int | None) -> RateMeter:
    return RateMeter(limits={T: Limits(events_per_minute=limit)})


def test_refuses_a_call_that_would_pass_the_rate_whole_with_the_seconds_left() -> None:
    m = meter(5)
    assert m.admit(T, 3, NOW, refusable=True).admitted
    refused = m.admit(T, 3, NOW + 1, refusable=True)
    assert not refused.admitted
    assert refused.retry_after == 49
    assert refused.limit == 5
    assert m.admit(T, 2, NOW + 2, refusable=True).admitted
    assert m.used(T, NOW + 2) == 5


def test_admits_webhooks_past_the_rate_and_counts_only_the_excess_as_over() -> None:
    m = meter(2)
    results = [m.admit(T, 1, NOW, refusable=False) for _ in range(4)]
    assert all(r.admitted for r in results)
    assert [r.over for r in results] == [0, 0, 1, 1]
    pending = m.take_pending()
    assert pending == {(T, window_start(NOW)): WindowUsage(events=4, accepted_over=2)}


def test_a_new_minute_starts_from_nothing() -> None:
    m = meter(1)
    assert m.admit(T, 1, NOW, refusable=True).admitted
    assert not m.admit(T, 1, NOW, refusable=True).admitted
    assert m.admit(T, 1, NOW + 60, refusable=True).admitted


def test_other_processes_counts_take_their_share_of_the_rate() -> None:
    m = meter(10)
    assert m.admit(T, 4, NOW, refusable=True).admitted
    m.take_pending()  # written: the database's total now includes these 4
    m.observe_totals(window_start(NOW), {T: 4 + 5})  # and 5 from another process
    assert m.used(T, NOW) == 9
    assert not m.admit(T, 2, NOW, refusable=True).admitted
    assert m.admit(T, 1, NOW, refusable=True).admitted


def test_released_events_do_not_count_and_a_failed_write_is_kept() -> None:
    m = meter(2)
    assert m.admit(T, 2, NOW, refusable=True).admitted
    m.release(T, 2, NOW)
    assert m.admit(T, 2, NOW, refusable=True).admitted
    pending = m.take_pending()
    assert pending[(T, window_start(NOW))].events == 2
    m.restore(pending)
    assert m.take_pending()[(T, window_start(NOW))].events == 2


def test_no_limit_admits_everything() -> None:
    m = meter(None)
    assert all(m.admit(T, 1000, NOW, refusable=True).admitted for _ in range(10))


def test_counts_of_a_minute_that_ended_before_the_write_are_still_written() -> None:
    m = meter(None)
    m.admit(T, 2, NOW, refusable=True)
    m.admit(T, 3, NOW + 60, refusable=True)
    assert m.take_pending() == {
        (T, window_start(NOW)): WindowUsage(events=2),
        (T, window_start(NOW + 60)): WindowUsage(events=3),
    }
    assert m.take_pending() == {}
