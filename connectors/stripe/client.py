"""Stripe's REST API (``https://api.stripe.com/v1``) as an ApiClient.

Requests are form-encoded with Stripe's bracket syntax (forms.py), authenticated with the
secret key as a bearer token, pinned to one API version (``Stripe-Version``) so response
shapes do not change under us when the account's default version moves, and carry an
``Idempotency-Key`` on every create: Stripe replays the first response for a repeated key,
so a retried create never makes a second customer, invoice or payment.

Stripe objects have no last-modified time. A record read from the API is stamped with the
later of the object's own latest timestamp and the second before the read: the object is
at least that fresh, and an Event created in the same second (Stripe's ``created`` is whole
seconds) still wins over the read rather than losing to it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from connectors.apiclient import ProviderClient, Write
from connectors.http import NotFoundError, ProviderError, UnsupportedOperationError
from connectors.overrides import apply_inbound
from connectors.spec import (
    ClientSettings,
    EntityType,
    MappingError,
    OptionalText,
    Page,
    RemoteRecord,
)
from connectors.stripe.forms import encode_form
from connectors.stripe.mapping import (
    EVENT_TYPES_BY_ENTITY,
    Mapper,
    event_item,
    line_tax_params,
    object_time,
    record_for,
)
from schemas.errors import DeadLetter, ProviderRuleError

# The API version this client (and its mapper) was written against; settings may override.
STRIPE_VERSION = "2024-06-20"
# Stripe's maximum ``limit`` on list endpoints.
PAGE_SIZE = 100
# "We only guarantee access to events through the Retrieve Event API for 30 days" (Stripe
# API reference, Events): an older modified_since falls back to a full listing.
EVENT_RETENTION = timedelta(days=30)
# Used when an invoice is pushed without a due date: Stripe requires one of due_date or
# days_until_due for invoices sent to the customer (collection_method=send_invoice).
DEFAULT_DAYS_UNTIL_DUE = 30

_PATHS: dict[str, str] = {
    "customer": "/v1/customers",
    "invoice": "/v1/invoices",
    "payment": "/v1/payment_intents",
}
# Invoice statuses as a canonical status names them ("uncollectible" reads as "open").
_CANONICAL_STATUS = {
    "draft": "draft",
    "open": "open",
    "uncollectible": "open",
    "paid": "paid",
    "void": "void",
}
# Fields Stripe lets change only while an invoice is a draft.
_DRAFT_ONLY = ("number", "currency", "due_on", "issued_on", "lines")


class StripeSettings(ClientSettings):
    """What the client reads of a Stripe connection's settings: the API version to pin
    (STRIPE_VERSION when unset) and the Connect account to act on, if any."""

    stripe_version: OptionalText = None
    stripe_account: OptionalText = None

    def headers(self) -> dict[str, str]:
        headers = {"Stripe-Version": self.stripe_version or STRIPE_VERSION}
        if self.stripe_account:
            headers["Stripe-Account"] = self.stripe_account
        return headers


class StripeClient(ProviderClient[StripeSettings, Mapper]):
    """One Stripe account's API. Settings read: ``stripe_version``, ``stripe_account``
    (StripeSettings), ``days_until_due``, ``timezone`` (see the mapper)."""

    settings_model = StripeSettings
    mapper_type = Mapper
    # Seconds since the epoch: the "observed" stamp of a read and the Events horizon.
    clock: Callable[[], float] = staticmethod(time.time)

    def api_headers(self) -> Mapping[str, str]:
        return self.options.headers()

    # --- ApiClient ------------------------------------------------------------------------

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        observed = self._observed()
        return self._record(entity_type, await self._get_object(entity_type, external_id), observed)

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity_type, data = write.entity_type, write.data
        params = _present(write.body)
        if entity_type == "customer":
            obj = await self._post("/v1/customers", params, key=idempotency_key)
        elif entity_type == "payment":
            params["expand"] = ["latest_charge"]
            obj = await self._post("/v1/payment_intents", params, key=idempotency_key)
        elif entity_type == "invoice":
            return await self._create_invoice(data, params, idempotency_key)
        else:
            raise _unsupported(entity_type, "create")
        return self._record(entity_type, obj, self._observed())

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        entity_type, data = write.entity_type, write.data
        params = write.body
        if entity_type == "customer":
            obj = await self._post(f"/v1/customers/{external_id}", params)
            return self._record(entity_type, obj, self._observed())
        if entity_type == "payment":
            return await self._update_payment(external_id, params)
        if entity_type == "invoice":
            return await self._update_invoice(external_id, data, params)
        raise _unsupported(entity_type, "update")

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        if entity_type == "customer":
            await self._call("DELETE", f"/v1/customers/{external_id}")
            return
        if entity_type == "invoice":
            invoice = await self._get(f"/v1/invoices/{external_id}")
            status = invoice.get("status")
            if status == "draft":
                await self._call("DELETE", f"/v1/invoices/{external_id}")
            elif status in ("open", "uncollectible"):
                await self._post(f"/v1/invoices/{external_id}/void", {})
            elif status == "paid":
                # Stripe's rule about the invoice as it stands, not an operation it lacks.
                raise ProviderRuleError(
                    f"Stripe invoice {external_id} is paid: Stripe cannot delete or void it"
                )
            return
        raise _unsupported(entity_type, "delete")

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        if entity_type not in _PATHS:
            raise _unsupported(entity_type, "list")
        horizon = datetime.fromtimestamp(self.clock(), UTC) - EVENT_RETENTION
        if modified_since is not None and modified_since > horizon:
            return await self._changes_page(entity_type, cursor, modified_since)
        return await self._objects_page(entity_type, cursor)

    # --- pages ------------------------------------------------------------------------------

    async def _changes_page(
        self, entity_type: EntityType, cursor: str | None, since: datetime
    ) -> Page:
        """One page of the account's Events for ``entity_type`` since ``since``: the only
        "modified since" Stripe has, deletes included. Newest first at Stripe; each record
        appears once (its newest state) and the page is returned oldest first."""
        params: dict[str, Any] = {
            "types": list(EVENT_TYPES_BY_ENTITY[entity_type]),
            "created": {"gte": math.floor(since.timestamp())},
            "limit": PAGE_SIZE,
        }
        if cursor:
            params["starting_after"] = cursor
        body = await self._get("/v1/events", params)
        events = _list_data(body, "/v1/events")
        newest: dict[str, RemoteRecord] = {}
        for event in events:
            item = event_item(event, self.settings)
            if item is None or item.entity_type != entity_type or item.external_id in newest:
                continue
            at = item.occurred_at
            assert at is not None  # noqa: S101 - every Stripe event carries "created"
            newest[item.external_id] = item.record or RemoteRecord(
                entity_type, item.external_id, at, {}, deleted=True
            )
        records = sorted(newest.values(), key=lambda r: r.updated_at)
        return Page(tuple(records), _next_cursor(body, events))

    async def _objects_page(self, entity_type: EntityType, cursor: str | None) -> Page:
        """One page of every live object, newest first (Stripe lists by ``created`` only)."""
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if cursor:
            params["starting_after"] = cursor
        if entity_type == "payment":
            params["expand"] = ["data.latest_charge"]
        observed = self._observed()
        body = await self._get(_PATHS[entity_type], params)
        objects = _list_data(body, _PATHS[entity_type])
        records = []
        for listed in objects:
            obj = await self._complete_lines(listed) if entity_type == "invoice" else listed
            records.append(self._record(entity_type, obj, observed))
        return Page(tuple(records), _next_cursor(body, objects))

    # --- invoices ---------------------------------------------------------------------------

    async def _create_invoice(
        self, data: Mapping[str, Any], params: dict[str, Any], key: str
    ) -> RemoteRecord:
        lines = params.pop("lines", [])
        taxes = params.pop("line_taxes", [])
        params |= {"collection_method": "send_invoice", "auto_advance": False}
        if "due_date" not in params:
            params["days_until_due"] = int(
                self.settings.get("days_until_due") or DEFAULT_DAYS_UNTIL_DUE
            )
        invoice = await self._post("/v1/invoices", params, key=key)
        invoice_id = str(invoice["id"])
        try:
            items = await self._add_items(invoice_id, invoice.get("customer"), lines, key)
            await self._set_taxes(invoice_id, items, taxes)
            target = data.get("status")
            if target is not None:
                await self._advance(invoice_id, "draft", str(target), key)
            return _checked_total(await self.fetch("invoice", invoice_id), data)
        except DeadLetter as exc:
            # The invoice exists: the caller links it, so the next try updates this one
            # (Stripe replays an idempotency key for 24 hours only).
            exc.written = exc.written or invoice_id
            raise

    async def _update_invoice(
        self, invoice_id: str, data: Mapping[str, Any], params: dict[str, Any]
    ) -> RemoteRecord:
        current = await self._get_object("invoice", invoice_id)
        status = str(current.get("status"))
        lines = params.pop("lines", None)
        taxes = params.pop("line_taxes", [])
        # An invoice's customer and currency are fixed at creation: Stripe's update takes
        # neither parameter ("Received unknown parameter: currency").
        params.pop("customer", None)
        params.pop("currency", None)
        if status == "draft":
            have = self._record("invoice", current, self._observed()).data.get("currency")
            if "currency" in data and not _same("currency", data["currency"], have):
                raise ProviderRuleError(
                    f"Stripe invoice {invoice_id} is in {have}: its currency is fixed at creation"
                )
            if params:
                await self._post(f"/v1/invoices/{invoice_id}", params)
            if lines is not None and _line_keys(data.get("lines")) != _line_keys(
                self._record("invoice", current, self._observed()).data.get("lines")
            ):
                items = await self._replace_items(invoice_id, current, lines)
                await self._set_taxes(invoice_id, items, taxes)
        else:
            now = self._record("invoice", current, self._observed()).data
            fixed = [f for f in _DRAFT_ONLY if f in data and not _same(f, data[f], now.get(f))]
            if fixed:
                # Stripe: a finalized invoice's lines, number, currency and dates are fixed
                # ("You can only update ... on draft invoices"). Nothing is sent.
                raise ProviderRuleError(
                    f"Stripe invoice {invoice_id} is {status}: its {', '.join(fixed)} can"
                    " change only while it is a draft"
                )
        target = data.get("status")
        if target is not None:
            await self._advance(invoice_id, status, str(target), None)
        return _checked_total(await self.fetch("invoice", invoice_id), data)

    async def _add_items(
        self, invoice_id: str, customer: Any, lines: list[dict[str, Any]], key: str | None
    ) -> list[tuple[str, int]]:
        """Add one invoice item per line; their ids and amounts, in order."""
        items = []
        for index, line in enumerate(lines):
            params = {"customer": customer, "invoice": invoice_id, **_present(line)}
            item_key = f"{key}:item:{index}" if key else None
            item = await self._post("/v1/invoiceitems", params, key=item_key)
            items.append((str(item["id"]), int(item["amount"])))
        return items

    async def _set_taxes(
        self, invoice_id: str, items: list[tuple[str, int]], taxes: list[int]
    ) -> None:
        """Set each taxed line's tax on its invoice line (Stripe's manual tax amounts):
        invoice items take only tax rates, which would compute (and round) tax anew."""
        if not any(taxes):
            return
        invoice = await self._complete_lines(await self._get(f"/v1/invoices/{invoice_id}"))
        line_of = {
            ln.get("invoice_item"): ln.get("id") for ln in invoice.get("lines", {}).get("data", [])
        }
        for (item_id, amount), tax in zip(items, taxes, strict=True):
            if tax:
                path = f"/v1/invoices/{invoice_id}/lines/{line_of[item_id]}"
                await self._post(path, line_tax_params(tax, amount))

    async def _replace_items(
        self, invoice_id: str, current: Mapping[str, Any], lines: list[dict[str, Any]]
    ) -> list[tuple[str, int]]:
        for line in current.get("lines", {}).get("data", []):
            item = line.get("invoice_item")
            if isinstance(item, str):
                await self._call("DELETE", f"/v1/invoiceitems/{item}")
            else:
                raise UnsupportedOperationError(
                    f"Stripe invoice {invoice_id} has a {line.get('type')} line, which only "
                    "its subscription can change",
                    request=f"POST /v1/invoices/{invoice_id}",
                )
        return await self._add_items(invoice_id, current.get("customer"), lines, None)

    async def _advance(self, invoice_id: str, status: str, target: str, key: str | None) -> None:
        """Move an invoice from Stripe ``status`` to canonical ``target`` through Stripe's
        own transitions (finalize, pay out of band, void)."""
        target = "open" if target == "overdue" else target
        path = f"/v1/invoices/{invoice_id}"
        while _CANONICAL_STATUS.get(status) != target:
            if status == "draft" and target in ("open", "paid", "void"):
                step, params = "finalize", {"auto_advance": False}
            elif status in ("open", "uncollectible") and target == "paid":
                step, params = "pay", {"paid_out_of_band": True}
            elif status in ("open", "uncollectible") and target == "void":
                step, params = "void", {}
            else:
                # Finalized never returns to draft; paid and void are final.
                raise ProviderRuleError(
                    f"Stripe invoice {invoice_id} is {status}: Stripe cannot move it to {target}"
                )
            invoice = await self._post(
                f"{path}/{step}", params, key=f"{key}:{step}" if key else None
            )
            status = str(invoice.get("status"))

    async def _complete_lines(self, invoice: dict[str, Any]) -> dict[str, Any]:
        """The invoice with every line: Stripe embeds only the first page of them."""
        lines = invoice.get("lines")
        if not isinstance(lines, Mapping) or lines.get("has_more") is not True:
            return invoice
        path = f"/v1/invoices/{invoice['id']}/lines"
        collected: list[Any] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": PAGE_SIZE}
            if cursor:
                params["starting_after"] = cursor
            body = await self._get(path, params)
            page = _list_data(body, path)
            collected.extend(page)
            cursor = _next_cursor(body, page)
            if cursor is None:
                break
        return {**invoice, "lines": {**lines, "data": collected, "has_more": False}}

    # --- payments ---------------------------------------------------------------------------

    async def _update_payment(self, intent_id: str, params: dict[str, Any]) -> RemoteRecord:
        """Only what differs is sent: Stripe refuses amount changes once an intent has
        succeeded or been canceled, even to the same value."""
        current = await self._get(f"/v1/payment_intents/{intent_id}")
        changed = {k: v for k, v in params.items() if not _same_param(k, v, current.get(k))}
        if current.get("status") in ("succeeded", "canceled"):
            fixed = sorted(k for k in changed if k in ("amount", "currency"))
            if fixed:
                raise ProviderRuleError(
                    f"Stripe payment {intent_id} is {current.get('status')}: "
                    f"its {', '.join(fixed)} cannot change"
                )
        changed["expand"] = ["latest_charge"]
        obj = await self._post(f"/v1/payment_intents/{intent_id}", changed)
        return self._record("payment", obj, self._observed())

    # --- plumbing ---------------------------------------------------------------------------

    async def _get_object(self, entity_type: EntityType, external_id: str) -> dict[str, Any]:
        if entity_type == "customer":
            obj = await self._get(f"/v1/customers/{external_id}")
            if obj.get("deleted") is True:
                raise NotFoundError(
                    f"Stripe customer {external_id} is deleted",
                    status=404,
                    request=f"GET /v1/customers/{external_id}",
                )
            return obj
        if entity_type == "invoice":
            return await self._complete_lines(await self._get(f"/v1/invoices/{external_id}"))
        if entity_type == "payment":
            if external_id.startswith("ch_"):  # a payment made without a PaymentIntent
                return await self._get(f"/v1/charges/{external_id}")
            return await self._get(
                f"/v1/payment_intents/{external_id}", {"expand": ["latest_charge"]}
            )
        raise _unsupported(entity_type, "fetch")

    def _record(
        self, entity_type: EntityType, obj: Mapping[str, Any], observed: datetime
    ) -> RemoteRecord:
        stamp = max(object_time(entity_type, obj), observed)
        return apply_inbound(
            entity_type, obj, record_for(entity_type, obj, stamp, self.settings), self.settings
        )

    def _observed(self) -> datetime:
        """Just before the current whole second: what a read now is at least as fresh as."""
        second = datetime.fromtimestamp(math.floor(self.clock()), UTC)
        return second - timedelta(milliseconds=1)

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return await self._call("GET", path, query=params)

    async def _post(
        self, path: str, params: Mapping[str, Any], *, key: str | None = None
    ) -> dict[str, Any]:
        return await self._call("POST", path, form=params, key=key)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        form: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        key: str | None = None,
    ) -> dict[str, Any]:
        body = await self.api.call(
            method,
            path,
            data=encode_form(form) if form is not None else None,
            params=encode_form(query) if query else None,
            headers={"Idempotency-Key": key} if key is not None else None,
        )
        if not isinstance(body, dict):
            raise ProviderError(
                f"{method} {path} answered without a JSON object", status=200, request=path
            )
        return body


make_client = StripeClient.make


def _present(params: Mapping[str, Any]) -> dict[str, Any]:
    """Create parameters without the unset ones (nothing to clear on a new object)."""
    return {k: v for k, v in params.items() if v is not None}


def _list_data(body: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    data = body.get("data")
    if body.get("object") != "list" or not isinstance(data, list):
        raise MappingError("schema_violation", f"{path}: expected a list object with data")
    return [d for d in data if isinstance(d, dict)]


def _next_cursor(body: Mapping[str, Any], data: list[dict[str, Any]]) -> str | None:
    if body.get("has_more") is True and data:
        return str(data[-1]["id"])
    return None


def _checked_total(record: RemoteRecord, data: Mapping[str, Any]) -> RemoteRecord:
    """Stripe's total after the push must be ours: a difference in money is never silent."""
    wanted, got = data.get("total"), record.data.get("total")
    if wanted is not None and got is not None and wanted != got:
        raise UnsupportedOperationError(
            f"Stripe invoice {record.external_id} totals {got} ({record.data.get('subtotal')} "
            f"+ tax {record.data.get('tax')}); ours is {wanted} ({data.get('subtotal')} + tax "
            f"{data.get('tax')})",
            request=f"POST /v1/invoices/{record.external_id}",
        )
    return record


def _line_keys(lines: Any) -> list[tuple[Any, Decimal, Any, int]] | None:
    if lines is None:
        return None
    return [
        (
            ln.get("description"),
            Decimal(str(ln["quantity"])),
            ln["unit_amount"],
            int(ln.get("tax_amount") or 0),
        )
        for ln in lines
    ]


def _same(field: str, wanted: Any, current: Any) -> bool:
    if field == "lines":
        return _line_keys(wanted) == _line_keys(current)
    if field == "currency" and isinstance(wanted, str) and isinstance(current, str):
        return wanted.upper() == current.upper()
    return bool(wanted == current)


def _same_param(name: str, wanted: Any, current: Any) -> bool:
    if name == "metadata" and isinstance(wanted, Mapping) and isinstance(current, Mapping):
        return all(current.get(k) == v for k, v in wanted.items())
    if name == "customer" and isinstance(current, Mapping):
        current = current.get("id")
    return bool(wanted == current)


def _unsupported(entity_type: str, operation: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(f"Stripe has no {entity_type} records to {operation}")
