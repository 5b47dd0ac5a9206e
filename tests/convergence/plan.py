"""The operations of one convergence run, generated from a seed: pure, no I/O.

A plan is a list of user actions (create, update, delete of a customer, job, invoice or
payment) each made in one system (a simulated CRM, or the internal service's
``POST /v1/changes``), plus the faults to inject on the way (429s, 500s, dropped webhooks,
and a few changes that must become dead letters). The same seed and arguments always give
the same plan, so a failure found once is found again.

Records are named by a logical key (``c12``, ``j3``): the runner maps a key to each
system's own id as the record travels. Values are canonical fields; each connector's own
mapping turns them into the provider's shape.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar

Kind = Literal["customer", "job", "invoice", "payment"]
Action = Literal["create", "update", "delete"]
FaultKind = Literal["429", "500", "drop_webhook", "dead_letter"]

KINDS: tuple[Kind, ...] = ("customer", "job", "invoice", "payment")
INTERNAL = "internal"
# Which kinds each system keeps (each simulator's entity_types; internal sends any).
SYSTEM_KINDS: dict[str, tuple[Kind, ...]] = {
    "ascora": KINDS,
    "xero": ("customer", "invoice", "payment"),
    "stripe": ("customer", "invoice", "payment"),
    "quickbooks": ("customer", "invoice", "payment"),
    "hubspot": ("customer", "job"),
    "square": ("customer", "invoice", "payment"),
    # PayPal holds customers only as invoice recipients (INSIDE): synced, never made there.
    "paypal": ("customer", "invoice", "payment"),
    "shopify": ("customer", "invoice", "payment"),
    # MYOB sends no webhooks: what is made there arrives by the schedule's poll.
    "myob": ("customer", "invoice", "payment"),
    # The catalogue's mapping files (connectors/generic/examples/), customers only, as the
    # demo connects them: WooCommerce's orders and FreshBooks' invoices carry totals and
    # numbers the provider computes, which the simulator made from the file does not
    # (crmsync/demo/sims.py), so none is pushed there; Mailchimp and Mautic hold contacts.
    "freshbooks": ("customer",),
    "woocommerce": ("customer",),
    "mailchimp": ("customer",),
    "mautic": ("customer",),
    INTERNAL: KINDS,
}
# Systems without webhooks, whose changes arrive by a modified-since poll: a delete made
# there shows in no poll (a deleted record is not listed) and is found by the daily full
# comparison only, not within a run's arrival time, so none is made there. Deletes made
# elsewhere still reach them.
POLLED: frozenset[str] = frozenset({"myob"})
# The same for one kind of a webhook provider: PayPal's recorded payments have no events of
# their own, and their removal is found only by a full reconciliation (connectors/paypal/
# README.md), so none is deleted there (an update pushed meanwhile waited out its backoff
# for a delete no run's arrival time brings, and the run was never quiet).
# Mailchimp's and WooCommerce's deletes send no mapped event: Mailchimp's DELETE archives,
# and its webhooks name no archive; WooCommerce's `*.deleted` carry no time, "so they are
# not mapped ... a deleted customer ... is found by reconciliation" (connectors/generic/
# examples/README.md).
UNHEARD_DELETES: dict[str, frozenset[Kind]] = {
    "paypal": frozenset({"payment"}),
    "mailchimp": frozenset({"customer"}),
    "woocommerce": frozenset({"customer"}),
}
# Kinds a system keeps only inside another record, never on their own: PayPal has no
# customer API and sends no customer events, its customers are the recipients of its
# invoices (connectors/paypal/README.md). A customer made "in PayPal" would never arrive,
# so none is made or edited there; those made elsewhere reach it as the recipients of the
# invoices pushed to it, and its own invoices name them (issue 21).
INSIDE: dict[str, frozenset[Kind]] = {"paypal": frozenset({"customer"})}
T = TypeVar("T", bound=str)

# Ascora, Xero, Stripe and the internal service carry most of the traffic; QuickBooks,
# HubSpot, Square, PayPal, Shopify and MYOB take part at a smaller size (issues 17 and 21).
SYSTEM_WEIGHTS: dict[str, int] = {
    "ascora": 3,
    "xero": 3,
    "stripe": 3,
    INTERNAL: 3,
    "quickbooks": 1,
    "hubspot": 1,
    "square": 1,
    "paypal": 1,
    "shopify": 1,
    "myob": 1,
    "freshbooks": 1,
    "woocommerce": 1,
    "mailchimp": 1,
    "mautic": 1,
}
PROVIDERS: tuple[str, ...] = tuple(s for s in SYSTEM_WEIGHTS if s != INTERNAL)
# The catalogue's generic connections join a run when named (`--providers`, a case of
# tests/e2e/test_convergence.py): the default run, and the full-size figures measured on
# it, stay the built-in connectors'.
CATALOGUE: tuple[str, ...] = ("freshbooks", "woocommerce", "mailchimp", "mautic")
DEFAULT_PROVIDERS: tuple[str, ...] = tuple(p for p in PROVIDERS if p not in CATALOGUE)
# The record each kind names, and in which field (invariant 10: never dropped).
REFERENCES: dict[Kind, tuple[tuple[str, Kind], ...]] = {
    "customer": (),
    "job": (("customer_id", "customer"),),
    "invoice": (("customer_id", "customer"),),
    "payment": (("invoice_id", "invoice"),),
}
# Kinds weighted as a service business makes them: more customers and jobs than payments.
KIND_WEIGHTS: dict[Kind, int] = {"customer": 4, "job": 3, "invoice": 3, "payment": 2}
ACTION_WEIGHTS: dict[Action, int] = {"create": 45, "update": 40, "delete": 15}
# One fault every this many operations, on average (injected before the operation).
FAULT_EVERY = 25
# A dead letter on purpose every this many operations (the first halfway): the only
# dead letters allowed at the end.
DEAD_LETTER_EVERY = 100
# Without fresh values, updates draw from small pools: some set what is there already
# (a no-op edit must stay silent).
_NAMES = ("Harbour Plumbing", "Kauri Electrical", "Summit Roofing", "Bayview Gardens")
_PHONES = ("+61 2 5550 0101", "+61 2 5550 0202", "+61 2 5550 0303")
_TITLES = ("Blocked drain", "Switchboard upgrade", "Gutter clean", "Hedge trim")


def made_in(system: str, kind: Kind) -> bool:
    """Whether a user makes and edits records of ``kind`` in ``system`` on their own."""
    return kind in SYSTEM_KINDS[system] and kind not in INSIDE.get(system, frozenset())


@dataclass(frozen=True)
class Op:
    """One user action. ``values`` are canonical fields (references left out); ``refs``
    names the referenced records by key (``{"customer_id": "c3"}``)."""

    index: int
    system: str
    kind: Kind
    action: Action
    key: str
    values: Mapping[str, object] = field(default_factory=dict)
    refs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """Injected just before operation ``before``: ``count`` answers of ``kind`` from the
    system's API (429/500), ``count`` webhooks it does not send (drop_webhook), or one
    internal change that must be refused into a dead letter (dead_letter)."""

    before: int
    system: str
    kind: FaultKind
    count: int = 1


@dataclass(frozen=True)
class Plan:
    seed: int
    kinds: tuple[Kind, ...]
    ops: tuple[Op, ...]
    faults: tuple[Fault, ...]

    def expected(self) -> dict[str, tuple[Kind, dict[str, object], bool]]:
        """Per key: its kind, its canonical values after every op, and whether it lives."""
        state: dict[str, tuple[Kind, dict[str, object], bool]] = {}
        for op in self.ops:
            if op.action == "create":
                state[op.key] = (op.kind, dict(op.values), True)
            elif op.action == "update":
                kind, values, _ = state[op.key]
                state[op.key] = (kind, {**values, **op.values}, True)
            else:
                kind, values, _ = state[op.key]
                state[op.key] = (kind, values, False)
        return state


@dataclass
class _Record:
    kind: Kind
    origin: str
    values: dict[str, object]
    refs: dict[str, str]
    edits: int = 0


def _pick(rng: random.Random, weights: Mapping[T, int], allowed: Sequence[str]) -> T:
    choices = [s for s in weights if s in allowed]
    return rng.choices(choices, [weights[s] for s in choices])[0]


def _create_values(kind: Kind, key: str, n: int) -> dict[str, object]:
    if kind == "customer":
        return {
            "name": f"{_NAMES[n % len(_NAMES)]} {key}",
            # The match key of invariant 6: unique per record, never edited.
            "email": f"{key}@converge.example",
            "phone": _PHONES[n % len(_PHONES)],
        }
    if kind == "job":
        return {"title": f"{_TITLES[n % len(_TITLES)]} {key}", "status": "scheduled"}
    if kind == "invoice":
        amount = 10_000 + 500 * (n % 40)
        return {
            "number": f"CV-{key.upper()}",
            "status": "open",
            "currency": "AUD",
            "issued_on": "2026-12-01",
            "due_on": "2026-12-31",
            "lines": [{"description": f"Work {key}", "quantity": "1", "unit_amount": amount}],
            "subtotal": amount,
            "tax": 0,
            "total": amount,
            "amount_due": amount,
        }
    return {
        "amount": 1_000 + 100 * (n % 50),
        "currency": "AUD",
        "status": "succeeded",
        "paid_at": "2026-12-02T01:00:00+00:00",
        "reference": f"CV-{key.upper()}",
    }


def _edit_values(
    kind: Kind, key: str, rng: random.Random, edit: int, fresh: bool
) -> dict[str, object]:
    if kind == "customer":
        if fresh:
            return (
                {"name": f"{key} name v{edit}"}
                if rng.random() < 0.5
                else {"phone": f"+61 2 5551 {edit:04d}", "name": f"{key} name v{edit}"}
            )
        if rng.random() < 0.5:
            return {"phone": rng.choice(_PHONES)}
        return {"name": f"{rng.choice(_NAMES)} {key}"}
    if kind == "job":
        return {"title": f"{key} title v{edit}" if fresh else f"{rng.choice(_TITLES)} {key}"}
    if kind == "invoice":
        return {"due_on": f"2027-01-{1 + (edit % 28):02d}"}
    return {"reference": f"CV-{key.upper()} v{edit}" if fresh else f"CV-{key.upper()} edit"}


def generate(
    seed: int,
    ops: int,
    kinds: Sequence[Kind] = KINDS,
    *,
    fresh_values: bool = False,
    faults: bool = True,
    providers: Sequence[str] = DEFAULT_PROVIDERS,
) -> Plan:
    """``ops`` operations over ``kinds`` (references to a kind left out are not made),
    made in ``providers`` and the internal service only (faults too): a run connects
    just those, so an op anywhere else would have nowhere to go."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be among {', '.join(KINDS)}; got {', '.join(kinds)}")
    strangers = set(providers) - set(PROVIDERS)
    if strangers or not providers:
        raise ValueError(
            f"providers must be among {', '.join(PROVIDERS)}; got {', '.join(providers)}"
        )
    systems = [s for s in SYSTEM_KINDS if s in providers or s == INTERNAL]
    faulty = [p for p in PROVIDERS if p in providers]
    rng = random.Random(seed)  # noqa: S311 - a reproducible plan, not a secret
    chosen: tuple[Kind, ...] = tuple(k for k in KINDS if k in kinds)
    live: dict[str, _Record] = {}
    counters = dict.fromkeys(KINDS, 0)
    out: list[Op] = []
    injected: list[Fault] = []

    def new_key(kind: Kind) -> str:
        counters[kind] += 1
        return f"{kind[0]}{counters[kind]}"

    def live_of(kind: Kind) -> list[str]:
        return [k for k, r in live.items() if r.kind == kind]

    def referenced(key: str) -> bool:
        return any(key in r.refs.values() for r in live.values())

    def create(kind: Kind) -> None:
        refs: dict[str, str] = {}
        for ref_field, ref_kind in REFERENCES[kind]:
            if ref_kind not in chosen:
                continue
            if not live_of(ref_kind):
                create(ref_kind)
                if len(out) >= ops:
                    return
            refs[ref_field] = rng.choice(sorted(live_of(ref_kind)))
        allowed = [s for s in systems if made_in(s, kind)]
        system = _pick(rng, SYSTEM_WEIGHTS, allowed)
        key = new_key(kind)
        values = _create_values(kind, key, len(out))
        live[key] = _Record(kind, system, dict(values), refs)
        out.append(Op(len(out), system, kind, "create", key, values, refs))

    while len(out) < ops:
        index = len(out)
        if faults and index and rng.random() < 1 / FAULT_EVERY:
            fault_kind: FaultKind = rng.choice(("429", "500", "drop_webhook"))
            count = 1 if fault_kind == "drop_webhook" else rng.randint(1, 3)
            injected.append(Fault(index, rng.choice(faulty), fault_kind, count))
        if faults and index % DEAD_LETTER_EVERY == DEAD_LETTER_EVERY // 2:
            injected.append(Fault(index, INTERNAL, "dead_letter"))
        kind = _pick(rng, KIND_WEIGHTS, chosen)
        action = _pick(rng, ACTION_WEIGHTS, ("create", "update", "delete"))
        if action == "create" or not live_of(kind):
            create(kind)
            continue
        key = rng.choice(sorted(live_of(kind)))
        record = live[key]
        # Where the record can be edited: every system that keeps the kind, except that
        # the internal service only names records it made (nothing is pushed to it).
        allowed = [
            s
            for s in systems
            if made_in(s, kind)
            and (s != INTERNAL or record.origin == INTERNAL)
            and (
                action != "delete"
                or (s not in POLLED and kind not in UNHEARD_DELETES.get(s, frozenset()))
            )
        ]
        system = _pick(rng, SYSTEM_WEIGHTS, allowed)
        if action == "delete" and not referenced(key):
            del live[key]
            out.append(Op(index, system, kind, "delete", key))
            continue
        record.edits += 1
        values = _edit_values(kind, key, rng, record.edits, fresh_values)
        record.values.update(values)
        out.append(Op(index, system, kind, "update", key, values, {}))
    return Plan(seed, chosen, tuple(out), tuple(injected))
