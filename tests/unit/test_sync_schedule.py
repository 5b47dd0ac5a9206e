"""When a connection is due for reconciliation, and the dedup key of a listed record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.runtime import ConnectionInfo
from connectors.spec import RemoteRecord
from crmsync.application.sync.jobs import owner_id, owner_is_gone
from crmsync.application.sync.runner import change_id
from crmsync.application.sync.schedule import ReconcilePolicy, due_run
from tests.unit.connections import connection_info

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
POLICY = ReconcilePolicy(interval_seconds=900, full_interval_seconds=86_400, overlap_seconds=300)


def info(provider: str = "ascora", /, **settings: Any) -> ConnectionInfo:
    return connection_info(
        provider, settings, base_url="http://127.0.0.1:1", credentials_encrypted="x", updated_at=T0
    )


def due(
    conn: ConnectionInfo,
    *,
    now: datetime,
    last: datetime | None = None,
    last_full: datetime | None = None,
    tried: datetime | None = None,
) -> Any:
    return due_run(
        conn,
        created_at=T0,
        last_reconciled_at=last,
        last_full_at=last_full,
        now=now,
        policy=POLICY,
        last_tried_at=tried,
    )


def test_a_new_connection_is_not_listed_until_an_interval_has_passed() -> None:
    assert due(info(), now=T0 + timedelta(seconds=899)) is None


def test_modified_since_starts_before_the_last_run_by_the_overlap() -> None:
    last = T0 + timedelta(hours=1)
    kind, since = due(info(), now=last + timedelta(seconds=900), last=last)
    assert kind == "reconcile"
    assert since == last - timedelta(seconds=300)


def test_the_first_poll_covers_everything_since_the_connection_was_made() -> None:
    kind, since = due(info(), now=T0 + timedelta(seconds=901))
    assert (kind, since) == ("reconcile", T0 - timedelta(seconds=300))


def test_a_full_comparison_wins_when_both_are_due() -> None:
    now = T0 + timedelta(days=2)
    assert due(info(), now=now, last=now - timedelta(hours=1)) == ("full_reconcile", None)
    assert due(info(), now=now, last=now, last_full=now - timedelta(hours=1)) is None


def test_connection_settings_override_or_switch_off_each_kind() -> None:
    now = T0 + timedelta(days=2)
    off = info(reconcile_interval_seconds=0, full_reconcile_interval_seconds=0)
    assert due(off, now=now) is None
    fast = info(reconcile_interval_seconds=5, full_reconcile_interval_seconds=0)
    assert due(fast, now=T0 + timedelta(seconds=6), last=T0)[0] == "reconcile"
    assert due(fast, now=T0 + timedelta(seconds=4), last=T0) is None
    # Nonsense values fall back to the service default rather than polling in a loop.
    odd = info(reconcile_interval_seconds=-1, full_reconcile_interval_seconds="often")
    assert due(odd, now=T0 + timedelta(seconds=60), last=T0, last_full=T0) is None


def test_a_failing_connection_is_retried_once_an_interval_from_its_last_success() -> None:
    last_ok = T0 + timedelta(hours=1)
    failed = last_ok + timedelta(seconds=900)  # queued (and failed) when it was due
    conn = info(full_reconcile_interval_seconds=0)
    tick = failed + timedelta(seconds=10)
    assert due(conn, now=tick, last=last_ok, tried=failed) is None
    later = failed + timedelta(seconds=900)
    kind, since = due(conn, now=later, last=last_ok, tried=failed)
    # The retry still starts from the last success: the failed window is not skipped.
    assert (kind, since) == ("reconcile", last_ok - timedelta(seconds=300))


def record(**changes: Any) -> RemoteRecord:
    base: dict[str, Any] = {
        "entity_type": "customer",
        "external_id": "c1",
        "updated_at": T0,
        "data": {"name": "Harbour Plumbing"},
    }
    base.update(changes)
    return RemoteRecord(**base)


def test_the_same_state_has_the_same_change_id_and_any_other_state_another() -> None:
    a = change_id("customer", record())
    assert a == change_id("customer", record())
    assert a.startswith("sync:")
    others = {
        change_id("customer", record(data={"name": "Harbour Plumbing Pty"})),
        change_id("customer", record(updated_at=T0 + timedelta(seconds=1))),
        change_id("customer", record(deleted=True)),
        change_id("customer", record(refs={"customer_id": "x"})),
        change_id("customer", record(external_id="c2")),
        change_id("job", record()),
    }
    assert a not in others
    assert len(others) == 6


def test_an_owner_on_this_host_is_gone_once_its_process_is() -> None:
    mine = owner_id("cli")
    assert not owner_is_gone(mine)
    role, host, _pid, nonce = mine.split(":")
    assert owner_is_gone(f"{role}:{host}:999999999:{nonce}")
    # Another host's owner is never presumed dead: only its lease running out frees it.
    assert not owner_is_gone(f"{role}:elsewhere.example:999999999:{nonce}")
    assert owner_is_gone(None)


def test_a_provider_without_webhooks_is_polled_at_its_own_interval() -> None:
    """MYOB sends no webhooks: its connections are due every minute (ApiSpec.poll_seconds),
    not at the 15 minutes that back up the webhook providers."""
    myob = info("myob", myob_company_file_id="cf-1")
    assert due(myob, now=T0 + timedelta(seconds=59)) is None
    kind, since = due(myob, now=T0 + timedelta(seconds=60))
    assert kind == "reconcile"
    assert since == T0 - timedelta(seconds=300)
    # A webhook provider keeps the service's interval.
    assert due(info(), now=T0 + timedelta(seconds=60)) is None


def test_a_connections_own_interval_still_wins_over_the_providers_poll() -> None:
    myob = info("myob", myob_company_file_id="cf-1", reconcile_interval_seconds=300)
    assert due(myob, now=T0 + timedelta(seconds=299)) is None
    assert due(myob, now=T0 + timedelta(seconds=300)) is not None
