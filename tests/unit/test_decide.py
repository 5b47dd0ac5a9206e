"""The apply rules (services/processor/decide.py), one test per rule and a few properties.

Pure: no Postgres. tests/integration/test_apply.py holds both apply paths to the same
outcomes around these decisions.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crmsync.common.canonical import InvalidRecordError, state_hash
from services.processor.decide import (
    Decision,
    InboundChange,
    Link,
    Outcome,
    Pushed,
    Record,
    Reference,
    Rule,
    Write,
    decide,
)
from services.processor.merge import FieldMeta, Policy, RecordState

T0 = datetime(2026, 11, 21, 9, 0, tzinfo=UTC)
TENANT = uuid.UUID(int=1)
A = uuid.UUID(int=0xA)
B = uuid.UUID(int=0xB)
ENTITY = uuid.UUID(int=0xE)
NEWEST = Policy()
MANUAL = Policy("manual")


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def change(
    ts: datetime, *, op: Literal["upsert", "delete"] = "upsert", source: uuid.UUID = A
) -> InboundChange:
    return InboundChange(TENANT, source, "evt", "customer", op, "x-1", ts, {})


def link(
    *,
    snapshot: dict[str, Any] | None = None,
    seen: datetime | None = None,
    pushed_hash: str | None = None,
    pushed_version: int | None = None,
    pushed_at: datetime | None = None,
    pushes: tuple[Pushed, ...] = (),
) -> Link:
    return Link(ENTITY, snapshot, pushed_hash, pushed_version, seen, pushed_at, pushes)


def record(
    values: dict[str, Any],
    *,
    source: uuid.UUID = A,
    ts: datetime = T0,
    version: int = 1,
    deleted: bool = False,
) -> Record:
    meta = {name: FieldMeta(ts, str(source)) for name in values}
    return Record(ENTITY, RecordState(values, meta), version, deleted)


# -- the rules, in their order ------------------------------------------------------------


def test_a_link_without_its_record_is_refused_before_deciding() -> None:
    with pytest.raises(ValueError, match="without its record"):
        decide(change(at(1)), {"name": "Jo"}, link(), None, NEWEST)


@pytest.mark.parametrize("op", ["upsert", "delete"])
def test_rejects_a_change_older_than_the_newest_this_source_sent(
    op: Literal["upsert", "delete"],
) -> None:
    d = decide(change(at(4), op=op), {"name": "Old"}, link(seen=at(5)), record({"n": 1}), NEWEST)
    assert d == Decision(Outcome.STALE, Rule.OLDER_THAN_SEEN, ENTITY)


def test_a_change_as_old_as_the_newest_seen_is_not_stale() -> None:
    d = decide(change(at(5)), {"name": "Jo"}, link(seen=at(5)), record({"name": "Al"}), NEWEST)
    assert d.rule is not Rule.OLDER_THAN_SEEN


def test_a_delete_of_a_record_never_told_of_does_nothing() -> None:
    d = decide(change(at(1), op="delete"), {}, None, None, NEWEST)
    assert d == Decision(Outcome.NOOP, Rule.DELETE_UNSEEN)


def test_a_delete_tombstones_the_record_and_emits_it() -> None:
    current = record({"name": "Jo"}, version=3)
    d = decide(change(at(2), op="delete"), {}, link(seen=at(1)), current, NEWEST)
    assert (d.outcome, d.rule, d.entity_id, d.write, d.version) == (
        Outcome.APPLIED,
        Rule.DELETE,
        ENTITY,
        Write.DELETE,
        4,
    )
    assert d.outbox is not None
    assert (d.outbox.version, dict(d.outbox.values), d.outbox.deleted) == (4, {"name": "Jo"}, True)
    # A delete tells no fields: only the newest timestamp heard moves on the link.
    assert d.link is not None
    assert (d.link.snapshot, d.link.seen_hash, d.link.remote_updated_at) == (None, None, at(2))
    after = d.record_after(ENTITY)
    assert after is not None
    assert after.deleted


def test_a_delete_of_a_deleted_record_only_moves_the_links_newest_seen() -> None:
    gone = record({"name": "Jo"}, deleted=True, version=2)
    d = decide(change(at(3), op="delete"), {}, link(seen=at(1)), gone, NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox) == (
        Outcome.NOOP,
        Rule.ALREADY_DELETED,
        None,
        None,
    )
    assert d.link is not None
    assert d.link.remote_updated_at == at(3)


def test_an_echo_of_our_push_emits_nothing_and_remembers_it() -> None:
    values = {"name": "Jo"}
    seen = link(snapshot={"phone": "1"}, seen=at(1), pushed_hash=state_hash(values))
    d = decide(change(at(2)), values, seen, record(values, version=1), NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox, d.push_again) == (
        Outcome.ECHO,
        Rule.ECHO,
        None,
        None,
        None,
    )
    assert d.link is not None
    assert dict(d.link.snapshot or {}) == {"phone": "1", "name": "Jo"}
    assert d.link.seen_hash == state_hash(values)


def test_an_echo_of_an_overtaken_push_queues_the_records_version_again() -> None:
    values = {"name": "Jo"}
    behind = link(pushed_hash=state_hash(values), pushed_version=1)
    d = decide(change(at(2)), values, behind, record({"name": "Al"}, version=3), NEWEST)
    assert (d.outcome, d.push_again) == (Outcome.ECHO, 3)
    deleted = record({"name": "Al"}, version=3, deleted=True)
    assert decide(change(at(2)), values, behind, deleted, NEWEST).push_again is None
    unknown = link(pushed_hash=state_hash(values))
    assert (
        decide(change(at(2)), values, unknown, record(values, version=3), NEWEST).push_again is None
    )


def test_a_later_state_holding_what_we_pushed_is_a_users_revert_not_an_echo() -> None:
    # We pushed Jo (the provider stamped our write at 1); its user changed it to Al (2) and
    # back to Jo (3). The values are our push's, the stamp is not: an edit, applied.
    pushed = {"name": "Jo"}
    reverted = link(
        snapshot={"name": "Al"}, seen=at(2), pushed_hash=state_hash(pushed), pushed_at=at(1)
    )
    current = record({"name": "Al"}, source=A, ts=at(2), version=2)
    d = decide(change(at(3)), pushed, reverted, current, NEWEST)
    assert (d.outcome, d.rule, d.version) == (Outcome.APPLIED, Rule.UPDATE, 3)
    # The echo of our write itself carries its stamp (or an older one): still an echo.
    echoed = link(snapshot=pushed, seen=at(1), pushed_hash=state_hash(pushed), pushed_at=at(1))
    d = decide(change(at(1)), pushed, echoed, record(pushed, version=1), NEWEST)
    assert d.outcome is Outcome.ECHO
    # A later stamp over the very state we pushed (the provider touched the record) is
    # no echo, and changes nothing either: the snapshot already holds it.
    d = decide(change(at(4)), pushed, echoed, record(pushed, version=1), NEWEST)
    assert (d.outcome, d.outbox) == (Outcome.NOOP, None)


def writes(*states: tuple[dict[str, Any], datetime]) -> tuple[Pushed, ...]:
    """Our writes of these states, oldest first, each with the provider's stamp."""
    return tuple(Pushed(state_hash(values), ts) for values, ts in states)


def written_by_us(
    states: list[dict[str, Any]], remote_version: str | None = None
) -> tuple[Link, Record]:
    """Our writes of ``states`` at 0, 2, 4, ... minutes (each stamped so by the provider),
    the last one what the link was last told and pushed (the record's version len(states);
    the provider's ``remote_version``): the link, and the record holding that state (B's)."""
    ours = writes(*((values, at(2 * i)) for i, values in enumerate(states)))
    last = ours[-1]
    linked = Link(
        ENTITY, states[-1], last.state_hash, len(states), None, last.updated_at, ours,
        remote_version,
    )  # fmt: skip
    return linked, record(states[-1], source=B, ts=at(0), version=len(states))


def after_two_writes_in_one_second() -> tuple[dict[str, Any], Link, Record]:
    """We wrote phone 1, then phone 2 (another system's edit, made just before), to a
    provider that stamps whole seconds: both writes at 1. The first write's state."""
    first, second = {"name": "Jo", "phone": "1"}, {"name": "Jo", "phone": "2"}
    ours = link(
        snapshot=second,
        seen=at(1),
        pushed_hash=state_hash(second),
        pushed_version=2,
        pushed_at=at(1),
        pushes=writes((first, at(1)), (second, at(1))),
    )
    return first, ours, record(second, source=B, ts=at(1) - timedelta(seconds=1), version=2)


def test_a_read_back_of_an_earlier_push_after_a_later_one_is_an_echo() -> None:
    # The provider's read of our first write reaches us after the second: stamped as our
    # last write (not stale), holding the first write's values (not the last push).
    first, ours, current = after_two_writes_in_one_second()
    d = decide(change(at(1)), first, ours, current, NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox, d.push_again) == (
        Outcome.ECHO,
        Rule.EARLIER_PUSH,
        None,
        None,
        None,
    )
    # It is older than what the link knows: the link keeps the last write's state.
    assert d.link is not None
    assert (d.link.snapshot, d.link.seen_hash) == (None, None)


def test_a_users_revert_to_an_earlier_push_after_our_last_write_applies() -> None:
    first, ours, current = after_two_writes_in_one_second()
    d = decide(change(at(2)), first, ours, current, NEWEST)
    assert (d.outcome, d.rule, d.version) == (Outcome.APPLIED, Rule.UPDATE, 3)
    assert d.state is not None
    assert d.state.values["phone"] == "1"


def test_a_revert_made_between_two_of_our_writes_is_an_edit() -> None:
    # We wrote phone 1 (1), phone 2 (3) and the email (5, B's edit, which left the phone
    # alone). A user set the phone back to 1 at 4, after the write that replaced it: that
    # state is no read-back of ours, though it is older than our last write.
    first, second = {"phone": "1"}, {"phone": "2"}
    third = {"phone": "2", "email": "e"}
    ours = link(
        snapshot=third,
        seen=at(5),
        pushed_hash=state_hash(third),
        pushed_at=at(5),
        pushes=writes((first, at(1)), (second, at(3)), (third, at(5))),
    )
    current = Record(
        ENTITY,
        RecordState(third, {"phone": FieldMeta(at(2), str(B)), "email": FieldMeta(at(5), str(B))}),
        3,
    )
    d = decide(change(at(5)), {"phone": "1", "email": "e"}, ours, current, NEWEST)
    assert (d.outcome, d.rule) == (Outcome.APPLIED, Rule.UPDATE)
    assert d.state is not None
    assert d.state.values == {"phone": "1", "email": "e"}


# -- rule 1 by the provider's version (QuickBooks' SyncToken, issue 17) ------------------


def versioned(ts: datetime, version: str, *, ordered: bool = True) -> InboundChange:
    """An upsert carrying the provider's version of the record; ``ordered``: its provider
    declares its versions a counter that rises with every write (connector.toml)."""
    return InboundChange(
        TENANT, A, "evt", "customer", "upsert", "x-1", ts, {}, version=version,
        versions_ordered=ordered,
    )  # fmt: skip


def at_version(ours: Link, version: str) -> Link:
    return replace(ours, remote_version=version)


def test_a_state_at_a_lower_version_than_the_link_heard_is_stale() -> None:
    # Stamped as the link's newest (a whole-second clock), but an earlier version: older.
    ours = at_version(link(snapshot={"phone": "2"}, seen=at(1)), "3")
    current = record({"phone": "2"})
    d = decide(versioned(at(1), "2"), {"phone": "1"}, ours, current, NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox, d.link) == (
        Outcome.STALE,
        Rule.OLDER_THAN_SEEN,
        None,
        None,
        None,
    )


def test_versions_a_provider_does_not_declare_ordered_order_nothing() -> None:
    ours = at_version(link(snapshot={"phone": "2"}, seen=at(1)), "3")
    change_ = versioned(at(1), "2", ordered=False)
    d = decide(change_, {"phone": "1"}, ours, record({"phone": "2"}), NEWEST)
    assert (d.outcome, d.rule) == (Outcome.APPLIED, Rule.UPDATE)
    assert d.link is not None
    assert d.link.remote_version is None  # not stored either: it says nothing of order


def test_a_state_at_a_version_not_below_the_links_stores_it() -> None:
    ours = at_version(link(snapshot={"phone": "2"}, seen=at(1)), "3")
    for version, phone in (("3", "2"), ("4", "5"), ("10", "6")):  # 10 > 9: numbers, not text
        d = decide(
            versioned(at(1), version), {"phone": phone}, ours, record({"phone": "2"}), NEWEST
        )
        assert d.outcome is not Outcome.STALE
        assert d.link is not None
        assert d.link.remote_version == version
    # A link that knows no version yet (made before inbound carried it) takes the first.
    d = decide(versioned(at(1), "0"), {"phone": "7"}, link(seen=at(1)), record({}), NEWEST)
    assert d.link is not None
    assert d.link.remote_version == "0"


def test_a_version_that_is_no_counter_orders_nothing() -> None:
    ours = at_version(link(snapshot={"phone": "2"}, seen=at(1)), "3")
    d = decide(versioned(at(1), "abc"), {"phone": "1"}, ours, record({"phone": "2"}), NEWEST)
    assert (d.outcome, d.rule) == (Outcome.APPLIED, Rule.UPDATE)


def test_the_read_back_of_an_earlier_push_at_its_lower_version_is_stale() -> None:
    # Our writes answered at SyncToken 0 and 1 (the link keeps the last); the first's
    # read-back carries 0.
    first, ours, current = after_two_writes_in_one_second()
    d = decide(versioned(at(1), "0"), first, at_version(ours, "1"), current, NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox) == (
        Outcome.STALE,
        Rule.OLDER_THAN_SEEN,
        None,
        None,
    )


def test_a_users_revert_in_our_last_writes_second_at_a_higher_version_applies() -> None:
    # Rule 5a's ambiguous case: the same values as our first write, stamped in the second
    # of our last write, but at SyncToken 2, above our last write's 1: a user's write
    # after ours, which the timestamp alone took for our echo.
    first, ours, current = after_two_writes_in_one_second()
    d = decide(versioned(at(1), "2"), first, at_version(ours, "1"), current, NEWEST)
    assert (d.outcome, d.rule, d.version) == (Outcome.APPLIED, Rule.UPDATE, 3)
    assert d.state is not None
    assert d.state.values["phone"] == "1"
    assert d.link is not None
    assert d.link.remote_version == "2"


def test_our_last_write_read_back_at_its_own_version_is_an_echo() -> None:
    _, ours, current = after_two_writes_in_one_second()
    second = {"name": "Jo", "phone": "2"}
    d = decide(versioned(at(1), "1"), second, at_version(ours, "1"), current, NEWEST)
    assert (d.outcome, d.rule, d.outbox) == (Outcome.ECHO, Rule.ECHO, None)


def test_an_update_of_a_deleted_record_does_not_revive_it() -> None:
    gone = record({"name": "Jo"}, deleted=True, version=2)
    d = decide(change(at(2)), {"name": "Back"}, link(seen=at(1)), gone, NEWEST)
    assert (d.outcome, d.rule, d.entity_id, d.write, d.outbox) == (
        Outcome.STALE,
        Rule.RECORD_DELETED,
        ENTITY,
        None,
        None,
    )
    assert d.link is not None  # the link still learns what the source said


def test_a_first_contact_with_nothing_matched_creates_a_record() -> None:
    d = decide(change(at(1)), {"name": "Jo"}, None, None, NEWEST)
    assert (d.outcome, d.rule, d.entity_id, d.write, d.version) == (
        Outcome.APPLIED,
        Rule.CREATE,
        None,
        Write.CREATE,
        1,
    )
    assert d.state is not None
    assert d.state.meta == {"name": FieldMeta(at(1), str(A))}
    assert d.outbox is not None
    assert (d.outbox.version, dict(d.outbox.values)) == (1, {"name": "Jo"})
    assert d.link is not None
    assert (dict(d.link.snapshot or {}), d.link.remote_updated_at) == ({"name": "Jo"}, at(1))


def test_a_first_contact_matched_to_a_record_merges_into_it() -> None:
    matched = record({"email": "jo@x.test"}, source=B, version=2)
    d = decide(change(at(1)), {"email": "jo@x.test", "phone": "555"}, None, matched, NEWEST)
    assert (d.outcome, d.rule, d.entity_id, d.version) == (Outcome.APPLIED, Rule.UPDATE, ENTITY, 3)
    assert d.state is not None
    assert dict(d.state.values) == {"email": "jo@x.test", "phone": "555"}


def test_an_update_merges_only_the_fields_this_source_changed() -> None:
    current = record({"name": "Jo", "phone": "2"}, source=B, ts=at(3), version=5)
    told = link(snapshot={"name": "Jo", "phone": "1"}, seen=at(0))
    d = decide(change(at(4)), {"name": "Joanna", "phone": "1"}, told, current, NEWEST)
    assert (d.outcome, d.rule, d.version) == (Outcome.APPLIED, Rule.UPDATE, 6)
    assert d.state is not None
    assert dict(d.state.values) == {"name": "Joanna", "phone": "2"}  # B's phone stays
    assert d.outbox is not None
    assert d.outbox.version == 6


def test_a_manual_policy_parks_a_conflict_and_keeps_the_value() -> None:
    current = record({"phone": "1"}, source=B, version=2)
    d = decide(change(at(1)), {"phone": "2"}, None, current, MANUAL)
    assert (d.outcome, d.rule, d.version, d.outbox) == (Outcome.CONFLICT, Rule.CONFLICT, 2, None)
    assert [(c.field, c.current, c.incoming) for c in d.conflicts] == [("phone", "1", "2")]


def test_nothing_changed_is_a_no_op_that_emits_nothing() -> None:
    current = record({"name": "Jo"}, ts=at(5), version=4)
    d = decide(change(at(1)), {"name": "Jo"}, None, current, NEWEST)
    assert (d.outcome, d.rule, d.write, d.version, d.outbox) == (
        Outcome.NOOP,
        Rule.UNCHANGED,
        None,
        4,
        None,
    )


def test_the_same_value_from_a_newer_source_moves_only_its_provenance() -> None:
    current = record({"name": "Jo"}, source=B, ts=at(0), version=4)
    d = decide(change(at(1)), {"name": "Jo"}, None, current, NEWEST)
    assert (d.outcome, d.write, d.version, d.outbox) == (Outcome.NOOP, Write.PROVENANCE, 4, None)
    assert d.state is not None
    assert d.state.meta == {"name": FieldMeta(at(1), str(A))}


# -- properties ------------------------------------------------------------------------

FIELDS = st.sampled_from(["name", "email", "phone"])
VALUES = st.dictionaries(FIELDS, st.sampled_from(["a", "b", "c"]), max_size=3)
MINUTES = st.integers(min_value=0, max_value=5)
SOURCES = st.sampled_from([A, B])
# QuickBooks' SyncTokens are decimal counters; "x" is a version that is no counter.
VERSIONS = st.integers(min_value=0, max_value=12).map(str) | st.just("x")
POLICIES = st.sampled_from([NEWEST, MANUAL, Policy("source_priority", (str(B), str(A)))])


@st.composite
def records(draw: st.DrawFn) -> Record:
    values = draw(VALUES)
    meta = {name: FieldMeta(at(draw(MINUTES)), str(draw(SOURCES))) for name in values}
    return Record(ENTITY, RecordState(values, meta), draw(MINUTES) + 1, draw(st.booleans()))


Situation = tuple[InboundChange, dict[str, Any], Link | None, Record | None]
OPS: st.SearchStrategy[Literal["upsert", "delete"]] = st.sampled_from(["upsert", "delete"])


@st.composite
def situations(
    draw: st.DrawFn, *, ops: st.SearchStrategy[Literal["upsert", "delete"]] = OPS
) -> Situation:
    """A change, its values, and a link and record as they may stand."""
    op = draw(ops)
    c = change(at(draw(MINUTES)), op=op, source=draw(SOURCES))
    c = replace(c, version=draw(st.none() | VERSIONS), versions_ordered=draw(st.booleans()))
    values = draw(VALUES) if op == "upsert" else {}
    current = draw(st.none() | records())
    linked = None
    if current is not None and draw(st.booleans()):
        pushed = draw(st.none() | st.just(state_hash(values)) | st.just("other"))
        earlier = draw(st.lists(st.tuples(VALUES | st.just(values), MINUTES.map(at)), max_size=3))
        pushes = writes(*sorted(earlier, key=lambda w: w[1]))
        linked = Link(
            ENTITY,
            draw(st.none() | VALUES),
            pushed,
            draw(st.none() | MINUTES),
            draw(st.none() | MINUTES.map(at)),
            draw(st.none() | MINUTES.map(at)),
            pushes,
            draw(st.none() | VERSIONS),
        )
    return c, values, linked, current


@st.composite
def echoes(draw: st.DrawFn) -> Situation:
    """An upsert of exactly what we last pushed to its source, not older than it sent."""
    c, values, _, current = draw(situations(ops=st.just("upsert")))
    current = current or draw(records())
    snapshot = draw(st.none() | VALUES)
    pushed_version = draw(st.none() | MINUTES)
    return c, values, Link(ENTITY, snapshot, state_hash(values), pushed_version, None), current


def applied(
    d: Decision, link_before: Link | None, record_before: Record | None
) -> tuple[Link | None, Record | None]:
    """The link and record as a path leaves them after writing ``d``."""
    entity_id = d.entity_id or uuid.UUID(int=0xF)
    after = d.record_after(entity_id) or record_before
    if d.link is None:
        return link_before, after
    old = link_before or Link(entity_id, None, None, None, None)
    new_link = Link(
        entity_id,
        d.link.snapshot if d.link.snapshot is not None else old.snapshot,
        old.last_pushed_hash,
        old.last_pushed_version,
        d.link.remote_updated_at,
        old.pushed_updated_at,
        old.pushes,
        d.link.remote_version if d.link.remote_version is not None else old.remote_version,
    )
    return new_link, after


@given(situations(), POLICIES)
def test_an_outbox_entry_comes_exactly_with_an_applied_change(s: Situation, policy: Policy) -> None:
    d = decide(*s, policy)
    assert (d.outbox is not None) == (d.outcome is Outcome.APPLIED)
    if d.outbox is not None:
        assert d.version == d.outbox.version
        assert d.write in (Write.CREATE, Write.UPDATE, Write.DELETE)


@given(situations(), POLICIES)
def test_a_stale_change_never_changes_a_record(s: Situation, policy: Policy) -> None:
    d = decide(*s, policy)
    if d.outcome is Outcome.STALE:
        assert (d.write, d.outbox, d.conflicts, d.push_again) == (None, None, (), None)


@given(echoes(), POLICIES)
def test_an_echo_never_produces_an_outbox_entry(s: Situation, policy: Policy) -> None:
    d = decide(*s, policy)
    assert d.outcome is Outcome.ECHO
    assert (d.write, d.outbox) == (None, None)


STATES = st.lists(
    st.dictionaries(FIELDS, st.sampled_from(["a", "b", "c"]), min_size=1), min_size=2, max_size=5
)


@given(STATES, st.data(), POLICIES)
def test_a_state_of_ours_read_back_before_the_write_that_replaced_it_is_an_echo(
    states: list[dict[str, Any]], data: st.DataObject, policy: Policy
) -> None:
    # Our writes at 0, 2, 4, ... minutes; a read of write i is stamped from its own write
    # up to the write that replaced it (a whole-second clock: the same second).
    linked, current = written_by_us(states)
    i = data.draw(st.integers(0, len(states) - 2))
    ts = at(2 * i) + timedelta(seconds=data.draw(st.integers(0, 120)))
    d = decide(change(ts), states[i], linked, current, policy)
    assert d.outcome is Outcome.ECHO
    assert (d.write, d.outbox) == (None, None)


@given(STATES, st.data(), POLICIES)
def test_a_state_of_ours_stamped_after_our_last_write_is_never_an_echo(
    states: list[dict[str, Any]], data: st.DataObject, policy: Policy
) -> None:
    # A user's revert to any value we once wrote, after our last write: the merge's.
    linked, current = written_by_us(states)
    i = data.draw(st.integers(0, len(states) - 1))
    ts = linked.pushed_updated_at + timedelta(seconds=data.draw(st.integers(1, 120)))  # type: ignore[operator]
    assert decide(change(ts), states[i], linked, current, policy).outcome is not Outcome.ECHO


@given(situations(), POLICIES, st.integers(min_value=1, max_value=5))
def test_a_state_below_the_links_version_is_stale_when_versions_are_ordered(
    s: Situation, policy: Policy, below: int
) -> None:
    c, values, linked, current = s
    if linked is None:
        return
    linked = replace(linked, remote_version=str(below + 3))
    c = replace(c, version=str(3), versions_ordered=True)
    d = decide(c, values, linked, current, policy)
    if d.outcome is not Outcome.WAITING:
        assert (d.outcome, d.rule) == (Outcome.STALE, Rule.OLDER_THAN_SEEN)
        assert (d.write, d.outbox, d.link, d.push_again) == (None, None, None, None)


@given(STATES, st.data(), POLICIES)
def test_a_state_of_ours_at_a_version_above_our_last_write_is_never_an_earlier_push(
    states: list[dict[str, Any]], data: st.DataObject, policy: Policy
) -> None:
    # The read-back case of the property above (stamped up to the write that replaced
    # it), but at a version above our last write's: a user's write after ours.
    i = data.draw(st.integers(0, len(states) - 2))
    ts = at(2 * i) + timedelta(seconds=data.draw(st.integers(0, 120)))
    last_version = data.draw(st.integers(0, 10))
    linked, current = written_by_us(states, str(last_version))
    above = str(last_version + data.draw(st.integers(1, 5)))
    c = replace(change(ts), version=above, versions_ordered=True)
    d = decide(c, states[i], linked, current, policy)
    assert d.rule is not Rule.EARLIER_PUSH
    assert d.outcome is not Outcome.ECHO or states[i] == states[-1]


@given(situations(), POLICIES)
def test_the_same_change_twice_changes_nothing_the_second_time(
    s: Situation, policy: Policy
) -> None:
    c, values, linked, current = s
    first = decide(c, values, linked, current, policy)
    linked, current = applied(first, linked, current)
    second = decide(c, values, linked, current, policy)
    assert second.outcome is not Outcome.APPLIED
    assert (second.write, second.outbox) == (None, None)


@given(situations(), POLICIES)
def test_decide_is_a_function_of_its_inputs(s: Situation, policy: Policy) -> None:
    assert decide(*s, policy) == decide(*s, policy)


# -- rule 0: references not linked yet (invariant 10) -------------------------------------


def payment(refs: dict[str, str], *, op: Literal["upsert", "delete"] = "upsert") -> InboundChange:
    return InboundChange(TENANT, A, "evt", "payment", op, "pi_1", at(1), {}, refs=refs)


def test_an_upsert_naming_a_record_not_linked_yet_waits_for_it() -> None:
    got = decide(payment({"invoice_id": "in_1"}), {"amount": 100}, None, None, NEWEST)
    assert got == Decision(
        Outcome.WAITING,
        Rule.MISSING_REFERENCE,
        waits_for=Reference("invoice_id", "invoice", "in_1"),
    )
    assert got.outbox is None
    assert got.write is None
    assert got.link is None


def test_waiting_comes_before_every_other_rule() -> None:
    # A record and a link that would make it an update, an echo or stale: it still waits.
    values = {"amount": 100}
    seen = link(seen=at(5), pushed_hash=state_hash(values), pushed_version=1)
    got = decide(payment({"invoice_id": "in_1"}), values, seen, record(values), NEWEST)
    assert got.outcome is Outcome.WAITING


def test_a_change_names_the_first_missing_reference_in_a_stable_order() -> None:
    refs = {"job_id": "job_1", "customer_id": "cus_1"}
    got = decide(payment(refs), {}, None, None, NEWEST)
    assert got.waits_for == Reference("customer_id", "customer", "cus_1")


def test_a_delete_does_not_wait_for_the_records_it_named() -> None:
    got = decide(payment({"invoice_id": "in_1"}, op="delete"), {}, None, None, NEWEST)
    assert got.rule is Rule.DELETE_UNSEEN


@pytest.mark.parametrize("op", ["upsert", "delete"])
def test_a_change_behind_a_waiting_change_of_its_record_waits_for_the_same(
    op: Literal["upsert", "delete"],
) -> None:
    ahead = Reference("invoice_id", "invoice", "in_1")
    got = decide(payment({}, op=op), {"status": "refunded"}, None, None, NEWEST, behind=ahead)
    assert got == Decision(Outcome.WAITING, Rule.BEHIND_WAITING, waits_for=ahead)


def test_with_every_reference_resolved_nothing_waits() -> None:
    got = decide(payment({}), {"amount": 100, "invoice_id": str(ENTITY)}, None, None, NEWEST)
    assert got.rule is Rule.CREATE
    assert got.waits_for is None


def test_a_reference_names_its_kind_and_id_for_the_dead_letter() -> None:
    assert Reference("invoice_id", "invoice", "in_9").describe() == "invoice in_9 (invoice_id)"


# -- invoice money: status order and totals (issue 17 items 5 and 6) ----------------------


def invoice_change(ts: datetime, *, source: uuid.UUID = A) -> InboundChange:
    return InboundChange(TENANT, source, "evt", "invoice", "upsert", "in-1", ts, {})


def test_a_lagging_draft_never_reverts_an_invoice_another_system_finalised() -> None:
    # QuickBooks (B) approved it; Stripe (A) builds its copy in steps and reports the draft
    # with half its lines, later than B's edit.
    current = record(
        {"status": "open", "lines": [{"quantity": "1", "unit_amount": 100}]}, source=B, ts=at(1)
    )
    told = link(snapshot={"status": "draft", "lines": []}, seen=at(0))
    half = [{"quantity": "1", "unit_amount": 50}]
    d = decide(invoice_change(at(2)), {"status": "draft", "lines": half}, told, current, NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox) == (
        Outcome.NOOP,
        Rule.STATUS_BEHIND,
        None,
        None,
    )
    assert d.link is not None  # what the source said is remembered all the same


def test_a_source_that_saw_the_status_may_move_it_back() -> None:
    # Xero (A) sent paid, then its payment was deleted: AUTHORISED again is an edit.
    current = record({"status": "paid"}, source=A, ts=at(1))
    told = link(snapshot={"status": "paid"}, seen=at(1))
    d = decide(invoice_change(at(2)), {"status": "open"}, told, current, NEWEST)
    assert (d.outcome, d.rule) == (Outcome.APPLIED, Rule.UPDATE)


def test_an_earlier_step_of_our_own_write_read_back_late_is_stale() -> None:
    # The all-provider demo: Ascora (B) opened the invoice; we built it at Stripe (A) in
    # steps (draft, items, finalize) and Stripe answered our write stamped at(5), whole
    # seconds. The state read for the draft's event, stamped the same second, says draft:
    # not an edit, and not newer than what we wrote.
    current = record({"status": "open"}, source=B, ts=at(4))
    ours = link(snapshot={"status": "open"}, seen=at(5), pushed_hash="h", pushed_at=at(5))
    d = decide(invoice_change(at(5)), {"status": "draft"}, ours, current, NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox) == (
        Outcome.STALE,
        Rule.OLDER_THAN_SEEN,
        None,
        None,
    )
    # Stamped after our write, a step back is somebody's edit, decided as before.
    later = decide(invoice_change(at(6)), {"status": "draft"}, ours, current, NEWEST)
    assert (later.outcome, later.rule) == (Outcome.APPLIED, Rule.UPDATE)


@pytest.mark.parametrize(
    ("held", "incoming"), [("open", "draft"), ("paid", "open"), ("void", "draft")]
)
def test_an_older_status_from_another_source_loses_even_when_newer(
    held: str, incoming: str
) -> None:
    current = record({"status": held}, source=B, ts=at(1))
    d = decide(invoice_change(at(9)), {"status": incoming}, link(seen=at(0)), current, NEWEST)
    assert d.rule is Rule.STATUS_BEHIND


# The internal service (A) opened the invoice and last told us this; a full payment made
# it paid since (the derivation's amount due, a ``derived`` provenance).
OPENED = {"status": "open", "amount_due": 34_400, "due_on": "2026-12-01", "total": 34_400}
PAID = {**OPENED, "status": "paid", "amount_due": 0}


def paid_invoice(ts: datetime = T0) -> Record:
    meta = {name: FieldMeta(ts, str(A)) for name in PAID}
    meta["amount_due"] = meta["status"] = FieldMeta(at(1), "derived")
    return Record(ENTITY, RecordState(PAID, meta), 2)


def test_an_edit_carrying_the_status_it_last_knew_applies_without_it() -> None:
    # Issue 17 (found by race17): the edit of due_on came back a whole status_behind no_op.
    told = link(snapshot=OPENED, seen=at(0))
    edit = {**OPENED, "due_on": "2026-12-31"}
    d = decide(invoice_change(at(2)), edit, told, paid_invoice(), NEWEST)
    assert (d.outcome, d.rule, d.write, d.version) == (
        Outcome.APPLIED,
        Rule.UPDATE,
        Write.UPDATE,
        3,
    )
    assert d.state is not None
    assert dict(d.state.values) == {**PAID, "due_on": "2026-12-31"}
    assert d.outbox is not None
    assert d.outbox.values["status"] == "paid"
    # The link remembers what the source said, its lagging status included, so the next
    # snapshot still carrying "open" is measured against it.
    assert d.link is not None
    assert d.link.snapshot == edit


def test_a_lagging_status_takes_the_amount_due_it_stated_with_it() -> None:
    # The source had not seen the payment that made it paid: its own amount due (a part
    # payment it recorded) is as old as its status and must not reopen what is owed.
    told = link(snapshot=OPENED, seen=at(0))
    edit = {**OPENED, "amount_due": 20_000, "due_on": "2026-12-31"}
    d = decide(invoice_change(at(2)), edit, told, paid_invoice(), NEWEST)
    assert d.rule is Rule.UPDATE
    assert d.state is not None
    assert dict(d.state.values) == {**PAID, "due_on": "2026-12-31"}


def test_a_lagging_status_with_nothing_else_edited_stays_status_behind() -> None:
    told = link(snapshot=OPENED, seen=at(0))
    d = decide(invoice_change(at(2)), dict(OPENED), told, paid_invoice(), NEWEST)
    assert (d.outcome, d.rule, d.write, d.outbox) == (
        Outcome.NOOP,
        Rule.STATUS_BEHIND,
        None,
        None,
    )
    assert d.link is not None


def test_a_lagging_draft_applies_none_of_its_fields() -> None:
    # A draft is a snapshot of a record still being built (Stripe: items one by one): its
    # other fields are as half-built as its lines, so none of them is an edit.
    current = record({"status": "open", "due_on": "2026-12-01"}, source=B, ts=at(1))
    told = link(snapshot={"status": "draft", "due_on": "2026-11-30"}, seen=at(0))
    d = decide(
        invoice_change(at(2)), {"status": "draft", "due_on": "2026-12-31"}, told, current, NEWEST
    )
    assert (d.outcome, d.rule, d.write) == (Outcome.NOOP, Rule.STATUS_BEHIND, None)


def test_a_lagging_status_without_a_snapshot_to_diff_applies_nothing() -> None:
    # With nothing the source told us before, no field can be told apart as its edit.
    d = decide(
        invoice_change(at(2)),
        {**OPENED, "due_on": "2026-12-31"},
        link(seen=at(0)),
        paid_invoice(),
        NEWEST,
    )
    assert (d.outcome, d.rule, d.write) == (Outcome.NOOP, Rule.STATUS_BEHIND, None)


DUE_ON = st.sampled_from(["2026-12-01", "2026-12-15", "2026-12-31"])


@given(
    due_on=DUE_ON,
    amount_due=st.sampled_from([0, 20_000, 34_400]),
    lagging=st.sampled_from(["open", "overdue"]),
    minutes=st.integers(min_value=1, max_value=5),
    policy=POLICIES,
)
def test_a_lagging_status_never_moves_status_or_amount_due_and_keeps_real_edits(
    due_on: str, amount_due: int, lagging: str, minutes: int, policy: Policy
) -> None:
    told = link(snapshot=OPENED, seen=at(0))
    edit = {**OPENED, "status": lagging, "amount_due": amount_due, "due_on": due_on}
    d = decide(invoice_change(at(minutes)), edit, told, paid_invoice(), policy)
    after = d.state.values if d.state is not None else PAID
    assert (after["status"], after["amount_due"]) == ("paid", 0)
    edited = due_on != OPENED["due_on"]
    if not edited:
        assert (d.outcome, d.rule, d.write) == (Outcome.NOOP, Rule.STATUS_BEHIND, None)
    else:  # A set due_on itself: its newer edit is a plain update under every policy
        assert (d.rule, after["due_on"]) == (Rule.UPDATE, due_on)


def test_a_merged_invoice_whose_totals_disagree_is_a_schema_violation() -> None:
    # Tax alone, from a source that changed nothing else: 100 + 30 is not 120.
    current = record({"subtotal": 100, "tax": 20, "total": 120}, source=B, ts=at(1))
    told = link(snapshot={"subtotal": 100, "tax": 20, "total": 120}, seen=at(0))
    with pytest.raises(InvalidRecordError, match="total 120 must equal subtotal 100 \\+ tax 30"):
        decide(invoice_change(at(2)), {"tax": 30}, told, current, NEWEST)
    # All three moved together is fine.
    d = decide(invoice_change(at(2)), {"tax": 30, "total": 130}, told, current, NEWEST)
    assert d.rule is Rule.UPDATE
