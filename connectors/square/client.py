"""Square's Connect API v2 (``https://connect.squareup.com``) as an ApiClient.

Every call carries ``Square-Version`` (the API version this client was written against,
so answers keep their shape when the seller's default moves) and the access token as a
bearer token. Creates carry an ``idempotency_key`` in the body, as Square requires.
Updates carry the object's ``version`` (optimistic concurrency): the client reads the
current version right before writing and, on ``VERSION_MISMATCH``, reads again and tries
once more before giving up with StaleVersionError.

Invoices and payments are composites (mapping.py): an invoice is read with its order
(``POST /v2/orders/batch-retrieve`` for a page), a payment with the invoice whose order it
paid (found by searching the location's invoices for the customer, then cached).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import StringConstraints

from connectors.apiclient import (
    ProviderClient,
    Write,
    answer_list,
    refused_or,
    retry_once_if_stale,
    unchanged,
)
from connectors.http import (
    NotFoundError,
    ProviderError,
    UnsupportedOperationError,
)
from connectors.spec import ClientSettings, EntityType, OptionalText, Page, RemoteRecord
from connectors.square.mapping import EXTERNAL_SOURCE, Mapper, square_time

# The Square API version this client and its mapper were written against.
SQUARE_VERSION = "2024-12-18"
# Square's maximum page sizes: ListCustomers and SearchCustomers 100, ListInvoices and
# SearchInvoices 200, ListPayments 100.
PAGE_SIZES: dict[EntityType, int] = {"customer": 100, "invoice": 200, "payment": 100}
# Square caps idempotency keys at 45 characters on CreateCustomer (the strictest).
IDEMPOTENCY_KEY_CHARS = 45
# Invoice states in which Square still lets the order's lines change.
EDITABLE_LINES = frozenset({"DRAFT"})
# Square's terminal invoice states: UpdateInvoice refuses them ("You cannot update an
# invoice in the PAID, REFUNDED, CANCELED, or FAILED terminal states").
FINAL = frozenset({"PAID", "CANCELED", "REFUNDED", "FAILED"})
# Published states Square cancels (CancelInvoice); a draft is deleted instead.
CANCELABLE = frozenset({"UNPAID", "SCHEDULED", "PARTIALLY_PAID"})


class SquareSettings(ClientSettings):
    """What the client reads of a Square connection's settings."""

    square_location_id: Annotated[str, StringConstraints(min_length=1)]
    square_version: OptionalText = None

    messages: ClassVar[dict[str, str]] = {
        "square_location_id": "a Square connection needs settings['square_location_id'] "
        "(the location its invoices and orders belong to)",
    }


def idempotency_key(key: str, step: str = "") -> str:
    """``key`` (+ a step of a write made of several calls) within Square's 45 characters."""
    text = f"{key}:{step}" if step else key
    if len(text) <= IDEMPOTENCY_KEY_CHARS:
        return text
    return hashlib.sha256(text.encode()).hexdigest()[:IDEMPOTENCY_KEY_CHARS]


def _stale(exc: ProviderError) -> bool:
    return "VERSION_MISMATCH" in exc.body_excerpt or "CONFLICT" in exc.body_excerpt


class SquareClient(ProviderClient[SquareSettings, Mapper]):
    """connectors.spec.ApiClient over Square for one seller and location."""

    settings_model = SquareSettings
    mapper_type = Mapper

    # ProviderClient's arguments as they are (as Xero's client takes them): this client
    # adds only its own state.
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A payment names an order; the invoice billing it, once found (order id -> id).
        self._invoice_of_order: dict[str, str] = {}

    def api_headers(self) -> Mapping[str, str]:
        return {"Square-Version": self.options.square_version or SQUARE_VERSION}

    @property
    def _location(self) -> str:
        return self.options.square_location_id

    # --- reads ------------------------------------------------------------------------------

    async def _get(self, path: str, key: str) -> dict[str, Any]:
        body = await self.api.call("GET", path)
        return _member(body, key, f"GET {path}")

    async def _post(self, path: str, key: str, json_body: Mapping[str, Any]) -> dict[str, Any]:
        """A create: the object Square answers with under ``key``."""
        return _member(await self.api.call("POST", path, json_body=json_body), key, f"POST {path}")

    async def _invoice_obj(self, invoice_id: str) -> dict[str, Any]:
        invoice = await self._get(f"/v2/invoices/{invoice_id}", "invoice")
        order_id = invoice.get("order_id")
        order = await self._get(f"/v2/orders/{order_id}", "order") if order_id else None
        if isinstance(order_id, str):
            self._invoice_of_order[order_id] = invoice_id
        return {"invoice": invoice, "order": order}

    async def _payment_obj(self, payment: dict[str, Any]) -> dict[str, Any]:
        order_id = payment.get("order_id")
        if isinstance(order_id, str):
            invoice_id = await self._invoice_for_order(order_id, payment.get("customer_id"))
            if invoice_id is not None:
                return {**payment, "invoice_id": invoice_id}
        return payment

    async def _invoice_for_order(self, order_id: str, customer_id: object) -> str | None:
        if order_id in self._invoice_of_order:
            return self._invoice_of_order[order_id]
        filter_: dict[str, Any] = {"location_ids": [self._location]}
        if isinstance(customer_id, str):
            filter_["customer_ids"] = [customer_id]
        cursor: str | None = None
        while True:
            request: dict[str, Any] = {"query": {"filter": filter_}, "limit": PAGE_SIZES["invoice"]}
            if cursor:
                request["cursor"] = cursor
            body = await self.api.call("POST", "/v2/invoices/search", json_body=request)
            for invoice in answer_list(body, "invoices"):
                if isinstance(invoice.get("order_id"), str):
                    self._invoice_of_order[invoice["order_id"]] = str(invoice.get("id"))
            if order_id in self._invoice_of_order:
                return self._invoice_of_order[order_id]
            cursor = body.get("cursor") if isinstance(body, Mapping) else None
            if not cursor:
                return None

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        if entity_type == "customer":
            obj: Mapping[str, Any] = await self._get(f"/v2/customers/{external_id}", "customer")
        elif entity_type == "invoice":
            obj = await self._invoice_obj(external_id)
        elif entity_type == "payment":
            obj = await self._payment_obj(await self._get(f"/v2/payments/{external_id}", "payment"))
        else:
            raise _unsupported(entity_type, "fetch")
        return self.mapper.to_canonical(entity_type, obj, self.settings)

    # --- writes -----------------------------------------------------------------------------

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity_type, body = write.entity_type, write.body
        if entity_type == "customer":
            customer = await self._post(
                "/v2/customers", "customer", {**body, "idempotency_key": _key(idempotency_key)}
            )
            return self.mapper.to_canonical("customer", customer, self.settings)
        if entity_type == "invoice":
            return await self._create_invoice(body, write.refs, idempotency_key)
        if entity_type == "payment":
            return await self._create_payment(body, write.refs, idempotency_key)
        raise _unsupported(entity_type, "create")

    async def _create_invoice(
        self, body: Mapping[str, Any], refs: Mapping[str, str], key: str
    ) -> RemoteRecord:
        order_body = {
            "location_id": self._location,
            **({"customer_id": refs["customer_id"]} if "customer_id" in refs else {}),
            **body.get("order", {"line_items": []}),
        }
        order = await self._post(
            "/v2/orders", "order", {"order": order_body, "idempotency_key": _key(key, "order")}
        )
        invoice_fields = {
            "location_id": self._location,
            "order_id": order["id"],
            "delivery_method": "SHARE_MANUALLY",
            "accepted_payment_methods": {"card": True, "bank_account": True},
            "payment_requests": [{"request_type": "BALANCE"}],
            **body.get("invoice", {}),
        }
        invoice = await self._post(
            "/v2/invoices",
            "invoice",
            {"invoice": invoice_fields, "idempotency_key": _key(key, "invoice")},
        )
        self._invoice_of_order[order["id"]] = invoice["id"]
        if body.get("publish"):
            await self._publish(invoice, _key(key, "publish"))
        return await self.fetch("invoice", invoice["id"])

    async def _publish(self, invoice: Mapping[str, Any], key: str) -> None:
        path = f"/v2/invoices/{invoice['id']}/publish"
        await self.api.call(
            "POST", path, json_body={"version": invoice.get("version", 0), "idempotency_key": key}
        )

    async def _create_payment(
        self, body: Mapping[str, Any], refs: Mapping[str, str], key: str
    ) -> RemoteRecord:
        payment: dict[str, Any] = {
            "source_id": "EXTERNAL",
            "external_details": {"type": "OTHER", "source": EXTERNAL_SOURCE},
            "autocomplete": True,
            "location_id": self._location,
            "idempotency_key": _key(key),
            **{k: v for k, v in body.items() if k != "invoice_id"},
        }
        invoice_id = body.get("invoice_id")
        if isinstance(invoice_id, str):
            invoice = await self._get(f"/v2/invoices/{invoice_id}", "invoice")
            payment["order_id"] = invoice.get("order_id")
            recipient = invoice.get("primary_recipient")
            if isinstance(recipient, Mapping) and recipient.get("customer_id"):
                payment["customer_id"] = recipient["customer_id"]
        created = await self._post("/v2/payments", "payment", payment)
        return self.mapper.to_canonical("payment", await self._payment_obj(created), self.settings)

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        return await retry_once_if_stale(
            lambda: self._update_once(write, external_id),
            lambda exc: _stale(exc) and exc.status is not None and exc.status < 500,
            f"Square {write.entity_type} {external_id}",
        )

    async def _update_once(self, write: Write, external_id: str) -> RemoteRecord:
        entity_type = write.entity_type
        if entity_type == "payment":
            return await self._update_payment(external_id, write.data)
        if entity_type not in ("customer", "invoice"):
            raise _unsupported(entity_type, "update")
        body = write.body
        if entity_type == "customer":
            current = await self._get(f"/v2/customers/{external_id}", "customer")
            answer = await self.api.call(
                "PUT",
                f"/v2/customers/{external_id}",
                json_body={**body, "version": current.get("version", 0)},
            )
            customer = _member(answer, "customer", "PUT /v2/customers")
            return self.mapper.to_canonical("customer", customer, self.settings)
        return await self._update_invoice(external_id, write)

    async def _update_invoice(self, invoice_id: str, write: Write) -> RemoteRecord:
        body = write.body
        current = await self._invoice_obj(invoice_id)
        invoice = current["invoice"]
        status = invoice.get("status")
        refused: list[str] = []
        if "order" in body:
            if status in EDITABLE_LINES and current["order"] is not None:
                order = current["order"]
                await self.api.call(
                    "PUT",
                    f"/v2/orders/{order['id']}",
                    json_body={
                        "order": {"version": order.get("version", 1), **body["order"]},
                        "idempotency_key": _key(f"{invoice_id}:{order.get('version')}", "lines"),
                    },
                )
            elif _lines_differ(current["order"], body["order"]):
                refused.append(f"the lines of a {status} invoice cannot change")
        fields = body.get("invoice", {})
        # Only a change is written: a derived edit (amount due, the paid status a payment
        # reaches) raced the payment that settled the invoice meanwhile (400, PAID).
        changed = self._changed_fields(current, write) if fields else []
        if status not in FINAL and status != "DRAFT" and "primary_recipient" in changed:
            # UpdateInvoice: "You cannot update the primary_recipient field" once published.
            changed.remove("primary_recipient")
            refused.append(f"the recipient of a {status} invoice cannot change")
        if changed and status not in FINAL:
            invoice, status = await self._write_fields(invoice_id, invoice, fields, changed)
        if changed and status in FINAL:
            refused.append(f"a {status} invoice cannot be edited ({', '.join(changed)})")
        if body.get("publish") and status == "DRAFT":
            await self._publish(invoice, _key(f"{invoice_id}:{invoice.get('version')}", "publish"))
        elif body.get("cancel") and status in CANCELABLE:
            path = f"/v2/invoices/{invoice_id}/cancel"
            await self.api.call("POST", path, json_body={"version": invoice.get("version", 0)})
        elif body.get("cancel") and status == "DRAFT":
            refused.append("a draft invoice is deleted, not canceled")
        elif (
            "publish" in body
            and not body["publish"]
            and status != "DRAFT"
            and not body.get("cancel")
        ):
            refused.append(f"a {status} invoice cannot return to draft")
        return refused_or(
            await self.fetch("invoice", invoice_id), f"Square invoice {invoice_id}", refused
        )

    async def _write_fields(
        self,
        invoice_id: str,
        invoice: dict[str, Any],
        fields: Mapping[str, Any],
        changed: list[str],
    ) -> tuple[dict[str, Any], Any]:
        """A sparse update of what ``changed``; the due date is the BALANCE request's, named
        by its uid (a request without one would be a second BALANCE request). The invoice
        and its status after it: a final status when a payment settled it between our
        read and our write, which Square refuses as it would have read it PAID."""
        sparse = {k: fields[k] for k in changed if k in fields}
        if "payment_requests" in sparse:
            sparse["payment_requests"] = _in_place(sparse["payment_requests"], invoice)
        try:
            answer = await self.api.call(
                "PUT",
                f"/v2/invoices/{invoice_id}",
                json_body={
                    "invoice": {"version": invoice.get("version", 0), **sparse},
                    "idempotency_key": _key(f"{invoice_id}:{invoice.get('version')}", "fields"),
                },
            )
        except ProviderError as exc:
            return invoice, await self._final_meanwhile(invoice_id, exc)
        written = _member(answer, "invoice", "PUT /v2/invoices")
        return written, written.get("status")

    async def _final_meanwhile(self, invoice_id: str, exc: ProviderError) -> str:
        """The final status (PAID, CANCELED…) the invoice reached since it was read, when
        that is why Square refused the update with a 400; otherwise ``exc`` stands."""
        if exc.status != 400 or _stale(exc):
            raise exc
        status = (await self._get(f"/v2/invoices/{invoice_id}", "invoice")).get("status")
        if status not in FINAL:
            raise exc
        return str(status)

    def _changed_fields(self, current: Mapping[str, Any], write: Write) -> list[str]:
        """The invoice fields ``write`` would change, compared as the mapping writes both.
        The canonical write is the whole record: what Square answers in a shape of its own
        (the recipient with its name and e-mail, the payment requests' amounts) or computes
        (a PAID status once a payment settles it) is not a change."""
        held = self.mapper.to_canonical("invoice", current, self.settings)
        wanted = self.mapper.from_canonical(
            "invoice", {**held.data, **write.data}, {**held.refs, **write.refs}, self.settings
        ).get("invoice", {})
        have = self.mapper.from_canonical("invoice", held.data, held.refs, self.settings).get(
            "invoice", {}
        )
        return sorted(k for k in set(wanted) | set(have) if wanted.get(k) != have.get(k))

    async def _update_payment(self, payment_id: str, data: Mapping[str, Any]) -> RemoteRecord:
        current = await self.fetch("payment", payment_id)
        # Only what Square holds of a payment counts (a method or paid time it sets
        # itself is no change here).
        wanted = self.mapper.from_canonical("payment", {**current.data, **data}, {}, {})
        held = self.mapper.from_canonical("payment", current.data, {}, {})
        # UpdatePayment applies to APPROVED payments only; one recorded as received
        # (COMPLETED) is final at Square.
        return unchanged(
            current,
            (k for k in wanted if wanted.get(k) != held.get(k)),
            lambda fields: (
                f"Square payment {payment_id}: a completed payment cannot change ({fields})"
            ),
        )

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        if entity_type == "customer":
            await self.api.call("DELETE", f"/v2/customers/{external_id}")
            return
        if entity_type == "invoice":
            invoice = await self._get(f"/v2/invoices/{external_id}", "invoice")
            status, version = invoice.get("status"), str(invoice.get("version", 0))
            if status == "DRAFT":
                await self.api.call(
                    "DELETE", f"/v2/invoices/{external_id}", params={"version": version}
                )
            elif status in CANCELABLE:
                await self.api.call(
                    "POST",
                    f"/v2/invoices/{external_id}/cancel",
                    json_body={"version": invoice.get("version", 0)},
                )
            elif status != "CANCELED":
                raise UnsupportedOperationError(
                    f"Square cannot delete or cancel the {status} invoice {external_id}",
                    request=f"POST /v2/invoices/{external_id}/cancel",
                )
            return
        raise _unsupported(entity_type, "delete")

    # --- pages ------------------------------------------------------------------------------

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        size = PAGE_SIZES.get(entity_type)
        if size is None:
            raise _unsupported(entity_type, "list")
        if entity_type == "customer":
            if modified_since is not None:
                request: dict[str, Any] = {
                    "query": {
                        "filter": {"updated_at": {"start_at": square_time(modified_since)}},
                        "sort": {"field": "DEFAULT", "order": "ASC"},
                    },
                    "limit": size,
                }
                if cursor:
                    request["cursor"] = cursor
                body = await self.api.call("POST", "/v2/customers/search", json_body=request)
            else:
                params = {"limit": str(size), **({"cursor": cursor} if cursor else {})}
                body = await self.api.call("GET", "/v2/customers", params=params)
            objects: list[Mapping[str, Any]] = list(answer_list(body, "customers"))
        elif entity_type == "invoice":
            params = {"location_id": self._location, "limit": str(size)}
            if cursor:
                params["cursor"] = cursor
            body = await self.api.call("GET", "/v2/invoices", params=params)
            invoices = answer_list(body, "invoices")
            if modified_since is not None:
                # ListInvoices has no updated-at filter: the page is read whole and what
                # changed before the start is left out.
                invoices = [i for i in invoices if _after(i, modified_since)]
            objects = await self._with_orders(invoices)
        else:
            params = {"location_id": self._location, "limit": str(size), "sort_order": "ASC"}
            if modified_since is not None:
                params["updated_at_begin_time"] = square_time(modified_since)
                params["sort_field"] = "UPDATED_AT"
            if cursor:
                params["cursor"] = cursor
            body = await self.api.call("GET", "/v2/payments", params=params)
            objects = [await self._payment_obj(p) for p in answer_list(body, "payments")]
        records = tuple(self.mapper.to_canonical(entity_type, o, self.settings) for o in objects)
        next_cursor = body.get("cursor") if isinstance(body, Mapping) else None
        return Page(records=records, next_cursor=next_cursor or None)

    async def _with_orders(self, invoices: list[dict[str, Any]]) -> list[Mapping[str, Any]]:
        order_ids = [i["order_id"] for i in invoices if isinstance(i.get("order_id"), str)]
        orders: dict[str, Any] = {}
        if order_ids:
            body = await self.api.call(
                "POST",
                "/v2/orders/batch-retrieve",
                json_body={"location_id": self._location, "order_ids": order_ids},
            )
            orders = {str(o.get("id")): o for o in answer_list(body, "orders")}
        for invoice in invoices:
            if isinstance(invoice.get("order_id"), str):
                self._invoice_of_order[invoice["order_id"]] = str(invoice.get("id"))
        return [{"invoice": i, "order": orders.get(str(i.get("order_id")))} for i in invoices]


def _after(invoice: Mapping[str, Any], since: datetime) -> bool:
    stamp = invoice.get("updated_at")
    if not isinstance(stamp, str):
        return True
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")) >= since.astimezone(UTC)
    except ValueError:
        return True


def _in_place(requests: list[Any], invoice: Mapping[str, Any]) -> list[Any]:
    """``requests`` as changes of the invoice's own payment requests: each carries the
    ``uid`` of the one it changes (Square adds a request given without one)."""
    held = invoice.get("payment_requests") or []
    return [
        {**request, "uid": held[i]["uid"]}
        if i < len(held) and isinstance(held[i], Mapping) and held[i].get("uid")
        else request
        for i, request in enumerate(requests)
    ]


def _lines_differ(order: Mapping[str, Any] | None, wanted: Mapping[str, Any]) -> bool:
    if order is None:
        return True
    have = [
        (i.get("name"), i.get("quantity"), (i.get("base_price_money") or {}).get("amount"))
        for i in order.get("line_items") or []
    ]
    want = [
        (i.get("name"), i.get("quantity"), i["base_price_money"]["amount"])
        for i in wanted.get("line_items", [])
    ]
    return have != want


def _key(key: str, step: str = "") -> str:
    return idempotency_key(key, step)


def _member(body: Any, key: str, request: str) -> dict[str, Any]:
    value = body.get(key) if isinstance(body, Mapping) else None
    if not isinstance(value, dict):
        raise ProviderError(f"{request} answered without {key!r}", status=200, request=request)
    return value


def _unsupported(entity_type: str, operation: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(f"Square has no {entity_type} {operation}")


# connectors.spec.ApiSpec.make_client for Square.
make_client = SquareClient.make


__all__ = ["NotFoundError", "SquareClient", "make_client"]
