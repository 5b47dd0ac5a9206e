"""A Stripe account over HTTP: the endpoints the client uses, Events, signed webhooks.

What it reproduces, because the client and mapper depend on it:

- form-encoded bodies with bracketed nesting, list objects (``object: "list"``, ``data``,
  ``has_more``; newest first; ``limit`` 1-100, ``starting_after``, ``created[gte]``);
- errors as ``{"error": {"type", "code", "message", "param"}}``, the base class's injected
  faults and rate limiting included;
- ``Idempotency-Key``: a repeated key replays the first response (``Idempotent-Replayed:
  true``); the same key with other parameters is a 400 ``idempotency_error``;
- deleted customers answer ``{"id", "object": "customer", "deleted": true}``; invoices are
  deleted only as drafts, else voided; invoice lines come from invoice items on drafts,
  and an invoice embeds only its first ten lines;
- every change records an Event (kept for ``GET /v1/events`` even when its webhook is
  dropped) and sends it whole, signed ``Stripe-Signature: t=…,v1=…``. A PaymentIntent
  update that changes no status sends nothing: Stripe has no ``payment_intent.updated``.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from contextvars import ContextVar
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from connectors.simkit import Change, Simulator
from connectors.spec import EntityType
from connectors.stripe.forms import decode_form

API_VERSION = "2024-06-20"
# Stripe's list endpoints: ``limit`` defaults to 10 and may be 1 to 100.
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
# Stripe's limit on a line's manual tax amounts ("A list of up to 10 tax amounts").
MAX_LINE_TAX_AMOUNTS = 10
# An invoice object embeds the first ten of its lines; the rest are at /lines.
EMBEDDED_LINES = 10
# Stripe rejects idempotency keys longer than 255 characters.
MAX_IDEMPOTENCY_KEY = 255
WEBHOOK_USER_AGENT = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"

_PREFIX: dict[str, str] = {"customer": "cus", "invoice": "in", "payment": "pi"}
_CREATED: dict[str, str] = {
    "customer": "customer.created",
    "invoice": "invoice.created",
    "payment": "payment_intent.created",
}
_DELETED: dict[str, str] = {"customer": "customer.deleted", "invoice": "invoice.deleted"}
_INVOICE_EVENT = {
    "open": "invoice.finalized",
    "paid": "invoice.paid",
    "void": "invoice.voided",
    "uncollectible": "invoice.marked_uncollectible",
}
_INTENT_EVENT = {
    "succeeded": "payment_intent.succeeded",
    "canceled": "payment_intent.canceled",
}
_CUSTOMER_PARAMS = {"name", "email", "phone", "description", "address", "metadata", "expand"}
_INVOICE_CREATE = {
    "customer",
    "currency",
    "collection_method",
    "days_until_due",
    "due_date",
    "effective_at",
    "number",
    "auto_advance",
    "description",
    "metadata",
    "expand",
}
_INVOICE_UPDATE = _INVOICE_CREATE - {"customer", "currency"}
_INVOICE_DRAFT_ONLY = {"number", "due_date", "effective_at", "days_until_due", "collection_method"}
_ITEM_PARAMS = {
    "customer",
    "invoice",
    "amount",
    "currency",
    "description",
    "quantity",
    "unit_amount",
    "unit_amount_decimal",
    "metadata",
}
_INTENT_CREATE = {
    "amount",
    "currency",
    "customer",
    "description",
    "metadata",
    "payment_method_types",
    "payment_method",
    "confirm",
    "receipt_email",
    "expand",
}
_INTENT_UPDATE = _INTENT_CREATE - {"confirm"}
_SEED_NAMES = (
    ("Jenny Rosen", "Rosen Plumbing"),
    ("Marcus Webb", "Webb & Daughters Electrical"),
    ("Aiko Tanaka", "Tanaka Landscaping"),
    ("Priya Natarajan", "Natarajan Dental"),
    ("Tomás Oliveira", "Oliveira Roofing"),
    ("Grace Mbeki", "Mbeki Architects"),
)
_SEED_CITIES = (
    ("San Francisco", "CA", "94111", "US"),
    ("Austin", "TX", "73301", "US"),
    ("Melbourne", "VIC", "3000", "AU"),
    ("Toronto", "ON", "M5H 2N2", "CA"),
)
_SEED_WORK = ("Call-out fee", "Labour (hours)", "Copper pipe 15mm (m)", "Site inspection")

# The API request being served (its id and Idempotency-Key), for the Events it causes.
_REQUEST: ContextVar[tuple[str | None, str | None]] = ContextVar(
    "stripe_sim_request", default=(None, None)
)


def stripe_error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> web.HTTPException:
    """An HTTP error whose body is Stripe's error object."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code is not None:
        error["code"] = code
    if param is not None:
        error["param"] = param
    text = json.dumps({"error": error})
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        401: web.HTTPUnauthorized,
        402: web.HTTPPaymentRequired,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
        429: web.HTTPTooManyRequests,
    }
    cls = classes.get(status, web.HTTPInternalServerError)
    return cls(text=text, content_type="application/json")


def _missing(kind: str, object_id: str, param: str = "id") -> web.HTTPException:
    return stripe_error(404, f"No such {kind}: '{object_id}'", code="resource_missing", param=param)


class StripeSimulator(Simulator):
    """Customers, invoices (with invoice items) and PaymentIntents (with charges and
    refunds), as Stripe's API serves them; see the module docstring."""

    provider = "stripe"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events: list[dict[str, Any]] = []
        self.charges: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.item_invoice: dict[str, str] = {}
        self.idempotent: dict[str, tuple[Any, int, Any]] = {}
        self._pending: dict[tuple[str, str], deque[dict[str, Any] | None]] = defaultdict(deque)
        self._serial = itertools.count(1)
        self._invoice_numbers = itertools.count(1)

    # --- ids, time -------------------------------------------------------------------------

    def new_id(self, entity_type: EntityType) -> str:
        return self._object_id(_PREFIX[entity_type])

    def _object_id(self, prefix: str) -> str:
        return f"{prefix}_1Sim{next(self._serial):010d}"

    def _now(self) -> int:
        return int(self.clock().timestamp())

    # --- the store, with an Event per change ---------------------------------------------------

    def _queued(self) -> bool:
        """Whether the base class will queue a webhook for the next change."""
        return self.webhook_url is not None and self.drop_webhooks == 0

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        queued = notify and self._queued()
        obj = super().create(entity_type, body, notify=notify)
        if notify:
            self._event(entity_type, obj["id"], _CREATED[entity_type], obj, queued)
        return obj

    def update(
        self,
        entity_type: EntityType,
        record_id: str,
        body: Mapping[str, Any],
        *,
        event_type: str | None = None,
        event_object: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        before = copy.deepcopy(self.get(entity_type, record_id))
        queued = self._queued()
        obj = super().update(entity_type, record_id, body)
        kind = event_type or self._update_event(entity_type, before, obj)
        previous = {k: v for k, v in before.items() if obj.get(k) != v}
        if kind is None:
            if queued:
                self._pending[(entity_type, record_id)].append(None)
        else:
            self._event(entity_type, record_id, kind, event_object or obj, queued, previous)
        return obj

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        obj = copy.deepcopy(self.get(entity_type, record_id))
        if entity_type not in _DELETED:
            raise stripe_error(400, f"A {entity_type} cannot be deleted at Stripe.")
        if entity_type == "invoice" and obj.get("status") != "draft":
            raise stripe_error(
                400,
                "You can only delete draft invoices. Void the invoice instead.",
                code="invoice_not_editable",
            )
        queued = self._queued()
        super().delete(entity_type, record_id)
        self._event(entity_type, record_id, _DELETED[entity_type], obj, queued)

    def get(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store.get(entity_type, {}).get(record_id)
        if obj is None or record_id in self.deleted.get(entity_type, set()):
            kind = {"payment": "payment_intent"}.get(entity_type, entity_type)
            raise _missing(kind, record_id)
        return obj

    def _update_event(
        self, entity_type: EntityType, before: Mapping[str, Any], after: Mapping[str, Any]
    ) -> str | None:
        changed = before.get("status") != after.get("status")
        if entity_type == "customer":
            return "customer.updated"
        if entity_type == "invoice":
            return _INVOICE_EVENT.get(str(after.get("status"))) if changed else "invoice.updated"
        if not changed:
            if after.get("last_payment_error") and not before.get("last_payment_error"):
                return "payment_intent.payment_failed"
            return None
        if after.get("status") == "requires_payment_method" and after.get("last_payment_error"):
            return "payment_intent.payment_failed"
        return _INTENT_EVENT.get(str(after.get("status")))

    def _event(  # noqa: PLR0917 - one call per change kind, each naming its own event
        self,
        entity_type: EntityType,
        record_id: str,
        event_type: str,
        obj: Mapping[str, Any],
        queued: bool,
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        data: dict[str, Any] = {"object": copy.deepcopy(dict(obj))}
        if previous and event_type.endswith(".updated"):
            data["previous_attributes"] = copy.deepcopy(dict(previous))
        request_id, idempotency_key = _REQUEST.get()
        event = {
            "id": self._object_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self._now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1 if queued else 0,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": event_type,
        }
        self.events.append(event)
        if queued:
            self._pending[(entity_type, record_id)].append(event)

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        requests = []
        for change in changes:
            pending = self._pending.get((change.entity_type, change.record_id))
            event = pending.popleft() if pending else None
            if event is None:
                continue
            body = json.dumps(event).encode()
            requests.append((body, self.signed_headers(body)))
        return requests

    def signed_headers(self, body: bytes, now: float | None = None) -> dict[str, str]:
        """Stripe's delivery headers: ``t`` is the send time, ``v1`` the hex HMAC-SHA256 of
        ``"{t}.{body}"`` keyed with the whole ``whsec_…`` secret."""
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": WEBHOOK_USER_AGENT,
        }
        if self.webhook_secret:
            stamp = str(int(time.time() if now is None else now))
            signed = f"{stamp}.".encode() + body
            digest = hmac.new(self.webhook_secret.encode(), signed, hashlib.sha256).hexdigest()
            headers["Stripe-Signature"] = f"t={stamp},v1={digest}"
        return headers

    # --- objects -----------------------------------------------------------------------------

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if entity_type == "customer":
            return self._new_customer(record_id, body)
        if entity_type == "invoice":
            return self._new_invoice(record_id, body)
        return self._new_intent(record_id, body)

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        if entity_type == "customer":
            self._edit_customer(obj, body)
        elif entity_type == "invoice":
            self._edit_invoice(obj, body)
        else:
            self._edit_intent(obj, body)
        return obj

    def _new_customer(self, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "id": record_id,
            "object": "customer",
            "address": None,
            "balance": 0,
            "created": self._now(),
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": None,
            "discount": None,
            "email": None,
            "invoice_prefix": f"SIM{next(self._serial):05d}",
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": {},
            "name": None,
            "next_invoice_sequence": 1,
            "phone": None,
            "preferred_locales": [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }
        self._edit_customer(obj, body)
        return obj

    def _edit_customer(self, obj: dict[str, Any], body: Mapping[str, Any]) -> None:
        for field in ("name", "email", "phone", "description"):
            if field in body:
                obj[field] = _text(body[field], field) or None
        if "address" in body:
            obj["address"] = _address(body["address"])
        if "metadata" in body:
            obj["metadata"] = _metadata(obj.get("metadata", {}), body["metadata"])

    def _new_invoice(self, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        customer_id = _text(body.get("customer"), "customer")
        if not customer_id:
            raise stripe_error(400, "Missing required param: customer.", param="customer")
        customer = self._live_customer(customer_id, "customer")
        now = self._now()
        collection = _text(body.get("collection_method"), "collection_method") or (
            "charge_automatically"
        )
        due = _int(body["due_date"], "due_date") if body.get("due_date") not in (None, "") else None
        if collection == "send_invoice" and due is None:
            days = body.get("days_until_due")
            if days in (None, ""):
                raise stripe_error(
                    400,
                    "Invoices with collection_method=send_invoice need due_date or days_until_due.",
                    param="days_until_due",
                )
            due = now + 86_400 * _int(days, "days_until_due")
        obj: dict[str, Any] = {
            "id": record_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Simulated Stripe account",
            "amount_due": 0,
            "amount_paid": 0,
            "amount_remaining": 0,
            "attempt_count": 0,
            "attempted": False,
            "auto_advance": _flag(body.get("auto_advance", "false")),
            "billing_reason": "manual",
            "collection_method": collection,
            "created": now,
            "currency": (_text(body.get("currency"), "currency") or "usd").lower(),
            "customer": customer_id,
            "customer_email": customer.get("email"),
            "customer_name": customer.get("name"),
            "description": _text(body.get("description"), "description"),
            "due_date": due,
            "effective_at": None,
            "lines": {},
            "livemode": False,
            "metadata": _metadata({}, body.get("metadata", {})),
            "number": None,
            "paid": False,
            "paid_out_of_band": False,
            "period_end": now,
            "period_start": now,
            "status": "draft",
            "status_transitions": {
                "finalized_at": None,
                "marked_uncollectible_at": None,
                "paid_at": None,
                "voided_at": None,
            },
            "subtotal": 0,
            "subtotal_excluding_tax": 0,
            "tax": None,
            "total": 0,
            "total_excluding_tax": 0,
            "total_tax_amounts": [],
            "webhooks_delivered_at": None,
        }
        for field in ("number", "effective_at"):
            if body.get(field) not in (None, ""):
                value = body[field]
                obj[field] = _text(value, field) if field == "number" else _int(value, field)
        for line in body.get("lines") or []:
            self._add_line(obj, line)
        self._totals(obj)
        return obj

    def _edit_invoice(self, obj: dict[str, Any], body: Mapping[str, Any]) -> None:
        for field in ("number", "description"):
            if field in body:
                obj[field] = _text(body[field], field) or None
        for field in ("due_date", "effective_at"):
            if field in body:
                obj[field] = None if body[field] in (None, "") else _int(body[field], field)
        if "days_until_due" in body:
            obj["due_date"] = obj["created"] + 86_400 * _int(body["days_until_due"], "days")
        if "auto_advance" in body:
            obj["auto_advance"] = _flag(body["auto_advance"])
        if "metadata" in body:
            obj["metadata"] = _metadata(obj.get("metadata", {}), body["metadata"])
        self._totals(obj)
        if "status" in body:
            self._transition(obj, str(body["status"]), _flag(body.get("paid_out_of_band", False)))

    def _transition(self, obj: dict[str, Any], status: str, out_of_band: bool) -> None:
        now = self._now()
        transitions = obj["status_transitions"]
        if status == "open" and obj["status"] == "draft":
            transitions["finalized_at"] = now
            if obj["number"] is None:
                obj["number"] = f"SIM-{next(self._invoice_numbers):04d}"
            obj["status"] = "open"
            if obj["amount_due"] == 0:  # Stripe marks a zero-amount invoice paid at once
                status = "paid"
        if status == "paid" and obj["status"] in ("open", "uncollectible"):
            obj.update(
                status="paid",
                paid=True,
                paid_out_of_band=out_of_band,
                amount_paid=obj["amount_due"],
                amount_remaining=0,
            )
            transitions["paid_at"] = now
        elif status == "void" and obj["status"] in ("open", "uncollectible"):
            obj["status"] = "void"
            transitions["voided_at"] = now
        elif status == "uncollectible" and obj["status"] == "open":
            obj["status"] = "uncollectible"
            transitions["marked_uncollectible_at"] = now
        elif status != obj["status"]:
            raise stripe_error(
                400,
                f"You cannot move an invoice with status {obj['status']} to {status}.",
                code="invoice_not_editable",
            )

    def _add_line(self, invoice: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """An invoice item on a draft: its invoice item object (the line is kept too)."""
        if invoice["status"] != "draft":
            raise stripe_error(
                400,
                "You can only add invoice items to draft invoices.",
                code="invoice_not_editable",
                param="invoice",
            )
        now = self._now()
        currency = (_text(params.get("currency"), "currency") or invoice["currency"]).lower()
        if currency != invoice["currency"]:
            raise stripe_error(
                400, "The invoice item's currency must match its invoice's.", param="currency"
            )
        if params.get("amount") not in (None, ""):
            quantity, unit = 1, Decimal(_int(params["amount"], "amount"))
        else:
            quantity = _int(params.get("quantity", 1), "quantity")
            if params.get("unit_amount_decimal") not in (None, ""):
                unit = _decimal(params["unit_amount_decimal"], "unit_amount_decimal")
            else:
                unit = Decimal(_int(params.get("unit_amount"), "unit_amount"))
        amount = int((unit * quantity).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
        item_id = self._object_id("ii")
        unit_text = format(unit.normalize(), "f") if unit else "0"
        price = {
            "id": self._object_id("price"),
            "object": "price",
            "active": False,
            "billing_scheme": "per_unit",
            "created": now,
            "currency": currency,
            "livemode": False,
            "product": self._object_id("prod"),
            "type": "one_time",
            "unit_amount": int(unit) if unit == unit.to_integral_value() else None,
            "unit_amount_decimal": unit_text,
        }
        description = _text(params.get("description"), "description")
        metadata = _metadata({}, params.get("metadata", {}))
        line = {
            "id": self._object_id("il"),
            "object": "line_item",
            "amount": amount,
            "amount_excluding_tax": amount,
            "currency": currency,
            "description": description,
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": invoice["id"],
            "invoice_item": item_id,
            "livemode": False,
            "metadata": metadata,
            "period": {"end": now, "start": now},
            "price": price,
            "proration": False,
            "quantity": quantity,
            "tax_amounts": [],
            "tax_rates": [],
            "type": "invoiceitem",
            "unit_amount_excluding_tax": unit_text,
        }
        self.lines[invoice["id"]].append(line)
        self.item_invoice[item_id] = invoice["id"]
        return {
            "id": item_id,
            "object": "invoiceitem",
            "amount": amount,
            "currency": currency,
            "customer": invoice["customer"],
            "date": now,
            "description": description,
            "discountable": True,
            "invoice": invoice["id"],
            "livemode": False,
            "metadata": metadata,
            "period": {"end": now, "start": now},
            "price": price,
            "proration": False,
            "quantity": quantity,
            "unit_amount": price["unit_amount"],
            "unit_amount_decimal": unit_text,
        }

    def _totals(self, invoice: dict[str, Any]) -> None:
        lines = self.lines[invoice["id"]]
        invoice["lines"] = {
            "object": "list",
            "data": copy.deepcopy(lines[:EMBEDDED_LINES]),
            "has_more": len(lines) > EMBEDDED_LINES,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice['id']}/lines",
        }
        if invoice["status"] != "draft":
            return
        # Stripe's arithmetic: a line's amount includes its inclusive taxes; exclusive ones
        # are added on top. subtotal is before exclusive tax, total_excluding_tax before any.
        subtotal = sum(line["amount"] for line in lines)
        taxes = [t for line in lines for t in line["tax_amounts"]]
        exclusive = sum(t["amount"] for t in taxes if not t["inclusive"])
        inclusive = sum(t["amount"] for t in taxes if t["inclusive"])
        total = subtotal + exclusive
        invoice.update(
            subtotal=subtotal,
            subtotal_excluding_tax=subtotal - inclusive,
            tax=exclusive + inclusive if taxes else None,
            total=total,
            total_excluding_tax=total - exclusive - inclusive,
            total_tax_amounts=[
                {k: t[k] for k in ("amount", "inclusive", "tax_rate", "taxable_amount")}
                for t in taxes
            ],
            amount_due=max(total, 0),
            amount_remaining=max(total, 0),
        )

    def _new_intent(self, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        if body.get("amount") in (None, ""):
            raise stripe_error(400, "Missing required param: amount.", param="amount")
        if not body.get("currency"):
            raise stripe_error(400, "Missing required param: currency.", param="currency")
        customer = _text(body.get("customer"), "customer") or None
        if customer is not None:
            self._live_customer(customer, "customer")
        types = body.get("payment_method_types") or ["card"]
        obj: dict[str, Any] = {
            "id": record_id,
            "object": "payment_intent",
            "amount": 0,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": 0,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": None,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic",
            "client_secret": f"{record_id}_secret_simulated",
            "confirmation_method": "automatic",
            "created": self._now(),
            "currency": "",
            "customer": customer,
            "description": None,
            "invoice": None,
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": {},
            "next_action": None,
            "on_behalf_of": None,
            "payment_method": _text(body.get("payment_method"), "payment_method") or None,
            "payment_method_options": {},
            "payment_method_types": [str(t) for t in types],
            "processing": None,
            "receipt_email": None,
            "review": None,
            "setup_future_usage": None,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "requires_payment_method",
            "transfer_data": None,
            "transfer_group": None,
        }
        self._edit_intent(obj, {k: v for k, v in body.items() if k != "status"})
        return obj

    def _edit_intent(self, obj: dict[str, Any], body: Mapping[str, Any]) -> None:
        if "amount" in body:
            amount = _int(body["amount"], "amount")
            if amount < 1:
                raise stripe_error(
                    400, "This value must be greater than or equal to 1.", param="amount"
                )
            obj["amount"] = amount
        if "currency" in body:
            obj["currency"] = str(_text(body["currency"], "currency")).lower()
        for field in ("description", "receipt_email"):
            if field in body:
                obj[field] = _text(body[field], field) or None
        if "customer" in body:
            obj["customer"] = _text(body["customer"], "customer") or None
        if "payment_method_types" in body:
            obj["payment_method_types"] = [str(t) for t in body["payment_method_types"]]
        if "metadata" in body:
            obj["metadata"] = _metadata(obj.get("metadata", {}), body["metadata"])
        if "last_payment_error" in body:
            obj["last_payment_error"] = body["last_payment_error"]
        self._intent_status(obj, body)

    def _intent_status(self, obj: dict[str, Any], body: Mapping[str, Any]) -> None:
        """A status a user (or confirm, cancel) gives: ``{"status": "requires_payment_method",
        "failed": true}`` is a declined attempt."""
        status = body.get("status")
        if status == "succeeded" and obj["status"] != "succeeded":
            self._charge(obj)
        elif status == "canceled":
            obj.update(
                status="canceled",
                canceled_at=self._now(),
                cancellation_reason=body.get("cancellation_reason") or "requested_by_customer",
            )
        elif status == "requires_payment_method" and body.get("failed"):
            obj["status"] = "requires_payment_method"
            obj["last_payment_error"] = {
                "code": "card_declined",
                "decline_code": "generic_decline",
                "message": "Your card was declined.",
                "type": "card_error",
            }
        elif status is not None and status != obj["status"]:
            obj["status"] = str(status)

    def _charge(self, intent: dict[str, Any]) -> None:
        charge_id = self._object_id("ch")
        method = intent["payment_method_types"][0] if intent["payment_method_types"] else "card"
        self.charges[charge_id] = {
            "id": charge_id,
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"],
            "amount_refunded": 0,
            "captured": True,
            "created": self._now(),
            "currency": intent["currency"],
            "customer": intent["customer"],
            "description": intent["description"],
            "invoice": None,
            "livemode": False,
            "metadata": {},
            "paid": True,
            "payment_intent": intent["id"],
            "payment_method": intent["payment_method"],
            "payment_method_details": {"type": method},
            "refunded": False,
            "refunds": {
                "object": "list",
                "data": [],
                "has_more": False,
                "total_count": 0,
                "url": f"/v1/charges/{charge_id}/refunds",
            },
            "status": "succeeded",
        }
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            latest_charge=charge_id,
            last_payment_error=None,
        )

    def _live_customer(self, customer_id: str, param: str) -> dict[str, Any]:
        customer = self.store["customer"].get(customer_id)
        if customer is None or customer_id in self.deleted["customer"]:
            raise _missing("customer", customer_id, param)
        return customer

    # --- seed --------------------------------------------------------------------------------

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        name, company = _SEED_NAMES[index % len(_SEED_NAMES)]
        city, state, postal, country = _SEED_CITIES[index % len(_SEED_CITIES)]
        if entity_type == "customer":
            first = name.split()[0].lower()
            return {
                "name": name if index < len(_SEED_NAMES) else f"{name} {index}",
                "email": f"{first}.{index}@example.com",
                "phone": f"+1 415 555 {index % 10_000:04d}",
                "description": f"Seeded customer {index}",
                "address": {
                    "line1": f"{100 + index} Market Street",
                    "city": city,
                    "state": state,
                    "postal_code": postal,
                    "country": country,
                },
                "metadata": {"company": company},
            }
        customers = self.live("customer") or [
            self.create("customer", self.seed_object("customer", index), notify=False)
        ]
        customer = customers[index % len(customers)]
        if entity_type == "invoice":
            lines = [
                {
                    "description": _SEED_WORK[(index + n) % len(_SEED_WORK)],
                    "quantity": 1 + (index + n) % 3,
                    "unit_amount_decimal": str(4_500 + 1_250 * ((index * 7 + n) % 9)),
                }
                for n in range(1 + index % 3)
            ]
            return {
                "customer": customer["id"],
                "currency": "usd",
                "collection_method": "send_invoice",
                "days_until_due": 30,
                "lines": lines,
            }
        return {
            "amount": 2_000 + 375 * (index % 40),
            "currency": "usd",
            "customer": customer["id"],
            "description": f"Deposit for job {1000 + index}",
            "payment_method_types": ["card"],
        }

    # --- HTTP --------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = super().app()
        # Outermost, so the base class's faults, 401s and 429s come out in Stripe's shape too.
        app.middlewares.insert(0, self._stripe_shape)
        return app

    @web.middleware
    async def _stripe_shape(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith("/v1/"):
            return await handler(request)  # type: ignore[no-any-return]
        token = _REQUEST.set(
            (f"req_{next(self._serial):014d}", request.headers.get("Idempotency-Key"))
        )
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _reshaped(exc.status, exc.text or "", exc.headers, request)
        finally:
            _REQUEST.reset(token)
        if response.status >= 400 and isinstance(response, web.Response):
            return _reshaped(response.status, response.text or "", response.headers, request)
        return response

    def add_api_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/customers", self._create_customer)
        r.add_get("/v1/customers", self._list("customer"))
        r.add_get("/v1/customers/{id}", self._get_customer)
        r.add_post("/v1/customers/{id}", self._update_customer)
        r.add_delete("/v1/customers/{id}", self._delete_customer)
        r.add_post("/v1/invoices", self._create_invoice)
        r.add_get("/v1/invoices", self._list("invoice"))
        r.add_get("/v1/invoices/{id}", self._get_invoice)
        r.add_post("/v1/invoices/{id}", self._update_invoice)
        r.add_delete("/v1/invoices/{id}", self._delete_invoice)
        r.add_get("/v1/invoices/{id}/lines", self._invoice_lines)
        r.add_post("/v1/invoices/{id}/lines/{line}", self._update_line)
        for action in ("finalize", "pay", "void", "mark_uncollectible"):
            r.add_post(f"/v1/invoices/{{id}}/{action}", self._invoice_action(action))
        r.add_post("/v1/invoiceitems", self._create_item)
        r.add_delete("/v1/invoiceitems/{id}", self._delete_item)
        r.add_post("/v1/payment_intents", self._create_intent)
        r.add_get("/v1/payment_intents", self._list("payment"))
        r.add_get("/v1/payment_intents/{id}", self._get_intent)
        r.add_post("/v1/payment_intents/{id}", self._update_intent)
        r.add_post("/v1/payment_intents/{id}/cancel", self._cancel_intent)
        r.add_get("/v1/charges/{id}", self._get_charge)
        r.add_post("/v1/refunds", self._create_refund)
        r.add_get("/v1/events", self._list_events)

    async def _params(self, request: web.Request, allowed: set[str] | None = None) -> Any:
        if request.method in ("GET", "DELETE"):
            pairs = list(request.query.items())
        else:
            form = await request.post()
            pairs = [(k, v) for k, v in form.items() if isinstance(v, str)]
        params = decode_form(pairs)
        if allowed is not None:
            for name in params:
                if name not in allowed:
                    raise stripe_error(400, f"Received unknown parameter: {name}", param=name)
        return params

    async def _idempotent(
        self, request: web.Request, params: Mapping[str, Any], make: Any
    ) -> web.Response:
        """Run ``make()`` once per Idempotency-Key; replay its response for the same key."""
        key = request.headers.get("Idempotency-Key")
        if key is None:
            return web.json_response(make())
        if len(key) > MAX_IDEMPOTENCY_KEY:
            raise stripe_error(
                400,
                f"Idempotency keys may be at most {MAX_IDEMPOTENCY_KEY} characters long.",
                code="idempotency_key_too_long",
            )
        fingerprint = (request.method, request.path, params)
        seen = self.idempotent.get(key)
        if seen is not None:
            first, status, body = seen
            if first != fingerprint:
                raise stripe_error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    f"they were first used with. Try using a key other than '{key}' if you "
                    "meant to execute a different request.",
                    error_type="idempotency_error",
                )
            return web.json_response(
                body, status=status, headers={"Idempotent-Replayed": "true", "Idempotency-Key": key}
            )
        body = make()
        self.idempotent[key] = (copy.deepcopy(fingerprint), 200, copy.deepcopy(body))
        return web.json_response(body, headers={"Idempotency-Key": key})

    # customers

    async def _create_customer(self, request: web.Request) -> web.Response:
        params = await self._params(request, _CUSTOMER_PARAMS)
        body = {k: v for k, v in params.items() if k != "expand"}
        return await self._idempotent(request, params, lambda: self.create("customer", body))

    async def _get_customer(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["id"]
        if customer_id in self.deleted["customer"]:
            return web.json_response({"id": customer_id, "object": "customer", "deleted": True})
        return web.json_response(self.get("customer", customer_id))

    async def _update_customer(self, request: web.Request) -> web.Response:
        params = await self._params(request, _CUSTOMER_PARAMS)
        body = {k: v for k, v in params.items() if k != "expand"}
        return web.json_response(self.update("customer", request.match_info["id"], body))

    async def _delete_customer(self, request: web.Request) -> web.Response:
        customer_id = request.match_info["id"]
        self.delete("customer", customer_id)
        return web.json_response({"id": customer_id, "object": "customer", "deleted": True})

    # invoices

    async def _create_invoice(self, request: web.Request) -> web.Response:
        params = await self._params(request, _INVOICE_CREATE)
        body = {k: v for k, v in params.items() if k != "expand"}
        return await self._idempotent(request, params, lambda: self.create("invoice", body))

    async def _get_invoice(self, request: web.Request) -> web.Response:
        return web.json_response(self.get("invoice", request.match_info["id"]))

    async def _update_invoice(self, request: web.Request) -> web.Response:
        invoice_id = request.match_info["id"]
        params = await self._params(request, _INVOICE_UPDATE)
        invoice = self.get("invoice", invoice_id)
        if invoice["status"] != "draft":
            for name in params:
                if name in _INVOICE_DRAFT_ONLY:
                    raise stripe_error(
                        400,
                        f"You can only update {name} on draft invoices.",
                        code="invoice_not_editable",
                        param=name,
                    )
        body = {k: v for k, v in params.items() if k != "expand"}
        return web.json_response(self.update("invoice", invoice_id, body))

    async def _delete_invoice(self, request: web.Request) -> web.Response:
        invoice_id = request.match_info["id"]
        self.delete("invoice", invoice_id)
        return web.json_response({"id": invoice_id, "object": "invoice", "deleted": True})

    async def _invoice_lines(self, request: web.Request) -> web.Response:
        invoice_id = request.match_info["id"]
        self.get("invoice", invoice_id)
        params = await self._params(request)
        page = _page(list(self.lines[invoice_id]), params, f"/v1/invoices/{invoice_id}/lines")
        return web.json_response(page)

    async def _update_line(self, request: web.Request) -> web.Response:
        """``POST /v1/invoices/{id}/lines/{line}``: here only ``tax_amounts``, Stripe's way
        to set a draft line's tax as computed elsewhere (manual tax amounts)."""
        invoice_id, line_id = request.match_info["id"], request.match_info["line"]
        params = await self._params(request, {"tax_amounts", "expand"})
        invoice = self.get("invoice", invoice_id)
        line = next((ln for ln in self.lines[invoice_id] if ln["id"] == line_id), None)
        if line is None:
            raise _missing("line_item", line_id)
        if invoice["status"] != "draft":
            raise stripe_error(
                400,
                "You can only update line items on draft invoices.",
                code="invoice_not_editable",
            )
        if "tax_amounts" in params:
            line["tax_amounts"] = self._tax_amounts(params["tax_amounts"])
            inclusive = sum(t["amount"] for t in line["tax_amounts"] if t["inclusive"])
            line["amount_excluding_tax"] = line["amount"] - inclusive
        self.update("invoice", invoice_id, {}, event_type="invoice.updated")
        return web.json_response(copy.deepcopy(line))

    def _tax_amounts(self, value: Any) -> list[dict[str, Any]]:
        if value == "":
            return []  # Stripe's "unset"
        if not isinstance(value, list) or len(value) > MAX_LINE_TAX_AMOUNTS:
            raise stripe_error(
                400, f"tax_amounts: up to {MAX_LINE_TAX_AMOUNTS} entries", param="tax_amounts"
            )
        out = []
        for i, entry in enumerate(value):
            where = f"tax_amounts[{i}]"
            rate = entry.get("tax_rate_data") if isinstance(entry, Mapping) else None
            if not isinstance(rate, Mapping):
                raise stripe_error(400, f"Missing required param: {where}[tax_rate_data].")
            for name in ("display_name", "inclusive", "percentage"):
                if rate.get(name) in (None, ""):
                    raise stripe_error(
                        400, f"Missing required param: {where}[tax_rate_data][{name}]."
                    )
            _decimal(rate["percentage"], f"{where}[tax_rate_data][percentage]")
            out.append(
                {
                    "amount": _int(entry.get("amount"), f"{where}[amount]"),
                    "inclusive": _flag(rate["inclusive"]),
                    "tax_rate": self._object_id("txr"),
                    "taxability_reason": None,
                    "taxable_amount": _int(entry.get("taxable_amount"), f"{where}[taxable_amount]"),
                }
            )
        return out

    def _invoice_action(self, action: str) -> Any:
        target = {"finalize": "open", "pay": "paid", "void": "void"}.get(action, "uncollectible")

        async def handler(request: web.Request) -> web.Response:
            invoice_id = request.match_info["id"]
            params = await self._params(request)
            body = {"status": target, "paid_out_of_band": params.get("paid_out_of_band", False)}
            return await self._idempotent(
                request, params, lambda: self.update("invoice", invoice_id, body)
            )

        return handler

    async def _create_item(self, request: web.Request) -> web.Response:
        params = await self._params(request, _ITEM_PARAMS)

        def make() -> dict[str, Any]:
            invoice_id = _text(params.get("invoice"), "invoice")
            if not invoice_id:
                raise stripe_error(
                    400, "This simulator adds invoice items to an invoice only.", param="invoice"
                )
            invoice = self.get("invoice", invoice_id)
            customer = _text(params.get("customer"), "customer")
            if customer != invoice["customer"]:
                raise stripe_error(
                    400, "The invoice item's customer must match its invoice's.", param="customer"
                )
            item = self._add_line(copy.deepcopy(invoice), params)
            self.update("invoice", invoice_id, {}, event_type="invoice.updated")
            return item

        return await self._idempotent(request, params, make)

    async def _delete_item(self, request: web.Request) -> web.Response:
        item_id = request.match_info["id"]
        invoice_id = self.item_invoice.get(item_id)
        if invoice_id is None:
            raise _missing("invoiceitem", item_id)
        if self.get("invoice", invoice_id)["status"] != "draft":
            raise stripe_error(
                400,
                "Invoice items on finalized invoices cannot be deleted.",
                code="invoice_not_editable",
            )
        self.lines[invoice_id] = [
            ln for ln in self.lines[invoice_id] if ln["invoice_item"] != item_id
        ]
        del self.item_invoice[item_id]
        self.update("invoice", invoice_id, {}, event_type="invoice.updated")
        return web.json_response({"id": item_id, "object": "invoiceitem", "deleted": True})

    # payment intents, charges, refunds

    async def _create_intent(self, request: web.Request) -> web.Response:
        params = await self._params(request, _INTENT_CREATE)

        confirm = _flag(params.get("confirm", False))
        if confirm and not params.get("payment_method"):
            raise stripe_error(
                400,
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )

        def make() -> dict[str, Any]:
            body = {k: v for k, v in params.items() if k not in ("expand", "confirm")}
            intent = self.create("payment", body)
            if confirm:
                intent = self.update("payment", intent["id"], {"status": "succeeded"})
            return self._expanded(intent, params.get("expand"))

        return await self._idempotent(request, params, make)

    async def _get_intent(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        intent = self.get("payment", request.match_info["id"])
        return web.json_response(self._expanded(intent, params.get("expand")))

    async def _update_intent(self, request: web.Request) -> web.Response:
        intent_id = request.match_info["id"]
        params = await self._params(request, _INTENT_UPDATE)
        intent = self.get("payment", intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            for name in ("amount", "currency", "payment_method_types"):
                if name in params:
                    raise stripe_error(
                        400,
                        f"This PaymentIntent's {name} could not be updated because it has a "
                        f"status of {intent['status']}.",
                        code="payment_intent_unexpected_state",
                        param=name,
                    )
        body = {k: v for k, v in params.items() if k != "expand"}
        return web.json_response(
            self._expanded(self.update("payment", intent_id, body), params.get("expand"))
        )

    async def _cancel_intent(self, request: web.Request) -> web.Response:
        intent_id = request.match_info["id"]
        params = await self._params(request)
        intent = self.get("payment", intent_id)
        if intent["status"] in ("succeeded", "canceled"):
            raise stripe_error(
                400,
                "You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}.",
                code="payment_intent_unexpected_state",
            )
        body = {"status": "canceled", "cancellation_reason": params.get("cancellation_reason")}
        return web.json_response(self.update("payment", intent_id, body))

    async def _get_charge(self, request: web.Request) -> web.Response:
        charge = self.charges.get(request.match_info["id"])
        if charge is None:
            raise _missing("charge", request.match_info["id"])
        return web.json_response(charge)

    async def _create_refund(self, request: web.Request) -> web.Response:
        params = await self._params(request, {"payment_intent", "charge", "amount", "reason"})
        return await self._idempotent(request, params, lambda: self.refund(params))

    def refund(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Refund a PaymentIntent's charge (wholly, or ``amount``): ``charge.refunded``."""
        intent_id = _text(params.get("payment_intent"), "payment_intent")
        charge_id = _text(params.get("charge"), "charge")
        if intent_id:
            charge_id = self.get("payment", intent_id).get("latest_charge")
        charge = self.charges.get(charge_id or "")
        if charge is None or not charge.get("payment_intent"):
            raise stripe_error(
                400,
                "This PaymentIntent has no successful charge to refund.",
                param="payment_intent",
            )
        left = charge["amount"] - charge["amount_refunded"]
        amount = _int(params["amount"], "amount") if params.get("amount") else left
        if amount < 1 or amount > left:
            raise stripe_error(
                400,
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left}).",
                code="amount_too_large",
                param="amount",
            )
        refund = {
            "id": self._object_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": self._now(),
            "currency": charge["currency"],
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": params.get("reason"),
            "status": "succeeded",
        }
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        charge["refunds"]["data"].insert(0, refund)
        charge["refunds"]["total_count"] += 1
        self.update(
            "payment",
            charge["payment_intent"],
            {},
            event_type="charge.refunded",
            event_object=charge,
        )
        return refund

    def _expanded(self, intent: Mapping[str, Any], expand: Any) -> dict[str, Any]:
        shown = copy.deepcopy(dict(intent))
        paths = expand if isinstance(expand, list) else []
        if ("latest_charge" in paths or "data.latest_charge" in paths) and shown["latest_charge"]:
            shown["latest_charge"] = copy.deepcopy(self.charges[shown["latest_charge"]])
        return shown

    # lists

    def _list(self, entity_type: EntityType) -> Any:
        path = {"customer": "/v1/customers", "invoice": "/v1/invoices"}.get(
            entity_type, "/v1/payment_intents"
        )

        async def handler(request: web.Request) -> web.Response:
            params = await self._params(request)
            objects = list(reversed(self.live(entity_type)))
            objects = _created_filter(objects, params.get("created"))
            page = _page(objects, params, path)
            if entity_type == "payment":
                page["data"] = [
                    self._expanded(o, ["latest_charge"] if _expands(params) else [])
                    for o in page["data"]
                ]
            return web.json_response(page)

        return handler

    async def _list_events(self, request: web.Request) -> web.Response:
        params = await self._params(request)
        wanted: list[str] = []
        if isinstance(params.get("types"), list):
            wanted = [str(t) for t in params["types"]]
        elif params.get("type"):
            wanted = [str(params["type"])]
        events = list(reversed(self.events))
        if wanted:
            events = [e for e in events if any(_type_matches(p, e["type"]) for p in wanted)]
        events = _created_filter(events, params.get("created"))
        return web.json_response(_page(events, params, "/v1/events"))


# --- helpers -------------------------------------------------------------------------------


def _reshaped(
    status: int, text: str, headers: Mapping[str, str], request: web.Request
) -> web.Response:
    """An error response in Stripe's shape, whatever raised it; Retry-After is kept."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    keep = {k: v for k, v in headers.items() if k.lower() == "retry-after"}
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return web.json_response(body, status=status, headers=keep)
    detail = body.get("error") if isinstance(body, dict) else None
    error: dict[str, Any] = {"type": "invalid_request_error"}
    if status == 404:
        error["message"] = f"Unrecognized request URL ({request.method}: {request.path})."
    elif status == 401:
        error["message"] = "Invalid API Key provided."
    elif status == 429:
        error |= {"code": "rate_limit", "message": "Request rate limit exceeded."}
    elif status >= 500:
        error = {"type": "api_error", "message": str(detail or "An unexpected error occurred.")}
    else:
        error["message"] = str(detail or text or "Invalid request.")
    return web.json_response({"error": error}, status=status, headers=keep)


def _page(objects: list[dict[str, Any]], params: Mapping[str, Any], url: str) -> dict[str, Any]:
    try:
        limit = int(params.get("limit", DEFAULT_LIMIT))
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise stripe_error(
            400, f"Invalid integer: limit must be between 1 and {MAX_LIMIT}.", param="limit"
        )
    start = 0
    after = params.get("starting_after")
    if after:
        ids = [o["id"] for o in objects]
        if after not in ids:
            raise stripe_error(
                400, f"No such object: '{after}'", code="resource_missing", param="starting_after"
            )
        start = ids.index(after) + 1
    data = objects[start : start + limit]
    return {
        "object": "list",
        "data": copy.deepcopy(data),
        "has_more": len(objects) > start + limit,
        "url": url,
    }


def _created_filter(objects: list[dict[str, Any]], created: Any) -> list[dict[str, Any]]:
    if created is None:
        return objects
    if not isinstance(created, Mapping):
        created = {"eq": created}
    bounds = {op: _int(v, f"created[{op}]") for op, v in created.items()}
    checks = {
        "eq": lambda c, b: c == b,
        "gt": lambda c, b: c > b,
        "gte": lambda c, b: c >= b,
        "lt": lambda c, b: c < b,
        "lte": lambda c, b: c <= b,
    }
    for op in bounds:
        if op not in checks:
            raise stripe_error(400, f"Invalid created filter: {op}", param="created")
    return [o for o in objects if all(checks[op](o["created"], b) for op, b in bounds.items())]


def _expands(params: Mapping[str, Any]) -> bool:
    expand = params.get("expand")
    return isinstance(expand, list) and "data.latest_charge" in expand


def _type_matches(pattern: str, event_type: str) -> bool:
    if pattern.endswith(".*"):
        return event_type.startswith(pattern[:-1])
    return pattern == event_type


def _text(value: Any, param: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise stripe_error(400, f"Invalid string: {param}", param=param)


def _int(value: Any, param: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise stripe_error(400, f"Invalid integer: {value!r}", param=param)


def _decimal(value: Any, param: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise stripe_error(400, f"Invalid decimal: {value!r}", param=param)
    return number


def _flag(value: Any) -> bool:
    return value is True or value == "true"


def _address(value: Any) -> dict[str, Any] | None:
    if value in (None, ""):
        return None
    if not isinstance(value, Mapping):
        raise stripe_error(400, "Invalid object", param="address")
    fields = ("city", "country", "line1", "line2", "postal_code", "state")
    address = {f: (_text(value.get(f), f"address[{f}]") or None) for f in fields}
    return None if all(v is None for v in address.values()) else address


def _metadata(current: Mapping[str, Any], update: Any) -> dict[str, Any]:
    """Stripe merges metadata keys; an empty value (or metadata="") removes them."""
    if update in (None, ""):
        return {}
    if not isinstance(update, Mapping):
        raise stripe_error(400, "Invalid object", param="metadata")
    merged = dict(current)
    for key, value in update.items():
        if value in (None, ""):
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    return merged
