"""The apply rules, once: what one change does to the record it reaches and to its link.

:func:`decide` is a pure function of what it is given (no I/O, no clock, no ids drawn).
Both apply paths load what it needs, call it, and write what the :class:`Decision` says:
change by change with SQL (:mod:`services.processor.apply`), and a whole batch in memory
then in a few statements (:mod:`services.processor.batch`). Written once, the two paths
cannot drift apart.

Before it, each path has already: validated the change's canonical values, dropped a
duplicate (connection + event id), refused ids its tenant does not have (its connection,
its references, the record its link names), and found the record: through the
connection's link, or, for an upsert with no link, matched on first contact (customer by
email, invoice by number, payment by reference).

The rules, the first that holds wins:

====  ===========================================================  ========  ====================
rule  when                                                         outcome   writes
====  ===========================================================  ========  ====================
0     upsert naming a record not linked yet (``refs`` left after   waiting   nothing: the change
      resolution), or any change of a record an earlier change of            waits, parked
      which waits (per-record order)                                         (invariant 10)
1     the link has heard a newer version from this source          stale     nothing
      (``source_ts`` < the link's ``remote_updated_at``, or, from
      a provider whose versions are ordered, ``version`` < the
      link's ``remote_version``: QuickBooks' SyncToken)
2     delete, and this connection never told us of the record      no_op     nothing
3     delete of a record already deleted                           no_op     link's newest seen
4     delete                                                       applied   tombstone, version
                                                                             + 1, outbox, link
5     upsert whose state hash is what we last pushed to this       echo      link; the record's
      connection, stamped no later than the provider's answer to             version queued for
      that push: it reports back our own push (a later state                 it if newer
      holding the same values is a user's revert: the merge's)
5a    upsert whose state hash is one of our earlier writes to      echo      the link's newest
      this connection (its last few, ``Link.pushes``), stamped               seen; its snapshot
      no later than the answer to the write that replaced it: the            and hash stay
      provider's read of that write, reaching us after a later               (``earlier_push``)
      one in the same second (a user's revert to it, made after
      that write, is stamped later: the merge's), unless its
      ordered version is above our last write's: a user's write
6     upsert reaching a deleted record (deleted stays deleted)     stale     link
6a    upsert whose invoice ``status`` lags behind the record's    no_op     link
      (draft < open/overdue < paid/void, from a source that had
      not seen the current status): the status and the
      ``amount_due`` stated with it never apply; the rest is
      merged (rules 8, 9), and when it edits nothing, or the
      snapshot is a draft (still being built: its lines are
      half-built) or there is no snapshot of the source's to
      tell its edits by, none of its fields apply
      (``status_behind``)
6b    the merged invoice breaks subtotal + tax = total             dead      nothing
                                                                   letter
                                                                   (schema_
                                                                   violation)
7     upsert and no record: create                                 applied   record v1, outbox,
                                                                             link
8     the field-level merge changed a field                        applied   record v + 1,
                                                                             outbox, conflicts,
                                                                             link
9     the merge parked a conflict (manual policy)                  conflict  provenance if it
                                                                             moved, conflicts,
                                                                             link
10    nothing changed                                              no_op     provenance if it
                                                                             moved, link
====  ===========================================================  ========  ====================

A link written by a change of a provider whose versions are ordered also stores the
change's version (rule 1 left only versions not below the link's): what the next is
ordered by.

An outbox row is written only by rules 4, 7 and 8: nothing changed, nothing emitted, which
is what ends echo loops (invariant 5). Beyond one change: a payment that rules 4, 7 or 8
wrote names its invoice, whose amount due and status are derived again once the batch is
applied (:mod:`services.processor.amounts`), a version and an outbox row of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from connectors.spec import REFERENCE_FIELDS
from crmsync.common.canonical import InvalidRecordError, state_hash
from schemas.changes import EntityType
from services.processor.merge import Conflict, Order, Policy, RecordState, Update, merge


class Outcome(StrEnum):
    """What became of a change: the sync log's and the metrics' word for it."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    NOOP = "no_op"
    ECHO = "echo"
    STALE = "stale"
    CONFLICT = "conflict"
    # Not applied yet: it names a record not linked yet, or waits behind a change that does
    # (invariant 10). Resolved later in its batch, or parked until the record is linked.
    WAITING = "waiting"
    # Refused before any rule: the record, or the email it carries, was erased by a privacy
    # erase (privacy_tombstones); nothing is written but the sync log and the skip.
    ERASED = "erased"


class Rule(StrEnum):
    """Which rule of the table above decided: finer than :class:`Outcome`."""

    MISSING_REFERENCE = "missing_reference"
    BEHIND_WAITING = "behind_waiting"
    OLDER_THAN_SEEN = "older_than_seen"
    DELETE_UNSEEN = "delete_unseen"
    ALREADY_DELETED = "already_deleted"
    DELETE = "delete"
    ECHO = "echo"
    EARLIER_PUSH = "earlier_push"
    RECORD_DELETED = "record_deleted"
    CREATE = "create"
    UPDATE = "update"
    CONFLICT = "conflict"
    UNCHANGED = "unchanged"
    STATUS_BEHIND = "status_behind"


class Write(StrEnum):
    """What happens to the record's row."""

    CREATE = "create"  # a new row at version 1; the caller chooses its id
    UPDATE = "update"  # values, provenance and version
    PROVENANCE = "provenance"  # field provenance only, same values and version
    DELETE = "delete"  # the tombstone: deleted, version bumped, values kept


@dataclass(frozen=True)
class InboundChange:
    tenant_id: uuid.UUID
    connection_id: uuid.UUID
    dedup_key: str  # the provider's event id: unique per connection
    entity_type: EntityType
    op: Literal["upsert", "delete"]
    external_id: str
    source_ts: datetime  # the source's own updated-at for this version
    data: dict[str, Any]  # canonical fields, possibly partial
    received_at: datetime | None = None
    # Reference field -> the source's id of the referenced record. Resolution moves each
    # one it finds linked into ``data``; what is left names records not linked yet.
    refs: dict[str, str] = field(default_factory=dict)
    # The provider's version of the record in this state (QuickBooks' SyncToken), where
    # it has one and the message carried it (messages before issue 17's did not).
    version: str | None = None
    # Its provider declares its versions a counter that rises with every write
    # (``ApiSpec.versions_ordered``): a lower one is an older state, whatever its stamp.
    versions_ordered: bool = False

    @property
    def record_key(self) -> tuple[uuid.UUID, str, str]:
        """The record as its connection knows it: what per-record order is kept by."""
        return (self.connection_id, self.entity_type, self.external_id)


@dataclass(frozen=True, slots=True)
class Reference:
    """A record a change names that is not linked yet: what it waits for, and what its
    dead letter names when the wait runs out."""

    field_name: str  # the change's reference field: customer_id, job_id, invoice_id
    entity_type: str  # the kind of record it names
    external_id: str  # the record's id in the change's connection

    def describe(self) -> str:
        return f"{self.entity_type} {self.external_id} ({self.field_name})"


@dataclass(frozen=True, slots=True)
class Pushed:
    """One of our writes to a connection's record, as the provider answered it."""

    state_hash: str  # the state hash of the record the provider's answer held
    updated_at: datetime | None  # the provider's updated-at in that answer; None: none given


@dataclass(frozen=True, slots=True)
class Link:
    """The change's connection's link to the record, as it stood before this change."""

    entity_id: uuid.UUID
    snapshot: Mapping[str, Any] | None  # what the connection last told us; None: nothing yet
    last_pushed_hash: str | None  # the state hash of our last push to it
    last_pushed_version: int | None  # the record's version that push carried
    remote_updated_at: datetime | None  # the newest source timestamp it sent
    # The provider's updated-at of our last write, as its answer reported it (migration
    # 0020): what the echo of that write carries. None: not recorded (an older link).
    pushed_updated_at: datetime | None = None
    # Our last few writes to it, oldest first, the last one included (migration 0022 keeps
    # 5): what a read-back of an earlier write, reaching us after a later one, is
    # recognised by (rule 5a). Empty: none recorded (an older link).
    pushes: tuple[Pushed, ...] = ()
    # The provider's version of the record the link last heard: our last write's answer
    # (outbound stores it) or an inbound change's at a version not below it. None: none.
    remote_version: str | None = None


@dataclass(frozen=True, slots=True)
class Record:
    """The canonical record, as the change's tenant holds it."""

    entity_id: uuid.UUID
    state: RecordState
    version: int
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class LinkWrite:
    """The link after the change (created when there was none)."""

    snapshot: Mapping[str, Any] | None  # None: keep the link's (a delete tells no fields)
    seen_hash: str | None  # None: keep the link's
    remote_updated_at: datetime  # the newest source timestamp heard, this change's included
    remote_version: str | None = None  # the provider's version to store; None: keep the link's


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """The ``records.changed`` event to write: this version of the record, as it now is."""

    version: int
    values: Mapping[str, Any]
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    rule: Rule
    # The record decided on; None for a record to create (rule 7) or none at all (rule 2).
    entity_id: uuid.UUID | None = None
    write: Write | None = None  # None: the record's row is left alone
    state: RecordState | None = None  # the record's state to write and to emit
    # The version to report: after the change when it wrote one, the record's otherwise;
    # None where there is none to tell (stale, echo, a delete that deleted nothing).
    version: int | None = None
    outbox: OutboxEntry | None = None  # None: nothing is emitted
    conflicts: tuple[Conflict, ...] = ()
    link: LinkWrite | None = None  # None: the link is left alone (or there is none)
    # Queue this version of the record for the change's connection: its echo shows it
    # holds an older one (a concurrent edit there overtook our push).
    push_again: int | None = None
    waits_for: Reference | None = None  # rule 0: what the change waits for

    def record_after(self, entity_id: uuid.UUID) -> Record | None:
        """The record as this decision leaves it, if it writes it (``entity_id``: the
        record's, or the one the caller chose for a new record)."""
        if self.write is None or self.state is None or self.version is None:
            return None
        return Record(entity_id, self.state, self.version, self.write is Write.DELETE)


_EMPTY = RecordState({}, {})

# How far along its life each invoice status is (every provider's order: Stripe's draft →
# open → paid/void, Xero's DRAFT/SUBMITTED → AUTHORISED → PAID/VOIDED, QuickBooks' balance
# reaching zero). Overdue is open past its due date. Paid and void are both final.
INVOICE_STATUS_ORDER: dict[str, int] = {"draft": 0, "open": 1, "overdue": 1, "paid": 2, "void": 2}
ORDERS: dict[str, Order] = {"invoice": {"status": INVOICE_STATUS_ORDER}}
# The fields a source states together with an ordered one, as of the same state: when that
# one lags, so do they. An invoice's amount due goes with its status (a payment moves both:
# services/processor/amounts.py derives them together), so a source that has not seen the
# payment making it paid states the amount due from before that payment too.
_LAGS_WITH: dict[str, dict[str, tuple[str, ...]]] = {"invoice": {"status": ("amount_due",)}}
# The field and value of a record still being built (Stripe's draft: issue 17 item 5,
# connectors/stripe/README.md "Assumptions"): a lagging snapshot of it applies none of its
# fields.
_BUILDING: dict[str, tuple[str, str]] = {"invoice": ("status", "draft")}


def check_totals(entity_type: str, values: Mapping[str, Any]) -> None:
    """A merged invoice must satisfy subtotal + tax = total (the canonical model checks a
    change that carries all three; a partial one is checked here, merged)."""
    if entity_type != "invoice":
        return
    subtotal, tax, total = values.get("subtotal"), values.get("tax"), values.get("total")
    if subtotal is None or tax is None or total is None:
        return
    if subtotal + tax != total:
        raise InvalidRecordError(
            "schema_violation",
            f"invoice total {total} must equal subtotal {subtotal} + tax {tax} once merged",
        )


def _newest(seen: datetime | None, ts: datetime) -> datetime:
    return ts if seen is None or ts > seen else seen


def _our_write_in_progress(
    entity_type: str, values: Mapping[str, Any], link: Link, source_ts: datetime
) -> bool:
    """Is this state an earlier step of our own last write, read back late?

    A provider that builds a record in steps (Stripe: a draft invoice, its items, then
    finalize) sends an event at each, and the state read for one of them can still be the
    draft after we wrote the open invoice. Stamped no later than our write, and behind what
    we wrote in the status order, it is not an edit: a user's step back is stamped after
    our write (a whole-second clock gives the same second, so equal counts as ours).
    """
    order = ORDERS.get(entity_type)
    if order is None or link.pushed_updated_at is None or source_ts > link.pushed_updated_at:
        return False
    wrote = link.snapshot or {}
    for name, ranks in order.items():
        mine, ours = ranks.get(values.get(name)), ranks.get(wrote.get(name))
        if mine is not None and ours is not None and mine < ours:
            return True
    return False


def _counter(version: str | None) -> int | None:
    """A version as the counter it is (QuickBooks' SyncToken: "0", "1", ... as text, so
    "10" must not sort before "9"), or None when it is none."""
    if version is None or not version.isdecimal():
        return None
    return int(version)


def _version_order(change: InboundChange, link: Link) -> int | None:
    """How the change's version compares with the link's (-1, 0, 1), or None when they
    cannot be ordered: its provider does not declare them ordered, or either is missing
    (a message or link older than issue 17's) or no counter."""
    if not change.versions_ordered:
        return None
    mine, known = _counter(change.version), _counter(link.remote_version)
    if mine is None or known is None:
        return None
    return (mine > known) - (mine < known)


def _version_to_store(change: InboundChange) -> str | None:
    """The change's version for the link, when it orders anything (rule 1 has already
    turned away one below the link's)."""
    return (
        change.version if _counter(change.version) is not None and change.versions_ordered else None
    )


def _our_write(change: InboundChange, link: Link) -> bool:
    """Is this state, which holds what we last pushed, that write of ours reported back?

    Equal values are not enough: a user who moves a field from X to Y and back to X holds
    exactly what we once pushed, and that revert must reach the other systems. Our write
    is the provider's version as of the time its answer reported; a state the source
    stamps later is someone's write after ours (an echo arriving with a later stamp is no
    loss: it goes through the merge, where a state equal to the link's snapshot changes
    nothing). Without a recorded time (a link older than migration 0020), the hash alone.
    """
    return link.pushed_updated_at is None or change.source_ts <= link.pushed_updated_at


def _our_earlier_write(incoming_hash: str, source_ts: datetime, link: Link) -> bool:
    """Is this state one of our earlier writes (not the last), read back after a later one?

    Two writes within one second to a provider that stamps whole seconds (QuickBooks), or
    whose client stamps reads just before their second (Stripe): the read of the first,
    hydrated before the second landed, reaches us after it, stamped as our last write, so
    neither older than the link's newest (rule 1) nor the last push. The provider read it
    before the write that replaced it landed, so it is stamped no later than that write's
    answer (each write's own, not only the last's: a user who sets a field back to a value
    we once wrote, after the write that replaced it, made an edit, and so did one after our
    last write). Without a stamp for any later write, no match: only the hash would say so.
    """
    replaced_by: datetime | None = None  # the updated-at of the nearest later write known
    for i in range(len(link.pushes) - 1, 0, -1):
        later, earlier = link.pushes[i], link.pushes[i - 1]
        if later.updated_at is not None:
            replaced_by = later.updated_at
        if (
            earlier.state_hash == incoming_hash
            and replaced_by is not None
            and source_ts <= replaced_by
        ):
            return True
    return False


def _lagging_fields(
    entity_type: str,
    values: Mapping[str, Any],
    last_seen: Mapping[str, Any] | None,
    behind: frozenset[str],
) -> frozenset[str] | None:
    """The fields of a change to leave out because its ordered fields (``behind``) lag
    behind the record's (rule 6a): those, and the fields stated with them; None to leave
    out the whole change.

    The whole change when the source told us nothing before (no snapshot to tell its edits
    from what it merely still holds) or when it reports a record still being built (a
    draft: Stripe adds the items one by one after the draft's webhook, so its lines and
    totals are half-built and none of its fields is an edit to carry elsewhere).
    """
    if last_seen is None:
        return None
    building = _BUILDING.get(entity_type)
    if building is not None and values.get(building[0]) == building[1]:
        return None
    goes_with = _LAGS_WITH.get(entity_type, {})
    return behind.union(*(goes_with.get(name, ()) for name in behind))


def missing_reference(change: InboundChange) -> Reference | None:
    """The first record an upsert names that is not linked yet (its ``refs`` left after
    resolution), or None. A delete needs none of the records it named."""
    if change.op != "upsert":
        return None
    for field_name, external_id in sorted(change.refs.items()):
        entity_type = REFERENCE_FIELDS.get(field_name)
        if entity_type is not None:
            return Reference(field_name, entity_type, external_id)
    return None


def decide(  # noqa: PLR0911, PLR0912 - one return per rule of the table: the first that holds wins
    change: InboundChange,
    values: dict[str, Any],
    link: Link | None,
    record: Record | None,
    policy: Policy,
    *,
    behind: Reference | None = None,
    incoming_hash: str | None = None,
) -> Decision:
    """Apply the rules to one change: ``values`` are its validated canonical fields (empty
    for a delete), ``link`` the connection's link for its external id, ``record`` the
    record that link names or, with no link, the one matched on first contact, ``behind``
    what an earlier change of the same record waits for, if one does, ``incoming_hash``
    ``state_hash(values)`` when the caller has it already (the batch encodes the values
    once for the hash and its writes).

    Raises InvalidRecordError (a dead letter, reason ``schema_violation``) for an invoice
    whose merged totals disagree: such a record is never stored.

    A link always comes with its record: a link whose record the tenant does not have is
    refused before deciding (``apply.foreign_link``), so reaching here with one is a bug.
    """
    if link is not None and record is None:
        raise ValueError(f"link to {link.entity_id} without its record: refuse it before")
    missing = missing_reference(change)
    if missing is not None:
        return Decision(Outcome.WAITING, Rule.MISSING_REFERENCE, waits_for=missing)
    if behind is not None:
        return Decision(Outcome.WAITING, Rule.BEHIND_WAITING, waits_for=behind)
    if link is not None and (
        (link.remote_updated_at is not None and change.source_ts < link.remote_updated_at)
        or _version_order(change, link) == -1
    ):
        return Decision(Outcome.STALE, Rule.OLDER_THAN_SEEN, link.entity_id)
    if change.op == "delete":
        return _delete(change, link, record)

    if incoming_hash is None:
        incoming_hash = state_hash(values)
    if link is None or record is None:  # no link (the record, if any, was matched)
        seen = LinkWrite(values, incoming_hash, change.source_ts, _version_to_store(change))
    else:
        seen = LinkWrite(
            {**(link.snapshot or {}), **values},
            incoming_hash,
            _newest(link.remote_updated_at, change.source_ts),
            _version_to_store(change),
        )
        if link.last_pushed_hash == incoming_hash and _our_write(change, link):
            pushed = link.last_pushed_version
            fell_behind = not record.deleted and pushed is not None and record.version > pushed
            return Decision(
                Outcome.ECHO,
                Rule.ECHO,
                link.entity_id,
                link=seen,
                push_again=record.version if fell_behind else None,
            )
        # Above our last write's version (the link's, or a later one heard), it is a
        # user's write after ours, whatever its stamp: a whole-second clock cannot tell.
        if _version_order(change, link) != 1 and _our_earlier_write(
            incoming_hash, change.source_ts, link
        ):
            # Older than what the link holds (our later write): its snapshot and hash stay.
            touched = LinkWrite(None, None, seen.remote_updated_at)
            return Decision(Outcome.ECHO, Rule.EARLIER_PUSH, link.entity_id, link=touched)
        if _our_write_in_progress(change.entity_type, values, link, change.source_ts):
            return Decision(Outcome.STALE, Rule.OLDER_THAN_SEEN, link.entity_id)
    if record is not None and record.deleted:
        return Decision(Outcome.STALE, Rule.RECORD_DELETED, record.entity_id, link=seen)

    last_seen = link.snapshot if link is not None else None
    order = ORDERS.get(change.entity_type)
    current = record.state if record is not None else _EMPTY
    update = Update(str(change.connection_id), change.source_ts, values, last_seen)
    result = merge(current, update, policy, order)
    if record is not None and result.behind:
        lagging = _lagging_fields(change.entity_type, values, last_seen, result.behind)
        if lagging is not None:  # the rest of the change is merged as any change is
            rest = {name: value for name, value in values.items() if name not in lagging}
            result = merge(current, replace(update, values=rest), policy, order)
        if lagging is None or not (result.changed or result.conflicts):
            return Decision(Outcome.NOOP, Rule.STATUS_BEHIND, record.entity_id, link=seen)
    check_totals(change.entity_type, result.state.values)
    if record is None:
        return Decision(
            Outcome.APPLIED,
            Rule.CREATE,
            None,
            Write.CREATE,
            result.state,
            1,
            OutboxEntry(1, result.state.values),
            conflicts=result.conflicts,
            link=seen,
        )
    if result.changed:
        return Decision(
            Outcome.APPLIED,
            Rule.UPDATE,
            record.entity_id,
            Write.UPDATE,
            result.state,
            record.version + 1,
            OutboxEntry(record.version + 1, result.state.values),
            conflicts=result.conflicts,
            link=seen,
        )
    # Nothing changed, but the same value from a newer source moves its provenance.
    moved = result.state.meta != record.state.meta
    return Decision(
        Outcome.CONFLICT if result.conflicts else Outcome.NOOP,
        Rule.CONFLICT if result.conflicts else Rule.UNCHANGED,
        record.entity_id,
        Write.PROVENANCE if moved else None,
        result.state if moved else None,
        record.version,
        conflicts=result.conflicts,
        link=seen,
    )


def _delete(change: InboundChange, link: Link | None, record: Record | None) -> Decision:
    if link is None or record is None:
        return Decision(Outcome.NOOP, Rule.DELETE_UNSEEN)  # nothing of ours to delete
    touched = LinkWrite(
        None,
        None,
        _newest(link.remote_updated_at, change.source_ts),
        _version_to_store(change),
    )
    if record.deleted:
        return Decision(Outcome.NOOP, Rule.ALREADY_DELETED, link.entity_id, link=touched)
    return Decision(
        Outcome.APPLIED,
        Rule.DELETE,
        link.entity_id,
        Write.DELETE,
        record.state,
        record.version + 1,
        OutboxEntry(record.version + 1, record.state.values, deleted=True),
        link=touched,
    )
