"""An Ascora instance over HTTP: the API shape assumed in connectors/ascora/README.md,
with full-record webhooks signed the Standard Webhooks way.

The store keeps objects exactly as the API returns them (money as decimal strings, ISO
timestamps). Derived invoice fields (totals, amount paid, balance, Paid/PartiallyPaid/
Overdue) are recomputed on every change, as Ascora does, so recording or deleting a
payment also changes, and announces, its invoice.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import math
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from typing import Any, Protocol

from aiohttp import web

from connectors.ascora.mapping import (
    ID_FIELDS,
    JOB_PRIORITIES,
    JOB_STATUSES,
    PAYMENT_STATUSES,
)
from connectors.ascora.money import parse_decimal, to_minor
from connectors.money import exponent
from connectors.simkit import Change, Simulator, json_object
from connectors.spec import ENTITY_TYPES, EntityType, MappingError

API = "/api/v1"
# The assumed API's page sizes: 50 unless asked, never more than 100.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 100
# Snapshots kept per record so each webhook carries the record as it was at its change,
# even when several changes queue up before delivery; far more than ever queue up.
HISTORY_PER_RECORD = 32
ACTIONS = {"create": "created", "update": "updated", "delete": "deleted"}
# Invoice statuses a client may set; the rest follow from payments and the due date.
SETTABLE_INVOICE_STATUSES = ("Draft", "Sent", "Void")
PAYABLE_INVOICE_STATUSES = ("Sent", "PartiallyPaid", "Overdue")

CUSTOMER_TEXT = (
    "customerNumber",
    "customerName",
    "companyName",
    "contactFirstName",
    "contactLastName",
    "emailAddress",
    "phoneNumber",
    "mobileNumber",
    "streetLine1",
    "streetLine2",
    "streetSuburb",
    "streetState",
    "streetPostcode",
    "streetCountry",
    "notes",
)
JOB_TEXT = (
    "jobName",
    "jobDescription",
    "addressLine1",
    "addressLine2",
    "suburb",
    "state",
    "postcode",
    "country",
)
PAYMENT_TEXT = ("paymentMethod", "reference")

_SEED_NAMES = (
    ("Harbour Plumbing Pty Ltd", "Mia", "Nguyen"),
    ("Kestrel Electrical", "Jack", "O'Brien"),
    ("Bluegum Property Group", "Olivia", "Smith"),
    ("Southern Cross Strata", "Noah", "Williams"),
    ("Wattle Cafe", "Isla", "Brown"),
    ("Coastal Dental Care", "Leo", "Taylor"),
)
_SEED_PLACES = (
    ("George Street", "Sydney", "NSW", "2000"),
    ("Flinders Lane", "Melbourne", "VIC", "3000"),
    ("Queen Street", "Brisbane", "QLD", "4000"),
    ("Hay Street", "Perth", "WA", "6000"),
    ("Rundle Mall", "Adelaide", "SA", "5000"),
)
_SEED_JOBS = (
    ("Replace hot water system", "Remove the old 250 L unit and install a heat pump."),
    ("Switchboard upgrade", "Replace ceramic fuses with RCBOs; test and tag."),
    ("Blocked drain", "Jet the stormwater line at the rear of the property."),
    ("Split system service", "Clean filters and coils, check refrigerant."),
)
_SEED_METHODS = ("Card", "BankTransfer", "Cash", "Cheque")
# Any fixed namespace will do: it only makes the simulator's GUIDs reproducible.
_ID_NAMESPACE = uuid.UUID("4f1c6f0e-3b8e-4a55-9d5e-0a5c0a5c0a5c")
_ERROR_CLASSES: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    422: web.HTTPUnprocessableEntity,
}


def iso(moment: datetime) -> str:
    """Ascora's timestamp form: UTC, milliseconds, "Z"."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ascora_error(
    status: int, code: str, message: str, details: list[dict[str, str]] | None = None
) -> web.HTTPException:
    """An HTTP error with Ascora's body: {"error": {"code", "message", "details"}}."""
    body = json.dumps({"error": {"code": code, "message": message, "details": details or []}})
    return _ERROR_CLASSES[status](text=body, content_type="application/json")


class Invalid:
    """Collects field problems of one request body; ``raise_if_any`` answers 400."""

    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def add(self, field: str, message: str) -> None:
        self.details.append({"field": field, "message": message})

    def raise_if_any(self) -> None:
        if self.details:
            raise ascora_error(400, "validation_failed", "the request is invalid", self.details)


Handler = Callable[[web.Request], Awaitable[web.Response]]


class Check(Protocol):
    """A kind's body check for a create or an update: each problem goes into ``invalid``."""

    def __call__(self, body: Mapping[str, Any], invalid: Invalid, *, creating: bool) -> None: ...


class AscoraSimulator(Simulator):
    """Customers, jobs (status endpoint, notes), invoices (void, payments) and payments."""

    provider = "ascora"
    entity_types = ENTITY_TYPES

    def __init__(self, *, company_code: str = "DEMO", **kwargs: Any) -> None:
        # The base's settings as they are (as HubSpot's simulator takes them).
        if kwargs.get("webhook_url") is not None and not kwargs.get("webhook_secret"):
            raise ValueError("an Ascora simulator that sends webhooks needs a webhook secret")
        super().__init__(**kwargs)
        self.company_code = company_code
        self._history: dict[tuple[EntityType, str], deque[tuple[datetime, dict[str, Any]]]] = {}
        self._numbers = itertools.count(1001)
        self._notes = itertools.count(1)
        self._created_by_key: dict[tuple[str, str], tuple[EntityType, str]] = {}

    # --- the app -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = super().app()
        # Outermost, so the base's own answers (faults, 429, 401) get Ascora's error body;
        # innermost, so the company check runs only for authenticated calls.
        app.middlewares.insert(0, self._error_bodies)
        app.middlewares.append(self._company)
        return app

    def add_api_routes(self, app: web.Application) -> None:
        r = app.router
        for entity_type in ENTITY_TYPES:
            collection = f"{API}/{entity_type}s"
            r.add_get(collection, self._lister(entity_type))
            r.add_get(f"{collection}/{{id}}", self._getter(entity_type))
        r.add_post(f"{API}/customers", self._creator("customer", self._check_customer))
        r.add_patch(f"{API}/customers/{{id}}", self._updater("customer", self._check_customer))
        r.add_delete(f"{API}/customers/{{id}}", self._deleter("customer"))
        r.add_post(f"{API}/jobs", self._creator("job", self._check_job))
        r.add_patch(f"{API}/jobs/{{id}}", self._updater("job", self._check_job))
        r.add_delete(f"{API}/jobs/{{id}}", self._deleter("job"))
        r.add_patch(f"{API}/jobs/{{id}}/status", self._job_status)
        r.add_post(f"{API}/jobs/{{id}}/notes", self._job_note)
        r.add_post(f"{API}/invoices", self._create_invoice)
        r.add_patch(f"{API}/invoices/{{id}}", self._update_invoice)
        r.add_post(f"{API}/invoices/{{id}}/payments", self._record_payment)
        r.add_delete(f"{API}/payments/{{id}}", self._deleter("payment"))

    @web.middleware
    async def _error_bodies(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim"):
            return await handler(request)  # type: ignore[no-any-return]
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _reshaped(exc.status, exc.text or "", exc.headers)
        if response.status >= 400 and isinstance(response, web.Response):
            return _reshaped(response.status, response.text or "", response.headers)
        return response

    @web.middleware
    async def _company(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(API) and request.headers.get("X-Company-Code") != (
            self.company_code
        ):
            raise ascora_error(403, "company_forbidden", "X-Company-Code names no company here")
        return await handler(request)  # type: ignore[no-any-return]

    # --- store hooks ---------------------------------------------------------------------------

    def new_id(self, entity_type: EntityType) -> str:
        # Ascora ids are GUIDs; derived from a counter so seeded data is reproducible.
        return str(uuid.uuid5(_ID_NAMESPACE, f"{entity_type}:{super().new_id(entity_type)}"))

    def get(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store.get(entity_type, {}).get(record_id)
        if obj is None or record_id in self.deleted.get(entity_type, set()):
            raise ascora_error(404, "not_found", f"no {entity_type} {record_id}")
        return obj

    def payment_recorded(self, payment: Mapping[str, Any], *, notify: bool) -> None:
        self._settle(payment["invoiceId"], notify=notify)

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        now = self.clock()
        obj = {**self.get(entity_type, record_id), "lastModified": iso(now)}
        self.store[entity_type][record_id] = obj
        self._remember(entity_type, obj, now)
        super().delete(entity_type, record_id)
        if entity_type == "payment":
            self._settle(obj["invoiceId"], notify=True)

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self.clock()
        stamp = {"dateCreated": iso(now), "lastModified": iso(now)}
        obj: dict[str, Any]
        if entity_type == "customer":
            obj = {"customerId": record_id} | {f: body.get(f) for f in CUSTOMER_TEXT}
            obj["customerNumber"] = body.get("customerNumber") or f"C{next(self._numbers)}"
        elif entity_type == "job":
            obj = {
                "jobId": record_id,
                "jobNumber": f"J{next(self._numbers)}",
                "customerId": body.get("customerId"),
                "status": body.get("status") or "Draft",
                "priority": body.get("priority") or "Normal",
                "scheduledStart": body.get("scheduledStart"),
                "scheduledEnd": body.get("scheduledEnd"),
                "notes": [],
            } | {f: body.get(f) for f in JOB_TEXT}
        elif entity_type == "invoice":
            obj = {
                "invoiceId": record_id,
                "invoiceNumber": body.get("invoiceNumber") or f"INV-{next(self._numbers)}",
                "customerId": body.get("customerId"),
                "jobId": body.get("jobId"),
                "status": body.get("status") or "Draft",
                "currency": body["currency"],
                "invoiceDate": body.get("invoiceDate") or now.date().isoformat(),
                "dueDate": body.get("dueDate") or (now.date() + timedelta(days=14)).isoformat(),
                "lines": [dict(line) for line in body.get("lines") or []],
            }
        else:
            invoice = self.get("invoice", body["invoiceId"])
            obj = {
                "paymentId": record_id,
                "invoiceId": invoice["invoiceId"],
                "customerId": invoice["customerId"],
                "amount": body["amount"],
                "currency": invoice["currency"],
                "status": body.get("status") or "Completed",
                "paymentDate": body.get("paymentDate") or iso(now),
            } | {f: body.get(f) for f in PAYMENT_TEXT}
        obj |= stamp
        if entity_type == "invoice":
            obj = self._derived(obj)
        self._remember(entity_type, obj, now)
        return obj

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self.clock()
        fixed = {ID_FIELDS[entity_type], "dateCreated", "lastModified"}
        edited = {k: v for k, v in body.items() if k in obj and k not in fixed}
        new = {**obj, **edited, "lastModified": iso(now)}
        if entity_type == "invoice":
            new = self._derived(new)
        self._remember(entity_type, new, now)
        return new

    def _remember(self, entity_type: EntityType, obj: dict[str, Any], at: datetime) -> None:
        key = (entity_type, obj[ID_FIELDS[entity_type]])
        history = self._history.setdefault(key, deque(maxlen=HISTORY_PER_RECORD))
        history.append((at, json.loads(json.dumps(obj))))

    def _as_of(self, entity_type: EntityType, record_id: str, at: datetime) -> dict[str, Any]:
        history = self._history.get((entity_type, record_id), deque())
        older = [snapshot for when, snapshot in history if when <= at]
        if older:
            return older[-1]
        return self.store[entity_type][record_id]

    # --- invoices: derived fields --------------------------------------------------------------

    def _derived(self, invoice: dict[str, Any]) -> dict[str, Any]:
        """Totals from the lines, paid and balance from live payments, and the status
        Ascora concludes from them (Draft and Void are only ever set)."""
        currency = invoice["currency"]
        places = Decimal(1).scaleb(-exponent(currency, "currency"))
        subtotal = tax = Decimal(0)
        for line in invoice["lines"]:
            amount = Decimal(line["quantity"]) * Decimal(line["unitPrice"])
            subtotal += amount.quantize(places, rounding=ROUND_HALF_UP)
            tax += Decimal(line.get("taxAmount") or "0")
        total = subtotal + tax
        paid = sum(
            (
                Decimal(p["amount"])
                for i, p in self.store["payment"].items()
                if p["invoiceId"] == invoice["invoiceId"]
                and p["status"] == "Completed"
                and i not in self.deleted["payment"]
            ),
            Decimal(0),
        )
        balance = max(total - paid, Decimal(0))
        status = invoice["status"]
        if status not in ("Draft", "Void"):
            if total > 0 and balance == 0:
                status = "Paid"
            elif paid > 0:
                status = "PartiallyPaid"
            elif (
                invoice["dueDate"] and date.fromisoformat(invoice["dueDate"]) < self.clock().date()
            ):
                status = "Overdue"
            else:
                status = "Sent"

        def money(value: Decimal) -> str:
            return f"{value.quantize(places):f}"

        return invoice | {
            "status": status,
            "totalExTax": money(subtotal),
            "totalTax": money(tax),
            "totalIncTax": money(total),
            "amountPaid": money(paid),
            "balanceDue": money(balance),
        }

    def _settle(self, invoice_id: str, *, notify: bool) -> None:
        """Recompute an invoice after one of its payments changed."""
        if invoice_id in self.deleted["invoice"] or invoice_id not in self.store["invoice"]:
            return
        if notify:
            self.update("invoice", invoice_id, {})
        else:
            invoice = self.store["invoice"][invoice_id]
            self.store["invoice"][invoice_id] = self._derived(invoice)

    # --- webhooks ----------------------------------------------------------------------------

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        assert self.webhook_secret is not None  # noqa: S101 - checked in __init__
        requests = []
        for change in changes:
            body = json.dumps(
                {
                    "type": f"{change.entity_type}.{ACTIONS[change.op]}",
                    "timestamp": iso(change.at),
                    "data": self._as_of(change.entity_type, change.record_id, change.at),
                },
                separators=(",", ":"),
            ).encode()
            requests.append((body, self._signed_headers(body)))
        return requests

    def _signed_headers(self, body: bytes) -> dict[str, str]:
        """Standard Webhooks: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}", keyed with
        the base64-decoded secret after "whsec_"."""
        assert self.webhook_secret is not None  # noqa: S101 - checked in __init__
        message_id = f"msg_{uuid.uuid4().hex}"
        timestamp = str(int(self.clock().timestamp()))
        key = base64.b64decode(self.webhook_secret.removeprefix("whsec_"))
        signed = f"{message_id}.{timestamp}.".encode() + body
        signature = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        return {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": f"v1,{signature}",
        }

    # --- seed data ---------------------------------------------------------------------------

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        name, first, last = _SEED_NAMES[index % len(_SEED_NAMES)]
        street, suburb, state, postcode = _SEED_PLACES[index % len(_SEED_PLACES)]
        start = datetime(2024, 7, 1, 22, 0, tzinfo=UTC) + timedelta(days=index, hours=index % 5)
        if entity_type == "customer":
            domain = "".join(ch for ch in name.lower() if ch.isalnum())[:16]
            return {
                "customerName": name if index < len(_SEED_NAMES) else f"{name} #{index}",
                "companyName": name,
                "contactFirstName": first,
                "contactLastName": last,
                "emailAddress": f"{first.lower()}.{index}@{domain}.com.au",
                "phoneNumber": f"(02) 9{index % 1000:03d} {1000 + index % 9000:04d}",
                "mobileNumber": f"04{index % 100:02d} {index % 1000:03d} {index % 1000:03d}",
                "streetLine1": f"{10 + index} {street}",
                "streetSuburb": suburb,
                "streetState": state,
                "streetPostcode": postcode,
                "streetCountry": "AU",
            }
        if entity_type == "job":
            customer = self._pick("customer", index)
            title, description = _SEED_JOBS[index % len(_SEED_JOBS)]
            return {
                "customerId": customer["customerId"],
                "jobName": title,
                "jobDescription": description,
                "status": list(JOB_STATUSES)[index % len(JOB_STATUSES)],
                "priority": list(JOB_PRIORITIES)[index % len(JOB_PRIORITIES)],
                "scheduledStart": iso(start),
                "scheduledEnd": iso(start + timedelta(hours=2)),
                "addressLine1": customer["streetLine1"],
                "suburb": customer["streetSuburb"],
                "state": customer["streetState"],
                "postcode": customer["streetPostcode"],
                "country": "AU",
            }
        if entity_type == "invoice":
            job = self._pick("job", index)
            labour_hours = Decimal(index % 4 + 1) / 2
            parts = Decimal(12040 + 137 * index).scaleb(-2)
            labour = (labour_hours * Decimal("95.00")).quantize(Decimal("0.01"))
            gst = Decimal("0.10")
            return {
                "customerId": job["customerId"],
                "jobId": job["jobId"],
                "currency": "AUD",
                "status": "Sent",
                "invoiceDate": start.date().isoformat(),
                "dueDate": (start.date() + timedelta(days=14)).isoformat(),
                "lines": [
                    {
                        "description": "Labour",
                        "quantity": f"{labour_hours:f}",
                        "unitPrice": "95.00",
                        "taxAmount": f"{(labour * gst).quantize(Decimal('0.01')):f}",
                    },
                    {
                        "description": "Parts and materials",
                        "quantity": "1",
                        "unitPrice": f"{parts:f}",
                        "taxAmount": f"{(parts * gst).quantize(Decimal('0.01')):f}",
                    },
                ],
            }
        payable = [i for i in self.live("invoice") if i["status"] in PAYABLE_INVOICE_STATUSES]
        if not payable:
            raise ValueError("seed payments need a payable invoice: seed invoices first")
        invoice = payable[index % len(payable)]
        balance = Decimal(invoice["balanceDue"])
        amount = balance if index % 2 else (balance / 2).quantize(Decimal("0.01"))
        return {
            "invoiceId": invoice["invoiceId"],
            "amount": f"{max(amount, Decimal('0.01')):f}",
            "paymentMethod": _SEED_METHODS[index % len(_SEED_METHODS)],
            "reference": f"RCPT-{5000 + index}",
            "paymentDate": iso(start + timedelta(days=3)),
        }

    def _pick(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        live = self.live(entity_type)
        if not live:
            raise ValueError(f"seed {entity_type}s first")
        return live[index % len(live)]

    # --- API handlers ----------------------------------------------------------------------------

    def _lister(self, entity_type: EntityType) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            query = request.query
            invalid = Invalid()
            page = _int_param(query.get("page"), 1, "page", invalid)
            size = _int_param(query.get("pageSize"), DEFAULT_PAGE_SIZE, "pageSize", invalid)
            if size > MAX_PAGE_SIZE:
                invalid.add("pageSize", f"at most {MAX_PAGE_SIZE}")
            since: datetime | None = None
            if "modifiedSince" in query:
                since = _datetime(query["modifiedSince"], "modifiedSince", invalid)
            invalid.raise_if_any()
            records = [
                o
                for o in self.live(entity_type)
                if since is None or datetime.fromisoformat(o["lastModified"]) >= since
            ]
            id_field = ID_FIELDS[entity_type]
            records.sort(key=lambda o: (o["lastModified"], o[id_field]))
            total_pages = max(1, math.ceil(len(records) / size))
            items = records[(page - 1) * size : page * size]
            return web.json_response(
                {"items": items, "page": page, "pageSize": size, "totalPages": total_pages}
            )

        return handler

    def _getter(self, entity_type: EntityType) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(self.get(entity_type, request.match_info["id"]))

        return handler

    def _deleter(self, entity_type: EntityType) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            self.delete(entity_type, request.match_info["id"])
            return web.Response(status=204)

        return handler

    async def _created(
        self, request: web.Request, entity_type: EntityType, body: Mapping[str, Any]
    ) -> web.Response:
        """Create once per Idempotency-Key: a retried POST gets the first result back."""
        key = request.headers.get("Idempotency-Key")
        if key:
            earlier = self._created_by_key.get((request.path, key))
            if earlier is not None:
                entity, record_id = earlier
                return web.json_response(self.store[entity][record_id], status=201)
        obj = self.create(entity_type, body)
        if key:
            self._created_by_key[(request.path, key)] = (entity_type, obj[ID_FIELDS[entity_type]])
        return web.json_response(obj, status=201)

    def _creator(self, entity_type: EntityType, check: Check) -> Handler:
        """POST of a kind whose body ``check`` alone decides on (customers, jobs)."""

        async def create(request: web.Request) -> web.Response:
            body = await _checked(request, partial(check, creating=True))
            return await self._created(request, entity_type, body)

        return create

    def _updater(self, entity_type: EntityType, check: Check) -> Handler:
        """PATCH of a kind whose body ``check`` alone decides on (customers, jobs)."""

        async def update(request: web.Request) -> web.Response:
            record_id = request.match_info["id"]
            self.get(entity_type, record_id)
            body = await _checked(request, partial(check, creating=False))
            return web.json_response(self.update(entity_type, record_id, body))

        return update

    def _check_customer(self, body: Mapping[str, Any], invalid: Invalid, *, creating: bool) -> None:
        _check_fields(body, set(CUSTOMER_TEXT), invalid)
        _check_text(body, CUSTOMER_TEXT, invalid)
        if creating and not body.get("customerName"):
            invalid.add("customerName", "required")
        elif not creating and "customerName" in body and not body["customerName"]:
            invalid.add("customerName", "cannot be blank")
        _check_country(body, "streetCountry", invalid)

    def _check_job(self, body: Mapping[str, Any], invalid: Invalid, *, creating: bool) -> None:
        allowed = {*JOB_TEXT, "customerId", "priority", "scheduledStart", "scheduledEnd"}
        _check_fields({k: v for k, v in body.items() if k != "status"}, allowed, invalid)
        if not creating and "status" in body:
            invalid.add("status", f"change it with PATCH {API}/jobs/{{id}}/status")
        else:
            _check_enum(body, "status", JOB_STATUSES, invalid)
        _check_text(body, JOB_TEXT, invalid)
        _check_enum(body, "priority", JOB_PRIORITIES, invalid)
        _check_country(body, "country", invalid)
        bounds = [
            _datetime(body[f], f, invalid) if body.get(f) is not None else None
            for f in ("scheduledStart", "scheduledEnd")
        ]
        if bounds[0] and bounds[1] and bounds[1] < bounds[0]:
            invalid.add("scheduledEnd", "before scheduledStart")
        if creating and not body.get("jobName"):
            invalid.add("jobName", "required")
        if creating or "customerId" in body:
            self._check_live(body.get("customerId"), "customer", "customerId", invalid)

    async def _job_status(self, request: web.Request) -> web.Response:
        record_id = request.match_info["id"]
        self.get("job", record_id)
        body = await _checked(request, _check_job_status)
        return web.json_response(self.update("job", record_id, {"status": body["status"]}))

    async def _job_note(self, request: web.Request) -> web.Response:
        record_id = request.match_info["id"]
        job = self.get("job", record_id)
        body = await _checked(request, _check_note)
        note = {
            "noteId": f"note-{next(self._notes)}",
            "text": body["text"],
            "createdAt": iso(self.clock()),
        }
        self.update("job", record_id, {"notes": [*job["notes"], note]})
        return web.json_response(note, status=201)

    def _check_invoice(
        self, body: Mapping[str, Any], invalid: Invalid, *, currency: str | None = None
    ) -> None:
        """A new invoice's body (``currency`` None: the body gives it), or a change to one
        in ``currency``."""
        creating = currency is None
        allowed = {"invoiceNumber", "jobId", "status", "invoiceDate", "dueDate", "lines"}
        allowed |= {"customerId", "currency"} if creating else set()
        _check_fields(body, allowed, invalid)
        _check_text(body, ("invoiceNumber",), invalid)
        if "status" in body and body["status"] not in SETTABLE_INVOICE_STATUSES:
            invalid.add("status", f"one of {', '.join(SETTABLE_INVOICE_STATUSES)}")
        for field in ("invoiceDate", "dueDate"):
            if body.get(field) is not None:
                _date(body[field], field, invalid)
        if creating:
            self._check_live(body.get("customerId"), "customer", "customerId", invalid)
            currency = body.get("currency")
            if not isinstance(currency, str) or not _has_minor_unit(currency):
                invalid.add("currency", "an ISO 4217 code with a minor unit")
                currency = None
        if body.get("jobId") is not None:
            self._check_live(body["jobId"], "job", "jobId", invalid)
        if "lines" in body and currency is not None:
            _check_lines(body["lines"], currency, invalid)
        if creating and body.get("status") == "Void":
            invalid.add("status", "a new invoice is Draft or Sent")

    async def _create_invoice(self, request: web.Request) -> web.Response:
        body = await _checked(request, self._check_invoice)
        return await self._created(request, "invoice", body)

    async def _update_invoice(self, request: web.Request) -> web.Response:
        record_id = request.match_info["id"]
        invoice = self.get("invoice", record_id)
        body = await _checked(request, partial(self._check_invoice, currency=invoice["currency"]))
        if invoice["status"] == "Void":
            raise ascora_error(422, "invoice_void", "a void invoice cannot change")
        if body.get("status") == "Void" and Decimal(invoice["amountPaid"]) > 0:
            raise ascora_error(
                422, "invoice_has_payments", "delete the invoice's payments before voiding it"
            )
        return web.json_response(self.update("invoice", record_id, body))

    async def _record_payment(self, request: web.Request) -> web.Response:
        invoice = self.get("invoice", request.match_info["id"])
        currency = invoice["currency"]
        body = await _checked(request, partial(_check_payment, currency=currency))
        # _check_payment refused an amount that is missing or not in minor units.
        minor = to_minor(body["amount"], currency, "amount")
        if invoice["status"] not in PAYABLE_INVOICE_STATUSES:
            raise ascora_error(
                422, "invoice_not_payable", f"a {invoice['status']} invoice takes no payments"
            )
        balance = to_minor(invoice["balanceDue"], currency, "balanceDue")
        if minor > balance and body.get("status", "Completed") == "Completed":
            raise ascora_error(422, "overpayment", "the amount is more than the balance due")
        return await self._created(request, "payment", {**body, "invoiceId": invoice["invoiceId"]})

    def _check_live(
        self, record_id: object, entity_type: EntityType, field: str, invalid: Invalid
    ) -> None:
        if not isinstance(record_id, str) or not record_id:
            invalid.add(field, "required")
        elif record_id not in self.store[entity_type] or record_id in self.deleted[entity_type]:
            invalid.add(field, f"no {entity_type} {record_id}")


# --- body checks (module level: they need no simulator state) ----------------------------------


async def _json_object(request: web.Request) -> dict[str, Any]:
    return await json_object(
        request,
        not_json=lambda: ascora_error(400, "invalid_json", "the body is not JSON"),
        not_object=lambda: ascora_error(400, "invalid_json", "the body must be a JSON object"),
    )


async def _checked(
    request: web.Request, check: Callable[[Mapping[str, Any], Invalid], None]
) -> dict[str, Any]:
    """The request's JSON object once ``check`` found nothing wrong with it; else a 422
    naming every field ``check`` refused (:meth:`Invalid.raise_if_any`)."""
    body = await _json_object(request)
    invalid = Invalid()
    check(body, invalid)
    invalid.raise_if_any()
    return body


def _check_job_status(body: Mapping[str, Any], invalid: Invalid) -> None:
    _check_fields(body, {"status"}, invalid)
    if body.get("status") not in JOB_STATUSES:
        invalid.add("status", f"one of {', '.join(JOB_STATUSES)}")


def _check_note(body: Mapping[str, Any], invalid: Invalid) -> None:
    _check_fields(body, {"text"}, invalid)
    if not isinstance(body.get("text"), str) or not body["text"].strip():
        invalid.add("text", "required")


def _check_payment(body: Mapping[str, Any], invalid: Invalid, *, currency: str) -> None:
    """A payment recorded against an invoice in ``currency``."""
    _check_fields(
        body,
        {"amount", "currency", "status", "paymentDate", "paymentMethod", "reference"},
        invalid,
    )
    _check_text(body, PAYMENT_TEXT, invalid)
    _check_enum(body, "status", PAYMENT_STATUSES, invalid)
    if body.get("currency", currency) != currency:
        invalid.add("currency", f"must be the invoice's currency, {currency}")
    if body.get("paymentDate") is not None:
        _datetime(body["paymentDate"], "paymentDate", invalid)
    minor = _amount(body.get("amount"), currency, "amount", invalid)
    if minor is not None and minor <= 0:
        invalid.add("amount", "must be more than zero")


def _check_fields(body: Mapping[str, Any], allowed: set[str], invalid: Invalid) -> None:
    for field in body:
        if field not in allowed:
            invalid.add(field, "unknown or read-only field")


def _check_text(body: Mapping[str, Any], fields: tuple[str, ...], invalid: Invalid) -> None:
    for field in fields:
        if body.get(field) is not None and not isinstance(body[field], str):
            invalid.add(field, "must be a string or null")


def _check_enum(
    body: Mapping[str, Any], field: str, table: Mapping[str, str], invalid: Invalid
) -> None:
    if field in body and body[field] not in table:
        invalid.add(field, f"one of {', '.join(table)}")


def _check_country(body: Mapping[str, Any], field: str, invalid: Invalid) -> None:
    value = body.get(field)
    if value not in (None, "") and not (
        isinstance(value, str) and len(value) == 2 and value.isascii() and value.isupper()
    ):
        invalid.add(field, "an ISO 3166-1 alpha-2 code such as AU")


def _has_minor_unit(currency: str) -> bool:
    try:
        exponent(currency, "currency")
    except MappingError:
        return False
    return len(currency) == 3 and currency.isascii() and currency.isupper()


def _amount(value: object, currency: str, field: str, invalid: Invalid) -> int | None:
    try:
        return to_minor(value, currency, field)
    except MappingError as exc:
        invalid.add(field, exc.detail.removeprefix(f"{field}: "))
        return None


def _check_lines(lines: object, currency: str, invalid: Invalid) -> None:
    if not isinstance(lines, list):
        invalid.add("lines", "must be a list")
        return
    for i, line in enumerate(lines):
        prefix = f"lines[{i}]"
        if not isinstance(line, dict):
            invalid.add(prefix, "must be an object")
            continue
        _check_fields(line, {"description", "quantity", "unitPrice", "taxAmount"}, invalid)
        try:
            if parse_decimal(line.get("quantity"), "quantity") < 0:
                invalid.add(f"{prefix}.quantity", "cannot be negative")
        except MappingError:
            invalid.add(f"{prefix}.quantity", "a decimal string")
        _amount(line.get("unitPrice"), currency, f"{prefix}.unitPrice", invalid)
        if line.get("taxAmount") is not None:
            _amount(line["taxAmount"], currency, f"{prefix}.taxAmount", invalid)


def _int_param(value: str | None, default: int, field: str, invalid: Invalid) -> int:
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        invalid.add(field, "a positive integer")
        return default
    return int(value)


def _datetime(value: object, field: str, invalid: Invalid) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        invalid.add(field, "an ISO 8601 timestamp with an offset")
        return None
    return parsed


def _date(value: object, field: str, invalid: Invalid) -> None:
    try:
        date.fromisoformat(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        invalid.add(field, "a date, YYYY-MM-DD")


# Error codes for bodies the base simulator or aiohttp produced (faults, 429, 401, routing).
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "unprocessable",
    429: "rate_limited",
    503: "unavailable",
}
_KEPT_ERROR_HEADERS = ("Retry-After", "Allow")


def _reshaped(status: int, text: str, headers: Mapping[str, str]) -> web.Response:
    """``text`` as Ascora's error body, unless it already is one."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        body = parsed
    else:
        message = parsed.get("error") if isinstance(parsed, dict) else None
        code = _CODES.get(status, "internal_error" if status >= 500 else "error")
        body = {"error": {"code": code, "message": str(message or text), "details": []}}
    kept = {name: headers[name] for name in _KEPT_ERROR_HEADERS if name in headers}
    return web.json_response(body, status=status, headers=kept)
