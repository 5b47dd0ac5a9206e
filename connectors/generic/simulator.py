"""AcmeCRM: a made-up field-service CRM with no built-in connector, simulated.

It exists so the generic connector has a real HTTP counterpart whose shapes are nothing
like the canonical model; ``connectors/generic/examples/acme.json`` connects it. Its API,
as its (imaginary) documentation would state it:

- ``Authorization: Bearer <api key>``; errors are ``{"error": {"code", "message"}}``.
- Contacts, ``/api/contacts``: GET (page-numbered list: ``page``, ``per_page`` ≤ 100,
  ``modified_after`` in unix milliseconds; ``{"data": [...], "meta": {..., "has_more"}}``),
  POST, GET/PUT/DELETE ``/api/contacts/{id}``; bare objects in and out.
- Work orders, ``/api/work-orders``: cursor list (``limit`` ≤ 200, ``cursor``,
  ``updated_since`` ISO 8601; ``{"work_orders": [...], "next_cursor"}``), POST, GET/PATCH/
  DELETE ``/api/work-orders/{id}``; bodies wrapped as ``{"work_order": {...}}``.
  Appointment windows are "%d/%m/%Y %H:%M %z", written back in Brisbane time (+10:00).
- Invoices, ``/api/invoices``: cursor list as work orders (``{"invoices": [...]}``), POST,
  GET/PATCH ``/api/invoices/{id}``; amounts are decimal strings, dates "%d/%m/%Y";
  invoices are never deleted (cancel one with ``stage: "cancelled"``).
- Every object has ``revision`` (+1 per change) and ``modified_ms`` (unix milliseconds).
- Webhooks: ``{"delivery", "sent_at", "events": [{"id", "type", "occurred_at",
  "resource": {"type", "id"}, "data"?}]}`` signed GitHub-style, ``X-Hub-Signature-256:
  sha256=<hex HMAC-SHA256 of the body>``, with ``X-Acme-Delivery``. Contact events carry
  the contact (``data``); work-order and invoice events are thin.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import itertools
import json
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from connectors.generic import convert
from connectors.generic.client import auth_for
from connectors.generic.config import (
    EndpointKind,
    EntityMapping,
    EventRoute,
    GenericMapping,
    WebhookMapping,
    load_mapping_file,
)
from connectors.generic.paths import MISSING, read, write
from connectors.generic.signature import GenericSchemeConfig, form_as_json
from connectors.http import StaticAuth
from connectors.simkit import Change, Simulator
from connectors.spec import EntityType, RateLimit

# AcmeCRM's (imaginary) published limit: 120 requests a minute per API key, bursts of 20.
ACME_RATE_LIMIT = RateLimit(rate=120, per_seconds=60, burst=20)
# Acme's head office is in Brisbane (no daylight saving): windows come back in +10:00.
ACME_ZONE = timezone(timedelta(hours=10))
WINDOW_FORMAT = "%d/%m/%Y %H:%M %z"
DATE_FORMAT = "%d/%m/%Y"
# Page sizes from Acme's list endpoints: defaults and maxima.
CONTACTS_PER_PAGE = 25
CONTACTS_MAX_PER_PAGE = 100
CURSOR_LIMIT = 50
CURSOR_MAX_LIMIT = 200
# Currencies Acme bills in whose minor unit is not cents (ISO 4217).
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "KWD": 3, "BHD": 3, "OMR": 3}
_STATES = ("new", "booked", "on_site", "done", "called_off")
_URGENCIES = ("P1", "P2", "P3", "P4")
_STAGES = ("draft", "sent", "settled", "cancelled", "late")
_ADDRESS_KEYS = frozenset({"street", "street2", "suburb", "state", "postcode", "country"})
_CONTACT_KEYS = frozenset(
    {"full_name", "email_address", "phone", "organisation", "postal", "notes", "archived"}
)
_WORK_ORDER_KEYS = frozenset(
    {"contact_id", "summary", "details", "state", "urgency", "window", "site"}
)
_INVOICE_KEYS = frozenset(
    {
        "contact_id",
        "work_order_id",
        "reference",
        "stage",
        "currency",
        "issued",
        "due",
        "items",
        "net",
        "gst",
        "gross",
        "balance",
    }
)
_LINE_KEYS = frozenset({"text", "qty", "unit_price", "gst"})
# What Acme stores for fields a create leaves out.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "customer": {
        "email_address": None,
        "phone": None,
        "organisation": None,
        "postal": None,
        "notes": None,
        "archived": False,
    },
    "job": {
        "contact_id": None,
        "details": None,
        "state": "new",
        "urgency": "P3",
        "window": None,
        "site": None,
    },
    "invoice": {
        "work_order_id": None,
        "stage": "draft",
        "currency": "AUD",
        "items": [],
        "balance": None,
    },
}
_KIND = {"customer": "contact", "job": "work_order", "invoice": "invoice"}
_PREFIX = {"customer": "con", "job": "wo", "invoice": "inv"}

_FIRST = ("Olivia", "Noah", "Charlotte", "Jack", "Amelia", "William", "Isla", "Oliver")
_LAST = ("Nguyen", "Smith", "Wilson", "Patel", "Brown", "Taylor", "Kelly", "Singh")
_STREETS = ("Queen St", "Ann St", "Boundary Rd", "Logan Rd", "Sandgate Rd", "Waterworks Rd")
_SUBURBS = (("Brisbane City", "4000"), ("Fortitude Valley", "4006"), ("Paddington", "4064"))
_JOBS = (
    "Replace hot water system",
    "Service split-system air conditioner",
    "Fix leaking kitchen tap",
    "Install ceiling fan",
    "Test and tag appliances",
)


_ERRORS: dict[int, type[web.HTTPException]] = {400: web.HTTPBadRequest, 404: web.HTTPNotFound}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def acme_error(status: int, code: str, message: str) -> web.HTTPException:
    """An error answered in Acme's shape: ``{"error": {"code", "message"}}``."""
    return _ERRORS[status](
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
    )


def _invalid(message: str) -> web.HTTPException:
    return acme_error(400, "validation_failed", message)


def _millis(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


class AcmeSimulator(Simulator):
    """AcmeCRM's API and webhooks (see the module docstring)."""

    provider = "acme"
    entity_types: tuple[EntityType, ...] = ("customer", "job", "invoice")

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("rate_limit", ACME_RATE_LIMIT)
        super().__init__(**kwargs)
        self._deliveries = itertools.count(1)
        self._events = itertools.count(1)
        self._last_ms = 0

    # --- store hooks --------------------------------------------------------------------------

    def new_id(self, entity_type: EntityType) -> str:
        return f"{_PREFIX[entity_type]}_{super().new_id(entity_type).rsplit('_', 1)[1]}"

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self._now_ms()
        defaults = copy.deepcopy(_DEFAULTS[entity_type])
        return {
            "id": record_id,
            **defaults,
            **body,
            "revision": 1,
            "created_ms": now,
            "modified_ms": now,
        }

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        merged = dict(obj)
        for key, value in body.items():
            current = merged.get(key)
            if isinstance(value, dict) and isinstance(current, dict):
                merged[key] = {**current, **value}
            else:
                merged[key] = value
        merged["revision"] = int(obj.get("revision", 0)) + 1
        merged["modified_ms"] = self._now_ms()
        return merged

    def get(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store.get(entity_type, {}).get(record_id)
        if obj is None or record_id in self.deleted.get(entity_type, set()):
            raise acme_error(404, "not_found", f"no {_KIND[entity_type]} {record_id}")
        return obj

    def _now_ms(self) -> int:
        # Strictly increasing, so "modified since" and list order never tie.
        self._last_ms = max(_millis(self.clock()), self._last_ms + 1)
        return self._last_ms

    # --- webhooks -----------------------------------------------------------------------------

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        delivery = f"dlv_{next(self._deliveries):06d}"
        events = [self._event(change) for change in changes]
        body = json.dumps(
            {"delivery": delivery, "sent_at": _iso(self.clock()), "events": events}
        ).encode()
        headers = {"X-Acme-Delivery": delivery, "User-Agent": "AcmeCRM-Hookshot/2.3"}
        if self.webhook_secret is not None:
            digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).hexdigest()
            headers["X-Hub-Signature-256"] = f"sha256={digest}"
        return [(body, headers)]

    def _event(self, change: Change) -> dict[str, Any]:
        kind = _KIND[change.entity_type]
        obj = self.store[change.entity_type].get(change.record_id, {})
        action = {"create": "created", "update": "updated", "delete": "deleted"}[change.op]
        if change.op == "update" and obj.get("archived") is True:
            action = "archived"
        event: dict[str, Any] = {
            "id": f"evt_{next(self._events):06d}",
            "type": f"{kind}.{action}",
            "occurred_at": _iso(change.at),
            "resource": {"type": kind, "id": change.record_id},
        }
        if change.entity_type == "customer" and change.op != "delete":
            event["data"] = obj
        return event

    # --- seeds --------------------------------------------------------------------------------

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        first, last = _FIRST[index % len(_FIRST)], _LAST[(index // len(_FIRST)) % len(_LAST)]
        suburb, postcode = _SUBURBS[index % len(_SUBURBS)]
        address = {
            "street": f"{10 + index} {_STREETS[index % len(_STREETS)]}",
            "street2": None,
            "suburb": suburb,
            "state": "QLD",
            "postcode": postcode,
            "country": "AU",
        }
        contacts = sorted(self.store["customer"])
        contact = contacts[index % len(contacts)] if contacts else None
        if entity_type == "customer":
            return {
                "full_name": f"{first} {last}",
                "email_address": f"{first}.{last}{index}@example.com.au".lower(),
                "phone": f"+61 7 3{index % 1000:03d} {1000 + index % 9000:04d}",
                "organisation": f"{last} Property Group" if index % 3 == 0 else None,
                "postal": address,
                "notes": None,
            }
        start = datetime(2024, 3, 4, 8, 0, tzinfo=ACME_ZONE) + timedelta(hours=3 * index)
        if entity_type == "job":
            return {
                "contact_id": contact,
                "summary": _JOBS[index % len(_JOBS)],
                "details": f"Customer reference #{4100 + index}",
                "state": _STATES[index % len(_STATES)],
                "urgency": _URGENCIES[index % len(_URGENCIES)],
                "window": {
                    "from": start.strftime(WINDOW_FORMAT),
                    "to": (start + timedelta(hours=2)).strftime(WINDOW_FORMAT),
                },
                "site": address,
            }
        hours = 1 + index % 4
        net = Decimal("95.00") * hours
        gst = net / 10
        return {
            "contact_id": contact,
            "reference": f"INV-{1001 + index}",
            "stage": _STAGES[index % len(_STAGES)],
            "currency": "AUD",
            "issued": start.strftime(DATE_FORMAT),
            "due": (start + timedelta(days=14)).strftime(DATE_FORMAT),
            "items": [
                {"text": "Labour", "qty": str(hours), "unit_price": "95.00", "gst": f"{gst:.2f}"}
            ],
            "net": f"{net:.2f}",
            "gst": f"{gst:.2f}",
            "gross": f"{net + gst:.2f}",
            "balance": f"{net + gst:.2f}",
        }

    # --- the API ------------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/contacts", self._list_contacts)
        app.router.add_post("/api/contacts", self._creator("customer"))
        app.router.add_get("/api/contacts/{id}", self._getter("customer"))
        app.router.add_put("/api/contacts/{id}", self._updater("customer"))
        app.router.add_delete("/api/contacts/{id}", self.deleter("customer"))
        app.router.add_get("/api/work-orders", self._cursor_lister("job"))
        app.router.add_post("/api/work-orders", self._creator("job"))
        app.router.add_get("/api/work-orders/{id}", self._getter("job"))
        app.router.add_patch("/api/work-orders/{id}", self._updater("job"))
        app.router.add_delete("/api/work-orders/{id}", self.deleter("job"))
        app.router.add_get("/api/invoices", self._cursor_lister("invoice"))
        app.router.add_post("/api/invoices", self._creator("invoice"))
        app.router.add_get("/api/invoices/{id}", self._getter("invoice"))
        app.router.add_patch("/api/invoices/{id}", self._updater("invoice"))

    def _creator(self, entity_type: EntityType) -> Handler:
        async def create(request: web.Request) -> web.Response:
            fields = self._clean(entity_type, await self._body(entity_type, request), new=True)
            return self._answer(entity_type, self.create(entity_type, fields), status=201)

        return create

    def _getter(self, entity_type: EntityType) -> Handler:
        async def fetch(request: web.Request) -> web.Response:
            return self._answer(entity_type, self.get(entity_type, request.match_info["id"]))

        return fetch

    def _updater(self, entity_type: EntityType) -> Handler:
        async def update(request: web.Request) -> web.Response:
            record_id = request.match_info["id"]
            self.get(entity_type, record_id)
            fields = self._clean(entity_type, await self._body(entity_type, request), new=False)
            return self._answer(entity_type, self.update(entity_type, record_id, fields))

        return update

    async def _list_contacts(self, request: web.Request) -> web.Response:
        page = _int_param(request, "page", 1, low=1)
        per_page = _int_param(request, "per_page", CONTACTS_PER_PAGE, low=1)
        per_page = min(per_page, CONTACTS_MAX_PER_PAGE)
        since = _int_param(request, "modified_after", 0, low=0)
        rows = self._changed("customer", since)
        chunk = rows[(page - 1) * per_page : page * per_page]
        meta = {
            "page": page,
            "per_page": per_page,
            "total": len(rows),
            "has_more": page * per_page < len(rows),
        }
        return web.json_response({"data": chunk, "meta": meta})

    def _cursor_lister(self, entity_type: EntityType) -> Handler:
        async def listing(request: web.Request) -> web.Response:
            limit = min(_int_param(request, "limit", CURSOR_LIMIT, low=1), CURSOR_MAX_LIMIT)
            since = 0
            if "updated_since" in request.query:
                since = _millis(_iso_param(request, "updated_since"))
            rows = self._changed(entity_type, since)
            cursor = request.query.get("cursor")
            if cursor:
                after = _decode_cursor(cursor)
                rows = [r for r in rows if (r["modified_ms"], r["id"]) > after]
            chunk = rows[:limit]
            following = None
            if len(rows) > limit:
                last = chunk[-1]
                key = f"{last['modified_ms']}:{last['id']}".encode()
                following = base64.urlsafe_b64encode(key).decode("ascii")
            collection = f"{_KIND[entity_type]}s"
            return web.json_response({collection: chunk, "next_cursor": following})

        return listing

    def _changed(self, entity_type: EntityType, since_ms: int) -> list[dict[str, Any]]:
        rows = [o for o in self.live(entity_type) if o["modified_ms"] >= since_ms]
        return sorted(rows, key=lambda o: (o["modified_ms"], o["id"]))

    def _answer(
        self, entity_type: EntityType, obj: dict[str, Any], status: int = 200
    ) -> web.Response:
        body: Any = {"work_order": obj} if entity_type == "job" else obj
        return web.json_response(body, status=status)

    async def _body(self, entity_type: EntityType, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _invalid("the body is not JSON") from None
        if entity_type == "job":
            if not isinstance(body, dict) or not isinstance(body.get("work_order"), dict):
                raise _invalid('work orders are sent as {"work_order": {...}}')
            body = body["work_order"]
        if not isinstance(body, dict):
            raise _invalid("the body must be an object")
        return body

    # --- validation as Acme does it -----------------------------------------------------------

    def _clean(self, entity_type: EntityType, body: dict[str, Any], *, new: bool) -> dict[str, Any]:
        allowed = {"customer": _CONTACT_KEYS, "job": _WORK_ORDER_KEYS, "invoice": _INVOICE_KEYS}
        unknown = sorted(set(body) - allowed[entity_type])
        if unknown:
            raise _invalid(f"unknown field(s): {', '.join(unknown)}")
        if entity_type == "customer":
            return self._clean_contact(body, new=new)
        if entity_type == "job":
            return self._clean_work_order(body, new=new)
        return self._clean_invoice(body, new=new)

    def _clean_contact(self, body: dict[str, Any], *, new: bool) -> dict[str, Any]:
        if (new or "full_name" in body) and not _text(body.get("full_name")):
            raise _invalid("full_name is required")
        email = body.get("email_address")
        if email is not None and (not isinstance(email, str) or "@" not in email):
            raise _invalid("email_address is not an email address")
        if body.get("postal") is not None:
            body["postal"] = _address(body["postal"], "postal")
        return body

    def _clean_work_order(self, body: dict[str, Any], *, new: bool) -> dict[str, Any]:
        if (new or "summary" in body) and not _text(body.get("summary")):
            raise _invalid("summary is required")
        if body.get("contact_id") is not None:
            self._must_exist("customer", body["contact_id"], "contact_id")
        if "state" in body and body["state"] not in _STATES:
            raise _invalid(f"state must be one of {', '.join(_STATES)}")
        if "urgency" in body and body["urgency"] not in _URGENCIES:
            raise _invalid(f"urgency must be one of {', '.join(_URGENCIES)}")
        window = body.get("window")
        if window is not None:
            if not isinstance(window, dict) or set(window) - {"from", "to"}:
                raise _invalid('window is {"from": ..., "to": ...}')
            body["window"] = {k: _window_time(v, f"window.{k}") for k, v in window.items()}
        if body.get("site") is not None:
            body["site"] = _address(body["site"], "site")
        return body

    def _clean_invoice(self, body: dict[str, Any], *, new: bool) -> dict[str, Any]:
        if new and body.get("contact_id") is None:
            raise _invalid("contact_id is required")
        if body.get("contact_id") is not None:
            self._must_exist("customer", body["contact_id"], "contact_id")
        if body.get("work_order_id") is not None:
            self._must_exist("job", body["work_order_id"], "work_order_id")
        if "stage" in body and body["stage"] not in _STAGES:
            raise _invalid(f"stage must be one of {', '.join(_STAGES)}")
        currency = body.get("currency", "AUD")
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
            raise _invalid("currency is a 3-letter ISO 4217 code")
        exponent = _EXPONENTS.get(currency, 2)
        for key in ("issued", "due"):
            if body.get(key) is not None:
                _date(body[key], key)
        for key in ("net", "gst", "gross", "balance"):
            if body.get(key) is not None:
                body[key] = _money(body[key], exponent, key)
        items = body.get("items")
        if items is not None:
            if not isinstance(items, list):
                raise _invalid("items is an array")
            body["items"] = [_line(item, exponent, i) for i, item in enumerate(items)]
        return body

    def _must_exist(self, entity_type: EntityType, record_id: Any, field: str) -> None:
        if not isinstance(record_id, str) or record_id not in self.store[entity_type]:
            raise _invalid(f"{field} {record_id!r} does not exist")
        if record_id in self.deleted[entity_type]:
            raise _invalid(f"{field} {record_id!r} was deleted")


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _address(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) - _ADDRESS_KEYS:
        raise _invalid(f"{where} takes {', '.join(sorted(_ADDRESS_KEYS))}")
    return value


def _window_time(value: Any, where: str) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.strptime(str(value), WINDOW_FORMAT)
    except ValueError:
        raise _invalid(f"{where} is not dd/mm/yyyy hh:mm ±hhmm") from None
    return moment.astimezone(ACME_ZONE).strftime(WINDOW_FORMAT)


def _date(value: Any, where: str) -> None:
    try:
        datetime.strptime(str(value), DATE_FORMAT)
    except ValueError:
        raise _invalid(f"{where} is not dd/mm/yyyy") from None


def _money(value: Any, exponent: int, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(f"{where} is a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise _invalid(f"{where} is not a number") from None
    if not amount.is_finite() or amount != amount.quantize(Decimal(1).scaleb(-exponent)):
        raise _invalid(f"{where} has more than {exponent} decimals")
    return f"{amount:.{exponent}f}"


def _line(item: Any, exponent: int, index: int) -> dict[str, Any]:
    where = f"items[{index}]"
    if not isinstance(item, dict) or set(item) - _LINE_KEYS:
        raise _invalid(f"{where} takes {', '.join(sorted(_LINE_KEYS))}")
    line = dict(item)
    try:
        Decimal(str(line.get("qty", "1")))
    except InvalidOperation:
        raise _invalid(f"{where}.qty is not a number") from None
    for key in ("unit_price", "gst"):
        if line.get(key) is not None:
            line[key] = _money(line[key], exponent, f"{where}.{key}")
    return line


def _int_param(request: web.Request, name: str, default: int, *, low: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) < low:
        raise acme_error(400, "invalid_parameter", f"{name} must be an integer ≥ {low}")
    return int(raw)


def _iso_param(request: web.Request, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(request.query[name])
    except ValueError:
        raise acme_error(400, "invalid_parameter", f"{name} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise acme_error(400, "invalid_parameter", f"{name} needs a UTC offset")
    return moment


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        ms, _, record_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return int(ms), record_id
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise acme_error(400, "invalid_parameter", "cursor is not one Acme issued") from None


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- any mapping file, simulated ---------------------------------------------------------------
#
# A provider described only by a mapping file (examples/*.json) is simulated from that file:
# the API is its endpoints, paging and auth; webhooks are built back from its webhook section
# and signed as its signature section says. What the mapping cannot tell (how the provider
# makes ids, which event it sends for a create, update or delete, realistic records) is the
# simulator configuration beside it, ``examples/<name>.sim.json``:
#
#     {"provider": "woocommerce",
#      "entities": {"customer": {"id": "sequence" | "text_sequence" | "body:<path>",
#                                "events": {"create": "customer.created", "update": …,
#                                           "delete": null},      # null: no webhook
#                                "seed": {…a create body, "{n}" replaced by the index…},
#                                "body_at": "fields.all"}}}     # optional, see _placed
#
# On create the simulator writes the id at the entity's ``id`` path and the time at its
# ``updated_at`` path and every fallback (so "created" stamps exist); on update the first
# only; a ``version`` path counts changes. A delete of an entity with a ``deleted`` flag
# sets the flag (WooCommerce's trash, Mailchimp's archive) and is announced as an update.

_SIM_ID_KINDS = ("sequence", "text_sequence")
_WRITES = frozenset({"PUT", "PATCH"})
_FORM_TYPE = "application/x-www-form-urlencoded"


def form_encode(document: Mapping[str, Any]) -> bytes:
    """A nested object as the bracketed form fields PHP and Mailchimp write."""
    pairs: list[tuple[str, str]] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, child in value.items():
                walk(f"{prefix}[{key}]" if prefix else str(key), child)
        elif isinstance(value, list):
            for child in value:
                walk(f"{prefix}[]", child)
        else:
            pairs.append((prefix, "" if value is None else str(value)))

    walk("", document)
    return urlencode(pairs).encode()


class MappingSimulator(Simulator):
    """A provider simulated from its mapping file and simulator configuration; subclasses
    made by ``load_simulated`` set ``signature``, ``mapping`` and ``config``."""

    signature: GenericSchemeConfig
    mapping: GenericMapping
    config: Mapping[str, Any] = {}

    def __init__(self, **kwargs: Any) -> None:
        limit = self.mapping.api.rate_limit
        kwargs.setdefault(
            "rate_limit",
            RateLimit(rate=limit.rate, per_seconds=limit.per_seconds, burst=limit.burst),
        )
        if self.mapping.api.auth.kind == "basic":
            # A stored credential is "user:password" for basic auth (see auth_for).
            kwargs.setdefault("api_token", "sim:sim-token")
        self._url: str | None = None
        super().__init__(**kwargs)
        self._counters: dict[str, itertools.count[int]] = {}
        self._deliveries = itertools.count(1)
        self._last_stamp: datetime | None = None
        # The subscription handshake (webhook.verification): None until a callback is
        # registered (webhooks are then signed with webhook_secret, as for any provider);
        # False while its code has not come back (nothing is delivered); True after.
        self.callback_verified: bool | None = None
        self._callbacks = itertools.count(1)
        self._pending: tuple[str, dict[str, str]] | None = None

    # The URL a url_token provider posts to carries the connection's secret.
    @property
    def webhook_url(self) -> str | None:
        if self._url is None or self.signature.kind != "url_token" or not self.webhook_secret:
            return self._url
        joiner = "&" if "?" in self._url else "?"
        return f"{self._url}{joiner}{urlencode({self.signature.token_param: self.webhook_secret})}"

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self._url = value

    def _entity_config(self, entity_type: EntityType) -> Mapping[str, Any]:
        entities: Mapping[str, Mapping[str, Any]] = self.config.get("entities", {})
        found: Mapping[str, Any] = entities.get(entity_type, {})
        return found

    def _entity_mapping(self, entity_type: EntityType) -> EntityMapping:
        entity = self.mapping.entity(entity_type)
        if entity is None:
            raise web.HTTPNotFound(text=f"{self.provider} has no {entity_type}")
        return entity

    def authorised(self, request: web.Request) -> bool:
        auth = auth_for(self.mapping, token=self.api_token)
        assert isinstance(auth, StaticAuth)  # noqa: S101 - auth_for gives static auth
        given = request.headers.get(auth.header_name, "")
        if hmac.compare_digest(given.encode(), auth.header_value.encode()):
            return True
        # An OAuth2 access token it issued at /oauth/token, as a bearer token: a provider
        # whose tokens expire and are refreshed (FreshBooks: 12 hours).
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        expiry = self.access_tokens.get(token)
        return scheme.lower() == "bearer" and expiry is not None and expiry > time.time()

    # --- the store ----------------------------------------------------------------------------

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        kind = str(self._entity_config(entity_type).get("id", "sequence"))
        if kind.startswith("body:"):
            found = read(body, kind.removeprefix("body:"))
            if not isinstance(found, (str, int)) or isinstance(found, bool) or found == "":
                raise _sim_error(400, f"{kind.removeprefix('body:')} is required")
            record_id = str(found)
            if record_id in self.store[entity_type] and record_id not in self.deleted[entity_type]:
                raise _sim_error(400, f"{record_id} already exists")
            self.deleted[entity_type].discard(record_id)
        else:
            counter = self._counters.setdefault(entity_type, itertools.count(1))
            record_id = str(next(counter))
        obj = self.new_object(entity_type, record_id, body)
        self.store[entity_type][record_id] = obj
        if notify:
            self._announce(entity_type, record_id, "create")
        return obj

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        entity = self._entity_mapping(entity_type)
        obj: dict[str, Any] = copy.deepcopy(self._placed(entity_type, body))
        kind = str(self._entity_config(entity_type).get("id", "sequence"))
        write(obj, entity.id, int(record_id) if kind == "sequence" else record_id)
        now = self._stamp(entity)
        for path in entity.updated_at.paths:
            write(obj, path, now)
        if entity.version is not None:
            write(obj, entity.version, 1)
        return obj

    def update(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        placed = self._placed(entity_type, body)
        flag = self._entity_mapping(entity_type).deleted
        if flag is not None and read(placed, flag.path) == flag.value:
            # A soft delete written as an update (FreshBooks' vis_state 1) is a delete.
            self.delete(entity_type, record_id)
            return self.store[entity_type][record_id]
        return self._edit(entity_type, record_id, placed)

    def _edit(
        self, entity_type: EntityType, record_id: str, change: Mapping[str, Any]
    ) -> dict[str, Any]:
        """An update of stored fields (``change`` already in the stored shape)."""
        return super().update(entity_type, record_id, change)

    def _placed(self, entity_type: EntityType, body: Mapping[str, Any]) -> dict[str, Any]:
        """A request body in the stored shape: under ``body_at`` for providers that take
        flat fields and return them grouped (Mautic's ``fields.all``)."""
        at = self._entity_config(entity_type).get("body_at")
        if not at:
            return dict(body)
        placed: dict[str, Any] = {}
        write(placed, str(at), dict(body))
        return placed

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        entity = self._entity_mapping(entity_type)
        merged = _deep_merge(obj, body)
        write(merged, entity.id, read(obj, entity.id))  # the id is the provider's to keep
        write(merged, entity.updated_at.path, self._stamp(entity))
        if entity.version is not None:
            write(merged, entity.version, int(read(obj, entity.version) or 0) + 1)
        return merged

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        entity = self._entity_mapping(entity_type)
        if entity.deleted is None:
            super().delete(entity_type, record_id)
            return
        flagged: dict[str, Any] = {}
        write(flagged, entity.deleted.path, entity.deleted.value)
        obj = self.apply_edit(entity_type, self.get(entity_type, record_id), flagged)
        self.store[entity_type][record_id] = obj
        # Announced by the provider's delete event when it has one, else as an update.
        events: Mapping[str, Any] = self._entity_config(entity_type).get("events", {})
        self._announce(entity_type, record_id, "delete" if events.get("delete") else "update")

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        template = self._entity_config(entity_type).get("seed", {})
        filled: dict[str, Any] = _fill(template, index)
        return filled

    def _stamp(self, entity: EntityMapping) -> Any:
        """Now, as the entity's ``updated_at`` writes it: whole seconds (or milliseconds),
        strictly increasing, so "changed since" and newest-wins never see a tie."""
        spec = entity.updated_at
        millis = spec.format == "unix_millis"
        step = timedelta(milliseconds=1) if millis else timedelta(seconds=1)
        moment = self.clock()
        moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000 if millis else 0)
        if self._last_stamp is not None and moment < self._last_stamp + step:
            moment = self._last_stamp + step
        self._last_stamp = moment
        return convert.format_timestamp(moment, spec.format, spec.zone)

    # --- the API ------------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        for entity_type in self.mapping.entities:
            entity = self._entity_mapping(entity_type)
            handlers: dict[EndpointKind, Handler] = {
                "fetch": self._fetcher(entity_type),
                "create": self._creator(entity_type),
                "update": self._updater(entity_type),
                "delete": self.deleter(entity_type),
                "list": self._lister(entity_type),
            }
            for kind, handler in handlers.items():
                endpoint = entity.endpoints.get(kind)
                if endpoint is None or (kind == "delete" and endpoint.method in _WRITES):
                    continue  # a soft delete by PUT/PATCH is the update route's
                path = urlsplit(endpoint.template.replace("{base}", "", 1)).path
                app.router.add_route(endpoint.method, path, handler)
        hooks = self.mapping.webhook
        if hooks is not None and hooks.verification is not None:
            confirm = hooks.verification.confirm_endpoint()
            root = "{origin}" if confirm.template.startswith("{origin}") else "{base}"
            path = urlsplit(confirm.template.replace(root, "", 1)).path
            app.router.add_route(confirm.method, path, self._confirm)
            # Control route (no auth, as every /_sim one): register the callback again,
            # as its user would after a handshake that never reached us.
            app.router.add_post("/_sim/callback", self._ctl_callback)

    async def _ctl_callback(self, _request: web.Request) -> web.Response:
        if self.webhook_url is None:
            raise _sim_error(409, "no webhook URL: connect the simulator first")
        return web.json_response({"registered": self.register_callback()})

    def _answer(
        self, entity: EntityMapping, obj: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        body: Any = obj
        if entity.response_record is not None:
            body = {}
            write(body, entity.response_record, obj)
        return web.json_response(body, status=status)

    async def _request_body(self, entity: EntityMapping, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise _sim_error(400, "body is not JSON") from None
        if entity.request_wrap is not None:
            body = read(body, entity.request_wrap)
        if not isinstance(body, dict):
            raise _sim_error(400, "expected an object")
        return body

    def _fetcher(self, entity_type: EntityType) -> Handler:
        async def fetch(request: web.Request) -> web.Response:
            entity = self._entity_mapping(entity_type)
            return self._answer(entity, self.get(entity_type, request.match_info["id"]))

        return fetch

    def _creator(self, entity_type: EntityType) -> Handler:
        async def create(request: web.Request) -> web.Response:
            entity = self._entity_mapping(entity_type)
            obj = self.create(entity_type, await self._request_body(entity, request))
            return self._answer(entity, obj, status=201)

        return create

    def _updater(self, entity_type: EntityType) -> Handler:
        async def update(request: web.Request) -> web.Response:
            entity = self._entity_mapping(entity_type)
            body = await self._request_body(entity, request)
            return self._answer(entity, self.update(entity_type, request.match_info["id"], body))

        return update

    def _lister(self, entity_type: EntityType) -> Handler:
        async def listing(request: web.Request) -> web.Response:
            entity = self._entity_mapping(entity_type)
            paging = entity.pagination
            assert paging is not None  # noqa: S101 - a list endpoint has pagination
            objects = self._changed(entity, paging, request)
            size = _query_int(request, paging.page_size_param, paging.page_size)
            body: dict[str, Any] = {}
            following: int | None = None
            if paging.style == "page":
                page = _query_int(request, paging.page_param, paging.first_page)
                start = (page - paging.first_page) * size
                if paging.has_more is not None:
                    write(body, paging.has_more, start + size < len(objects))
            elif paging.style == "offset":
                start = _query_int(request, paging.offset_param, 0)
                if paging.total is not None:
                    write(body, paging.total, len(objects))
            else:
                start = _query_int(request, paging.cursor_param, 0)
                following = start + size if start + size < len(objects) else None
                assert paging.next_cursor is not None  # noqa: S101 - cursor style has one
                write(body, paging.next_cursor, None if following is None else str(following))
            chosen = objects[start : start + size]
            items: Any = chosen
            if paging.items_keyed:
                # PHP writes an empty keyed array as [] (Mautic): so does the simulator.
                items = {str(read(o, entity.id)): o for o in chosen} or []
            if paging.items in {"", "$"}:
                return web.json_response(items)
            write(body, paging.items, items)
            return web.json_response(body)

        return listing

    def _changed(
        self, entity: EntityMapping, paging: Any, request: web.Request
    ) -> list[dict[str, Any]]:
        entity_type = next(k for k, v in self.mapping.entities.items() if v is entity)
        objects = self.live(entity_type)
        since = paging.modified_since
        if since is None or since.param not in request.query:
            return objects
        try:
            moment = convert.parse_timestamp(request.query[since.param], since.format, since.zone)
        except convert.ConversionError:
            raise _sim_error(400, f"{since.param} is not a time") from None
        spec = entity.updated_at
        return [
            o
            for o in objects
            if convert.parse_timestamp(read(o, spec.path), spec.format, spec.zone) >= moment
        ]

    # --- webhooks -----------------------------------------------------------------------------

    def register_callback(self) -> dict[str, str]:
        """What registering a webhook with the provider does (its UI or API): a new
        subscription whose handshake, carrying a fresh code, is posted to the webhook URL;
        until the code comes back through the confirm endpoint nothing else is delivered,
        and after that every webhook is signed with it. Returns the placeholder values the
        handshake carries (the callback's id among them)."""
        hooks = self.mapping.webhook
        if hooks is None or hooks.verification is None:
            raise ValueError(f"{self.provider}: the mapping has no webhook.verification")
        number = str(next(self._callbacks))
        configured: Mapping[str, Any] = self.config.get("verification", {}).get("values", {})
        values = {
            name: str(configured.get(name, "{n}")).replace("{n}", number)
            for name in hooks.verification.placeholders
        }
        self._pending = (secrets.token_urlsafe(24), values)
        self.callback_verified = False
        change = Change(self.entity_types[0], number, "verify", self.clock(), next(self._seq))
        self.webhooks_pending += 1
        self._outbox.put_nowait([change])
        return values

    async def _confirm(self, request: web.Request) -> web.Response:
        hooks = self.mapping.webhook
        assert hooks is not None  # noqa: S101 - routed only with a verification
        assert hooks.verification is not None  # noqa: S101 - routed only with one
        if self._pending is None:
            raise _sim_error(404, "no callback is waiting for verification")
        verifier, values = self._pending
        if any(request.match_info.get(name) != value for name, value in values.items()):
            raise _sim_error(404, "no such callback")
        try:
            body = await request.json()
        except ValueError:
            raise _sim_error(400, "body is not JSON") from None
        given = read(body, hooks.verification.body)
        if not isinstance(given, str) or not hmac.compare_digest(given, verifier):
            raise _sim_error(400, "the verifier does not match")
        self.webhook_secret = verifier
        self.callback_verified = True
        self._pending = None
        return web.json_response({"verified": True, **values})

    def _handshake(self, hooks: WebhookMapping) -> tuple[bytes, dict[str, str]]:
        assert hooks.verification is not None  # noqa: S101 - called only with one
        assert self._pending is not None  # noqa: S101 - checked by webhook_requests
        verifier, values = self._pending
        spec = hooks.verification
        item: dict[str, Any] = {}
        headers: dict[str, str] = {}
        if hooks.event_type is not None:
            write(item, hooks.event_type, spec.event)
        if hooks.event_type_header is not None:
            headers[hooks.event_type_header] = spec.event
        write(item, spec.verifier, verifier)
        for name, path in spec.placeholders.items():
            write(item, path, values[name])
        body = self._encoded(hooks, _enclosed(hooks, spec.event, item), headers)
        # Signed with the code it carries (our assumption of what the provider does):
        # proof of nothing, which is why the code is trusted only once confirmed.
        headers.update(self._signed(body, f"dlv_{next(self._deliveries):06d}", verifier))
        return body, headers

    def _encoded(self, hooks: WebhookMapping, document: Any, headers: dict[str, str]) -> bytes:
        if hooks.format == "form":
            headers["Content-Type"] = _FORM_TYPE
            return form_encode(document)
        return json.dumps(document).encode()

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        requests: list[tuple[bytes, dict[str, str]]] = []
        hooks = self.mapping.webhook
        if hooks is None:
            return requests
        for change in changes:
            if change.op == "verify":
                if self._pending is not None:
                    requests.append(self._handshake(hooks))
                continue
            if self.callback_verified is False:
                continue  # an unverified subscription delivers nothing
            events: Mapping[str, Any] = self._entity_config(change.entity_type).get("events", {})
            event = events.get(change.op)
            if event is None or event not in hooks.events:
                continue  # the provider sends nothing we map for this change
            requests.append(self._webhook(hooks, hooks.events[event], event, change))
        return requests

    def _webhook(
        self, hooks: WebhookMapping, route: EventRoute, event: str, change: Change
    ) -> tuple[bytes, dict[str, str]]:
        entity = self._entity_mapping(change.entity_type)
        assert entity.webhook is not None  # noqa: S101 - GenericMapping: routed entities have one
        obj = self.store[change.entity_type].get(change.record_id, {})
        item: dict[str, Any] = {}
        if route.op == "upsert" and entity.webhook.record is not None:
            if entity.webhook.record in {"", "$"}:
                item = copy.deepcopy(obj)
            else:
                write(item, entity.webhook.record, copy.deepcopy(obj))
        write(item, route.entity_id or entity.webhook.entity_id, read(obj, entity.id))
        headers: dict[str, str] = {}
        if hooks.event_type is not None:
            write(item, hooks.event_type, event)
        if hooks.event_type_header is not None:
            headers[hooks.event_type_header] = event
        stamp = hooks.occurred_at
        if stamp != "received" and read(item, stamp.path) is MISSING:
            write(item, stamp.path, convert.format_timestamp(change.at, stamp.format, stamp.zone))
        if hooks.event_id is not None:
            write(item, hooks.event_id, f"evt_{change.seq:06d}")
        body = self._encoded(hooks, _enclosed(hooks, event, item), headers)
        headers.update(self._signed(body, f"dlv_{next(self._deliveries):06d}"))
        return body, headers

    def _signed(self, body: bytes, delivery: str, secret: str | None = None) -> dict[str, str]:
        config = self.signature
        headers: dict[str, str] = {}
        if config.event_id_header is not None:
            headers[config.event_id_header] = delivery
        secret = secret or self.webhook_secret
        if config.kind == "url_token" or secret is None:
            return headers
        message = body
        if config.signed_payload == "timestamp.body":
            assert config.timestamp_header is not None  # noqa: S101 - validated
            stamp = str(int(self.clock().timestamp()))
            headers[config.timestamp_header] = stamp
            message = f"{stamp}.".encode() + body
        elif config.signed_payload == "form_json":
            message = form_as_json(body)
        digest = hmac.new(secret.encode(), message, config.algorithm).digest()
        encoded = digest.hex() if config.encoding == "hex" else base64.b64encode(digest).decode()
        assert config.signature_header is not None  # noqa: S101 - validated for kind hmac
        headers[config.signature_header] = f"{config.prefix}{encoded}"
        return headers


def load_simulated(path: str | Path) -> type[MappingSimulator]:
    """The simulator of the mapping file at ``path``, configured by ``<name>.sim.json``."""
    mapping_path = Path(path)
    signature, mapping = load_mapping_file(mapping_path)
    sim_path = mapping_path.with_name(f"{mapping_path.stem}.sim.json")
    config = json.loads(sim_path.read_text(encoding="utf-8"))
    for entity_type, entity in config.get("entities", {}).items():
        if entity_type not in mapping.entities:
            raise ValueError(f"{sim_path}: entities.{entity_type} is not in the mapping")
        kind = str(entity.get("id", "sequence"))
        if kind not in _SIM_ID_KINDS and not kind.startswith("body:"):
            raise ValueError(f"{sim_path}: entities.{entity_type}.id {kind!r} is not known")
        for op, event in entity.get("events", {}).items():
            if event is not None and (
                mapping.webhook is None or event not in mapping.webhook.events
            ):
                raise ValueError(f"{sim_path}: {entity_type} {op} event {event!r} is not mapped")
    name = str(config["provider"])
    return type(
        f"{name.title().replace('-', '')}Simulator",
        (MappingSimulator,),
        {
            "provider": name,
            "entity_types": tuple(mapping.entities),
            "signature": signature,
            "mapping": mapping,
            "config": config,
        },
    )


def _enclosed(hooks: WebhookMapping, event: str, item: dict[str, Any]) -> Any:
    """The body around one item: as it is, in its group, or in the batch array."""
    if hooks.groups is not None:
        grouped = {event: [item]}
        if hooks.groups in {"", "$"}:
            return grouped
        document: dict[str, Any] = {}
        write(document, hooks.groups, grouped)
        return document
    if "[*]" in hooks.items:
        document = {}
        write(document, hooks.items[: hooks.items.index("[*]")], [item])
        return document
    return item


def _sim_error(status: int, message: str) -> web.HTTPException:
    error = _ERRORS.get(status, web.HTTPBadRequest)
    return error(text=json.dumps({"error": message}), content_type="application/json")


def _query_int(request: web.Request, name: str | None, default: int) -> int:
    if name is None or name not in request.query:
        return default
    text = request.query[name]
    if not text.isdigit():
        raise _sim_error(400, f"{name} must be a whole number")
    return int(text)


def _deep_merge(current: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(dict(current))
    for key, value in change.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _fill(template: Any, index: int) -> Any:
    if isinstance(template, str):
        return template.replace("{n}", str(index))
    if isinstance(template, Mapping):
        return {key: _fill(value, index) for key, value in template.items()}
    if isinstance(template, list):
        return [_fill(value, index) for value in template]
    return template
