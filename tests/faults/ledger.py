"""Counting what became of every acknowledged event: applied, pushed, dead-lettered, lost,
duplicated. One function, `count_ledger`, does all the counting, so the project's own
ledger (`crmsync audit`) can replace it without touching the scenarios."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import asyncpg
from pydantic import ValidationError

from connectors.simkit import Simulator
from schemas.envelope import WebhookEnvelope

# Every event of a run carries its key (in its id, external id or email), so any row,
# request or dead letter that names it can be traced back: ``fk-<run>-<n>``.
KEY = re.compile(r"fk-[0-9a-f]{6}-\d{5}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# How many keys a report names per problem; the counts carry the rest.
SHOWN = 20


def event_key(run_id: str, n: int) -> str:
    return f"fk-{run_id}-{n:05d}"


def email_of(key: str) -> str:
    return f"{key}@faults.example"


@dataclass
class Load:
    """What a scenario sent: every event's key, the source's id for it, and which
    ones ingest acknowledged (2xx) or finally refused."""

    run_id: str
    keys: list[str]
    external_ids: dict[str, str] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    statuses: Counter[str] = field(default_factory=Counter)

    @classmethod
    def new(cls, size: int) -> Load:
        run_id = uuid.uuid4().hex[:6]
        keys = [event_key(run_id, n) for n in range(size)]
        return cls(run_id, keys, {k: k for k in keys})

    def key_of(self, external_or_key: str) -> str | None:
        if KEY.fullmatch(external_or_key):
            return external_or_key
        return self._by_external().get(external_or_key)

    def _by_external(self) -> dict[str, str]:
        return {v: k for k, v in self.external_ids.items()}


@dataclass
class Ledger:
    sent: int
    accepted: int
    refused: int
    applied: int
    pushed: int
    dead_lettered: int
    lost_in_apply: list[str]
    lost_in_push: list[str]
    duplicated: dict[str, str]
    origin_writes: int
    extra_applied: int
    processed_events: int
    outbox_left: int
    push_jobs_left: int
    dead_letters: dict[str, int]

    @property
    def lost(self) -> int:
        return len(self.lost_in_apply) + len(self.lost_in_push)

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and not self.duplicated
            and self.dead_lettered == 0
            and self.origin_writes == 0
        )

    def problems(self) -> list[str]:
        found = []
        if self.lost_in_apply:
            found.append(
                f"{len(self.lost_in_apply)} acknowledged events never applied (and not "
                f"dead-lettered), e.g. {self.lost_in_apply[:SHOWN]}"
            )
        if self.lost_in_push:
            found.append(
                f"{len(self.lost_in_push)} applied records never pushed to the target, "
                f"e.g. {self.lost_in_push[:SHOWN]}"
            )
        if self.duplicated:
            shown = dict(list(self.duplicated.items())[:SHOWN])
            found.append(f"{len(self.duplicated)} events applied or pushed twice: {shown}")
        if self.dead_lettered:
            found.append(
                f"{self.dead_lettered} valid events dead-lettered by a transient fault: "
                f"{self.dead_letters}"
            )
        if self.origin_writes:
            found.append(f"{self.origin_writes} writes went back to the source CRM (echo)")
        return found

    def summary(self) -> str:
        return (
            f"sent {self.sent}, accepted {self.accepted} (refused {self.refused}), "
            f"applied {self.applied}, pushed {self.pushed}, dead-lettered "
            f"{self.dead_lettered}, lost {self.lost} ({len(self.lost_in_apply)} in apply, "
            f"{len(self.lost_in_push)} in push), duplicated {len(self.duplicated)}; "
            f"processed_events {self.processed_events}, outbox left {self.outbox_left}, "
            f"push jobs left {self.push_jobs_left}, applied though refused "
            f"{self.extra_applied}, dead letters {self.dead_letters or 0}"
        )


def target_writes(sim: Simulator, entity_type: str = "customer") -> Counter[str]:
    """Create and update requests a simulated CRM accepted, per event key.

    A create leaves one stored object each (a repeated create, a second object); an
    update is a 2xx PATCH/PUT/POST on the object's own path.
    """
    writes: Counter[str] = Counter()
    keys_by_id: dict[str, str] = {}
    for record_id, obj in sim.store.get(entity_type, {}).items():  # type: ignore[call-overload]
        found = KEY.search(json.dumps(obj, default=str))
        if found:
            keys_by_id[record_id] = found.group()
            writes[found.group()] += 1
    for request in sim.log.requests:
        status = int(request.get("status") or 0)
        if request["method"] not in WRITES or not 200 <= status < 300:
            continue
        last = request["path"].rstrip("/").rsplit("/", 1)[-1]
        if last in keys_by_id:
            writes[keys_by_id[last]] += 1
    return writes


def origin_writes(sim: Simulator | None) -> int:
    """Writes a source CRM received from us (its token endpoint aside): echoes."""
    if sim is None:
        return 0
    return sum(
        1
        for r in sim.log.requests
        if r["method"] in WRITES
        and r["path"] not in sim.public_paths
        and 200 <= int(r.get("status") or 0) < 300
    )


def _named(payload: bytes, by_external: Mapping[str, str]) -> set[str]:
    """The event keys a dead letter's bytes name, its webhook body included."""
    text = payload.decode(errors="replace")
    with contextlib.suppress(ValidationError):
        text += WebhookEnvelope.model_validate_json(payload).body.decode(errors="replace")
    keys = set(KEY.findall(text))
    keys.update(by_external[u] for u in UUID.findall(text) if u in by_external)
    return keys


def _keys(values: Iterable[tuple[str | None, int]], load: Load) -> Counter[str]:
    counts: Counter[str] = Counter()
    for value, n in values:
        key = load.key_of(value) if value else None
        if key is not None:
            counts[key] += n
    return counts


async def count_ledger(  # noqa: PLR0912 - one branch per outcome of an event
    database_url: str,
    *,
    tenant_id: uuid.UUID,
    source_id: uuid.UUID,
    load: Load,
    targets: Iterable[Simulator],
    origin: Simulator | None,
) -> Ledger:
    """Count every acknowledged event through to each target CRM, straight from the
    tables and the simulators (the one place the suite counts)."""
    conn: asyncpg.Connection = await asyncpg.connect(database_url, timeout=10)
    try:
        customers = await conn.fetch(
            """
            SELECT email_normalized AS email, count(*) AS n FROM customers
             WHERE tenant_id = $1 AND deleted_at IS NULL GROUP BY 1
            """,
            tenant_id,
        )
        in_rows = await conn.fetch(
            """
            SELECT external_id, count(*) AS n FROM sync_log
             WHERE connection_id = $1 AND direction = 'in' AND outcome = 'applied'
             GROUP BY 1
            """,
            source_id,
        )
        processed = int(
            await conn.fetchval(
                "SELECT count(*) FROM processed_events WHERE connection_id = $1", source_id
            )
        )
        outbox_left = int(await conn.fetchval("SELECT count(*) FROM outbox"))
        push_jobs_left = int(await conn.fetchval("SELECT count(*) FROM push_jobs"))
        letters = await conn.fetch(
            """
            SELECT stage, reason, payload FROM dead_letters
             WHERE (tenant_id = $1 OR tenant_id IS NULL)
               AND redriven_at IS NULL AND discarded_at IS NULL
            """,
            tenant_id,
        )
    finally:
        await conn.close()

    records = []
    for row in customers:
        found = KEY.search(row["email"] or "")
        if found:
            records.append((found.group(), int(row["n"])))
    per_record = _keys(records, load)
    per_in_row = _keys(((r["external_id"], r["n"]) for r in in_rows), load)
    by_external = {v: k for k, v in load.external_ids.items()}
    named: set[str] = set()
    letter_counts: Counter[str] = Counter()
    for letter in letters:
        letter_counts[f"{letter['stage']}/{letter['reason']}"] += 1
        named |= _named(bytes(letter["payload"]), by_external)
    writes = [target_writes(t) for t in targets]

    applied = pushed = dead = 0
    lost_apply: list[str] = []
    lost_push: list[str] = []
    duplicated: dict[str, str] = {}
    for key in load.keys:
        if key not in load.accepted:
            continue
        n_records = per_record.get(key, 0)
        if n_records == 0:
            if key in named:
                dead += 1
            else:
                lost_apply.append(key)
            continue
        applied += 1
        why = []
        if n_records > 1:
            why.append(f"{n_records} records")
        if per_in_row.get(key, 0) > 1:
            why.append(f"applied {per_in_row[key]}x in sync_log")
        per_target = [w.get(key, 0) for w in writes]
        if any(n > 1 for n in per_target):
            why.append(f"pushed {per_target}x")
        if why:
            duplicated[key] = ", ".join(why)
        if all(n >= 1 for n in per_target):
            pushed += 1
        elif key in named:
            dead += 1
        else:
            lost_push.append(key)
    extra = sum(1 for key in per_record if key not in load.accepted)
    return Ledger(
        sent=len(load.keys),
        accepted=len(load.accepted),
        refused=len(load.refused),
        applied=applied,
        pushed=pushed,
        dead_lettered=dead,
        lost_in_apply=lost_apply,
        lost_in_push=lost_push,
        duplicated=duplicated,
        origin_writes=origin_writes(origin),
        extra_applied=extra,
        processed_events=processed,
        outbox_left=outbox_left,
        push_jobs_left=push_jobs_left,
        dead_letters=dict(letter_counts),
    )
