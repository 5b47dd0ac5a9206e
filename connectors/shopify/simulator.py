"""A Shopify REST Admin API stand-in: one store's customers, orders and transactions.

What it reproduces, because the client and the sync depend on it: the
``/admin/api/{version}/...json`` paths and ``{"customer": {...}}`` envelopes, integer ids,
decimal-string money, ``X-Shopify-Access-Token`` auth, cursor paging through the ``Link``
header's ``page_info`` (refusing any filter beside it, as Shopify does), the REST leaky
bucket when a rate limit is given (``X-Shopify-Shop-Api-Call-Limit`` on every answer,
429 with ``Retry-After`` over it; unmetered otherwise), Shopify's ``errors`` shape,
orders that take no line changes, transactions that settle an order's financial
status, refusals to delete a customer with orders or an order that took money, and
webhooks signed in ``X-Shopify-Hmac-Sha256`` with the topic, webhook id and trigger time
in headers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiohttp import web

from connectors.money import percent_of
from connectors.shopify.client import API_VERSION, BUCKET_SIZE, LEAK_PER_SECOND, PAGE_SIZE
from connectors.shopify.mapping import decimal_text, to_minor
from connectors.simkit import Change, Simulator, json_object, seed_person
from connectors.spec import EntityType, RateLimit

SIM_SHOP = "crmsync-sim.myshopify.com"
ROOT = f"/admin/api/{API_VERSION}"
# Shopify's ids are 64-bit integers, in the billions for a store of any age.
_FIRST_ID = 7_100_000_001
# Shopify's 429 body, word for word.
THROTTLED = (
    "Exceeded 2 calls per second for api client. Reduce request rates to resume "
    "uninterrupted service."
)


def shopify_error(status: int, errors: object) -> web.HTTPException:
    cls = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        422: web.HTTPUnprocessableEntity,
    }[status]
    return cls(text=json.dumps({"errors": errors}), content_type="application/json")


def signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class LeakyBucket:
    """Shopify's REST meter: ``size`` requests, ``leak`` of them drain a second."""

    def __init__(self, size: int, leak: float, clock: Callable[[], float] = time.monotonic):
        self.size, self.leak, self.clock = size, leak, clock
        self.level = 0.0
        self.at = clock()

    def drain(self) -> None:
        now = self.clock()
        self.level = max(0.0, self.level - (now - self.at) * self.leak)
        self.at = now

    def add(self) -> bool:
        """True if one more request fits (and is counted)."""
        self.drain()
        if self.level + 1 > self.size:
            return False
        self.level += 1
        return True

    def header(self) -> str:
        self.drain()
        return f"{int(self.level + 0.999)}/{self.size}"


class ShopifySimulator(Simulator):
    """Simulated Shopify store; see the module docstring for what it reproduces."""

    provider = "shopify"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")

    def __init__(
        self,
        *,
        currency: str = "AUD",
        shop: str = SIM_SHOP,
        rate_limit: RateLimit | None = None,
        **kwargs: Any,
    ) -> None:
        # Shopify's bucket is its own (a level, a leak), not the base's token bucket.
        super().__init__(rate_limit=None, **kwargs)
        self.currency = currency
        self.shop = shop
        self.enforce = rate_limit is not None
        size = rate_limit.burst if rate_limit is not None else BUCKET_SIZE
        leak = rate_limit.per_second if rate_limit is not None else LEAK_PER_SECOND
        self.leaky = LeakyBucket(size, leak)
        self._numbers = itertools.count(1001)
        self._id_counter = itertools.count(_FIRST_ID)
        # Orders whose orders/paid (and orders/cancelled) webhook went out already.
        self._announced: set[tuple[str, str]] = set()

    def new_id(self, entity_type: EntityType) -> str:
        return str(next(self._id_counter))

    def _now(self) -> str:
        return self.clock().astimezone(UTC).isoformat(timespec="seconds")

    def authorised(self, request: web.Request) -> bool:
        return request.headers.get("X-Shopify-Access-Token", "") == self.api_token

    # --- objects ------------------------------------------------------------------------

    def _customer(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        for field in ("first_name", "last_name", "email", "phone", "note"):
            if field in body:
                obj[field] = body[field] or None
        email = obj.get("email")
        if email and any(
            c.get("email") == email and c["id"] != obj["id"] for c in self.live("customer")
        ):
            raise shopify_error(422, {"email": ["has already been taken"]})
        if not any(obj.get(f) for f in ("first_name", "last_name", "email", "phone")):
            raise shopify_error(
                422, {"base": ["Customer must have a name, phone number or email address"]}
            )
        addresses = body.get("addresses")
        if isinstance(addresses, list) and addresses:
            given = dict(addresses[0])
            default = dict(obj.get("default_address") or {})
            if given.get("id") is not None and default and given["id"] != default.get("id"):
                raise shopify_error(404, "Not Found")
            default.update({k: v for k, v in given.items() if k != "id"})
            default.setdefault("id", int(self.new_id("customer")))
            default["customer_id"] = obj["id"]
            default["default"] = True
            obj["default_address"] = default
            obj["addresses"] = [default]
        obj["updated_at"] = self._now()
        return obj

    def _order(self, order_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        fields = body.get("order", body)
        items = fields.get("line_items") or []
        if not items:
            raise shopify_error(422, {"line_items": ["must have at least one line item"]})
        currency = fields.get("currency") or self.currency
        customer = fields.get("customer") or {}
        if customer.get("id") is not None and str(customer["id"]) not in self.store["customer"]:
            raise shopify_error(422, {"customer": ["must exist"]})
        number = next(self._numbers)
        now = self._now()
        order: dict[str, Any] = {
            "id": int(order_id),
            "order_number": number,
            "name": fields.get("name") or f"#{number}",
            "currency": currency,
            "created_at": now,
            "processed_at": fields.get("processed_at") or now,
            "cancelled_at": None,
            "cancel_reason": None,
            "financial_status": "pending",
            "taxes_included": False,
            "source_name": fields.get("source_name") or "web",
            "source_identifier": fields.get("source_identifier"),
            "note": fields.get("note"),
            "payment_terms": _terms(fields.get("payment_terms")),
            "customer": None,
            "line_items": [],
        }
        if customer.get("id") is not None:
            stored = self.store["customer"][str(customer["id"])]
            order["customer"] = {
                k: stored.get(k) for k in ("id", "email", "first_name", "last_name")
            }
            order["email"] = stored.get("email")
        for index, raw in enumerate(items):
            quantity = raw.get("quantity", 1)
            if not isinstance(quantity, int) or isinstance(quantity, bool) or quantity <= 0:
                raise shopify_error(
                    422, {f"line_items[{index}].quantity": ["must be a whole number"]}
                )
            price = to_minor(str(raw.get("price", "0")), currency, "price")
            gross = price * quantity
            tax_lines = []
            for tax in raw.get("tax_lines") or []:
                amount = (
                    to_minor(str(tax["price"]), currency, "tax")
                    if tax.get("price") is not None
                    else percent_of(gross, Decimal(str(tax.get("rate", 0))) * 100)
                )
                tax_lines.append(
                    {
                        "title": tax.get("title", "Tax"),
                        "price": decimal_text(amount, currency),
                        "rate": float(Decimal(str(tax.get("rate", 0)))),
                    }
                )
            order["line_items"].append(
                {
                    "id": int(self.new_id("invoice")),
                    "title": raw.get("title") or "Item",
                    "quantity": quantity,
                    "price": decimal_text(price, currency),
                    "tax_lines": tax_lines,
                }
            )
        self._totals(order)
        return order

    def _paid(self, order: Mapping[str, Any]) -> int:
        currency = order["currency"]
        return sum(
            to_minor(t["amount"], currency, "amount")
            for t in self.live("payment")
            if t["order_id"] == order["id"]
            and t["kind"] in ("sale", "capture")
            and t["status"] == "success"
        )

    def _totals(self, order: dict[str, Any]) -> None:
        currency = order["currency"]
        subtotal = tax = 0
        for item in order["line_items"]:
            subtotal += to_minor(item["price"], currency, "price") * item["quantity"]
            tax += sum(to_minor(t["price"], currency, "tax") for t in item["tax_lines"])
        total = subtotal + tax
        paid = self._paid(order)
        order["subtotal_price"] = decimal_text(subtotal, currency)
        order["total_tax"] = decimal_text(tax, currency)
        order["total_price"] = decimal_text(total, currency)
        order["total_outstanding"] = decimal_text(max(0, total - paid), currency)
        if order["financial_status"] in ("pending", "partially_paid", "paid") and paid:
            order["financial_status"] = "paid" if paid >= total else "partially_paid"
        order["updated_at"] = self._now()

    def _transaction(self, transaction_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        fields = body.get("transaction", body)
        order_id = str(body.get("order_id") or fields.get("order_id") or "")
        order = self.store["invoice"].get(order_id)
        if order is None or order_id in self.deleted["invoice"]:
            raise shopify_error(404, "Not Found")
        if order["cancelled_at"]:
            raise shopify_error(422, {"base": ["Cannot create a transaction on a cancelled order"]})
        kind = fields.get("kind", "sale")
        if kind not in ("sale", "capture", "authorization", "void", "refund"):
            raise shopify_error(422, {"kind": ["is not included in the list"]})
        currency = fields.get("currency") or order["currency"]
        if currency != order["currency"]:
            raise shopify_error(422, {"currency": ["must be the order's currency"]})
        amount = to_minor(str(fields.get("amount", "0")), currency, "amount")
        outstanding = to_minor(order["total_outstanding"], currency, "total_outstanding")
        if amount <= 0:
            raise shopify_error(422, {"amount": ["must be greater than 0"]})
        if kind in ("sale", "capture") and amount > outstanding:
            raise shopify_error(422, {"amount": ["exceeds the order's outstanding balance"]})
        now = self._now()
        return {
            "id": int(transaction_id),
            "order_id": order["id"],
            "kind": kind,
            "status": fields.get("status", "success"),
            "amount": decimal_text(amount, currency),
            "currency": currency,
            "gateway": fields.get("gateway") or "manual",
            "source_name": "external" if fields.get("source") == "external" else "web",
            "authorization": fields.get("authorization"),
            "parent_id": fields.get("parent_id"),
            "receipt": dict(fields.get("receipt") or {}),
            "created_at": now,
            "processed_at": now,
            "test": False,
        }

    # --- Simulator hooks ----------------------------------------------------------------

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if entity_type == "customer":
            fields = body.get("customer", body)
            obj = {
                "id": int(record_id),
                "created_at": self._now(),
                "state": "enabled",
                "default_address": None,
                "addresses": [],
            }
            return self._customer(obj, fields)
        if entity_type == "invoice":
            return self._order(record_id, body)
        return self._transaction(record_id, body)

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        obj = super().create(entity_type, body, notify=notify)
        if entity_type == "payment":
            order = self.store["invoice"][str(obj["order_id"])]
            self._totals(order)
            if notify:
                self._announce("invoice", str(order["id"]), "update")
        return obj

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = json.loads(json.dumps(obj))
        if entity_type == "customer":
            return self._customer(obj, body.get("customer", body))
        if entity_type == "invoice":
            fields = body.get("order", body)
            for fixed in ("line_items", "currency", "name", "customer"):
                if fixed in fields and _fixed(fixed, fields[fixed]) != _fixed(fixed, obj[fixed]):
                    raise shopify_error(
                        422, {fixed: ["cannot be changed once the order is placed"]}
                    )
            for field in ("note", "email", "tags"):
                if field in fields:
                    obj[field] = fields[field]
            if "payment_terms" in fields:
                obj["payment_terms"] = _terms(fields["payment_terms"])
            if body.get("cancel") or body.get("status") == "void":
                if obj["cancelled_at"]:
                    raise shopify_error(422, {"base": ["Order has already been cancelled"]})
                obj["cancelled_at"] = self._now()
                obj["cancel_reason"] = "other"
                if obj["financial_status"] in ("pending", "authorized"):
                    obj["financial_status"] = "voided"
            self._totals(obj)
            return obj
        raise shopify_error(422, {"base": ["Transactions cannot be modified"]})

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        obj = self.get(entity_type, record_id)
        if entity_type == "customer" and any(
            (o.get("customer") or {}).get("id") == obj["id"] for o in self.live("invoice")
        ):
            raise shopify_error(422, {"base": ["Error deleting customer: customer has orders"]})
        if entity_type == "invoice" and obj["financial_status"] not in (
            "pending",
            "authorized",
            "voided",
        ):
            raise shopify_error(422, {"base": ["An order with payments cannot be deleted"]})
        if entity_type == "payment":
            raise shopify_error(422, {"base": ["Transactions cannot be deleted"]})
        super().delete(entity_type, record_id)

    def _topic(self, change: Change, obj: Mapping[str, Any]) -> str | None:
        entity, op = change.entity_type, change.op
        if entity == "customer":
            return f"customers/{op}"
        if entity == "payment":
            return "order_transactions/create" if op == "create" else None
        if op in ("create", "delete"):
            return f"orders/{op}"
        # What an update means, once each: paid, then cancelled, else updated.
        for state, topic in (("paid", "orders/paid"), ("cancelled", "orders/cancelled")):
            done = (
                obj.get("financial_status") == "paid"
                if state == "paid"
                else bool(obj.get("cancelled_at"))
            )
            if done and (change.record_id, state) not in self._announced:
                self._announced.add((change.record_id, state))
                return topic
        return "orders/updated"

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        if self.webhook_secret is None or self.webhook_url is None:
            raise RuntimeError("the Shopify simulator signs webhooks: give it a webhook_secret")
        out = []
        for change in changes:
            obj = self.store[change.entity_type].get(change.record_id, {})
            topic = self._topic(change, obj)
            if topic is None:
                continue
            payload: Mapping[str, Any] = {"id": obj.get("id")} if change.op == "delete" else obj
            body = json.dumps(payload).encode()
            out.append(
                (
                    body,
                    {
                        "X-Shopify-Topic": topic,
                        "X-Shopify-Hmac-Sha256": signature(self.webhook_secret, body),
                        "X-Shopify-Shop-Domain": self.shop,
                        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                        "X-Shopify-Event-Id": str(uuid.uuid4()),
                        "X-Shopify-Triggered-At": change.at.astimezone(UTC).isoformat(),
                        "X-Shopify-API-Version": API_VERSION,
                    },
                )
            )
        return out

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        if entity_type == "customer":
            person = seed_person(index)
            return {
                "first_name": person.first,
                "last_name": person.last,
                "email": person.email,
                "phone": f"+61255501{index:03d}",
            }
        if entity_type == "invoice":
            customers = self.live("customer")
            price = 10_000 + 250 * index
            return {
                "order": {
                    "customer": {"id": customers[index % len(customers)]["id"]},
                    "currency": self.currency,
                    "line_items": [
                        {
                            "title": "Service visit",
                            "quantity": 1,
                            "price": decimal_text(price, self.currency),
                            "tax_lines": [
                                {
                                    "title": "GST",
                                    "price": decimal_text(price // 10, self.currency),
                                    "rate": 0.1,
                                }
                            ],
                        }
                    ],
                }
            }
        orders = [o for o in self.live("invoice") if o["financial_status"] == "pending"]
        order = orders[index % len(orders)]
        half = to_minor(order["total_price"], order["currency"], "total") // 2
        return {
            "order_id": order["id"],
            "transaction": {
                "kind": "sale",
                "status": "success",
                "amount": decimal_text(half, order["currency"]),
                "gateway": "bank_transfer",
                "authorization": f"SEED-{index + 1}",
            },
        }

    # --- HTTP ---------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = super().app()
        app.middlewares.append(self._meter)
        return app

    @web.middleware
    async def _meter(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Shopify's leaky bucket, after the base's faults and auth (``/_sim`` is free)."""
        if not self.enforce or not request.path.startswith("/admin/"):
            # Unmetered (no rate limit given): no bucket, and no level to report.
            return await handler(request)  # type: ignore[no-any-return]
        if not self.leaky.add():
            return web.json_response(
                {"errors": THROTTLED},
                status=429,
                headers={
                    "Retry-After": f"{1 / self.leaky.leak:.1f}",
                    "X-Shopify-Shop-Api-Call-Limit": f"{self.leaky.size}/{self.leaky.size}",
                },
            )
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            exc.headers["X-Shopify-Shop-Api-Call-Limit"] = self.leaky.header()
            raise
        response.headers["X-Shopify-Shop-Api-Call-Limit"] = self.leaky.header()
        return response

    def add_api_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get(f"{ROOT}/customers.json", self._list("customer", "customers"))
        r.add_post(f"{ROOT}/customers.json", self._create_customer)
        r.add_get(f"{ROOT}/customers/{{id}}.json", self._get_one("customer"))
        r.add_put(f"{ROOT}/customers/{{id}}.json", self._update_customer)
        r.add_delete(f"{ROOT}/customers/{{id}}.json", self._delete("customer"))
        r.add_get(f"{ROOT}/orders.json", self._list("invoice", "orders"))
        r.add_post(f"{ROOT}/orders.json", self._create_order)
        r.add_get(f"{ROOT}/orders/{{id}}.json", self._get_one("invoice"))
        r.add_put(f"{ROOT}/orders/{{id}}.json", self._update_order)
        r.add_delete(f"{ROOT}/orders/{{id}}.json", self._delete("invoice"))
        r.add_post(f"{ROOT}/orders/{{id}}/cancel.json", self._cancel_order)
        r.add_get(f"{ROOT}/orders/{{id}}/transactions.json", self._list_transactions)
        r.add_post(f"{ROOT}/orders/{{id}}/transactions.json", self._create_transaction)
        r.add_get(f"{ROOT}/orders/{{id}}/transactions/{{tid}}.json", self._get_transaction)

    def _found(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store[entity_type].get(record_id)
        if obj is None or record_id in self.deleted[entity_type]:
            raise shopify_error(404, "Not Found")
        return obj

    def _get_one(self, entity_type: EntityType) -> Any:
        key = {"customer": "customer", "invoice": "order"}[entity_type]

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.json_response({key: self._found(entity_type, request.match_info["id"])})

        return handler

    def _list(self, entity_type: EntityType, key: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            query = dict(request.query)
            limit = query.pop("limit", str(PAGE_SIZE))
            if not limit.isdigit() or not 1 <= int(limit) <= PAGE_SIZE:
                raise shopify_error(400, {"limit": [f"must be between 1 and {PAGE_SIZE}"]})
            if "page_info" in query:
                page_info = query.pop("page_info")
                if query:
                    # Shopify: "page_info - Unsupported parameter" beside any filter.
                    raise shopify_error(
                        400,
                        {
                            "page_info": [
                                f"Unsupported parameter with page_info: {', '.join(sorted(query))}"
                            ]
                        },
                    )
                try:
                    state = json.loads(base64.urlsafe_b64decode(page_info.encode()))
                    start, query = int(state["start"]), dict(state["query"])
                except (ValueError, KeyError, TypeError):
                    raise shopify_error(400, {"page_info": ["Invalid value."]}) from None
            else:
                start = 0
            objects = self.live(entity_type)
            since = query.get("updated_at_min")
            if since:
                objects = [o for o in objects if _at(o["updated_at"]) >= _at(since)]
            if "name" in query:
                objects = [o for o in objects if o.get("name") == query["name"]]
            objects.sort(key=lambda o: o["id"])
            end = start + int(limit)
            headers = {}
            if end < len(objects):
                token = base64.urlsafe_b64encode(
                    json.dumps({"start": end, "query": query}).encode()
                ).decode()
                url = request.url.with_query({"limit": limit, "page_info": token})
                headers["Link"] = f'<{url}>; rel="next"'
            return web.json_response({key: objects[start:end]}, headers=headers)

        return handler

    async def _create_customer(self, request: web.Request) -> web.StreamResponse:
        body = (await _json(request)).get("customer") or {}
        return web.json_response({"customer": self.create("customer", body)}, status=201)

    async def _update_customer(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("customer", request.match_info["id"])
        body = dict((await _json(request)).get("customer") or {})
        body.pop("id", None)
        return web.json_response({"customer": self.update("customer", str(obj["id"]), body)})

    def _delete(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            self._found(entity_type, request.match_info["id"])
            self.delete(entity_type, request.match_info["id"])
            return web.json_response({})

        return handler

    async def _create_order(self, request: web.Request) -> web.StreamResponse:
        body = (await _json(request)).get("order") or {}
        return web.json_response({"order": self.create("invoice", {"order": body})}, status=201)

    async def _update_order(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("invoice", request.match_info["id"])
        body = dict((await _json(request)).get("order") or {})
        body.pop("id", None)
        return web.json_response({"order": self.update("invoice", str(obj["id"]), {"order": body})})

    async def _cancel_order(self, request: web.Request) -> web.StreamResponse:
        obj = self._found("invoice", request.match_info["id"])
        if obj["financial_status"] not in ("pending", "authorized"):
            raise shopify_error(422, {"base": ["Cannot cancel an order that has been paid"]})
        return web.json_response(
            {"order": self.update("invoice", str(obj["id"]), {"order": {}, "cancel": True})}
        )

    async def _list_transactions(self, request: web.Request) -> web.StreamResponse:
        order = self._found("invoice", request.match_info["id"])
        transactions = [t for t in self.live("payment") if t["order_id"] == order["id"]]
        return web.json_response({"transactions": transactions})

    async def _create_transaction(self, request: web.Request) -> web.StreamResponse:
        order = self._found("invoice", request.match_info["id"])
        body = (await _json(request)).get("transaction") or {}
        created = self.create("payment", {"order_id": order["id"], "transaction": body})
        return web.json_response({"transaction": created}, status=201)

    async def _get_transaction(self, request: web.Request) -> web.StreamResponse:
        order = self._found("invoice", request.match_info["id"])
        transaction = self._found("payment", request.match_info["tid"])
        if transaction["order_id"] != order["id"]:
            raise shopify_error(404, "Not Found")
        return web.json_response({"transaction": transaction})


async def _json(request: web.Request) -> dict[str, Any]:
    return await json_object(
        request,
        not_json=lambda: shopify_error(400, "Bad Request: the body is not JSON"),
        not_object=lambda: shopify_error(400, "Bad Request: the body must be a JSON object"),
    )


def _terms(given: object) -> dict[str, Any] | None:
    """Payment terms as Shopify keeps them: one schedule with its due time."""
    if not isinstance(given, Mapping):
        return None
    schedules = given.get("payment_schedules") or []
    due_at = schedules[0].get("due_at") if schedules and isinstance(schedules[0], Mapping) else None
    if not due_at:
        return None
    return {
        "payment_terms_type": "FIXED",
        "payment_schedules": [{"due_at": due_at, "completed_at": None}],
    }


def _fixed(field: str, value: Any) -> Any:
    """What of an order's fixed field counts: lines by title, quantity and price, the
    customer by id (a body names it by id alone; the order keeps more of it)."""
    if field == "customer":
        return str(value.get("id")) if isinstance(value, Mapping) else None
    if field == "line_items" and isinstance(value, list):
        return [
            (i.get("title") or "Item", int(i.get("quantity", 1)), str(i.get("price")))
            for i in value
            if isinstance(i, Mapping)
        ]
    return value


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
