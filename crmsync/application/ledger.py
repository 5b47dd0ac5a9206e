"""The ledger (DESIGN invariant 13): every acknowledgement accounted for, per connection.

This module is the pure core: it sorts accepted events and committed changes into their
categories from facts read elsewhere (``ledger_io``), and says what does not add up.

**Inbound**, the unit is one *event*, attributed to the window by when ingest accepted it
(the Kafka timestamp of its record):

* a ``changes.internal`` record is one event (one change of ``POST /v1/changes``);
* a ``webhooks.raw`` record is one envelope (one 2xx), holding as many events as the
  connector's mapper finds in its body: each item it maps, plus each provider event it
  ignores on purpose (an event type that carries no record we sync). An envelope whose
  body cannot be mapped counts as one event.

accepted = applied + duplicates + skipped + dead-lettered + in flight (+ unaccounted):

* applied: its dedup key (connection, provider event id) is in ``processed_events``, and
  it is the first accepted occurrence of the key; *duplicates* are the others (a key
  first processed before the window makes every occurrence in it a duplicate).
* skipped: acknowledged and dropped on purpose, so the provider stops retrying: an event
  type the mapper ignores, an item the connection's settings do not sync inbound, a thin
  webhook's record gone at the provider (``inbound_skips``).
* dead-lettered: an open or discarded dead letter holds its record (by the record's own
  event id, which a redriven copy keeps) or its change (by dedup key). A redriven one is
  as far as its copy got.
* in flight: its record, or the normalised change or re-produced copy carrying it, is at
  or past the processor's committed offset: not consumed yet; or its change is parked in
  ``waiting_changes``, waiting for a record it names (invariant 10).
* unaccounted: consumed, and none of the above. That is a lost event.

**Outbound**, the unit is one (committed change, target connection) pair: each change
committed in the window (its ``committed_at``) against every connection of its tenant.

changes x targets = pushed + skipped by rule + dead-lettered + pending (+ unaccounted):

* skipped: ``echo`` (the target is the change's origin), ``settings`` (the target does not
  sync that type outbound, is disabled or internal, or was connected after the change),
  ``deleted`` (the record was deleted before it ever reached the target: outbound skips
  deleting what the target never had), ``held`` (a version the target cannot hold yet,
  ``ApiSpec.holds_back``, held back by a push after the change committed, the target
  never linked: the version it can hold is pushed when it comes).
* pushed: the target's link holds a pushed version at least the change's: this push, or
  a later one that carried it (the push queue keeps one row per record and target).
* pending: a push of at least that version is queued; or the change is still in the
  outbox or not yet consumed from ``records.changed`` by outbound.
* dead-lettered: an open or discarded outbound dead letter of at least that version.
* unaccounted: routed, and none of the above.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

# How many examples of unaccounted events a ledger keeps, per connection and direction.
MAX_EXAMPLES = 5

Key = tuple[uuid.UUID, str]  # (connection, dedup key: the provider's or publisher's event id)
Target = tuple[uuid.UUID, str, uuid.UUID]  # (connection, entity type, entity id)


# -- inbound ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Accepted:
    """One accepted inbound event."""

    connection_id: uuid.UUID
    # The Kafka record's own event id (envelope or change): a redriven copy keeps it.
    record_id: str
    where: str  # "topic[partition]@offset", to name it in a report
    partition: int
    offset: int
    timestamp_ms: int
    topic: str
    key: str | None = None  # None: no item (an ignored event type, an unmappable body)
    entity_type: str | None = None
    skipped: str | None = None  # known from the body alone: "ignored_event_type"


@dataclass(frozen=True)
class InboundFacts:
    processed: Mapping[Key, datetime]  # processed_events: key -> processed_at
    recorded_skips: Mapping[Key, str]  # inbound_skips: key -> reason
    # (connection, entity type) pairs the connection does not sync inbound today: the
    # fallback for skips from before inbound_skips was written.
    not_synced: frozenset[tuple[uuid.UUID, str]]
    dead_records: frozenset[str]  # record ids of open or discarded dead letters
    dead_keys: frozenset[Key]  # dedup keys of open or discarded dead-lettered changes
    # Not consumed by the processor yet: the first offset it has not committed, per
    # (topic, partition); a partition missing has nothing committed.
    committed: Mapping[tuple[str, int], int]
    waiting_records: frozenset[str]  # record ids of unconsumed copies (redrive, replay)
    waiting_keys: frozenset[Key]  # keys of unconsumed changes.normalized records
    # Keys of changes parked until a record they name is linked: consumed, not applied.
    parked_keys: frozenset[Key] = frozenset()


@dataclass
class _Fates:
    """What both directions count of each item: skipped (by reason), dead-lettered, or
    unaccounted (with a few examples); each direction adds its own fates."""

    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: int = 0
    unaccounted: int = 0
    examples: list[str] = field(default_factory=list)

    def tally(self, fate: str, counted: tuple[str, ...]) -> bool:
        """Count one item's ``fate``: ``skipped:<reason>``, one of the ``counted`` fates (a
        field of that name), or else unaccounted. True when it is unaccounted and an example
        of it is wanted still (up to MAX_EXAMPLES)."""
        if fate.startswith("skipped:"):
            self.skipped[fate.removeprefix("skipped:")] += 1
        elif fate in counted:
            setattr(self, fate, getattr(self, fate) + 1)
        else:
            self.unaccounted += 1
            return len(self.examples) < MAX_EXAMPLES
        return False


@dataclass
class InboundCounts(_Fates):
    records: int = 0  # Kafka records accepted at ingest (webhook envelopes, changes)
    accepted: int = 0  # events in them
    applied: int = 0
    duplicates: int = 0
    in_flight: int = 0

    @property
    def explained(self) -> int:
        return (
            self.applied
            + self.duplicates
            + sum(self.skipped.values())
            + self.dead_lettered
            + self.in_flight
        )


def classify_inbound(
    events: Iterable[Accepted],
    facts: InboundFacts,
    *,
    since: datetime | None,
    records: Mapping[uuid.UUID, int] | None = None,
) -> dict[uuid.UUID, InboundCounts]:
    """Counts per connection. ``records``: Kafka records accepted per connection."""
    counts: dict[uuid.UUID, InboundCounts] = {}
    processed_here: dict[Key, list[Accepted]] = {}
    for e in events:
        c = counts.setdefault(e.connection_id, InboundCounts())
        c.accepted += 1
        key = (e.connection_id, e.key) if e.key is not None else None
        if key is not None and key in facts.processed:
            processed_here.setdefault(key, []).append(e)
            continue
        if c.tally(_fate(e, key, facts), ("dead_lettered", "in_flight")):
            c.examples.append(e.where + (f" event {e.key}" if e.key else ""))
    for key, occurrences in processed_here.items():
        c = counts[key[0]]
        # Applied once: by the first occurrence, unless the key was processed before the
        # window began (then that earlier one applied it).
        first_here = since is None or facts.processed[key] >= since
        c.applied += 1 if first_here else 0
        c.duplicates += len(occurrences) - (1 if first_here else 0)
    for connection_id, n in (records or {}).items():
        counts.setdefault(connection_id, InboundCounts()).records = n
    return counts


def _fate(e: Accepted, key: Key | None, facts: InboundFacts) -> str:
    skip = e.skipped or (facts.recorded_skips.get(key) if key is not None else None)
    if skip is None and (e.connection_id, e.entity_type) in facts.not_synced:
        skip = "not_synced"
    if skip is not None:
        return f"skipped:{skip}"
    if e.record_id in facts.dead_records or (key is not None and key in facts.dead_keys):
        return "dead_lettered"
    consumed_upto = facts.committed.get((e.topic, e.partition))
    waiting = (
        consumed_upto is None
        or e.offset >= consumed_upto
        or e.record_id in facts.waiting_records
        or (key is not None and (key in facts.waiting_keys or key in facts.parked_keys))
    )
    return "in_flight" if waiting else "unaccounted"


# -- outbound ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Committed:
    """One committed change, as records.changed (or the outbox, before the relay) has it."""

    change_id: uuid.UUID
    tenant_id: uuid.UUID
    entity_type: str
    entity_id: uuid.UUID
    version: int
    origin_connection_id: uuid.UUID | None
    committed_at: datetime
    routed: bool  # consumed by outbound (below its committed offset)


@dataclass(frozen=True)
class TargetInfo:
    connection_id: uuid.UUID
    tenant_id: uuid.UUID
    created_at: datetime
    pushes: frozenset[str]  # entity types it receives (its settings today)


@dataclass(frozen=True)
class OutboundFacts:
    pushed: Mapping[Target, int]  # entity_links.last_pushed_version
    queued: Mapping[Target, int]  # push_jobs.version
    dead: Mapping[Target, int]  # highest version of an open or discarded outbound dead letter
    deleted: frozenset[uuid.UUID]  # records deleted today
    linked: frozenset[Target]  # links, pushed or not
    # The newest time outbound held a version back from a target it was never linked to
    # (sync log ``held``: ApiSpec.holds_back, a pending payment to Xero), per target.
    held: Mapping[Target, datetime] = field(default_factory=dict)


@dataclass
class OutboundCounts(_Fates):
    changes: int = 0  # committed changes x this target
    pushed: int = 0
    pending: int = 0

    @property
    def explained(self) -> int:
        return self.pushed + sum(self.skipped.values()) + self.dead_lettered + self.pending


def classify_outbound(
    changes: Iterable[Committed], targets: Iterable[TargetInfo], facts: OutboundFacts
) -> dict[uuid.UUID, OutboundCounts]:
    by_tenant: dict[uuid.UUID, list[TargetInfo]] = {}
    for t in targets:
        by_tenant.setdefault(t.tenant_id, []).append(t)
    counts = {t.connection_id: OutboundCounts() for ts in by_tenant.values() for t in ts}
    for change in changes:
        for target in by_tenant.get(change.tenant_id, ()):
            c = counts[target.connection_id]
            c.changes += 1
            fate = _push_fate(change, target, facts)
            if c.tally(fate, ("pushed", "pending", "dead_lettered")):
                c.examples.append(
                    f"change {change.change_id} ({change.entity_type} {change.entity_id}"
                    f" v{change.version})"
                )
    return counts


def _push_fate(change: Committed, target: TargetInfo, facts: OutboundFacts) -> str:
    key = (target.connection_id, change.entity_type, change.entity_id)
    v = change.version
    held_at = facts.held.get(key)
    # In order: the first that holds is the change's fate for this target.
    rules = (
        (change.origin_connection_id == target.connection_id, "skipped:echo"),
        (
            target.created_at > change.committed_at or change.entity_type not in target.pushes,
            "skipped:settings",
        ),
        (facts.pushed.get(key, 0) >= v, "pushed"),
        (facts.queued.get(key, 0) >= v or not change.routed, "pending"),
        (facts.dead.get(key, 0) >= v, "dead_lettered"),
        (change.entity_id in facts.deleted and key not in facts.linked, "skipped:deleted"),
        # A push that ran after the change committed read this version or a later one and
        # held it back: the target cannot hold it yet (linked, it counts as pushed).
        (
            key not in facts.linked and held_at is not None and held_at >= change.committed_at,
            "skipped:held",
        ),
    )
    return next((fate for holds, fate in rules if holds), "unaccounted")


# -- the ledger -------------------------------------------------------------------------


@dataclass
class ConnectionLedger:
    connection_id: uuid.UUID
    provider: str
    name: str
    inbound: InboundCounts
    outbound: OutboundCounts

    def problems(self) -> list[str]:
        who = f"connection {self.connection_id} ({self.provider} {self.name!r})"
        found = []
        i, o = self.inbound, self.outbound
        if i.unaccounted or i.explained + i.unaccounted != i.accepted:
            found.append(
                f"{who}: inbound: {i.accepted - i.explained} of {i.accepted} accepted events"
                " unaccounted (consumed by the processor, but neither applied, a duplicate,"
                " skipped nor dead-lettered)" + _examples(i.examples)
            )
        if o.unaccounted or o.explained + o.unaccounted != o.changes:
            found.append(
                f"{who}: outbound: {o.changes - o.explained} of {o.changes} committed changes"
                " unaccounted (routed, but neither pushed, skipped, queued nor dead-lettered)"
                + _examples(o.examples)
            )
        return found


def _examples(examples: list[str]) -> str:
    return f"; e.g. {', '.join(examples)}" if examples else ""


@dataclass
class Ledger:
    since: datetime | None
    until: datetime
    connections: list[ConnectionLedger]
    # What limits the ledger without unbalancing it, e.g. a consumer group that committed
    # nothing (all it has not applied counts as in flight: a wrong group name looks so).
    notes: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return [p for c in self.connections for p in c.problems()]

    @property
    def balanced(self) -> bool:
        """Every acknowledged event and every committed change is accounted for."""
        return not self.problems()

    @property
    def in_flight(self) -> int:
        """Events and pushes not finished yet: 0 once the pipeline is quiet."""
        return sum(c.inbound.in_flight + c.outbound.pending for c in self.connections)

    @property
    def settled(self) -> bool:
        """Balanced with nothing in flight: what a fault test waits for."""
        return self.balanced and self.in_flight == 0


def unconsumed_notes(
    group: str, seen: Iterable[tuple[str, int]], committed: Mapping[tuple[str, int], int]
) -> list[str]:
    """A note per topic the window's records are on where ``group`` has committed nothing
    at all: all it has not applied there counts as in flight, which is what a wrong group
    name looks like. (A partition it has not committed on yet is normal for a while.)"""
    done = {t for t, _ in committed}
    return [
        f"consumer group {group} has committed no offset on {t}:"
        " all it has not applied there counts as in flight"
        for t in sorted({t for t, _ in seen} - done)
    ]
