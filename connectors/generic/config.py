"""The mapping file: how a CRM without a built-in connector maps to canonical records.

A mapping file is JSON::

    {"signature": {<GenericSchemeConfig fields>},
     "webhook":   {where items, event ids, event types and times live in a webhook},
     "entities":  {"customer": {...}, "job": {...}, ...},
     "api":       {auth, base URL, rate limit, extra headers}}

Everything but ``signature`` is the GenericMapping a connection stores as
``settings["generic_mapping"]``; ``signature`` is stored as ``settings["generic"]``, where
ingest has always read it. ``load_mapping_file`` validates both and reports every problem
with its JSON path and the line it is on, so whoever writes the file can fix it without a
debugger. Paths inside the file use the language of ``connectors.generic.paths``.
"""

from __future__ import annotations

import json
import string
from bisect import bisect_right
from collections.abc import Iterator, Mapping
from functools import lru_cache
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Annotated, Any, Literal, Self, cast
from urllib.parse import quote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from connectors.generic import convert
from connectors.generic.paths import has_each, parse_path
from connectors.generic.signature import CONFIGURING, GenericSchemeConfig
from connectors.spec import REFERENCE_FIELDS, EntityType
from schemas.errors import RefuseInput
from schemas.records import ENTITY_MODELS, Address, InvoiceLine

# No published limit to honour: a pace any hosted CRM API tolerates (HubSpot's lowest
# tier allows 10/s); a mapping file states its provider's real limit in api.rate_limit.
DEFAULT_RATE = 5.0
DEFAULT_PER_SECONDS = 1.0
DEFAULT_BURST = 10
# Page size when a file names a page-size parameter but no size: a common API default.
DEFAULT_PAGE_SIZE = 100

Transform = Literal[
    "none", "money", "minor_units", "decimal", "datetime", "date", "enum", "constant", "join"
]
Direction = Literal["both", "inbound", "outbound"]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
EndpointKind = Literal["fetch", "create", "update", "delete", "list"]

# Which canonical fields take which transforms; every other field is text or an enum.
_MONEY_FIELDS = frozenset({"subtotal", "tax", "total", "amount_due", "amount"})
_LINE_MONEY_FIELDS = frozenset({"unit_amount", "tax_amount"})
_DATETIME_FIELDS = frozenset({"scheduled_start", "scheduled_end", "paid_at"})
_DATE_FIELDS = frozenset({"issued_on", "due_on"})
_ADDRESS_FIELDS = frozenset({"address", "site_address"})
_LIST_FIELDS = frozenset({"lines"})
_TRANSFORM_PARAMS: dict[str, frozenset[Transform]] = {
    "currency": frozenset({"money"}),
    "currency_field": frozenset({"money"}),
    "format": frozenset({"datetime", "date"}),
    "timezone": frozenset({"datetime"}),
    "values": frozenset({"enum"}),
    "outbound_values": frozenset({"enum"}),
    "value": frozenset({"constant"}),
    "items": frozenset({"none"}),
    "paths": frozenset({"join"}),
    "separator": frozenset({"join"}),
}
_ENDPOINT_PLACEHOLDERS: dict[EndpointKind, frozenset[str]] = {
    "fetch": frozenset({"base", "id"}),
    "update": frozenset({"base", "id"}),
    "delete": frozenset({"base", "id"}),
    "create": frozenset({"base"}),
    "list": frozenset({"base"}),
}
# A connection's settings may be validated on every webhook; the parsed form is cached by
# its JSON text. One entry per distinct mapping, and a process serves few connections.
_CACHE_SIZE = 256

Loc = tuple[str | int, ...]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _path(value: str) -> str:
    parse_path(value)
    return value


def _single_path(value: str) -> str:
    if has_each(value):
        raise ValueError(f"path {value!r} must name one value; [*] is only for webhook items")
    return value


def _one_path(value: str) -> str:
    return _single_path(_path(value))


# A field that holds a path to one value: every path in the file but the webhook's items.
_OnePath = Annotated[str, AfterValidator(_one_path)]


def _zone_name(value: str) -> str:
    convert.parse_zone(value)
    return value


# A field that names a time zone: UTC, a fixed offset or an IANA name (convert.parse_zone).
_ZoneName = Annotated[str, AfterValidator(_zone_name)]


class _TimeFormat(_Frozen):
    """How a provider writes a time: ``format`` and the ``timezone`` of values without one."""

    format: str = "iso8601"
    timezone: _ZoneName = "UTC"

    @field_validator("format")
    @classmethod
    def _valid_format(cls, value: str) -> str:
        return _timestamp_format(value)

    @property
    def zone(self) -> convert.Zone:
        return _zone(self.timezone)


class Timestamp(_TimeFormat):
    """Where a timestamp lives and how the provider writes it.

    ``format`` is ``iso8601``, ``unix_seconds``, ``unix_millis`` or a strftime pattern
    ("%d/%m/%Y %H:%M %z"); ``timezone`` (UTC, a fixed offset "+10:00" or an IANA zone
    "America/New_York", daylight saving included) is the zone of values written without
    one, and the zone we write in.
    """

    path: _OnePath
    fallbacks: tuple[str, ...] = ()

    @field_validator("fallbacks")
    @classmethod
    def _valid_fallbacks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_one_path(path) for path in value)

    @property
    def paths(self) -> tuple[str, ...]:
        """``path``, then each fallback: the first one present and not null is the time."""
        return (self.path, *self.fallbacks)


@lru_cache(maxsize=_CACHE_SIZE)
def _zone(text: str) -> convert.Zone:
    return convert.parse_zone(text)


def _timestamp_format(value: str) -> str:
    if value not in convert.TIMESTAMP_KINDS and "%" not in value:
        raise ValueError(
            f"format {value!r} is not iso8601, unix_seconds, unix_millis or a strftime pattern"
        )
    return value


class FieldMapping(_Frozen):
    """One canonical field <-> one provider path, with an optional transform.

    ``canonical`` is the canonical field (``name``, ``address.line1``; inside ``items``,
    an invoice line's field); ``path`` the provider's. ``direction`` limits a mapping to
    reading (``inbound``: a provider field it computes itself) or writing (``outbound``).
    Transforms: ``money`` (decimal amount <-> minor units, using ``currency`` or the
    canonical ``currency_field``), ``minor_units`` (the provider counts cents too),
    ``decimal`` (quantities), ``datetime``/``date`` (with ``format``), ``enum``
    (``values`` provider -> canonical; ``outbound_values`` canonical -> provider where
    several provider words map to one canonical), ``constant`` (``value``: written to
    ``path`` when outbound, given to ``canonical`` when inbound), ``join`` (the non-blank
    values at ``paths`` joined by ``separator``; written back split on it, the last path
    taking the rest). ``items`` maps the elements of a list field (invoice lines).
    ``only_on`` writes a mapping in create or update bodies only (a status a record is
    created with, which an update must not reset); ``blank_is_null`` reads an empty or
    blank string as null (providers that send "" for a field never set).
    """

    canonical: str | None = None
    path: _OnePath | None = None
    direction: Direction = "both"
    transform: Transform = "none"
    currency: str | None = None
    currency_field: str | None = None
    format: str | None = None
    timezone: _ZoneName | None = None
    values: dict[str, str] | None = None
    outbound_values: dict[str, str] | None = None
    value: JsonValue = None
    items: tuple[FieldMapping, ...] | None = None
    paths: tuple[str, ...] | None = None
    separator: str = Field(" ", min_length=1)
    only_on: Literal["create", "update"] | None = None
    blank_is_null: bool = False

    @field_validator("paths")
    @classmethod
    def _valid_paths(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        if len(value) < 2:  # a join of one path is that path
            raise ValueError("join needs at least two paths")
        return tuple(_one_path(path) for path in value)

    @field_validator("currency")
    @classmethod
    def _valid_currency(cls, value: str | None) -> str | None:
        if value is not None:
            convert.currency_exponent(value)
        return value

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        for param, transforms in _TRANSFORM_PARAMS.items():
            if param in self.model_fields_set and self.transform not in transforms:
                allowed = " or ".join(sorted(transforms))
                raise ValueError(f'"{param}" applies only to transform {allowed}')
        if self.transform == "constant":
            self._check_constant()
        elif self.transform == "join":
            if self.canonical is None or self.paths is None or self.path is not None:
                raise ValueError('transform join needs "canonical" and "paths" (not "path")')
        elif self.canonical is None or self.path is None:
            raise ValueError('a field mapping needs both "canonical" and "path"')
        if self.only_on is not None and self.direction == "inbound":
            raise ValueError('"only_on" applies to mappings that write (direction not inbound)')
        if self.transform == "money" and self.currency is None and self.currency_field is None:
            raise ValueError('transform money needs "currency" or "currency_field"')
        if self.transform == "enum":
            self._check_enum()
        if self.transform == "datetime" and self.format is not None:
            _timestamp_format(self.format)
        if self.transform == "date" and self.format not in {None, "iso"} and "%" not in self.format:
            raise ValueError(f'date format {self.format!r} is not "iso" or a strftime pattern')
        return self

    def _check_constant(self) -> None:
        if "value" not in self.model_fields_set:
            raise ValueError('transform constant needs "value"')
        if self.direction == "both":
            raise ValueError('transform constant needs direction "inbound" or "outbound"')
        if self.direction == "inbound" and self.canonical is None:
            raise ValueError('an inbound constant needs "canonical"')
        if self.direction == "outbound" and self.path is None:
            raise ValueError('an outbound constant needs "path"')

    def _check_enum(self) -> None:
        if not self.values:
            raise ValueError('transform enum needs a non-empty "values" map')
        if self.direction == "inbound":
            return
        outbound = self.outbound_values or {}
        for canonical in set(self.values.values()) - set(outbound):
            words = [p for p, c in self.values.items() if c == canonical]
            if len(words) > 1:
                raise ValueError(
                    f"enum maps {', '.join(map(repr, words))} to {canonical!r}: say which one "
                    'to write in "outbound_values"'
                )

    @property
    def reads(self) -> bool:
        return self.direction != "outbound"

    @property
    def writes(self) -> bool:
        return self.direction != "inbound"

    def writes_on(self, operation: Literal["create", "update"] | None) -> bool:
        """Whether a body for ``operation`` carries this mapping (None: a body for either)."""
        return self.writes and (self.only_on is None or self.only_on == operation)

    @property
    def written_paths(self) -> tuple[str, ...]:
        if self.paths is not None:
            return self.paths
        return () if self.path is None else (self.path,)

    @property
    def zone(self) -> convert.Zone:
        return _zone(self.timezone or "UTC")

    def provider_word(self, canonical: str) -> str | None:
        """The provider's enum value for a canonical one (None when it has none)."""
        if self.outbound_values and canonical in self.outbound_values:
            return self.outbound_values[canonical]
        for word, mapped in (self.values or {}).items():
            if mapped == canonical:
                return word
        return None


class EventRoute(_Frozen):
    """What one provider event type means for us; ``entity_id`` overrides the entity's
    ``webhook.entity_id`` for this event (a delete that names the record elsewhere)."""

    entity_type: EntityType
    op: Literal["upsert", "delete"]
    entity_id: _OnePath | None = None


# The placeholders a verification's confirm endpoint always takes: the connection's API
# root, and its scheme and host alone (a provider whose callbacks live beside, not under,
# the records' root: FreshBooks' /events/… beside /accounting/…).
_CONFIRM_PLACEHOLDERS = frozenset({"base", "origin"})


class Verification(_Frozen):
    """A provider's subscription handshake: registering a webhook makes it post one
    ``event`` (a type read where the other event types are) carrying a code at
    ``verifier``; the subscription delivers nothing until that code is sent back by
    ``confirm`` (an endpoint template), written at ``body`` in a JSON body. The code is
    then the subscription's signing secret (FreshBooks' ``callback.verify``).

    ``placeholders`` name values of the handshake item the ``confirm`` URL takes besides
    ``{base}`` and ``{origin}``: ``{"callback_id": "object_id"}``. The handshake itself
    cannot be verified (nothing is shared before it): it is trusted only once the provider
    accepted the code back over the connection's authenticated API.

    ``own`` names placeholders that identify the connection's own account at the provider,
    each with the connection setting holding it (``{"account_id":
    "freshbooks_account_id"}``): a handshake naming another account is refused, where the
    connection has that setting.
    """

    event: str = Field(min_length=1)
    verifier: _OnePath
    confirm: str
    placeholders: dict[str, str] = Field(default_factory=dict)
    body: _OnePath
    own: dict[str, str] = Field(default_factory=dict)

    @field_validator("placeholders")
    @classmethod
    def _valid_placeholders(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            if not name.isidentifier() or name in _CONFIRM_PLACEHOLDERS:
                raise ValueError(f"placeholder {name!r} is not a name of its own")
            _one_path(path)
        return value

    @model_validator(mode="after")
    def _valid_confirm(self) -> Self:
        allowed = _CONFIRM_PLACEHOLDERS | set(self.placeholders)
        parse_template(self.confirm, "confirm", allowed)
        for name, setting in self.own.items():
            if name not in self.placeholders:
                raise ValueError(f"own: {name!r} is not one of the placeholders")
            if not setting.isidentifier():
                raise ValueError(f"own: {setting!r} is not a setting name")
        return self

    def confirm_endpoint(self) -> Endpoint:
        return _parsed_template(
            self.confirm, "confirm", _CONFIRM_PLACEHOLDERS | frozenset(self.placeholders)
        )


class WebhookMapping(_Frozen):
    """Where things live in a webhook body. ``items`` selects the item objects (``$`` for
    a body that is one item, ``events[*]`` for a batch); the other paths are relative to
    an item. ``event_id`` is the provider's per-item id; without one, the delivery's id
    (the signature's event-id header, else the body hash) plus the item's position is.
    Event types not in ``events`` are counted as ignored, or are an error with
    ``unknown_events: "error"``.

    ``format`` ``form``: the body is application/x-www-form-urlencoded, read as the nested
    object its bracketed names spell (``data[merges][FNAME]=Ann`` is ``data.merges.FNAME``).
    ``occurred_at`` ``"received"``: the webhook carries no time (FreshBooks'); upserts are
    ordered by the record's own updated-at as ever, deletes by when ingest received them.
    ``verification``: the subscription handshake, see ``Verification``.
    The event type is at ``event_type`` in the item, or in the header ``event_type_header``
    (which the signature's ``keep_headers`` must keep), or, with ``groups``, the key under
    which the item is: ``groups`` is the path of an object whose keys are event types and
    whose values are arrays of items (a member that is not an array or object is no group).
    """

    format: Literal["json", "form"] = "json"
    items: str = "$"
    groups: _OnePath | None = None
    event_type: _OnePath | None = None
    event_type_header: str | None = Field(None, min_length=1)
    event_id: _OnePath | None = None
    occurred_at: Timestamp | Literal["received"]
    events: dict[str, EventRoute] = Field(min_length=1)
    unknown_events: Literal["ignored", "error"] = "ignored"
    verification: Verification | None = None

    @field_validator("items")
    @classmethod
    def _valid_items(cls, value: str) -> str:
        return _path(value)

    @field_validator("event_type_header")
    @classmethod
    def _lower_case(cls, value: str | None) -> str | None:
        return None if value is None else value.strip().lower()

    @model_validator(mode="after")
    def _one_event_type(self) -> Self:
        given = [
            name
            for name in ("event_type", "event_type_header", "groups")
            if getattr(self, name) is not None
        ]
        if len(given) != 1:
            raise ValueError(
                'say where the event type is with exactly one of "event_type" (a path), '
                '"event_type_header" or "groups"' + (f"; got {', '.join(given)}" if given else "")
            )
        if self.groups is not None and self.items != "$":
            raise ValueError('"items" does not apply with "groups": the groups hold the items')
        if self.verification is not None and self.verification.event in self.events:
            raise ValueError(
                f"{self.verification.event!r} is the verification's event: it maps no record, "
                'so it is not in "events"'
            )
        return self


class EntityWebhook(_Frozen):
    """How one entity's webhook item names its record: ``entity_id`` (path in the item);
    ``delivery`` full (the record is at ``record``) or thin (fetched from the API)."""

    entity_id: _OnePath
    delivery: Literal["full", "thin"]
    record: _OnePath | None = None

    @model_validator(mode="after")
    def _record_for_full(self) -> Self:
        if self.delivery == "full" and self.record is None:
            raise ValueError('delivery "full" needs "record", the path of the record')
        if self.delivery == "thin" and self.record is not None:
            raise ValueError('delivery "thin" carries no record: drop "record"')
        return self


class DeletedFlag(_Frozen):
    """The record is deleted (archived, closed for good) when ``path`` holds ``value``."""

    path: _OnePath
    value: JsonValue = True


class RefMapping(_Frozen):
    """A reference at ``path`` whose ``none`` values mean "no record" (WooCommerce's guest
    orders have ``customer_id`` 0): such a value is no reference, never an id to wait for."""

    path: _OnePath
    none: tuple[JsonValue, ...] = ()


class Endpoint(_Frozen):
    """One parsed endpoint template: "PATCH {base}/api/contacts/{id}"."""

    method: HttpMethod
    template: str

    def url(self, base: str, record_id: str | None = None, **values: str) -> str:
        """The URL for ``base`` (the connection's API root), the record's id and any other
        placeholder's value, each URL-encoded; ``{origin}`` is the base's scheme and host."""
        parts = urlsplit(base)
        filled = {key: quote(value, safe="") for key, value in values.items()}
        filled["base"] = base.rstrip("/")
        filled["origin"] = f"{parts.scheme}://{parts.netloc}"
        if record_id is not None:
            filled["id"] = quote(record_id, safe="")
        return self.template.format_map(filled)


def parse_endpoint(text: str, kind: EndpointKind) -> Endpoint:
    """``text`` as an Endpoint, ValueError naming the placeholder or part that is wrong."""
    return parse_template(text, kind, _ENDPOINT_PLACEHOLDERS[kind])


def parse_template(text: str, kind: str, allowed: frozenset[str] | set[str]) -> Endpoint:
    """``text`` ("PUT {base}/…/{id}") as an Endpoint taking the ``allowed`` placeholders;
    every endpoint starts at the connection's API root (``{base}``, or ``{origin}``)."""
    method, _, template = text.strip().partition(" ")
    template = template.strip()
    if method not in {"GET", "POST", "PUT", "PATCH", "DELETE"}:
        raise ValueError(f"{text!r} must start with GET, POST, PUT, PATCH or DELETE")
    roots = sorted({"base", "origin"} & set(allowed))
    if not any(template.startswith(f"{{{root}}}") for root in roots):
        starts = " or ".join(f"{{{root}}}" for root in roots)
        raise ValueError(f"{text!r}: the URL must start with {starts}")
    names: set[str] = set()
    try:
        for _, name, spec, conversion in string.Formatter().parse(template):
            if name is None:
                continue
            if spec or conversion:
                raise ValueError(f"{text!r}: placeholder {{{name}}} takes no format")
            names.add(name)
    except ValueError as exc:
        raise ValueError(f"{text!r}: {exc}") from None
    unknown = names - set(allowed)
    if unknown:
        listed = ", ".join(f"{{{n}}}" for n in sorted(unknown))
        known = ", ".join(f"{{{n}}}" for n in sorted(allowed))
        raise ValueError(f"{text!r}: unknown placeholder {listed} ({kind} takes {known})")
    if "id" in allowed and "id" not in names:
        raise ValueError(f"{text!r}: {kind} needs the record's {{id}}")
    return Endpoint(method=method, template=template)


@lru_cache(maxsize=_CACHE_SIZE)
def _parsed_template(text: str, kind: str, allowed: frozenset[str]) -> Endpoint:
    return parse_template(text, kind, allowed)


class Endpoints(_Frozen):
    """Endpoint templates per operation; ``{base}`` is the connection's API root and
    ``{id}`` the record's id (URL-encoded). An operation without one is unsupported."""

    fetch: str | None = None
    create: str | None = None
    update: str | None = None
    delete: str | None = None
    list: str | None = None

    @field_validator("fetch", "create", "update", "delete", "list")
    @classmethod
    def _valid_template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            parse_endpoint(value, cast(EndpointKind, info.field_name))
        return value

    def get(self, kind: EndpointKind) -> Endpoint | None:
        text: str | None = getattr(self, kind)
        return None if text is None else _parsed_endpoint(text, kind)


@lru_cache(maxsize=_CACHE_SIZE)
def _parsed_endpoint(text: str, kind: EndpointKind) -> Endpoint:
    return parse_endpoint(text, kind)


class ModifiedSince(_TimeFormat):
    """The list endpoint's "changed since" query parameter and how it writes the time."""

    param: str = Field(min_length=1)


class Pagination(_Frozen):
    """How the list endpoint pages. ``style`` page: ``page_param`` counts from
    ``first_page``; the last page is the one where ``has_more`` (a boolean path) is false
    or, without it, that holds fewer than ``page_size`` records. ``style`` offset:
    ``offset_param`` counts records from 0; the last page is short, empty, or reaches
    ``total`` (a path to the number of records). ``style`` cursor: the next cursor is at
    ``next_cursor`` and goes back in ``cursor_param``; none means done. ``items`` is where
    the records are in a list response: an array, or with ``items_keyed`` an object whose
    values are the records (keyed by id; an empty array counts as an empty object).
    """

    style: Literal["page", "offset", "cursor"]
    items: _OnePath
    items_keyed: bool = False
    offset_param: str = "offset"
    total: _OnePath | None = None
    page_param: str = "page"
    first_page: int = Field(1, ge=0)
    page_size_param: str | None = None
    page_size: int = Field(DEFAULT_PAGE_SIZE, ge=1)
    has_more: _OnePath | None = None
    cursor_param: str = "cursor"
    next_cursor: _OnePath | None = None
    modified_since: ModifiedSince | None = None
    params: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _style_fields(self) -> Self:
        if self.style == "cursor" and self.next_cursor is None:
            raise ValueError('style "cursor" needs "next_cursor", the path of the next cursor')
        if self.style != "cursor" and self.next_cursor is not None:
            raise ValueError('"next_cursor" applies only to style "cursor"')
        # Compared with the defaults, not "set": a stored mapping may be a full dump.
        only = {
            "offset_param": ("offset", self.offset_param != "offset"),
            "total": ("offset", self.total is not None),
            "has_more": ("page", self.has_more is not None),
        }
        for name, (style, given) in only.items():
            if given and self.style != style:
                raise ValueError(f'"{name}" applies only to style "{style}"')
        return self


class EntityMapping(_Frozen):
    """One entity type: the API object's id, updated-at, optional version and deleted
    flag, its fields and references, how webhooks carry it, and its endpoints.

    ``request_wrap`` is where create/update bodies put the record (``{"work_order": …}``),
    ``response_record`` where single-record responses have it; both absent for bare ones.
    """

    id: _OnePath
    updated_at: Timestamp
    version: _OnePath | None = None
    deleted: DeletedFlag | None = None
    fields: tuple[FieldMapping, ...] = Field(min_length=1)
    refs: dict[str, str | RefMapping] = Field(default_factory=dict)
    webhook: EntityWebhook | None = None
    endpoints: Endpoints = Field(default_factory=Endpoints)
    request_wrap: _OnePath | None = None
    response_record: _OnePath | None = None
    pagination: Pagination | None = None

    @field_validator("refs")
    @classmethod
    def _valid_refs(cls, value: dict[str, str | RefMapping]) -> dict[str, str | RefMapping]:
        for field, ref in value.items():
            if field not in REFERENCE_FIELDS:
                raise ValueError(
                    f"{field!r} is not a reference field ({', '.join(REFERENCE_FIELDS)})"
                )
            if isinstance(ref, str):
                _one_path(ref)
        return value

    def ref_paths(self) -> Iterator[tuple[str, str, tuple[JsonValue, ...]]]:
        """(reference field, provider path, values that mean none) of each reference."""
        for field, ref in self.refs.items():
            if isinstance(ref, str):
                yield field, ref, ()
            else:
                yield field, ref.path, ref.none

    @model_validator(mode="after")
    def _list_needs_pagination(self) -> Self:
        if self.endpoints.list is not None and self.pagination is None:
            raise ValueError('an entity with a "list" endpoint needs "pagination"')
        delete = self.endpoints.get("delete")
        if delete is not None and delete.method in {"PUT", "PATCH"} and self.deleted is None:
            raise ValueError(
                f'a {delete.method} "delete" writes the record\'s "deleted" flag: add one'
            )
        return self


class AuthConfig(_Frozen):
    """How requests authenticate: a token in ``header`` after ``prefix`` (bearer), or
    HTTP Basic with a user and password (basic)."""

    kind: Literal["bearer", "basic"] = "bearer"
    header: str = Field("Authorization", min_length=1)
    prefix: str = "Bearer "

    @model_validator(mode="after")
    def _basic_is_standard(self) -> Self:
        if self.kind == "basic" and {"header", "prefix"} & self.model_fields_set:
            raise ValueError('basic auth always uses "Authorization: Basic …": drop header/prefix')
        return self


class RateLimitConfig(_Frozen):
    rate: float = Field(DEFAULT_RATE, gt=0)
    per_seconds: float = Field(DEFAULT_PER_SECONDS, gt=0)
    burst: int = Field(DEFAULT_BURST, ge=1)


class ApiMapping(_Frozen):
    """The API as a whole: default root URL, auth, the provider's published rate limit,
    constant headers, and the header (if any) that carries our idempotency key on create."""

    base_url: str | None = None
    auth: AuthConfig = Field(default_factory=AuthConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    headers: dict[str, str] = Field(default_factory=dict)
    idempotency_header: str | None = Field(None, min_length=1)


class GenericMapping(_Frozen):
    """A connection's mapping (the file minus ``signature``); see the module docstring.

    Checks that need more than one part of the file (a field that must exist on the
    entity's canonical model, an event routed to an entity the file maps) run after the
    parts validate; ``load_mapping_file`` reports them with their own paths and lines.
    """

    webhook: WebhookMapping | None = None
    entities: dict[EntityType, EntityMapping] = Field(min_length=1)
    api: ApiMapping = Field(default_factory=ApiMapping)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Self:
        if isinstance(info.context, dict) and info.context.get("defer_checks"):
            return self
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{dotted(loc)}: {message}" for loc, message in problems))
        return self

    def problems(self) -> list[tuple[Loc, str]]:
        """Every cross-part inconsistency, each with the JSON path it is about."""
        found: list[tuple[Loc, str]] = []
        if self.webhook is not None:
            for event, route in self.webhook.events.items():
                entity = self.entities.get(route.entity_type)
                loc: Loc = ("webhook", "events", event, "entity_type")
                if entity is None:
                    found.append((loc, f"{route.entity_type!r} is not in entities"))
                elif entity.webhook is None:
                    found.append((loc, f'entities.{route.entity_type} has no "webhook" section'))
                elif entity.webhook.delivery == "thin" and entity.endpoints.fetch is None:
                    found.append(
                        (loc, f"thin webhooks need entities.{route.entity_type}.endpoints.fetch")
                    )
        for entity_type, entity in self.entities.items():
            found.extend(_entity_problems(entity_type, entity))
        return found

    def entity(self, entity_type: str) -> EntityMapping | None:
        for key, entity in self.entities.items():
            if key == entity_type:
                return entity
        return None


def _entity_problems(entity_type: EntityType, entity: EntityMapping) -> Iterator[tuple[Loc, str]]:
    base: Loc = ("entities", entity_type)
    model_fields = ENTITY_MODELS[entity_type].model_fields
    for ref in entity.refs:
        if ref not in model_fields:
            yield (*base, "refs", ref), f"a {entity_type} has no {ref}"
    seen_canonical: dict[str, int] = {}
    seen_paths: dict[str, int] = {}
    for index, mapping in enumerate(entity.fields):
        loc: Loc = (*base, "fields", index)
        yield from _field_problems(loc, entity_type, mapping, top_level=True)
        if mapping.canonical is not None and mapping.reads:
            if mapping.canonical in seen_canonical:
                first = seen_canonical[mapping.canonical]
                yield (
                    (*loc, "canonical"),
                    f"{mapping.canonical!r} is already read by fields[{first}]",
                )
            seen_canonical.setdefault(mapping.canonical, index)
        if mapping.writes:
            for path in mapping.written_paths:
                # One create and one update mapping may share a path: no body has both.
                key = f"{mapping.only_on or ''}:{path}"
                clashes = [k for k in (key, f":{path}") if k in seen_paths]
                if mapping.only_on is None:
                    clashes += [k for k in (f"create:{path}", f"update:{path}") if k in seen_paths]
                if clashes:
                    first = seen_paths[clashes[0]]
                    yield (*loc, "path"), f"{path!r} is already written by fields[{first}]"
                seen_paths.setdefault(key, index)
        if mapping.currency_field is not None and mapping.currency_field not in model_fields:
            yield (*loc, "currency_field"), f"a {entity_type} has no {mapping.currency_field!r}"


def _field_problems(
    loc: Loc, entity_type: EntityType, mapping: FieldMapping, *, top_level: bool
) -> Iterator[tuple[Loc, str]]:
    canonical = mapping.canonical
    if canonical is None:
        return
    parts = canonical.split(".")
    model_fields = (ENTITY_MODELS[entity_type] if top_level else InvoiceLine).model_fields
    where = entity_type if top_level else "invoice line"
    head = parts[0]
    if head in REFERENCE_FIELDS and top_level:
        yield (*loc, "canonical"), f'{head!r} is a reference: map it under "refs"'
        return
    if head not in model_fields:
        yield (*loc, "canonical"), f"a {where} has no field {head!r}"
        return
    if head in _ADDRESS_FIELDS:
        if len(parts) != 2 or parts[1] not in Address.model_fields:
            parts_list = ", ".join(f"{head}.{name}" for name in Address.model_fields)
            yield (*loc, "canonical"), f"map {head} field by field: {parts_list}"
        return
    if len(parts) > 1:
        yield (*loc, "canonical"), f"{head!r} has no sub-fields"
        return
    yield from _transform_problems(loc, entity_type, mapping, head, top_level=top_level)


def _transform_problems(
    loc: Loc, entity_type: EntityType, mapping: FieldMapping, head: str, *, top_level: bool
) -> Iterator[tuple[Loc, str]]:
    transform = mapping.transform
    if head in _LIST_FIELDS:
        if mapping.items is None:
            yield (*loc, "items"), f'{head} needs "items": the mappings of one element'
            return
        for index, item in enumerate(mapping.items):
            item_loc: Loc = (*loc, "items", index)
            if (
                item.currency_field is not None
                and item.currency_field not in ENTITY_MODELS[entity_type].model_fields
            ):
                yield (
                    (*item_loc, "currency_field"),
                    f"a {entity_type} has no {item.currency_field!r}",
                )
            yield from _field_problems(item_loc, entity_type, item, top_level=False)
        return
    if mapping.items is not None:
        yield (*loc, "items"), f'"items" applies only to list fields, not {head!r}'
    if transform == "constant":
        return
    money = _MONEY_FIELDS if top_level else _LINE_MONEY_FIELDS
    expected: tuple[Transform, ...]
    if head in money:
        expected = ("money", "minor_units")
    elif head in _DATETIME_FIELDS:
        expected = ("datetime",)
    elif head in _DATE_FIELDS:
        expected = ("date",)
    elif head == "quantity":
        expected = ("decimal", "none")
    else:
        expected = ("none", "enum", "join")
    if transform not in expected:
        yield (
            (*loc, "transform"),
            (f"{head!r} takes transform {' or '.join(expected)}, not {transform!r}"),
        )


# --- loading a file --------------------------------------------------------------------------


class _MappingFile(GenericMapping):
    signature: GenericSchemeConfig

    def problems(self) -> list[tuple[Loc, str]]:
        found = super().problems()
        header = self.webhook.event_type_header if self.webhook is not None else None
        if header is not None and header not in self.signature.header_names:
            found.append(
                (
                    ("webhook", "event_type_header"),
                    f"ingest keeps only the headers it is told to: add {header!r} to "
                    "signature.keep_headers",
                )
            )
        return found


class MappingFileError(RefuseInput, ValueError):
    """A mapping file that does not validate; ``problems`` lists (path, line, message)."""

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"  {path} (line {line}): {message}" if line else f"  {path}: {message}"
            for path, line, message in problems
        ]
        super().__init__(f"{source}: {len(problems)} problem(s)\n" + "\n".join(lines))


def load_mapping_file(path_or_text: str | Path) -> tuple[GenericSchemeConfig, GenericMapping]:
    """Read and validate a mapping file (a path, or the JSON text itself).

    Returns the signature configuration and the mapping; MappingFileError lists every
    problem with its JSON path and line.
    """
    if isinstance(path_or_text, Path) or not path_or_text.lstrip().startswith("{"):
        source = str(path_or_text)
        text = Path(path_or_text).read_text(encoding="utf-8")
    else:
        source, text = "<mapping>", path_or_text
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MappingFileError(source, [("$", exc.lineno, f"not JSON: {exc.msg}")]) from None
    lines = _key_lines(text)
    try:
        parsed = _MappingFile.model_validate(
            document, context={"defer_checks": True, **CONFIGURING}
        )
    except ValidationError as exc:
        raise MappingFileError(
            source,
            [
                (dotted(error["loc"]), _line_of(lines, error["loc"]), error["msg"])
                for error in exc.errors(include_url=False)
            ],
        ) from None
    problems = parsed.problems()
    if problems:
        raise MappingFileError(
            source, [(dotted(loc), _line_of(lines, loc), message) for loc, message in problems]
        )
    mapping = GenericMapping.model_validate(
        parsed.model_dump(exclude={"signature"}, exclude_unset=True)
    )
    return parsed.signature, mapping


def mapping_settings(mapping: GenericMapping) -> dict[str, Any]:
    """The JSON form a connection stores as ``settings["generic_mapping"]``."""
    return mapping.model_dump(mode="json", exclude_unset=True)


def mapping_from_settings(settings: Mapping[str, Any]) -> GenericMapping:
    """The connection's mapping; ValueError when it is absent or does not validate."""
    raw = settings.get("generic_mapping")
    if isinstance(raw, GenericMapping):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError('the connection has no "generic_mapping" setting')
    return _cached_mapping(json.dumps(raw, sort_keys=True, default=str))


@lru_cache(maxsize=_CACHE_SIZE)
def _cached_mapping(text: str) -> GenericMapping:
    return GenericMapping.model_validate_json(text)


def dotted(loc: Loc) -> str:
    """A pydantic location as the path a person reads: ``entities.job.fields[2].path``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


# --- line numbers ----------------------------------------------------------------------------


def _key_lines(text: str) -> dict[Loc, int]:
    """The line of every object key and array element in ``text`` (valid JSON)."""
    starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    lines: dict[Loc, int] = {}
    decoder = json.JSONDecoder()

    def line(position: int) -> int:
        return bisect_right(starts, position)

    def skip(position: int) -> int:
        while position < len(text) and text[position] in " \t\r\n":
            position += 1
        return position

    def value(position: int, loc: Loc) -> int:
        position = skip(position)
        opener = text[position]
        if opener == "{":
            position = skip(position + 1)
            while text[position] != "}":
                key, after = scanstring(text, position + 1)
                lines[(*loc, key)] = line(position)
                position = value(skip(after) + 1, (*loc, key))
                position = skip(position)
                if text[position] == ",":
                    position = skip(position + 1)
            return position + 1
        if opener == "[":
            position = skip(position + 1)
            index = 0
            while text[position] != "]":
                lines[(*loc, index)] = line(position)
                position = skip(value(position, (*loc, index)))
                if text[position] == ",":
                    position = skip(position + 1)
                index += 1
            return position + 1
        _, end = decoder.raw_decode(text, position)
        return int(end)

    value(0, ())
    return lines


def _line_of(lines: Mapping[Loc, int], loc: Loc) -> int | None:
    """The line of the deepest part of ``loc`` present in the file (a missing key's
    parent; pydantic's extra location parts, such as union tags, are skipped)."""
    found: int | None = lines.get((), None)
    prefix: Loc = ()
    for part in loc:
        candidate = (*prefix, part)
        if candidate in lines:
            prefix = candidate
            found = lines[candidate]
    return found if found is not None else 1
