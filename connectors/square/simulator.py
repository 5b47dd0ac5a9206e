"""A Square Connect API v2 stand-in: customers, orders, invoices and payments of one
seller's location.

What it reproduces, because the client and the sync depend on it: ``/v2/...`` paths,
``{"customer": {...}}`` envelopes, Money objects, ``cursor`` paging, ``idempotency_key``
replays, ``version`` checks (``VERSION_MISMATCH``) on updates, Square's error shape
(``errors[]`` with ``category``, ``code``, ``detail``, ``field``), invoices billing an
order (publish, cancel, delete drafts), EXTERNAL payments that settle the invoice whose
order they pay, and webhooks signed in ``x-square-hmacsha256-signature`` over the
notification URL and the body.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web

from connectors.money import percent_of
from connectors.simkit import Change, Simulator, seed_person
from connectors.spec import EntityType
from connectors.square.client import PAGE_SIZES
from connectors.square.mapping import square_time
from schemas.records import line_amount

SIM_LOCATION_ID = "L8SIMULATED0001"
SIM_MERCHANT_ID = "MLSIMULATED0001"
_TYPES: dict[tuple[EntityType, str], str] = {
    ("customer", "create"): "customer.created",
    ("customer", "update"): "customer.updated",
    ("customer", "delete"): "customer.deleted",
    ("invoice", "create"): "invoice.created",
    ("invoice", "update"): "invoice.updated",
    ("invoice", "delete"): "invoice.deleted",
    ("payment", "create"): "payment.created",
    ("payment", "update"): "payment.updated",
}


def square_error(
    status: int, category: str, code: str, detail: str, field: str | None = None
) -> web.HTTPException:
    error: dict[str, Any] = {"category": category, "code": code, "detail": detail}
    if field:
        error["field"] = field
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict}[status]
    return cls(text=json.dumps({"errors": [error]}), content_type="application/json")


def _bad(detail: str, field: str | None = None, code: str = "INVALID_VALUE") -> web.HTTPException:
    return square_error(400, "INVALID_REQUEST_ERROR", code, detail, field)


def signature(key: str, url: str, body: bytes) -> str:
    digest = hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class SquareSimulator(Simulator):
    """Simulated Square seller; see the module docstring for what it reproduces."""

    provider = "square"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")

    def __init__(
        self, *, location_id: str = SIM_LOCATION_ID, currency: str = "AUD", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.location_id = location_id
        self.currency = currency
        self.orders: dict[str, dict[str, Any]] = {}
        self._replays: dict[tuple[str, str], str] = {}

    def new_id(self, entity_type: EntityType) -> str:
        return uuid.uuid4().hex[:22].upper()

    def _now(self) -> str:
        return square_time(self.clock())

    # --- objects ------------------------------------------------------------------------

    def _customer(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        for field in (
            "given_name",
            "family_name",
            "company_name",
            "email_address",
            "phone_number",
            "note",
            "reference_id",
        ):
            if field in body:
                obj[field] = body[field]
        if "address" in body:
            obj["address"] = dict(body["address"] or {})
        if not any(
            obj.get(f)
            for f in ("given_name", "family_name", "company_name", "email_address", "phone_number")
        ):
            raise _bad(
                "At least one of the following fields must be set: given_name, family_name, "
                "company_name, email_address, phone_number.",
                code="MISSING_REQUIRED_PARAMETER",
            )
        for key in [k for k, v in obj.items() if v == ""]:
            del obj[key]
        obj["updated_at"] = self._now()
        return obj

    def _order(self, body: Mapping[str, Any]) -> dict[str, Any]:
        order_id = uuid.uuid4().hex[:26].upper()
        order = {
            "id": order_id,
            "location_id": self.location_id,
            "version": 1,
            "state": "OPEN",
            "created_at": self._now(),
            "customer_id": body.get("customer_id"),
        }
        self._price(order, body.get("line_items") or [])
        self.orders[order_id] = order
        return order

    def _price(self, order: dict[str, Any], raw_items: list[Any]) -> None:
        currency = self.currency
        items, total, tax_total = [], 0, 0
        for raw in raw_items:
            money = raw.get("base_price_money") or {}
            currency = money.get("currency") or currency
            quantity = Decimal(str(raw.get("quantity", "1")))
            gross = line_amount(quantity, int(money.get("amount", 0)))
            tax = sum(percent_of(gross, Decimal(t["percentage"])) for t in raw.get("taxes") or [])
            items.append(
                {
                    "uid": uuid.uuid4().hex[:10],
                    "name": raw.get("name", ""),
                    "quantity": str(raw.get("quantity", "1")),
                    "base_price_money": {
                        "amount": int(money.get("amount", 0)),
                        "currency": currency,
                    },
                    "gross_sales_money": {"amount": gross, "currency": currency},
                    "total_tax_money": {"amount": tax, "currency": currency},
                    "total_money": {"amount": gross + tax, "currency": currency},
                }
            )
            total += gross + tax
            tax_total += tax
        order["line_items"] = items
        order["total_money"] = {"amount": total, "currency": currency}
        order["total_tax_money"] = {"amount": tax_total, "currency": currency}
        order["updated_at"] = self._now()

    def _invoice(self, invoice_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        fields = body.get("invoice", body)
        order_id = fields.get("order_id")
        if order_id is None and "order" in body:
            order_id = self._order(
                {
                    **body["order"],
                    "customer_id": (fields.get("primary_recipient") or {}).get("customer_id"),
                }
            )["id"]
        if order_id not in self.orders:
            raise _bad("order_id must name an order of this location", "invoice.order_id")
        recipient = fields.get("primary_recipient") or {}
        if recipient.get("customer_id") not in self.store["customer"]:
            raise _bad(
                "primary_recipient.customer_id must name a customer",
                "invoice.primary_recipient.customer_id",
            )
        invoice: dict[str, Any] = {
            "id": invoice_id,
            "version": 0,
            "location_id": self.location_id,
            "order_id": order_id,
            "status": "DRAFT",
            "created_at": self._now(),
            "delivery_method": "SHARE_MANUALLY",
            "payment_requests": [
                {
                    "uid": uuid.uuid4().hex[:10],
                    "request_type": "BALANCE",
                    "due_date": self.clock().date().isoformat(),
                }
            ],
            "primary_recipient": {},
        }
        self._edit_invoice(invoice, fields, creating=True)
        if body.get("publish"):
            self._publish(invoice)
        return invoice

    def _edit_invoice(
        self, invoice: dict[str, Any], fields: Mapping[str, Any], *, creating: bool = False
    ) -> None:
        for key in ("invoice_number", "sale_or_service_date", "title", "description"):
            if key in fields:
                invoice[key] = fields[key]
        if "primary_recipient" in fields:
            customer = self.store["customer"].get(fields["primary_recipient"].get("customer_id"))
            if customer is None:
                raise _bad("primary_recipient.customer_id must name a customer")
            held = invoice["primary_recipient"].get("customer_id")
            if invoice["status"] != "DRAFT" and customer["id"] != held:
                # Square's UpdateInvoice: "You cannot update the primary_recipient field"
                # of a published invoice.
                raise _bad(
                    "The primary_recipient of a published invoice cannot be updated",
                    "invoice.primary_recipient",
                    code="BAD_REQUEST",
                )
            invoice["primary_recipient"] = {
                "customer_id": customer["id"],
                **{
                    k: customer.get(k)
                    for k in ("given_name", "family_name", "email_address")
                    if customer.get(k)
                },
            }
        for request in fields.get("payment_requests") or []:
            balance = invoice["payment_requests"][0]
            if not creating and request.get("uid") != balance["uid"]:
                # An update changes a payment request named by its uid; one without is a
                # new request (request_type and due_date "required to create a payment
                # request"), and an invoice has one BALANCE request.
                raise _bad(
                    "payment_requests: a request without the uid of one of the invoice's is "
                    "a new request, and the invoice has its BALANCE request already",
                    "invoice.payment_requests",
                )
            if request.get("due_date"):
                balance["due_date"] = request["due_date"]
        if not invoice.get("invoice_number"):
            invoice["invoice_number"] = f"{len(self.store['invoice']) + 1:06d}"
        if not creating:
            invoice["version"] += 1
        self._amounts(invoice)

    def _amounts(self, invoice: dict[str, Any]) -> None:
        order = self.orders[invoice["order_id"]]
        request = invoice["payment_requests"][0]
        request["computed_amount_money"] = dict(order["total_money"])
        paid = sum(
            p["amount_money"]["amount"]
            for p in self.live("payment")
            if p.get("order_id") == order["id"] and p["status"] == "COMPLETED"
        )
        request["total_completed_amount_money"] = {
            "amount": paid,
            "currency": order["total_money"]["currency"],
        }
        total = order["total_money"]["amount"]
        if invoice["status"] in ("UNPAID", "PARTIALLY_PAID", "PAID") and paid:
            invoice["status"] = "PAID" if paid >= total else "PARTIALLY_PAID"
        invoice["updated_at"] = self._now()

    def _publish(self, invoice: dict[str, Any]) -> None:
        if invoice["status"] != "DRAFT":
            raise _bad(
                f"Cannot publish an invoice in {invoice['status']} state", code="BAD_REQUEST"
            )
        invoice["status"] = "UNPAID"
        invoice["version"] += 1
        invoice["public_url"] = f"https://squareup.com/pay-invoice/{invoice['id']}"
        self._amounts(invoice)

    def _payment(self, payment_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        money = body.get("amount_money") or {}
        if not isinstance(money.get("amount"), int) or money["amount"] <= 0:
            raise _bad("amount_money.amount must be positive", "amount_money.amount")
        order_id = body.get("order_id")
        if order_id is None and body.get("invoice_id") in self.store["invoice"]:
            order_id = self.store["invoice"][body["invoice_id"]]["order_id"]
        payment = {
            "id": payment_id,
            "created_at": self._now(),
            "updated_at": self._now(),
            "amount_money": {
                "amount": money["amount"],
                "currency": money.get("currency") or self.currency,
            },
            "status": "COMPLETED",
            "source_type": "EXTERNAL"
            if body.get("source_id", "EXTERNAL") == "EXTERNAL"
            else "CARD",
            "location_id": self.location_id,
            "order_id": order_id,
            "customer_id": body.get("customer_id"),
            "reference_id": body.get("reference_id") or None,
            "version_token": uuid.uuid4().hex,
            "external_details": body.get("external_details")
            or {"type": "OTHER", "source": "Dashboard"},
        }
        if order_id is not None:
            invoice = next((i for i in self.live("invoice") if i["order_id"] == order_id), None)
            if invoice is not None:
                if invoice["status"] == "DRAFT":
                    raise _bad("A draft invoice's order cannot be paid", code="BAD_REQUEST")
                payment["customer_id"] = payment["customer_id"] or invoice["primary_recipient"].get(
                    "customer_id"
                )
        return payment

    def _settle(self, payment: Mapping[str, Any]) -> None:
        invoice = next(
            (i for i in self.live("invoice") if i["order_id"] == payment.get("order_id")), None
        )
        if invoice is not None:
            self._amounts(invoice)
            self._announce("invoice", invoice["id"], "update")

    # --- Simulator hooks ----------------------------------------------------------------

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if entity_type == "customer":
            return self._customer({"id": record_id, "created_at": self._now(), "version": 0}, body)
        if entity_type == "invoice":
            return self._invoice(record_id, body)
        return self._payment(record_id, body)

    def payment_recorded(self, payment: Mapping[str, Any], *, notify: bool) -> None:
        self._settle(payment)

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = json.loads(json.dumps(obj))
        if entity_type == "customer":
            obj = self._customer(obj, body)
            obj["version"] += 1
            return obj
        if entity_type == "invoice":
            fields = body.get("invoice", body)
            if "order" in body:
                if obj["status"] != "DRAFT":
                    raise _bad("Only a draft invoice's order can change", code="BAD_REQUEST")
                self._price(self.orders[obj["order_id"]], body["order"].get("line_items") or [])
            if obj["status"] in ("PAID", "CANCELED", "REFUNDED") and fields:
                raise _bad(f"A {obj['status']} invoice cannot be updated", code="BAD_REQUEST")
            self._edit_invoice(obj, fields)
            if body.get("publish") and obj["status"] == "DRAFT":
                self._publish(obj)
            if body.get("cancel") and obj["status"] in ("UNPAID", "SCHEDULED", "PARTIALLY_PAID"):
                obj["status"] = "CANCELED"
            return obj
        raise _bad("A completed payment cannot be updated", code="BAD_REQUEST")

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        obj = self.get(entity_type, record_id)
        if entity_type == "invoice" and obj["status"] != "DRAFT":
            if obj["status"] in ("UNPAID", "SCHEDULED", "PARTIALLY_PAID"):
                self.update("invoice", record_id, {"cancel": True})
                return
            raise _bad(f"A {obj['status']} invoice cannot be deleted", code="BAD_REQUEST")
        if entity_type == "payment":
            raise _bad("Square cannot delete a payment", code="BAD_REQUEST")
        super().delete(entity_type, record_id)

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        if self.webhook_secret is None or self.webhook_url is None:
            raise RuntimeError("the Square simulator signs webhooks: give it a webhook_secret")
        out = []
        for change in changes:
            obj = self.store[change.entity_type].get(change.record_id, {})
            event_type = _TYPES.get((change.entity_type, change.op))
            if event_type is None:
                continue
            data: dict[str, Any] = {"type": change.entity_type, "id": change.record_id}
            if change.op == "delete":
                data["deleted"] = True
            else:
                data["object"] = {change.entity_type: obj}
            event = {
                "merchant_id": SIM_MERCHANT_ID,
                "location_id": self.location_id,
                "type": event_type,
                "event_id": str(uuid.uuid4()),
                "created_at": square_time(change.at),
                "data": data,
            }
            body = json.dumps(event).encode()
            # Square signs the notification URL its subscription names.
            url = self.signed_url or self.webhook_url
            out.append(
                (body, {"x-square-hmacsha256-signature": signature(self.webhook_secret, url, body)})
            )
        return out

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        if entity_type == "customer":
            person = seed_person(index)
            return {
                "given_name": person.first,
                "family_name": person.last,
                "email_address": person.email,
                "phone_number": f"+61 2 5550 {1000 + index}",
            }
        if entity_type == "invoice":
            customers = self.live("customer")
            amount = 10_000 + 250 * index
            return {
                "invoice": {
                    "primary_recipient": {"customer_id": customers[index % len(customers)]["id"]},
                    "payment_requests": [
                        {
                            "request_type": "BALANCE",
                            "due_date": (date(2024, 1, 20) + timedelta(days=index)).isoformat(),
                        }
                    ],
                    "sale_or_service_date": (date(2024, 1, 1) + timedelta(days=index)).isoformat(),
                },
                "order": {
                    "line_items": [
                        {
                            "name": "Service visit",
                            "quantity": "1",
                            "base_price_money": {"amount": amount, "currency": self.currency},
                        }
                    ]
                },
                "publish": True,
            }
        invoices = [i for i in self.live("invoice") if i["status"] == "UNPAID"]
        invoice = invoices[index % len(invoices)]
        half = invoice["payment_requests"][0]["computed_amount_money"]["amount"] // 2
        return {
            "invoice_id": invoice["id"],
            "amount_money": {"amount": half, "currency": self.currency},
            "reference_id": f"SEED-{index + 1}",
        }

    # --- HTTP ---------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v2/customers", self._list_customers)
        r.add_post("/v2/customers", self._replayed(self._create_customer))
        r.add_post("/v2/customers/search", self._search_customers)
        r.add_get("/v2/customers/{id}", self._get_one("customer"))
        r.add_put("/v2/customers/{id}", self._update_customer)
        r.add_delete("/v2/customers/{id}", self._delete_customer)
        r.add_post("/v2/orders", self._replayed(self._create_order))
        r.add_get("/v2/orders/{id}", self._get_order)
        r.add_put("/v2/orders/{id}", self._update_order)
        r.add_post("/v2/orders/batch-retrieve", self._batch_orders)
        r.add_get("/v2/invoices", self._list_invoices)
        r.add_post("/v2/invoices", self._replayed(self._create_invoice))
        r.add_post("/v2/invoices/search", self._search_invoices)
        r.add_get("/v2/invoices/{id}", self._get_one("invoice"))
        r.add_put("/v2/invoices/{id}", self._update_invoice)
        r.add_delete("/v2/invoices/{id}", self._delete_invoice)
        r.add_post("/v2/invoices/{id}/publish", self._publish_invoice)
        r.add_post("/v2/invoices/{id}/cancel", self._cancel_invoice)
        r.add_get("/v2/payments", self._list_payments)
        r.add_post("/v2/payments", self._replayed(self._create_payment))
        r.add_get("/v2/payments/{id}", self._get_one("payment"))

    def _replayed(self, handler: Any) -> Any:
        async def replayed(request: web.Request) -> web.StreamResponse:
            body = await _json(request)
            key = body.get("idempotency_key")
            if not key:
                raise _bad(
                    "idempotency_key is required", "idempotency_key", "MISSING_REQUIRED_PARAMETER"
                )
            if (request.path, key) in self._replays:
                return web.Response(
                    text=self._replays[(request.path, key)], content_type="application/json"
                )
            answer: web.Response = await handler(body)
            self._replays[(request.path, key)] = answer.text or ""
            return answer

        return replayed

    def _found(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store[entity_type].get(record_id)
        if obj is None or record_id in self.deleted[entity_type]:
            raise square_error(
                404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"{entity_type} `{record_id}` not found"
            )
        return obj

    def _get_one(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response(
                {entity_type: self._found(entity_type, request.match_info["id"])}
            )

        return handler

    def _check_version(self, obj: Mapping[str, Any], version: object) -> None:
        if version is not None and version != obj.get("version"):
            raise _bad(
                "Object version does not match latest database version.",
                "version",
                "VERSION_MISMATCH",
            )

    def _page(
        self, objects: list[dict[str, Any]], entity_type: EntityType, asked: Mapping[str, Any]
    ) -> web.Response:
        """One page of ``objects`` as a list or a search answers it, at the ``cursor`` and
        ``limit`` ``asked`` (the query of a list, the body of a search)."""
        cursor, limit = asked.get("cursor"), self._limit(asked.get("limit"), entity_type)
        key = f"{entity_type}s"
        start = int(cursor) if cursor and cursor.isdigit() else 0
        chunk = objects[start : start + limit]
        body: dict[str, Any] = {key: chunk}
        if start + limit < len(objects):
            body["cursor"] = str(start + limit)
        return web.json_response(body)

    def _limit(self, value: object, entity_type: EntityType) -> int:
        return max(1, min(int(str(value or PAGE_SIZES[entity_type])), PAGE_SIZES[entity_type]))

    async def _list_customers(self, request: web.Request) -> web.StreamResponse:
        return self._page(self.live("customer"), "customer", request.query)

    async def _search_customers(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        start = (((body.get("query") or {}).get("filter") or {}).get("updated_at") or {}).get(
            "start_at"
        )
        objects = self.live("customer")
        if start:
            objects = [o for o in objects if o["updated_at"] >= start]
        return self._page(objects, "customer", body)

    async def _create_customer(self, body: Mapping[str, Any]) -> web.Response:
        return web.json_response(
            {
                "customer": self.create(
                    "customer", {k: v for k, v in body.items() if k != "idempotency_key"}
                )
            }
        )

    async def _update_customer(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("customer", request.match_info["id"])
        body = await _json(request)
        self._check_version(obj, body.get("version"))
        return web.json_response(
            {
                "customer": self.update(
                    "customer", obj["id"], {k: v for k, v in body.items() if k != "version"}
                )
            }
        )

    async def _delete_customer(self, request: web.Request) -> web.StreamResponse:
        self._found("customer", request.match_info["id"])
        self.delete("customer", request.match_info["id"])
        return web.json_response({})

    async def _create_order(self, body: Mapping[str, Any]) -> web.Response:
        return web.json_response({"order": self._order(body.get("order") or {})})

    async def _get_order(self, request: web.Request) -> web.StreamResponse:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            raise square_error(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", "order not found")
        return web.json_response({"order": order})

    async def _update_order(self, request: web.Request) -> web.StreamResponse:
        order = self.orders.get(request.match_info["id"])
        if order is None:
            raise square_error(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", "order not found")
        body = (await _json(request)).get("order") or {}
        self._check_version(order, body.get("version"))
        invoice = next(i for i in self.live("invoice") if i["order_id"] == order["id"])
        self.update("invoice", invoice["id"], {"order": body})
        order["version"] += 1
        return web.json_response({"order": order})

    async def _batch_orders(self, request: web.Request) -> web.StreamResponse:
        ids = (await _json(request)).get("order_ids") or []
        return web.json_response({"orders": [self.orders[i] for i in ids if i in self.orders]})

    async def _list_invoices(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("location_id") != self.location_id:
            raise _bad("location_id must be this seller's location", "location_id")
        return self._page(self.live("invoice"), "invoice", request.query)

    async def _search_invoices(self, request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        filter_ = (body.get("query") or {}).get("filter") or {}
        customers = filter_.get("customer_ids")
        objects = [
            i
            for i in self.live("invoice")
            if not customers or i["primary_recipient"].get("customer_id") in customers
        ]
        return self._page(objects, "invoice", body)

    async def _create_invoice(self, body: Mapping[str, Any]) -> web.Response:
        return web.json_response(
            {"invoice": self.create("invoice", {"invoice": body.get("invoice") or {}})}
        )

    async def _update_invoice(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("invoice", request.match_info["id"])
        fields = (await _json(request)).get("invoice") or {}
        self._check_version(obj, fields.get("version"))
        return web.json_response(
            {
                "invoice": self.update(
                    "invoice",
                    obj["id"],
                    {"invoice": {k: v for k, v in fields.items() if k != "version"}},
                )
            }
        )

    async def _delete_invoice(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("invoice", request.match_info["id"])
        self._check_version(
            obj,
            int(request.query["version"]) if request.query.get("version", "").isdigit() else None,
        )
        if obj["status"] != "DRAFT":
            raise _bad("Only a draft invoice can be deleted", code="BAD_REQUEST")
        self.delete("invoice", obj["id"])
        return web.json_response({})

    async def _publish_invoice(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("invoice", request.match_info["id"])
        self._check_version(obj, (await _json(request)).get("version"))
        return web.json_response(
            {"invoice": self.update("invoice", obj["id"], {"invoice": {}, "publish": True})}
        )

    async def _cancel_invoice(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("invoice", request.match_info["id"])
        self._check_version(obj, (await _json(request)).get("version"))
        if obj["status"] not in ("UNPAID", "SCHEDULED", "PARTIALLY_PAID"):
            raise _bad(f"Cannot cancel an invoice in {obj['status']} state", code="BAD_REQUEST")
        return web.json_response(
            {"invoice": self.update("invoice", obj["id"], {"invoice": {}, "cancel": True})}
        )

    async def _list_payments(self, request: web.Request) -> web.StreamResponse:
        objects = self.live("payment")
        since = request.query.get("updated_at_begin_time")
        if since:
            objects = [p for p in objects if p["updated_at"] >= since]
        objects.sort(key=lambda p: p["updated_at" if since else "created_at"])
        return self._page(objects, "payment", request.query)

    async def _create_payment(self, body: Mapping[str, Any]) -> web.Response:
        return web.json_response({"payment": self.create("payment", body)})


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad("The request body is not valid JSON", code="INVALID_CONTENT_TYPE") from None
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object")
    return body


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)
