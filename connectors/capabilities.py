"""What each provider can do with each record kind, declared beside its connector.

Every provider package declares ``CAPABILITIES`` in its ``capabilities.toml`` (data, not
code: ``declared()`` below reads it): for each canonical entity type a ``KindSupport`` row
saying, per column, whether that kind is read from webhooks, hydrated (a thin webhook
completed with a fetch), backfilled, reconciled, created, updated, deleted (or voided,
archived) and paid at the provider, with the reason wherever the answer is not a plain
yes. ``connectors.registry.CAPABILITIES`` collects them; ``matrix()`` renders the README's
providers-by-kinds table (``crmsync connectors matrix``), and
tests/unit/connectors/test_capabilities.py checks the declarations against the
connectors' behaviour (spec, clients, mappers) and the README against ``matrix()``.

Columns:

- ``webhook``: the provider's webhooks announce changes of this kind and the mapper turns
  them into items.
- ``hydrate``: those items are thin and the processor fetches the record (``ApiClient.fetch``);
  n/a when the webhook carries the whole record.
- ``backfill``: ``list_page`` without ``modified_since`` lists every record.
- ``reconcile``: ``list_page`` with ``modified_since`` lists what changed (the incremental
  poll); the full comparison is a backfill that also finds deletes.
- ``create``, ``update``, ``delete`` (delete, void or archive, as the provider allows).
- ``payment``: on an invoice row, how a payment made elsewhere settles the invoice at this
  provider; on a payment row, whether a pushed payment is applied to its invoice. n/a for
  customers and jobs.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Literal

from connectors.generic.config import EntityMapping, GenericMapping
from connectors.spec import ENTITY_TYPES, EntityType

Support = Literal["yes", "partial", "no", "n/a", "mapping"]
# How a cell reads in the README; "mapping": the generic connection's mapping file decides.
MARKS: dict[Support, str] = {"yes": "✓", "partial": "◐", "no": "✗", "n/a": "—", "mapping": "⚙"}
LEGEND = (
    "✓ yes · ◐ partly (the note says what is left out) · ✗ no (the note says why) · "
    "— does not apply · ⚙ as the generic connection's mapping file says"
)


@dataclass(frozen=True)
class Can:
    """One cell: how far a kind supports one operation, and why when not fully."""

    support: Support
    why: str = ""

    def __post_init__(self) -> None:
        if self.support in ("partial", "no", "mapping") and not self.why:
            raise ValueError(f"a {self.support!r} cell needs its reason")

    @property
    def works(self) -> bool:
        """The operation happens at all (fully, partly, or where a mapping allows it)."""
        return self.support in ("yes", "partial", "mapping")


def yes(note: str = "") -> Can:
    return Can("yes", note)


def partly(why: str) -> Can:
    return Can("partial", why)


def no(why: str) -> Can:
    return Can("no", why)


def na(note: str = "") -> Can:
    return Can("n/a", note)


def per_mapping(why: str) -> Can:
    return Can("mapping", why)


HEADINGS: dict[str, str] = {"delete": "delete/void"}


@dataclass(frozen=True)
class KindSupport:
    """One row: a provider's support for one record kind, column by column (read:
    webhook, hydrate, backfill, reconcile; write: create, update, delete, payment)."""

    webhook: Can
    hydrate: Can
    backfill: Can
    reconcile: Can
    create: Can
    update: Can
    delete: Can
    payment: Can

    @classmethod
    def absent(cls, why: str) -> KindSupport:
        """The provider has no such records: every column is no, for one reason."""
        return cls(*(no(why) for _ in fields(cls)))

    def cells(self) -> Iterator[tuple[str, Can]]:
        for f in fields(self):
            yield f.name, getattr(self, f.name)


Capabilities = Mapping[EntityType, KindSupport]

# Shared wording, so one reason reads the same for every provider it applies to.
FULL_WEBHOOK = (
    "the webhook carries the whole record: nothing is fetched (it is, once the "
    "connection's `field_overrides` cover the kind)"
)


# How a cell of a capabilities.toml names its support: the helpers above, by name.
_WRITTEN: dict[str, Callable[[str], Can]] = {"yes": yes, "partly": partly, "no": no, "na": na}
# Reasons a capabilities.toml may name with ``@name`` without declaring them itself.
SHARED_REASONS: dict[str, str] = {"full_webhook": FULL_WEBHOOK}


def _declared_cell(value: Any, reasons: Mapping[str, str], where: str) -> Can:
    if isinstance(value, str):
        support, why = value, ""
    elif isinstance(value, dict) and len(value) == 1:
        ((support, why),) = value.items()
    else:
        raise ValueError(f"{where}: a cell is a support word or one `support = reason`")
    if support not in _WRITTEN:
        raise ValueError(f"{where}: {support!r} is not one of {', '.join(_WRITTEN)}")
    if not isinstance(why, str):
        raise ValueError(f"{where}: the reason is a string")
    if why.startswith("@"):
        if why[1:] not in reasons:
            raise ValueError(f"{where}: no reason named {why[1:]!r}")
        why = reasons[why[1:]]
    return _WRITTEN[support](why)


def _declared_row(table: Any, reasons: Mapping[str, str], where: str) -> KindSupport:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: a kind is a table")
    if set(table) == {"absent"}:
        return KindSupport.absent(_declared_cell({"no": table["absent"]}, reasons, where).why)
    columns = [f.name for f in fields(KindSupport)]
    if set(table) != set(columns):
        missing, unknown = set(columns) - set(table), set(table) - set(columns)
        raise ValueError(f"{where}: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return KindSupport(**{c: _declared_cell(table[c], reasons, f"{where}.{c}") for c in columns})


def parse_declared(text: str, where: str) -> dict[EntityType, KindSupport]:
    """The rows a capabilities.toml declares: a table per entity type, each column a
    support word (``yes``, ``partly``, ``no``, ``na``) or ``column.support = "reason"``;
    a kind the provider does not have is ``absent = "reason"``. A reason ``@name`` is the
    file's ``[reasons]`` entry of that name (or one of ``SHARED_REASONS``), so a reason
    several cells give reads the same in each."""
    try:
        declared = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: {exc}") from None
    reasons = {**SHARED_REASONS, **declared.pop("reasons", {})}
    if set(declared) != set(ENTITY_TYPES):
        raise ValueError(f"{where}: declares {sorted(declared)}, not {list(ENTITY_TYPES)}")
    return {
        kind: _declared_row(declared[kind], reasons, f"{where}: {kind}") for kind in ENTITY_TYPES
    }


def declared(package: str) -> dict[EntityType, KindSupport]:
    """The rows of ``package``'s capabilities.toml (a connector's ``CAPABILITIES``)."""
    text = resources.files(package).joinpath("capabilities.toml").read_text(encoding="utf-8")
    return parse_declared(text, f"{package.replace('.', '/')}/capabilities.toml")


def webhook_only(provider: str, *, alternative: str) -> dict[EntityType, KindSupport]:
    """A provider whose webhooks are verified and stored but not mapped, with no API."""
    no_mapping = no(
        f"{provider} deliveries are verified and stored, then dead-lettered `no_mapping`: "
        f"no {provider} mapping yet ({alternative})"
    )
    no_api = no(f"no {provider} API client")
    row = KindSupport(no_mapping, no_api, no_api, no_api, no_api, no_api, no_api, no_api)
    return dict.fromkeys(ENTITY_TYPES, row)


# The generic connector's support is its connection's mapping file
# (connectors/generic/README.md): the same for every kind the file lists.
GENERIC: dict[EntityType, KindSupport] = dict.fromkeys(
    ENTITY_TYPES,
    KindSupport(
        webhook=per_mapping(
            "read from webhooks when the mapping's `webhook.events` routes an event type to it"
        ),
        hydrate=per_mapping(
            "`entities.<kind>.webhook.delivery`: `thin` items are fetched through "
            "`endpoints.fetch`, `full` ones carry the record"
        ),
        backfill=per_mapping("listed when the kind has `endpoints.list` and `pagination`"),
        reconcile=per_mapping(
            "incremental with `pagination.modified_since`; without it each poll lists everything"
        ),
        create=per_mapping(
            "`endpoints.create`; a kind without the endpoint raises UnsupportedOperationError"
        ),
        update=per_mapping(
            "`endpoints.update`; no provider rule is known, so a refusal is a dead letter "
            "in the provider's words"
        ),
        delete=per_mapping("`endpoints.delete` (the connection's deletable kinds)"),
        payment=per_mapping(
            "a payment is written as the mapping's fields say (its `refs.invoice_id` "
            "where mapped); no invoice settling rule is applied"
        ),
    ),
)


def _writes(entity: EntityMapping, canonical: str) -> bool:
    return any(
        f.canonical == canonical and f.direction in ("both", "outbound") for f in entity.fields
    )


def _endpoint_cell(entity: EntityMapping, operation: str) -> Can:
    if getattr(entity.endpoints, operation) is None:
        return no(f"the mapping has no `endpoints.{operation}`")
    return yes()


def _generic_payment(mapping: GenericMapping, kind: EntityType) -> Can:
    payment = mapping.entities.get("payment")
    names_invoice = (
        payment is not None
        and payment.endpoints.create is not None
        and "invoice_id" in payment.refs
    )
    if kind == "invoice":
        if names_invoice:
            return yes("payments are written as payments naming the invoice")
        if _writes(mapping.entities["invoice"], "status"):
            return partly("the mapping has no payments: a paid invoice is written as its status")
        return no("the mapping has no payments and writes no invoice status")
    if kind == "payment":
        if names_invoice:
            return yes("names its invoice (`refs.invoice_id`)")
        return partly("the mapping writes no invoice reference for a payment")
    return na()


def _generic_kind(mapping: GenericMapping, kind: EntityType) -> KindSupport:
    entity = mapping.entities[kind]
    routes = [] if mapping.webhook is None else list(mapping.webhook.events.values())
    if not any(r.entity_type == kind and r.op == "upsert" for r in routes):
        webhook = hydrate = no("no webhook event of the mapping is routed to it")
    elif entity.webhook is not None and entity.webhook.delivery == "full":
        webhook, hydrate = yes(), na("the webhook carries the whole record (`delivery: full`)")
    else:
        webhook, hydrate = yes(), yes("thin: fetched through `endpoints.fetch`")
    listed = entity.endpoints.list is not None and entity.pagination is not None
    backfill = yes() if listed else no("the mapping has no `endpoints.list` with `pagination`")
    if not listed:
        reconcile = backfill
    elif entity.pagination is not None and entity.pagination.modified_since is not None:
        reconcile = yes(f"`{entity.pagination.modified_since.param}`")
    else:
        reconcile = partly(
            "the mapping has no modified-since parameter: each poll lists everything"
        )
    return KindSupport(
        webhook=webhook,
        hydrate=hydrate,
        backfill=backfill,
        reconcile=reconcile,
        create=_endpoint_cell(entity, "create"),
        update=_endpoint_cell(entity, "update"),
        delete=_endpoint_cell(entity, "delete"),
        payment=_generic_payment(mapping, kind),
    )


def generic_capabilities(mapping: GenericMapping) -> Capabilities:
    """What one generic connection's mapping file gives, kind by kind (its webhook routes,
    each entity's delivery, endpoints and pagination): the rows of a mapping file we ship,
    and ``crmsync connectors matrix --mapping FILE`` for any other."""
    return {
        kind: _generic_kind(mapping, kind)
        if kind in mapping.entities
        else KindSupport.absent("the mapping has no entity of this kind")
        for kind in ENTITY_TYPES
    }


# Internal services publish; nothing is pulled from or pushed to them.
_INTERNAL_NO_API = no(
    "an internal connection has no API: it publishes, and nothing is listed from or pushed to it"
)
INTERNAL: dict[EntityType, KindSupport] = dict.fromkeys(
    ENTITY_TYPES,
    KindSupport(
        webhook=na(
            "no webhooks: internal services POST full canonical changes to `/v1/changes` "
            "with an API key"
        ),
        hydrate=na("changes carry the whole record"),
        backfill=_INTERNAL_NO_API,
        reconcile=_INTERNAL_NO_API,
        create=_INTERNAL_NO_API,
        update=_INTERNAL_NO_API,
        delete=_INTERNAL_NO_API,
        payment=_INTERNAL_NO_API,
    ),
)


def _cell(can: Can, notes: dict[str, int]) -> str:
    mark = MARKS[can.support]
    if not can.why:
        return mark
    number = notes.setdefault(can.why, len(notes) + 1)
    return f"{mark} [{number}]"


def matrix(declared: Mapping[str, Capabilities]) -> str:
    """The README table: a row per provider and kind (kinds that read the same share one,
    ``any`` when all do), each cell a mark and a numbered note; the notes follow it."""
    columns = [f.name for f in fields(KindSupport)]
    head = ["provider", "kind", *(HEADINGS.get(c, c) for c in columns)]
    lines = [
        LEGEND,
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    notes: dict[str, int] = {}
    for provider, kinds in declared.items():
        # Kinds that read the same share a row ("any" when all do), in ENTITY_TYPES order.
        groups: dict[KindSupport, list[str]] = {}
        for kind in ENTITY_TYPES:
            groups.setdefault(kinds[kind], []).append(kind)
        for row, names in groups.items():
            label = "any" if len(names) == len(ENTITY_TYPES) else ", ".join(names)
            cells = [_cell(can, notes) for _, can in row.cells()]
            lines.append(f"| {provider} | {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"{number}. {why}" for why, number in notes.items())
    return "\n".join(lines) + "\n"


__all__ = [
    "FULL_WEBHOOK",
    "GENERIC",
    "INTERNAL",
    "LEGEND",
    "MARKS",
    "SHARED_REASONS",
    "Can",
    "Capabilities",
    "KindSupport",
    "declared",
    "generic_capabilities",
    "matrix",
    "na",
    "no",
    "parse_declared",
    "partly",
    "per_mapping",
    "webhook_only",
    "yes",
]
