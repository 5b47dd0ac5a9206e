from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.processor.merge import FieldMeta, Policy, RecordState, Update, merge

T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
EMPTY = RecordState({}, {})


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_first_update_sets_every_field() -> None:
    result = merge(EMPTY, Update("crm-a", at(0), {"name": "Acme", "email": "a@acme.test"}))
    assert result.state.values == {"name": "Acme", "email": "a@acme.test"}
    assert result.changed == {"name", "email"}
    assert result.state.meta["name"] == FieldMeta(at(0), "crm-a")


def test_two_sources_editing_different_fields_both_keep_their_edits() -> None:
    base = merge(EMPTY, Update("crm-a", at(0), {"name": "Acme", "phone": "1"})).state
    snapshot = {"name": "Acme", "phone": "1"}
    # Both send their full record, each having changed one field since their snapshot.
    a = Update("crm-a", at(5), {"name": "Acme Ltd", "phone": "1"}, last_seen=snapshot)
    b = Update("crm-b", at(3), {"name": "Acme", "phone": "2"}, last_seen=snapshot)
    for first, second in ((a, b), (b, a)):
        state = merge(merge(base, first).state, second).state
        assert state.values == {"name": "Acme Ltd", "phone": "2"}


def test_rejects_an_older_update_from_the_same_source() -> None:
    newer = merge(EMPTY, Update("crm-a", at(10), {"status": "paid"})).state
    result = merge(newer, Update("crm-a", at(5), {"status": "open"}))
    assert result.state.values["status"] == "paid"
    assert result.overruled == {"status"}
    assert not result.changed


def test_newest_wins_on_a_field_both_changed() -> None:
    base = merge(EMPTY, Update("crm-a", at(0), {"email": "old@x.test"})).state
    seen = {"email": "old@x.test"}
    a = Update("crm-a", at(2), {"email": "a@x.test"}, last_seen=seen)
    b = Update("crm-b", at(4), {"email": "b@x.test"}, last_seen=seen)
    assert merge(merge(base, a).state, b).state.values["email"] == "b@x.test"
    assert merge(merge(base, b).state, a).state.values["email"] == "b@x.test"


def test_source_priority_higher_connection_wins_even_when_older() -> None:
    policy = Policy("source_priority", ("accounting", "crm"))
    base = merge(EMPTY, Update("accounting", at(0), {"total": 100}), policy).state
    result = merge(base, Update("crm", at(9), {"total": 90}), policy)
    assert result.state.values["total"] == 100
    assert result.overruled == {"total"}
    again = merge(result.state, Update("accounting", at(10), {"total": 120}), policy)
    assert again.state.values["total"] == 120


def test_manual_parks_a_real_conflict_and_keeps_the_current_value() -> None:
    policy = Policy("manual")
    base = merge(EMPTY, Update("crm-a", at(0), {"phone": "1"}), policy).state
    result = merge(base, Update("crm-b", at(5), {"phone": "2"}, last_seen={"phone": "0"}), policy)
    assert result.state.values["phone"] == "1"
    assert [(c.field, c.current, c.incoming) for c in result.conflicts] == [("phone", "1", "2")]


def test_manual_applies_an_edit_made_after_seeing_the_current_value() -> None:
    policy = Policy("manual")
    base = merge(EMPTY, Update("crm-a", at(0), {"phone": "1"}), policy).state
    result = merge(base, Update("crm-b", at(5), {"phone": "2"}, last_seen={"phone": "1"}), policy)
    assert result.state.values["phone"] == "2"
    assert not result.conflicts


def test_an_edit_made_on_top_of_the_current_value_wins_whatever_its_clock_says() -> None:
    # crm-a set the email at 12:05.500; crm-b had it (its last_seen holds it) when its user
    # changed it, and crm-b's whole-second clock stamps that edit 12:05.000.
    base = merge(EMPTY, Update("crm-a", T0 + timedelta(seconds=5.5), {"email": "a@x.test"}))
    seen = {"email": "a@x.test"}
    edit = Update("crm-b", T0 + timedelta(seconds=5), {"email": "b@x.test"}, last_seen=seen)
    assert merge(base.state, edit).state.values["email"] == "b@x.test"
    # Without having seen it, the older stamp loses as before; and a priority still rules.
    blind = Update("crm-b", T0 + timedelta(seconds=5), {"email": "b@x.test"}, last_seen={})
    assert merge(base.state, blind).state.values["email"] == "a@x.test"
    ranked = Policy("source_priority", ("crm-a", "crm-b"))
    assert merge(base.state, edit, ranked).state.values["email"] == "a@x.test"


def test_echo_of_the_current_state_changes_nothing() -> None:
    state = merge(EMPTY, Update("crm-a", at(0), {"name": "Acme", "notes": None})).state
    echo = merge(state, Update("crm-b", at(1), {"name": "Acme", "notes": None}))
    assert not echo.changed
    assert echo.state.values == state.values


# -- properties ---------------------------------------------------------------------------

FIELDS = ("name", "email", "phone", "notes")
CONNECTIONS = ("crm-a", "crm-b", "crm-c")
updates = st.builds(
    Update,
    connection_id=st.sampled_from(CONNECTIONS),
    source_ts=st.integers(0, 50).map(at),
    values=st.dictionaries(st.sampled_from(FIELDS), st.integers(0, 3) | st.none(), min_size=1),
)
policies = st.sampled_from([Policy(), Policy("source_priority", ("crm-b", "crm-a"))])


@given(updates, updates, policies)
def test_applying_the_same_update_twice_equals_once(
    first: Update, update: Update, policy: Policy
) -> None:
    base = merge(EMPTY, first, policy).state
    once = merge(base, update, policy).state
    twice = merge(once, update, policy).state
    assert twice == once


@given(st.lists(updates, min_size=2, max_size=5), policies, st.randoms(use_true_random=False))
def test_arrival_order_does_not_change_the_result(
    batch: list[Update], policy: Policy, rnd: object
) -> None:
    def run(order: list[Update]) -> RecordState:
        state = EMPTY
        for u in order:
            state = merge(state, u, policy).state
        return state

    shuffled = list(batch)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert run(batch).values == run(shuffled).values


@given(updates, updates)
def test_independent_field_edits_commute(a: Update, b: Update) -> None:
    b = Update(
        b.connection_id, b.source_ts, {k: v for k, v in b.values.items() if k not in a.values}
    )
    if not b.values:
        return
    ab = merge(merge(EMPTY, a).state, b).state
    ba = merge(merge(EMPTY, b).state, a).state
    assert ab.values == ba.values


@pytest.mark.parametrize("kind", ["newest_wins", "source_priority", "manual"])
def test_every_policy_applies_a_first_contact(kind: str) -> None:
    result = merge(EMPTY, Update("crm-a", at(0), {"name": "Acme"}), Policy(kind))  # type: ignore[arg-type]
    assert result.state.values == {"name": "Acme"}


ORDER = {"status": {"draft": 0, "open": 1, "paid": 2}}


def test_a_value_behind_the_current_one_loses_unless_the_source_had_seen_it() -> None:
    held = merge(EMPTY, Update("qbo", at(0), {"status": "open"})).state
    lagging = merge(held, Update("stripe", at(5), {"status": "draft"}), order=ORDER)
    assert lagging.state.values["status"] == "open"
    assert lagging.behind == {"status"}
    assert lagging.overruled == {"status"}
    seen = Update("stripe", at(5), {"status": "draft"}, last_seen={"status": "open"})
    moved = merge(held, seen, order=ORDER)
    assert moved.state.values["status"] == "draft"
    assert moved.behind == frozenset()
    ahead = merge(held, Update("stripe", at(5), {"status": "paid"}), order=ORDER)
    assert ahead.state.values["status"] == "paid"


def test_a_step_back_in_the_status_order_is_not_an_edit_on_top_whatever_it_had_seen() -> None:
    # The all-provider demo: Ascora's invoice is open (12:05.500); our push built it at
    # Stripe in steps, and Stripe's whole-second read of it mid-build says draft, stamped
    # 12:05.000, from a link whose snapshot (our push) says open. "Edited on top" must not
    # carry that draft past the newer open: only a newer clock may step a status back.
    held = merge(EMPTY, Update("ascora", T0 + timedelta(seconds=5.5), {"status": "open"})).state
    mid_build = Update(
        "stripe", T0 + timedelta(seconds=5), {"status": "draft"}, last_seen={"status": "open"}
    )
    result = merge(held, mid_build, order=ORDER)
    assert result.state.values["status"] == "open"
    assert result.overruled == {"status"}
    # A step forward made on top of the current value still wins whatever the clock says.
    paid = Update(
        "stripe", T0 + timedelta(seconds=5), {"status": "paid"}, last_seen={"status": "open"}
    )
    assert merge(held, paid, order=ORDER).state.values["status"] == "paid"


def test_a_null_for_a_field_the_record_does_not_hold_is_no_edit() -> None:
    # The internal service made the customer without a company; HubSpot's create answer
    # held only the properties we sent, its next read every property it was asked for,
    # unset ones as null. That null is what the record already means: no version, no
    # push to every other system (one that could land on a user's edit there).
    made = merge(EMPTY, Update("internal", at(0), {"name": "Summit", "email": "s@x.test"}))
    read = Update(
        "hubspot",
        at(1),
        {"name": "Summit", "email": "s@x.test", "company": None, "address": None},
        last_seen={"name": "Summit", "email": "s@x.test"},
    )
    result = merge(made.state, read)
    assert not result.changed
    assert result.unchanged == {"name", "email", "company", "address"}
    assert result.state.values["company"] is None
    # A value the record does hold is still cleared by a newer null.
    held = merge(made.state, Update("crm-b", at(2), {"email": None}, last_seen={}))
    assert held.changed == {"email"}
