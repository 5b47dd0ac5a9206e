"""PayPal's REST API (``https://api-m.paypal.com``): Invoicing v2 and Payments v2.

Access tokens come from the client-credentials grant (``POST /v1/oauth2/token`` with the
app's client id and secret; connectors.runtime, ``auth_kind="client_credentials"``).
Creates carry ``PayPal-Request-Id``, PayPal's idempotency key (a repeated id replays the
first answer), and ``Prefer: return=representation`` so the created invoice comes back
whole.

PayPal has no customer API and no list of captures: customers are invoice recipients,
listed from the invoices; payments are listed as the invoices' transactions (captures
read one by one, recorded payments from the invoice). README: assumptions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.apiclient import ProviderClient, Write, refused_or, unchanged
from connectors.http import (
    NotFoundError,
    ProviderError,
    UnsupportedOperationError,
    page_number,
)
from connectors.paypal.mapping import (
    Mapper,
    customer_id,
    payment_body,
    paypal_time,
    recipient_of,
    recipients,
    recorded_id,
    split_recorded,
)
from connectors.paypal.mapping import invoice_updated as _updated
from connectors.spec import ClientSettings, EntityType, MappingError, Page, RemoteRecord
from schemas.errors import ProviderRuleError

INVOICES = "/v2/invoicing/invoices"
CAPTURES = "/v2/payments/captures"
# Invoicing v2's largest page_size.
PAGE_SIZE = 100
# States in which PayPal still takes a full update of an invoice.
EDITABLE = frozenset({"DRAFT", "SCHEDULED", "SENT", "UNPAID"})
CANCELABLE = frozenset({"SENT", "UNPAID", "SCHEDULED", "PARTIALLY_PAID"})
# What the client adds to (or strips from) a body before sending it.
_CONTROL = ("send", "cancel")
# The 422 issues of recording a payment that are PayPal's rules, not a bad request: over
# the amount due, and an invoice in a state that takes none (paid, cancelled, draft).
_PAYMENT_REFUSALS = ("INVALID_PAYMENT_AMOUNT", "INVALID_INVOICE_STATUS")


class PayPalClient(ProviderClient[ClientSettings, Mapper]):
    """connectors.spec.ApiClient over one PayPal merchant account; reads no settings."""

    mapper_type = Mapper

    # ProviderClient's arguments as they are (as Xero's client takes them): this client
    # adds only its own state.
    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock
        # Captures named by an invoice's transactions, as invoices are read.
        self._invoice_of_capture: dict[str, str] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    # --- reads ------------------------------------------------------------------------------

    async def _invoice(self, invoice_id: str) -> dict[str, Any]:
        invoice = await self.api.call("GET", f"{INVOICES}/{invoice_id}")
        if not isinstance(invoice, dict):
            raise ProviderError(f"GET {INVOICES}/{invoice_id} answered no invoice", status=200)
        self._note_captures(invoice)
        return invoice

    def _note_captures(self, invoice: Mapping[str, Any]) -> None:
        for transaction in _transactions(invoice):
            if transaction.get("type") == "PAYPAL" and isinstance(
                transaction.get("payment_id"), str
            ):
                self._invoice_of_capture[transaction["payment_id"]] = str(invoice.get("id"))

    async def _capture(self, capture_id: str) -> dict[str, Any]:
        capture = await self.api.call("GET", f"{CAPTURES}/{capture_id}")
        if not isinstance(capture, dict):
            raise ProviderError(f"GET {CAPTURES}/{capture_id} answered no capture", status=200)
        invoice_id = self._invoice_of_capture.get(capture_id)
        return {**capture, "paypal_invoice_id": invoice_id} if invoice_id else capture

    async def _invoice_page(self, page: int) -> tuple[list[dict[str, Any]], bool]:
        params = {"page": str(page), "page_size": str(PAGE_SIZE), "total_required": "true"}
        body = await self.api.call("GET", INVOICES, params=params)
        items = body.get("items", []) if isinstance(body, Mapping) else None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ProviderError(f"GET {INVOICES} answered without items", status=200)
        for invoice in items:
            self._note_captures(invoice)
        pages = body.get("total_pages") if isinstance(body, Mapping) else None
        more = page < pages if isinstance(pages, int) else len(items) >= PAGE_SIZE
        return items, more

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        if entity_type == "invoice":
            return self.mapper.to_canonical(
                "invoice", await self._invoice(external_id), self.settings
            )
        if entity_type == "payment":
            recorded = split_recorded(external_id)
            if recorded is None:
                capture = await self._capture(external_id)
                return self.mapper.to_canonical("payment", capture, self.settings)
            invoice = await self._invoice(recorded[0])
            return self._recorded(invoice, recorded[1])
        if entity_type == "customer":
            return await self._recipient(external_id)
        raise _unsupported(entity_type, "fetch")

    def _recorded(self, invoice: Mapping[str, Any], payment_id: str) -> RemoteRecord:
        for transaction in _transactions(invoice):
            if transaction.get("payment_id") == payment_id:
                obj = {
                    "invoice_id": invoice["id"],
                    "update_time": _updated(invoice),
                    "transaction": transaction,
                }
                return self.mapper.to_canonical("payment", obj, self.settings)
        raise NotFoundError(
            f"PayPal invoice {invoice.get('id')} has no payment {payment_id}",
            status=404,
            request=f"GET {INVOICES}/{invoice.get('id')}",
        )

    async def _recipient(self, email: str) -> RemoteRecord:
        """The newest billing info an invoice gives ``email`` (search by recipient)."""
        body = await self.api.call(
            "POST",
            "/v2/invoicing/search-invoices",
            params={"page": "1", "page_size": str(PAGE_SIZE)},
            json_body={"recipient_email": email},
        )
        items = body.get("items", []) if isinstance(body, Mapping) else []
        found = [
            i
            for i in items
            if isinstance(i, dict) and (r := recipient_of(i)) and customer_id(r) == email
        ]
        if not found:
            raise NotFoundError(
                f"no PayPal invoice is addressed to {email}",
                status=404,
                request="POST /v2/invoicing/search-invoices",
            )
        newest = max(found, key=_updated)
        return self._customer_record(newest)

    def _customer_record(self, invoice: Mapping[str, Any]) -> RemoteRecord:
        recipient = recipient_of(invoice)
        assert recipient is not None  # noqa: S101 - callers chose invoices with one
        return self.mapper.to_canonical(
            "customer", {**recipient, "update_time": _updated(invoice)}, self.settings
        )

    # --- writes -----------------------------------------------------------------------------

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity_type, body = write.entity_type, write.body
        if entity_type == "customer":
            # PayPal keeps no customers: one is written as the recipient of its invoices.
            return self._local_customer(body)
        if entity_type == "invoice":
            invoice = {k: v for k, v in body.items() if k not in _CONTROL}
            created = await self.api.call(
                "POST",
                INVOICES,
                json_body=invoice,
                headers={"PayPal-Request-Id": idempotency_key, "Prefer": "return=representation"},
            )
            if not isinstance(created, dict) or not isinstance(created.get("id"), str):
                raise ProviderError(
                    f"POST {INVOICES} answered no invoice", status=201, request=f"POST {INVOICES}"
                )
            # A replayed create answers the invoice as it was first made: whether it is
            # still a draft to send is read afresh.
            if body.get("send") and (await self._invoice(created["id"])).get("status") == "DRAFT":
                await self._send(created["id"], f"{idempotency_key}:send")
            return await self.fetch("invoice", created["id"])
        if entity_type == "payment":
            invoice_id = body.pop("invoice_id")
            path = f"{INVOICES}/{invoice_id}/payments"
            try:
                answer = await self.api.call(
                    "POST", path, json_body=body, headers={"PayPal-Request-Id": idempotency_key}
                )
            except ProviderError as exc:
                refused = exc.status == 422 and any(i in str(exc) for i in _PAYMENT_REFUSALS)
                if not refused:
                    raise
                # PayPal's own rules: the invoice owes less (it is paid already, or would
                # be overpaid), or is paid or cancelled. PayPal's words name which.
                raise ProviderRuleError(
                    f"PayPal invoice {invoice_id} takes no such payment: {exc}"
                ) from None
            payment_id = answer.get("payment_id") if isinstance(answer, Mapping) else None
            if not isinstance(payment_id, str):
                raise ProviderError(
                    f"POST {path} answered no payment_id", status=200, request=f"POST {path}"
                )
            return await self.fetch("payment", recorded_id(invoice_id, payment_id))
        raise _unsupported(entity_type, "create")

    def _local_customer(self, body: Mapping[str, Any]) -> RemoteRecord:
        email = customer_id(body)
        if email is None:
            raise MappingError(
                "schema_violation",
                "email: PayPal knows a customer only as an invoice recipient, by e-mail",
            )
        return self.mapper.to_canonical(
            "customer", {**body, "update_time": paypal_time(self._now())}, self.settings
        )

    async def _send(self, invoice_id: str, key: str) -> None:
        await self.api.call(
            "POST",
            f"{INVOICES}/{invoice_id}/send",
            json_body={"send_to_invoicer": False, "send_to_recipient": False},
            headers={"PayPal-Request-Id": key},
        )

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        entity_type = write.entity_type
        if entity_type == "payment":
            return await self._update_payment(external_id, write.data)
        if entity_type == "customer":
            body = write.body
            if customer_id(body) not in (None, external_id):
                raise ProviderRuleError(
                    f"PayPal customer {external_id}: its e-mail is its identity at PayPal "
                    "(invoices address it); a changed e-mail is a new recipient"
                )
            return self._local_customer({**body, "email_address": external_id})
        if entity_type == "invoice":
            return await self._update_invoice(external_id, write)
        raise _unsupported(entity_type, "update")

    async def _update_payment(self, external_id: str, data: Mapping[str, Any]) -> RemoteRecord:
        """Neither a capture nor a recorded payment can be edited at PayPal: a change to
        what PayPal holds of it is refused; one to what it does not hold (the customer,
        a time finer than its date) is no change here."""
        current = await self.fetch("payment", external_id)
        invoice = {"invoice_id": current.refs.get("invoice_id", "")}
        wanted = payment_body({**current.data, **data}, invoice)
        held = payment_body(current.data, invoice)
        return unchanged(
            current,
            (k for k in wanted if wanted.get(k) != held.get(k)),
            lambda fields: (
                f"PayPal payment {external_id}: a payment cannot be edited, only "
                f"deleted and recorded again ({fields})"
            ),
        )

    async def _update_invoice(self, invoice_id: str, write: Write) -> RemoteRecord:
        current = await self._invoice(invoice_id)
        status = str(current.get("status"))
        body = write.body
        refused: list[str] = []
        changes = {k: v for k, v in body.items() if k not in _CONTROL}
        # Only a change is written: a derived edit (amount due, a status PayPal reaches by
        # its payments) sent as a full replace raced a payment recorded meanwhile.
        changed = self._changed(current, write)
        if changed and status in EDITABLE:
            merged = {
                **current,
                **changes,
                "detail": {**current.get("detail", {}), **changes.get("detail", {})},
            }
            for read_only in ("amount", "due_amount", "payments", "refunds", "links", "status"):
                merged.pop(read_only, None)
            try:
                await self.api.call(
                    "PUT",
                    f"{INVOICES}/{invoice_id}",
                    json_body=merged,
                    params={"send_to_recipient": "false"},
                )
            except ProviderError as exc:
                if exc.status != 422 or "INVALID_INVOICE_STATUS" not in str(exc):
                    raise
                # Paid (in part) or cancelled between our read and our write: the edit
                # was planned on the state read, and PayPal's rule now refuses it.
                status = str((await self._invoice(invoice_id)).get("status"))
                refused.append(f"a {status} invoice cannot be edited ({', '.join(changed)})")
        elif changed:
            refused.append(f"a {status} invoice cannot be edited ({', '.join(changed)})")
        if body.get("send") and status == "DRAFT":
            await self._send(invoice_id, f"{invoice_id}:send")
        elif body.get("cancel") and status in CANCELABLE:
            await self.api.call(
                "POST", f"{INVOICES}/{invoice_id}/cancel", json_body={"send_to_recipient": False}
            )
        elif body.get("cancel") and status == "DRAFT":
            refused.append("a draft invoice is deleted, not cancelled")
        elif body.get("send") is False and not body.get("cancel") and status != "DRAFT":
            refused.append(f"a {status} invoice cannot return to draft")
        return refused_or(
            await self.fetch("invoice", invoice_id), f"PayPal invoice {invoice_id}", refused
        )

    def _changed(self, current: Mapping[str, Any], write: Write) -> list[str]:
        """The fields of PayPal's invoice ``write`` would change, compared as the mapping
        writes both. The canonical write is the whole record: what PayPal computes or
        answers in a shape of its own (totals, amount due, items with their tax amounts,
        the recipient's billing info) is not a change, and neither is a status PayPal
        already holds or reaches by the payments recorded on it (paid: MARKED_AS_PAID)."""
        held = self.mapper.to_canonical("invoice", current, self.settings)
        wanted = self.mapper.from_canonical(
            "invoice", {**held.data, **write.data}, {**held.refs, **write.refs}, self.settings
        )
        have = self.mapper.from_canonical("invoice", held.data, held.refs, self.settings)
        changed = []
        for key in sorted(set(wanted) | set(have)):
            if key in _CONTROL:
                continue
            mine, theirs = wanted.get(key), have.get(key)
            if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
                changed += [
                    f"{key}.{k}"
                    for k in sorted(set(mine) | set(theirs))
                    if mine.get(k) != theirs.get(k)
                ]
            elif mine != theirs:
                changed.append(key)
        return changed

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        if entity_type == "invoice":
            status = (await self._invoice(external_id)).get("status")
            if status in ("DRAFT", "SCHEDULED"):
                await self.api.call("DELETE", f"{INVOICES}/{external_id}")
            elif status in CANCELABLE:
                await self.api.call(
                    "POST",
                    f"{INVOICES}/{external_id}/cancel",
                    json_body={"send_to_recipient": False},
                )
            elif status != "CANCELLED":
                raise UnsupportedOperationError(
                    f"PayPal cannot delete or cancel the {status} invoice {external_id}",
                    request=f"POST {INVOICES}/{external_id}/cancel",
                )
            return
        if entity_type == "payment":
            recorded = split_recorded(external_id)
            if recorded is None:
                raise UnsupportedOperationError(
                    f"PayPal cannot delete the capture {external_id}: refund it at PayPal",
                    request=f"DELETE {CAPTURES}/{external_id}",
                )
            await self.api.call("DELETE", f"{INVOICES}/{recorded[0]}/payments/{recorded[1]}")
            return
        raise _unsupported(entity_type, "delete")

    # --- pages ------------------------------------------------------------------------------

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        if entity_type not in ("customer", "invoice", "payment"):
            raise _unsupported(entity_type, "list")
        page = page_number(cursor, "a PayPal page cursor")
        invoices, more = await self._invoice_page(page)
        if modified_since is not None:
            # Invoicing v2 filters by creation and invoice dates, never by last update: the
            # page is read whole and what did not change since is left out.
            since = modified_since.astimezone(UTC)
            invoices = [i for i in invoices if _updated_at(i) >= since]
        records: list[RemoteRecord] = []
        if entity_type == "invoice":
            records = [self.mapper.to_canonical("invoice", i, self.settings) for i in invoices]
        elif entity_type == "customer":
            records = [
                self.mapper.to_canonical("customer", r, self.settings) for r in recipients(invoices)
            ]
        else:
            for invoice in invoices:
                for transaction in _transactions(invoice):
                    payment_id = transaction.get("payment_id")
                    if not isinstance(payment_id, str):
                        continue
                    if transaction.get("type") == "PAYPAL":
                        records.append(
                            self.mapper.to_canonical(
                                "payment", await self._capture(payment_id), self.settings
                            )
                        )
                    else:
                        records.append(self._recorded(invoice, payment_id))
        return Page(records=tuple(records), next_cursor=str(page + 1) if more else None)


def _transactions(invoice: Mapping[str, Any]) -> list[dict[str, Any]]:
    payments = invoice.get("payments")
    found = payments.get("transactions") if isinstance(payments, Mapping) else None
    return [t for t in found if isinstance(t, dict)] if isinstance(found, list) else []


def _updated_at(invoice: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(_updated(invoice).replace("Z", "+00:00")).astimezone(UTC)


def _unsupported(entity_type: str, operation: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(f"PayPal has no {entity_type} {operation}")


# connectors.spec.ApiSpec.make_client for PayPal.
make_client = PayPalClient.make
