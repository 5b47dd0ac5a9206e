"""Drive a plan through the running systems, wait for quiet, compare every system.

Each operation is made where the plan says: in a simulated CRM's store, as its user
would (the body built by that connector's own ``from_canonical``, so the simulator fires
its webhook exactly as for any edit), or as one change to ``POST /v1/changes``.
Operations on one record keep their order; others run concurrently. An edit in a system
the record has not reached yet waits for it to arrive there.

At the end: quiet, then a full reconciliation of every connection (what catches the
dropped webhooks), quiet again, then a quiet window in which nothing may be pushed.
Every system is then read back through its connector's ``to_canonical`` and compared with
the canonical records, and the canonical records with what the plan left.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
from aiohttp import web

from connectors.generic.paths import read
from connectors.generic.simulator import MappingSimulator
from connectors.hubspot.simulator import HubSpotSimulator
from connectors.paypal.mapping import recipients
from connectors.paypal.simulator import PayPalSimulator
from connectors.simkit import Fault as SimFault
from connectors.spec import MappingError, RemoteRecord
from connectors.square.simulator import SquareSimulator
from crmsync.application.sync import jobs
from tests.convergence.plan import INSIDE, INTERNAL, REFERENCES, Kind, Op, Plan
from tests.convergence.rules import (
    Refusal,
    held_back,
    not_deletable,
    not_updatable,
    recipient_only,
    refusal,
    voided,
)
from tests.convergence.stack import System, Systems

Say = Callable[[str], None]
TABLES: dict[Kind, str] = {
    "customer": "customers",
    "job": "jobs",
    "invoice": "invoices",
    "payment": "payments",
}
# The canonical fields compared in every system that maps them (references separately).
COMPARED: dict[Kind, tuple[str, ...]] = {
    "customer": ("name", "email", "phone"),
    "job": ("title",),
    "invoice": ("number", "total"),
    "payment": ("amount", "reference"),
}
# What makes two records the same record (invariant 6): two live ones are a duplicate.
NATURAL_KEY: dict[Kind, str] = {
    "customer": "email",
    "job": "title",
    "invoice": "number",
    "payment": "reference",
}
# How long an edit waits for its record (or a record it names) to reach its system.
ARRIVAL_SECONDS = 60.0
# An op waiting this long for its record (a dropped webhook?) asks for a reconciliation
# of the system it was made in, listing what changed in RECONCILE_WINDOW.
NUDGE_SECONDS = 8.0
RECONCILE_WINDOW = timedelta(minutes=10)
# Nothing moved for this long: quiet.
QUIET_SECONDS = 3.0
# How long an op may take to reach the canonical record and every system before the next
# op on that record goes ahead anyway.
SETTLE_SECONDS = 20.0
# Between serial ops: the next op starts once the last one has gone everywhere.
SERIAL_QUIET_SECONDS = 1.0
# After quiet and reconciliation: a window in which any push is an echo loop.
SILENCE_SECONDS = 5.0
# Mismatches and foreign dead letters the report shows (scripts/converge writes them all
# to examples.txt in its workdir).
EXAMPLES = 30
# Retry-After the injected 429s carry (seconds).
RETRY_AFTER = 1.0
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a Stripe user does after making an invoice or a payment there (finalize, confirm).
STRIPE_USER_STEPS = frozenset({("invoice", "open"), ("payment", "succeeded")})


@dataclass
class Result:
    ops: int
    seconds_ops: float = 0.0
    seconds_to_converge: float = 0.0
    quiet: bool = False
    pushes: int = 0
    push_attempts: int = 0
    ideal_pushes: int = 0
    pushes_after_quiet: int = 0
    injected: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)
    # provider_rule dead letters a named rule explains (tests/convergence/rules.py), and the
    # differences one allows, by rule.
    ruled_dead_letters: Counter[str] = field(default_factory=Counter)
    explained: Counter[str] = field(default_factory=Counter)
    foreign_dead_letters: Counter[str] = field(default_factory=Counter)
    mismatches: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    # "<system> <kind>" -> records read back there and compared with their canonical ones.
    compared: Counter[str] = field(default_factory=Counter)
    reconciles: int = 0
    unsettled: list[str] = field(default_factory=list)
    superseded: int = 0
    examples: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    # Edits (by field) that set a value their system already held (a concurrent edit from
    # another system had not reached it yet): no edit there, so not in the expected state.
    held_already: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return (
            self.quiet
            and not self.mismatches
            and self.duplicates == 0
            and self.pushes_after_quiet == 0
            and not self.foreign_dead_letters
            and not self.skipped
        )

    def mismatch(self, kind: str, what: str, text: str) -> None:
        self.mismatches[f"{kind} {what}"] += 1
        self.examples.append(f"{kind} {what}: {text}")

    def report(self) -> str:
        per_op = self.pushes / self.ops if self.ops else 0.0
        ideal = self.ideal_pushes / self.ops if self.ops else 0.0
        lines = [
            f"ops {self.ops}: made in {self.seconds_ops:.1f}s, "
            f"converged {self.seconds_to_converge:.1f}s after the last"
            + ("" if self.quiet else " (NEVER QUIET)"),
            f"pushes {self.pushes} ({per_op:.2f}/op; one per other system would be "
            f"{ideal:.2f}/op), attempts {self.push_attempts}, "
            f"after quiet {self.pushes_after_quiet}",
            f"injected: {dict(sorted(self.injected.items())) or 'nothing'}",
            f"dead letters: {dict(sorted(self.dead_letters.items())) or 'none'}"
            + (
                f"; NOT injected: {dict(sorted(self.foreign_dead_letters.items()))}"
                if self.foreign_dead_letters
                else ""
            ),
            "provider rules (expected dead letters and the differences they leave):"
            f" {dict(sorted(self.ruled_dead_letters.items())) or 'none'};"
            f" {dict(sorted(self.explained.items())) or 'none'}",
            f"duplicates: {self.duplicates}; reconciliations asked for on the way:"
            f" {self.reconciles}",
            f"ops that did not reach every system in {SETTLE_SECONDS:g}s: "
            f"{', '.join(self.unsettled) or 'none'}; ops a later version from another"
            f" system superseded: {self.superseded}",
            f"mismatches: {dict(sorted(self.mismatches.items())) or 'none'}",
        ]
        if self.refused:
            lines.append(
                f"ops the provider refused, as it would its user ({len(self.refused)}):"
                f" {self.refused[:5]}"
            )
        if self.held_already:
            lines.append(
                f"edits of a value their system already held, not edits"
                f" ({len(self.held_already)}): {self.held_already[:5]}"
            )
        if self.skipped:
            lines.append(f"ops that could not be made ({len(self.skipped)}): {self.skipped[:10]}")
        lines += [f"  {e}" for e in self.examples[:EXAMPLES]]
        if len(self.examples) > EXAMPLES:
            lines.append(f"  ... and {len(self.examples) - EXAMPLES} more")
        lines.append("CONVERGED" if self.converged else "NOT CONVERGED")
        return "\n".join(lines)


class _NotThereError(Exception):
    """The op's record is not in its system because that provider refused it by a
    named rule (tests/convergence/rules.py): its user could not edit it there."""

    def __init__(self, rule: Refusal) -> None:
        super().__init__(rule.name)
        self.rule = rule


class Runner:
    def __init__(self, plan: Plan, systems: Systems, say: Say) -> None:
        self.plan = plan
        self.systems = systems
        self.say = say
        self.result = Result(len(plan.ops))
        # (system, key) -> that system's id of the record, for records made there.
        self.made: dict[tuple[str, str], str] = {}
        self.origin: dict[str, str] = {}
        self.kind: dict[str, Kind] = {}
        self.values: dict[str, dict[str, object]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        # key -> what the internal service last posted for it: all it holds of the record,
        # since it is pushed nothing.
        self.posted: dict[str, dict[str, object]] = {}
        self.poison: list[str] = []
        self.nudged: dict[str, float] = {}
        self.alive: dict[str, bool] = {}
        # key -> the system its user deleted it in (its last delete).
        self.deleted_in: dict[str, str] = {}
        self.refused_keys: set[str] = set()
        # (provider, canonical id) -> the rule its provider_rule dead letter follows.
        self.refused_at: dict[tuple[str, uuid.UUID], list[Refusal]] = {}
        self.key_of: dict[uuid.UUID, str] = {}

    # --- ids across systems ---------------------------------------------------------------

    async def entity_id(self, key: str) -> uuid.UUID | None:
        origin = self.origin[key]
        if (origin, key) not in self.made:
            return None  # its create was skipped: already reported
        value = await self.systems.pool.fetchval(
            "SELECT entity_id FROM entity_links WHERE connection_id = $1 AND entity_type = $2"
            " AND external_id = $3",
            self.systems.connection_of(origin),
            self.kind[key],
            self.made[(origin, key)],
        )
        return value if isinstance(value, uuid.UUID) else None

    async def external_id(self, system: str, key: str) -> str | None:
        made = self.made.get((system, key))
        if made is not None:
            return made
        entity_id = await self.entity_id(key)
        if entity_id is None:
            return None
        value = await self.systems.pool.fetchval(
            "SELECT external_id FROM entity_links WHERE connection_id = $1 AND entity_type = $2"
            " AND entity_id = $3",
            self.systems.connection_of(system),
            self.kind[key],
            entity_id,
        )
        return str(value) if value is not None else None

    async def arrived(self, system: str, key: str) -> str | None:
        """The record's id in ``system`` once it got there (None: not in time)."""
        started = time.monotonic()
        while True:
            found = await self.external_id(system, key)
            if found is not None:
                return found
            waited = time.monotonic() - started
            if waited > ARRIVAL_SECONDS:
                return None
            if waited > NUDGE_SECONDS:
                rule = await self.refused(system, key)
                if rule is not None:
                    raise _NotThereError(rule)
                await self.nudge(self.origin[key])
            await asyncio.sleep(0.2)

    async def nudge(self, system: str) -> None:
        """A reconciliation of ``system`` now, as its schedule would run one: a record
        whose webhook was dropped arrives by it (at most one per NUDGE_SECONDS each)."""
        crm = self.systems.crms.get(system)
        if crm is None or time.monotonic() - self.nudged.get(system, -1e9) < NUDGE_SECONDS:
            return
        self.nudged[system] = time.monotonic()
        _job, queued = await jobs.queue(
            self.systems.pool,
            tenant_id=self.systems.tenant_id,
            connection_id=crm.connection_id,
            kind="reconcile",
            entity_types=crm.kinds,
            modified_since=datetime.now(UTC) - RECONCILE_WINDOW,
            requested_by="converge",
        )
        if queued:
            self.result.reconciles += 1

    async def refused(self, system: str, key: str) -> Refusal | None:
        """The named rule by which ``system`` refused the record ``key`` (a
        provider_rule dead letter), or None."""
        entity_id = await self.entity_id(key)
        if entity_id is None or system not in self.systems.crms:
            return None
        rows = await self.systems.pool.fetch(
            "SELECT detail, payload FROM dead_letters WHERE connection_id = $1"
            " AND reason = 'provider_rule' AND stage = 'outbound'",
            self.systems.connection_of(system),
        )
        for row in rows:
            if _payload(row["payload"]).get("entity_id") != str(entity_id):
                continue
            rule = refusal(system, self.kind[key], row["detail"])
            if rule is not None and rule.operation == "create":
                return rule
        return None

    # --- operations ------------------------------------------------------------------------

    async def apply(self, op: Op) -> bool:
        """Make the op in its system; False when that system refused it (it did not
        happen: nothing to wait for)."""
        if op.key in self.refused_keys or set(op.refs.values()) & self.refused_keys:
            self.result.refused.append(f"#{op.index} {op.action} {op.key}: its create was refused")
            self.refused_keys.add(op.key)
            return False
        previous = self.values.get(op.key, {})
        if op.action == "create":
            self.origin[op.key] = op.system
            self.kind[op.key] = op.kind
            self.refs[op.key] = dict(op.refs)
        self.values[op.key] = {**previous, **op.values}
        try:
            if op.system == INTERNAL:
                unchanged = await self._internal(op)
            else:
                unchanged = await self._crm(self.systems.crms[op.system], op)
            if op.action == "update":
                # Not an edit: the field keeps what the plan had before (a concurrent edit
                # elsewhere, still on its way here, is the newer one). Only the compared
                # fields: the others (an invoice's status, derived from its payments) also
                # build later ops' bodies, which this must not change.
                kept = {
                    n
                    for n in unchanged & set(COMPARED[op.kind])
                    if n in previous and previous[n] != op.values[n]
                }
                for name in kept:
                    self.values[op.key][name] = previous[name]
                if kept:
                    self.result.held_already.append(
                        f"#{op.index} {op.kind} {op.key} in {op.system}: {sorted(kept)}"
                    )
        except _NotThereError as exc:
            self.values[op.key] = previous
            self.result.refused.append(
                f"#{op.index} {op.action} {op.kind} {op.key} in {op.system}: not there"
                f" ({exc.rule.name})"
            )
            return False
        except web.HTTPException as exc:
            # The provider refused the edit, as its UI would refuse the user (Xero does
            # not edit a paid invoice): the op did not happen.
            self.values[op.key] = previous
            if op.action == "create":
                self.refused_keys.add(op.key)
            self.result.refused.append(
                f"#{op.index} {op.action} {op.kind} {op.key} in {op.system}: {exc.text}"
            )
            return False
        self.alive[op.key] = op.action != "delete"
        if op.action == "delete":
            self.deleted_in[op.key] = op.system
        return True

    async def _crm(self, crm: System, op: Op) -> set[str]:
        """Make the op in ``crm``'s simulator; the fields of an update that it already held
        (set to the value they had there: no edit, see :func:`held_already`)."""
        sim = crm.running.sim
        record_id: str | None = None
        if op.action != "create":
            record_id = await self.arrived(op.system, op.key)
            if record_id is None:
                self.result.skipped.append(f"#{op.index} {op.action} {op.key} in {op.system}")
                return set()
            if op.action == "delete":
                sim.delete(op.kind, record_id)
                return set()
        refs: dict[str, str] = {}
        for ref_field, ref_key in self.refs[op.key].items():
            found = await self.arrived(op.system, ref_key)
            if found is None:
                self.result.skipped.append(f"#{op.index} {op.key} in {op.system}: {ref_key}")
                return set()
            refs[ref_field] = found
        unchanged = held_already(crm, op.kind, record_id, op.values) if record_id else set()
        if op.system == "myob" and op.kind == "payment" and "invoice_id" in refs:
            # A MYOB user records a payment for a customer, then applies it to an invoice.
            invoice = sim.store["invoice"].get(refs["invoice_id"], {})
            customer = invoice.get("Customer") or {}
            if customer.get("UID"):
                refs["customer_id"] = str(customer["UID"])
        body = crm.mapper.from_canonical(op.kind, self.values[op.key], refs, crm.settings)
        body = _as_typed(sim, op.kind, body)
        if record_id is not None and isinstance(sim, SquareSimulator) and op.kind == "invoice":
            # Square's user edits a sent invoice's due date alone (the lines of a published
            # invoice are fixed), on its BALANCE request, named by uid as UpdateInvoice needs.
            body = crm.mapper.from_canonical(op.kind, op.values, {}, crm.settings)
            held = sim.store["invoice"][record_id]["payment_requests"]
            for request in body["invoice"].get("payment_requests", []):
                request["uid"] = held[0]["uid"]
        if record_id is not None and op.system == "paypal" and "status" not in op.values:
            # A PayPal user edits a sent invoice's fields; sending it is a step of its own,
            # taken once (PayPal refuses to send an invoice that is not a draft).
            body = {k: v for k, v in body.items() if k not in ("send", "cancel")}
        if record_id is not None:
            sim.update(op.kind, record_id, body)
            return unchanged
        obj = sim.create(op.kind, body)
        external_id = crm.mapper.to_canonical(
            op.kind, _as_read(sim, op.kind, obj), crm.settings
        ).external_id
        status = op.values.get("status")
        if op.system == "stripe" and (op.kind, status) in STRIPE_USER_STEPS:
            # As Stripe's user makes them: an invoice is finalized once built (Stripe makes
            # a draft first), a card payment is a PaymentIntent its customer confirms (the
            # created and succeeded events, often within one second), not one left pending.
            sim.update(op.kind, external_id, {"status": status})
        self.made[(op.system, op.key)] = external_id
        return unchanged

    async def _internal(self, op: Op) -> set[str]:
        """Post the op as the internal service; the fields of an update it already held
        (the values it posted last: it is pushed nothing), as :func:`held_already`."""
        data: dict[str, object] = dict(self.values[op.key]) if op.action != "delete" else {}
        sent = self.posted.get(op.key, {}) if op.action == "update" else {}
        unchanged = {n for n, v in op.values.items() if n in sent and _norm(sent[n]) == _norm(v)}
        refs: dict[str, str] = {}
        for ref_field, ref_key in self.refs[op.key].items():
            if self.origin[ref_key] == INTERNAL:
                refs[ref_field] = ref_key
                continue
            entity_id = None
            deadline = time.monotonic() + ARRIVAL_SECONDS
            while entity_id is None and time.monotonic() < deadline:
                entity_id = await self.entity_id(ref_key)
                if entity_id is None:
                    await asyncio.sleep(0.2)
            if entity_id is None:
                self.result.skipped.append(f"#{op.index} {op.key} internal: {ref_key}")
                return set()
            data[ref_field] = str(entity_id)
        self.made[(INTERNAL, op.key)] = op.key
        await self.post_change(
            {
                "event_id": f"{op.key}-{op.index}",
                "entity_type": op.kind,
                "op": "delete" if op.action == "delete" else "upsert",
                "external_id": op.key,
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": data,
                "refs": refs,
            }
        )
        self.posted[op.key] = data
        return unchanged

    async def post_change(self, change: Mapping[str, Any]) -> None:
        """One change, retried as its publisher would until ingest takes it."""
        delay = 0.25
        for _ in range(40):
            try:
                async with self.systems.session.post(
                    f"{self.systems.ingest_url}/v1/changes",
                    json=[change],
                    headers={"Authorization": f"Bearer {self.systems.api_key}"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    text = await response.text()
                    if response.status < 300:
                        return
                    if response.status < 500 and response.status != 429:
                        raise RuntimeError(f"ingest refused a change: {response.status} {text}")
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)
        raise RuntimeError("ingest did not take a change in time")

    async def inject(self, index: int) -> None:
        for fault in (f for f in self.plan.faults if f.before == index):
            self.result.injected[fault.kind] += fault.count
            if fault.kind == "dead_letter":
                # A job naming a customer nobody has: a foreign_reference dead letter.
                event_id = f"poison-{index}"
                self.poison.append(event_id)
                await self.post_change(
                    {
                        "event_id": event_id,
                        "entity_type": "job",
                        "op": "upsert",
                        "external_id": event_id,
                        "occurred_at": datetime.now(UTC).isoformat(),
                        "data": {"title": event_id, "customer_id": str(uuid.uuid4())},
                    }
                )
                continue
            sim = self.systems.crms[fault.system].running.sim
            if fault.kind == "drop_webhook":
                sim.drop_webhooks += fault.count
            else:
                retry = RETRY_AFTER if fault.kind == "429" else None
                sim.faults.append(SimFault(int(fault.kind), fault.count, retry))

    async def settled(self, op: Op, since: datetime) -> bool:
        """Whether the op reached the canonical record and was pushed to every other CRM
        that keeps its kind (False: not within SETTLE_SECONDS; the comparison at the end
        says what is wrong). Pushed, not merely queued: a push still on its way would
        overwrite the next edit made there. Or, nothing queued, whether a later version
        from another system superseded it (``since``: when the op was made)."""
        if (op.system, op.key) not in self.made and (self.origin[op.key], op.key) not in self.made:
            return True  # never made: already reported
        targets = [
            c.connection_id
            for c in self.systems.crms.values()
            if op.kind in c.kinds and c.name != op.system
        ]
        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            entity_id = await self.entity_id(op.key)
            row = None
            if entity_id is not None:
                row = await self.systems.pool.fetchrow(
                    f"SELECT data, version, deleted_at IS NOT NULL AS deleted,"  # noqa: S608
                    " (SELECT count(*) FROM entity_links l WHERE l.entity_id = r.id"
                    "   AND l.connection_id = ANY($2::uuid[])"
                    "   AND l.last_pushed_version >= r.version) AS pushed,"
                    " (SELECT count(*) FROM push_jobs WHERE entity_id = r.id) AS queued"
                    f" FROM {TABLES[op.kind]} r WHERE id = $1",
                    entity_id,
                    targets,
                )
            if time.monotonic() > deadline - SETTLE_SECONDS + NUDGE_SECONDS:
                await self.nudge(op.system)
            if row is not None and row["queued"] == 0:
                # A provider that voids an invoice its user deletes (Xero an approved one,
                # Stripe an open one: rules.py) made that delete a void.
                made_void = op.kind == "invoice" and row["data"].get("status") == "void"
                if op.action == "delete" and (row["deleted"] or made_void):
                    return True
                values = self.values[op.key]
                pushed = row["pushed"]
                if pushed < len(targets) and entity_id is not None:
                    pushed += await self.parked(entity_id, row["version"], targets)
                    pushed += await self.made_there(entity_id, targets)
                if (
                    op.action != "delete"
                    and not row["deleted"]
                    and pushed >= len(targets)
                    and all(
                        _norm(values[n]) == _norm(row["data"].get(n))
                        for n in COMPARED[op.kind]
                        if n in values
                    )
                ):
                    return True
                if entity_id is not None and await self.superseded(op, entity_id, since):
                    self.result.superseded += 1
                    return True
            await asyncio.sleep(0.2)
        return False

    async def superseded(self, op: Op, entity_id: uuid.UUID, since: datetime) -> bool:
        """Whether, since the op was made, the processor applied its system's change and
        then one of another system's: a push that read its target first and handed a
        state there to the merge (or that system's own edit) made a later version, which
        the op's values will never equal. Waiting SETTLE_SECONDS for them waits for
        nothing; the comparison at the end still checks every system agrees."""
        rows = await self.systems.pool.fetch(
            "SELECT connection_id FROM sync_log WHERE tenant_id = $1 AND entity_id = $2"
            " AND direction = 'in' AND outcome = 'applied' AND created_at >= $3 ORDER BY id",
            self.systems.tenant_id,
            entity_id,
            since,
        )
        own = self.systems.connection_of(op.system)
        after = [r["connection_id"] for r in rows]
        return own in after and any(c != own for c in after[after.index(own) :])

    async def made_there(self, entity_id: uuid.UUID, targets: list[uuid.UUID]) -> int:
        """1 when the record's latest version came from one of ``targets`` (its last
        applied change): that system holds it already and is never pushed its own version.
        An op that changed nothing (its values already the record's) leaves that version
        the latest, and waiting for a push there waits for nothing."""
        origin = await self.systems.pool.fetchval(
            "SELECT connection_id FROM sync_log WHERE tenant_id = $1 AND entity_id = $2"
            " AND direction = 'in' AND outcome = 'applied' ORDER BY id DESC LIMIT 1",
            self.systems.tenant_id,
            entity_id,
        )
        return int(origin in targets)

    async def parked(self, entity_id: uuid.UUID, version: int, targets: list[uuid.UUID]) -> int:
        """How many of ``targets`` parked this version of the record as a dead letter (a
        refusal by the provider's rules): nothing more will go there, so waiting for
        a push there is waiting for nothing."""
        rows = await self.systems.pool.fetch(
            "SELECT connection_id, payload FROM dead_letters WHERE stage = 'outbound'"
            " AND connection_id = ANY($1::uuid[])",
            targets,
        )
        done = set()
        for row in rows:
            body = _payload(row["payload"])
            if body.get("entity_id") == str(entity_id) and body.get("version", 0) >= version:
                done.add(row["connection_id"])
        return len(done)

    async def drive(self, concurrency: int, serial: bool, overlap: bool) -> None:
        """Every op: in plan order per record (and after the records it names), at most
        ``concurrency`` at once. Unless ``overlap``, an op on a record waits until the
        record's last op has reached every system: edits of different records overlap,
        edits of one record do not (two users editing one record in two systems within
        the same second have no newest edit to agree on). ``serial``: one op at a time,
        each followed by quiet."""
        done: dict[int, asyncio.Event] = {}
        last_of: dict[str, int] = {}
        gate = asyncio.Semaphore(1 if serial else concurrency)
        tasks: list[asyncio.Task[None]] = []

        async def one(op: Op, after: list[int]) -> None:
            try:
                for index in after:
                    await done[index].wait()
                made_at = datetime.now(UTC)
                made = await self.apply(op)
                if serial:
                    await self.wait_quiet(60.0, SERIAL_QUIET_SECONDS)
                elif not overlap and made:
                    if not await self.settled(op, made_at):
                        self.result.unsettled.append(
                            f"#{op.index} {op.action} {op.key} in {op.system}"
                            f" at {datetime.now(UTC) - timedelta(seconds=SETTLE_SECONDS):%H:%M:%S}"
                        )
                    # Stripe dates its events in whole seconds: a second edit of one record
                    # within the same second has no order every system agrees on.
                    await asyncio.sleep(1.0 - time.time() % 1.0)
            finally:
                done[op.index].set()
                gate.release()

        for op in self.plan.ops:
            await self.inject(op.index)
            after = [last_of[op.key]] if op.key in last_of else []
            after += [last_of[k] for k in op.refs.values() if k in last_of]
            done[op.index] = asyncio.Event()
            last_of[op.key] = op.index
            await gate.acquire()
            tasks.append(asyncio.create_task(one(op, after)))
            if op.index % 100 == 99:
                self.say(f"{op.index + 1} ops made")
        await asyncio.gather(*tasks)

    # --- quiet ----------------------------------------------------------------------------

    def writes(self) -> tuple[int, int]:
        """(successful writes to the simulators' APIs, write attempts)."""
        ok = attempts = 0
        for crm in self.systems.crms.values():
            for entry in crm.running.sim.log.requests:
                if entry["method"] in WRITES and not entry["path"].startswith("/oauth"):
                    attempts += 1
                    ok += int(entry.get("status", 500) < 300)
        return ok, attempts

    async def snapshot(self) -> tuple[object, ...]:
        row = await self.systems.pool.fetchrow(
            """
            SELECT (SELECT coalesce(sum(version), 0) FROM customers)
                 + (SELECT coalesce(sum(version), 0) FROM jobs)
                 + (SELECT coalesce(sum(version), 0) FROM invoices)
                 + (SELECT coalesce(sum(version), 0) FROM payments) AS versions,
                   (SELECT count(*) FROM sync_log) AS log,
                   (SELECT count(*) FROM outbox) AS outbox,
                   (SELECT count(*) FROM push_jobs) AS pushes,
                   (SELECT count(*) FROM sync_jobs WHERE status IN ('pending', 'running'))
                       AS syncing,
                   (SELECT count(*) FROM dead_letters) AS dead
            """
        )
        assert row is not None  # a SELECT of counts always returns its row
        pending = sum(c.running.sim.webhooks_pending for c in self.systems.crms.values())
        return (*row.values(), pending, self.writes()[1])

    async def wait_quiet(self, within: float, quiet: float = QUIET_SECONDS) -> bool:
        """Until nothing is pending and nothing moved for ``quiet`` s (False: timed out)."""
        deadline = time.monotonic() + within
        last: tuple[object, ...] | None = None
        since = time.monotonic()
        while time.monotonic() < deadline:
            now = await self.snapshot()
            _versions, _log, outbox, pushes, syncing, _dead, pending, _writes = now
            busy = outbox or pushes or syncing or pending
            if now != last or busy:
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
            await asyncio.sleep(0.25)
        return False

    async def reconcile(self) -> None:
        """A full reconciliation of every CRM connection: what catches dropped webhooks."""
        for crm in self.systems.crms.values():
            await jobs.queue(
                self.systems.pool,
                tenant_id=self.systems.tenant_id,
                connection_id=crm.connection_id,
                kind="full_reconcile",
                entity_types=crm.kinds,
                modified_since=None,
                requested_by="converge",
            )

    # --- comparison -----------------------------------------------------------------------

    async def canonical(self, kind: Kind) -> dict[uuid.UUID, tuple[dict[str, Any], bool]]:
        rows = await self.systems.pool.fetch(
            f"SELECT id, data, deleted_at IS NOT NULL AS deleted FROM {TABLES[kind]}"  # noqa: S608
            " WHERE tenant_id = $1",
            self.systems.tenant_id,
        )
        return {r["id"]: (r["data"], r["deleted"]) for r in rows}

    async def links(self, connection_id: uuid.UUID, kind: Kind) -> dict[str, uuid.UUID]:
        rows = await self.systems.pool.fetch(
            "SELECT external_id, entity_id FROM entity_links WHERE connection_id = $1"
            " AND entity_type = $2",
            connection_id,
            kind,
        )
        return {r["external_id"]: r["entity_id"] for r in rows}

    async def compare(self) -> None:
        result = self.result
        for key in self.kind:
            entity_id = await self.entity_id(key)
            if entity_id is not None:
                self.key_of[entity_id] = key
        records = {kind: await self.canonical(kind) for kind in self.plan.kinds}
        for kind, rows in records.items():
            seen: Counter[object] = Counter(
                _norm(d.get(NATURAL_KEY[kind])) for d, deleted in rows.values() if not deleted
            )
            for value, count in seen.items():
                if count > 1:
                    result.duplicates += count - 1
                    result.mismatch(kind, "duplicate", f"{count} live with {value!r}")
        for crm in self.systems.crms.values():
            for kind in crm.kinds:
                await self._compare_crm(
                    crm, kind, records[kind], await self._carried(crm, kind, records)
                )
        await self._compare_plan(records)

    async def _carried(
        self,
        crm: System,
        kind: Kind,
        records: dict[Kind, dict[uuid.UUID, tuple[dict[str, Any], bool]]],
    ) -> set[uuid.UUID] | None:
        """The records of ``kind`` that ``crm`` should hold, where it holds the kind only
        inside other records (plan.INSIDE): the customers its live invoices address.
        None: every live one."""
        if kind not in INSIDE.get(crm.name, frozenset()):
            return None
        linked = set((await self.links(crm.connection_id, "invoice")).values())
        return {
            uuid.UUID(str(data["customer_id"]))
            for entity_id, (data, deleted) in records.get("invoice", {}).items()
            if not deleted and entity_id in linked and data.get("customer_id")
        }

    async def _compare_crm(
        self,
        crm: System,
        kind: Kind,
        rows: dict[uuid.UUID, tuple[dict[str, Any], bool]],
        carried: set[uuid.UUID] | None = None,
    ) -> None:
        result, sim = self.result, crm.running.sim
        links = await self.links(crm.connection_id, kind)
        ref_links = {
            ref_kind: await self.links(crm.connection_id, ref_kind)
            for _f, ref_kind in REFERENCES[kind]
            if ref_kind in self.plan.kinds
        }
        present: set[uuid.UUID] = set()
        natural: Counter[object] = Counter()
        for record_id, stored in _held(sim, kind):
            obj = _as_read(sim, kind, stored)
            try:
                remote = crm.mapper.to_canonical(kind, obj, crm.settings)
            except MappingError as exc:
                result.mismatch(kind, f"unmappable in {crm.name}", f"{record_id}: {exc}")
                continue
            if remote.deleted or record_id in sim.deleted[kind]:
                continue
            natural[_norm(remote.data.get(NATURAL_KEY[kind]))] += 1
            entity_id = links.get(remote.external_id)
            if entity_id is None or entity_id not in rows:
                result.mismatch(kind, f"unlinked in {crm.name}", remote.external_id)
                continue
            data, deleted = rows[entity_id]
            if deleted:
                refused = [
                    r.name
                    for r in self.refused_at.get((crm.name, entity_id), [])
                    if r.operation == "delete"
                ]
                kept = (
                    not_deletable(crm.name, kind)
                    or voided(crm.name, kind, remote.data)
                    or next(iter(refused), None)
                )
                if kept is not None:
                    result.explained[kept] += 1
                else:
                    result.mismatch(kind, f"not deleted in {crm.name}", remote.external_id)
                continue
            present.add(entity_id)
            result.compared[f"{crm.name} {kind}"] += 1
            self._compare_fields(
                crm.name, kind, remote, entity_id=entity_id, data=data, ref_links=ref_links
            )
        for value, count in natural.items():
            if count > 1:
                result.duplicates += count - 1
                result.mismatch(kind, f"duplicate in {crm.name}", f"{count} live with {value!r}")
        for entity_id, (data, deleted) in rows.items():
            if not deleted and entity_id not in present:
                absent = self._absent(crm.name, kind, entity_id, data, carried)
                if absent is not None:
                    result.explained[absent] += 1
                    continue
                result.mismatch(kind, f"missing in {crm.name}", str(data.get(NATURAL_KEY[kind])))

    def _absent(
        self,
        system: str,
        kind: Kind,
        entity_id: uuid.UUID,
        data: Mapping[str, Any],
        carried: set[uuid.UUID] | None,
    ) -> str | None:
        """The rule by which ``system`` does not hold a live record (None: it should)."""
        if carried is not None and entity_id not in carried:
            return recipient_only(system, kind)
        refused = [
            r.name for r in self.refused_at.get((system, entity_id), []) if r.operation == "create"
        ]
        return refused[0] if refused else held_back(system, kind, data)

    def _compare_fields(
        self,
        system: str,
        kind: Kind,
        remote: RemoteRecord,
        *,
        entity_id: uuid.UUID,
        data: Mapping[str, Any],
        ref_links: Mapping[Kind, Mapping[str, uuid.UUID]],
    ) -> None:
        for name in COMPARED[kind]:
            if name in remote.data and _norm(remote.data[name]) != _norm(data.get(name)):
                kept = self._kept(system, kind, entity_id, name, remote.data[name])
                if kept is not None:
                    self.result.explained[kept] += 1
                    continue
                self.result.mismatch(
                    kind,
                    f"{name} differs in {system}",
                    f"{remote.external_id}: {remote.data[name]!r} there,"
                    f" {data.get(name)!r} canonical",
                )
        for ref_field, ref_kind in REFERENCES[kind]:
            if ref_kind not in ref_links or data.get(ref_field) is None:
                continue
            theirs = remote.refs.get(ref_field)
            if theirs is None or str(ref_links[ref_kind].get(theirs)) != data[ref_field]:
                self.result.mismatch(kind, f"{ref_field} differs in {system}", remote.external_id)

    def _kept(
        self, system: str, kind: Kind, entity_id: uuid.UUID, name: str, theirs: object
    ) -> str | None:
        """The rule by which ``system`` still holds an earlier value of the record's field
        (it takes no update of the kind, or refused the update by a named rule); None
        when the value it holds was never the record's."""
        key = self.key_of.get(entity_id)
        if key is None:
            return None
        earlier = [
            _norm(o.values[name]) for o in self.plan.ops if o.key == key and name in o.values
        ]
        if _norm(theirs) not in earlier:
            return None
        updates = [
            r.name for r in self.refused_at.get((system, entity_id), []) if r.operation == "update"
        ]
        return not_updatable(system, kind) or next(iter(updates), None)

    async def _compare_plan(
        self, records: dict[Kind, dict[uuid.UUID, tuple[dict[str, Any], bool]]]
    ) -> None:
        """The canonical records against what the plan left: a lost update or delete is
        a mismatch even when every system agrees on it."""
        for key, kind in self.kind.items():
            values, alive = self.values[key], self.alive.get(key, True)
            if (self.origin.get(key), key) not in self.made:
                continue  # its create was skipped or refused: already reported
            entity_id = await self.entity_id(key)
            if entity_id is None or entity_id not in records[kind]:
                if alive:
                    self.result.mismatch(kind, "never applied", key)
                continue
            data, deleted = records[kind][entity_id]
            # A user's delete of an approved invoice in Xero is a void there (as its
            # UI does it), which every system then holds: the record lives on as void.
            kept = voided(self.deleted_in.get(key, ""), kind, data) if not alive else None
            if not deleted and kept is not None:
                self.result.explained[kept] += 1
                continue
            if deleted == alive:
                what = "delete lost" if alive is False else "deleted though live"
                self.result.mismatch(kind, what, f"{key} (made in {self.origin[key]})")
                continue
            if not alive:
                continue
            for name in COMPARED[kind]:
                if name in values and _norm(values[name]) != _norm(data.get(name)):
                    self.result.mismatch(
                        kind,
                        f"{name} update lost",
                        f"{key}: {data.get(name)!r}, last written {values[name]!r}"
                        f" ({self._history(key, name)})",
                    )

    def _history(self, key: str, name: str) -> str:
        return " → ".join(
            f"#{o.index} {o.system}" for o in self.plan.ops if o.key == key and name in o.values
        )

    async def dead_letters(self) -> None:
        rows = await self.systems.pool.fetch(
            "SELECT d.reason, d.stage, d.detail, d.payload, d.created_at, c.provider"
            " FROM dead_letters d LEFT JOIN connections c ON c.id = d.connection_id"
        )
        for row in rows:
            payload = bytes(row["payload"])
            if any(p.encode() in payload for p in self.poison):
                self.result.dead_letters[row["reason"]] += 1
                continue
            body = _payload(payload) if row["stage"] == "outbound" else {}
            rule = (
                refusal(row["provider"] or "", str(body.get("entity_type")), row["detail"] or "")
                if row["reason"] == "provider_rule"
                else None
            )
            if rule is not None:
                self.result.ruled_dead_letters[rule.name] += 1
                entity_id = uuid.UUID(str(body["entity_id"]))
                self.refused_at.setdefault((rule.provider, entity_id), []).append(rule)
            else:
                where = f"{row['reason']} ({row['stage']}, {row['provider'] or '-'})"
                self.result.foreign_dead_letters[where] += 1
                self.result.examples.append(
                    f"dead letter {row['reason']} at {row['stage']} ({row['provider']},"
                    f" {row['created_at']:%H:%M:%S.%f}): {row['detail']}"
                    f" | {payload[:300]!r}"
                )


def _held(sim: Any, kind: Kind) -> list[tuple[str, dict[str, Any]]]:
    """A simulator's stored records of ``kind`` by id; PayPal's customers are the
    recipients of its invoices, keyed by e-mail (as its connector reads them)."""
    if isinstance(sim, PayPalSimulator) and kind == "customer":
        return [(str(r["email_address"]), r) for r in recipients(sim.live("invoice"))]
    return list(sim.store[kind].items())


def _as_read(sim: Any, kind: Kind, stored: dict[str, Any]) -> Any:
    """A simulator's stored record as the provider's API answers it: HubSpot keeps a
    deal's contacts apart; a Square invoice is read with its order (its lines), and a
    Square payment, which names only the order it paid, with the invoice billing that
    order (the composite connectors/square/client.py reads)."""
    if isinstance(sim, HubSpotSimulator):
        return sim.view(kind, stored, None, associations=True)
    if isinstance(sim, SquareSimulator) and kind == "invoice":
        return {"invoice": stored, "order": sim.orders.get(str(stored.get("order_id")))}
    if isinstance(sim, SquareSimulator) and kind == "payment" and stored.get("order_id"):
        invoices = sim.store["invoice"].values()
        billing = [i["id"] for i in invoices if i.get("order_id") == stored["order_id"]]
        return {**stored, "invoice_id": billing[0]} if billing else stored
    return stored


def _as_typed(sim: object, kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    """The record a user types in a mapping-file provider's own UI: the request body's
    record, out of the API's envelope where its file wraps it (FreshBooks' ``{"client":
    …}``), as the simulator's API takes it out (an op made with the envelope stored it as a
    field, and the edit never showed)."""
    if not isinstance(sim, MappingSimulator):
        return body
    entity = sim.mapping.entity(kind)
    wrap = entity.request_wrap if entity is not None else None
    record = read(body, wrap) if wrap is not None else body
    return record if isinstance(record, dict) else body


def _payload(raw: bytes) -> dict[str, Any]:
    """An outbound dead letter's JSON payload ({} for anything else)."""
    try:
        value = json.loads(bytes(raw))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def held_already(crm: System, kind: Kind, record_id: str, values: Mapping[str, Any]) -> set[str]:
    """The fields of an edit whose value ``crm`` already holds, read through its mapping.

    Without ``--overlap`` a record is edited once the last edit reached every system, so
    its system holds the canonical value; with it, another system's edit may still be on
    its way (seed 2: Xero renamed c12, then Ascora's user "renamed" it to the name Ascora
    still showed). Setting a field to what it shows changes nothing there: the field-level
    merge rightly hears no edit (``no_op``), and the plan must not expect one.
    """
    stored = crm.running.sim.store[kind].get(record_id)
    if stored is None:
        return set()
    try:
        shown = crm.mapper.to_canonical(kind, _as_read(crm.running.sim, kind, stored), crm.settings)
    except MappingError:
        return set()
    return {
        name
        for name, value in values.items()
        if name in shown.data and _norm(shown.data[name]) == _norm(value)
    }


def _norm(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def ideal_pushes(plan: Plan, systems: Systems) -> int:
    """One push per op to every other CRM that keeps the kind."""
    return sum(
        sum(1 for c in systems.crms.values() if op.kind in c.kinds and c.name != op.system)
        for op in plan.ops
    )


async def run(
    plan: Plan, systems: Systems, say: Say, *, concurrency: int = 8, serial: bool = False,
    overlap: bool = False, within: float = 600.0,
) -> Result:  # fmt: skip
    runner = Runner(plan, systems, say)
    result = runner.result
    result.ideal_pushes = ideal_pushes(plan, systems)
    started = time.monotonic()
    await runner.drive(concurrency, serial, overlap)
    made = time.monotonic()
    result.seconds_ops = made - started
    say(f"{len(plan.ops)} ops made in {result.seconds_ops:.1f}s; waiting for quiet")
    quiet = await runner.wait_quiet(within)
    say("reconciling every connection")
    await runner.reconcile()
    result.quiet = quiet and await runner.wait_quiet(within)
    result.seconds_to_converge = time.monotonic() - made - QUIET_SECONDS
    result.pushes, result.push_attempts = runner.writes()
    await asyncio.sleep(SILENCE_SECONDS)
    result.pushes_after_quiet = runner.writes()[1] - result.push_attempts
    # Dead letters first: the refusals they hold explain some differences.
    await runner.dead_letters()
    await runner.compare()
    return result
