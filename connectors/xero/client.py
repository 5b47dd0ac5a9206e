"""Xero Accounting API client: contacts, sales invoices and payments for one tenant.

Every call names the organisation in the ``xero-tenant-id`` header (one OAuth2 token can
reach several organisations). Creates are ``PUT`` and updates ``POST`` to the resource, both
wrapped as ``{"Contacts": [...]}``; lists are paged with ``page``/``pageSize`` and made
incremental with ``If-Modified-Since``. Xero deletes nothing outright: contacts are
archived, invoices voided (or deleted while still drafts), payments set to DELETED.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from pydantic import Field, StringConstraints

from connectors.apiclient import ProviderClient, Write
from connectors.http import ProviderError, UnsupportedOperationError, page_number
from connectors.money import decimal_of
from connectors.spec import ClientSettings, EntityType, Page, RemoteRecord
from connectors.xero.lifecycle import PAYMENT_ALLOCATED, plan_update
from connectors.xero.mapping import Mapper
from schemas.errors import ProviderRuleError

API_PATH = "/api.xro/2.0"
# Xero's documented page size for paged Contacts, Invoices and Payments requests; the
# ``pageSize`` parameter takes up to 1000.
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000

# Resource collection and id field per entity type, as Xero names them.
RESOURCES: dict[EntityType, tuple[str, str]] = {
    "customer": ("Contacts", "ContactID"),
    "invoice": ("Invoices", "InvoiceID"),
    "payment": ("Payments", "PaymentID"),
}
# Only receivables sync: bills (ACCPAY) and supplier payments stay out of every list.
LIST_FILTERS: dict[EntityType, Mapping[str, str]] = {
    "customer": {"includeArchived": "true"},
    "invoice": {"where": 'Type=="ACCREC"'},
    "payment": {"where": 'PaymentType=="ACCRECPAYMENT"'},
}
# How long an invoice read by ``fetch`` stands for the read its update needs anyway (the
# lifecycle plan's): outbound's look reads the invoice right before updating it (issue 17),
# milliseconds apart, and a second GET would spend 1 of Xero's 60 calls a minute for
# nothing. Older than this, the update reads again. A read is used once.
LOOK_REUSE_SECONDS = 2.0
# Invoice states Xero deletes (never approved) versus voids (approved, so on the books).
DELETABLE_INVOICE_STATES = frozenset({"DRAFT", "SUBMITTED"})
VOIDABLE_INVOICE_STATES = frozenset({"AUTHORISED"})
FINAL_INVOICE_STATES = frozenset({"DELETED", "VOIDED"})
# Xero's refusals of a payment by its rules, in its ValidationErrors' words: the invoice is
# not approved (a draft, or already paid or voided), or owes less than the payment. The
# request is right; the invoice as it stands at Xero cannot take it (provider_rule).
PAYMENT_REFUSALS = (
    "Payments can only be made against Authorised documents",
    "Payment amount exceeds the amount outstanding on this document",
)


class XeroSettings(ClientSettings):
    """What the client reads of a Xero connection's settings."""

    xero_tenant_id: Annotated[str, StringConstraints(min_length=1)]
    xero_page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE

    messages: ClassVar[dict[str, str]] = {
        "xero_tenant_id": "a Xero connection needs settings['xero_tenant_id']",
        "xero_page_size": f"xero_page_size must be 1..{MAX_PAGE_SIZE}, not {{value}}",
    }


class XeroClient(ProviderClient[XeroSettings, Mapper]):
    """connectors.spec.ApiClient over the Xero Accounting API for one tenant."""

    settings_model = XeroSettings
    mapper_type = Mapper
    api_path = API_PATH
    clock: Callable[[], float] = staticmethod(time.monotonic)
    # Invoices ``fetch`` read, by id: (when, the raw invoice); see LOOK_REUSE_SECONDS.
    _looked: dict[str, tuple[float, Mapping[str, Any]]]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._looked = {}

    def api_headers(self) -> Mapping[str, str]:
        # Every call names the organisation: one token can reach several.
        return {"xero-tenant-id": self.options.xero_tenant_id}

    def _objects(self, body: Any, collection: str, request: str) -> list[Mapping[str, Any]]:
        objects = body.get(collection) if isinstance(body, Mapping) else None
        if not isinstance(objects, list) or not all(isinstance(o, Mapping) for o in objects):
            raise ProviderError(
                f"{request} answered without a {collection} array", status=200, request=request
            )
        return objects

    def _only(self, body: Any, collection: str, request: str) -> Mapping[str, Any]:
        objects = self._objects(body, collection, request)
        if len(objects) != 1:
            raise ProviderError(
                f"{request} answered {len(objects)} {collection}, expected 1",
                status=200,
                request=request,
            )
        return objects[0]

    async def _raw(self, entity_type: EntityType, external_id: str) -> Mapping[str, Any]:
        collection, _ = RESOURCES[entity_type]
        path = f"/{collection}/{external_id}"
        body = await self.api.call("GET", path)
        return self._only(body, collection, f"GET {API_PATH}{path}")

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        raw = await self._raw(entity_type, external_id)
        if entity_type == "invoice":
            now = self.clock()
            self._looked = {
                k: v for k, v in self._looked.items() if now - v[0] <= LOOK_REUSE_SECONDS
            }
            self._looked[external_id] = (now, raw)
        return self.mapper.to_canonical(entity_type, raw, self.settings)

    async def _invoice_for_update(self, external_id: str) -> Mapping[str, Any]:
        """The invoice as Xero holds it, to plan an update on: the one ``fetch`` read for
        this update a moment ago (outbound's look), else read now."""
        looked = self._looked.pop(external_id, None)
        if looked is not None and self.clock() - looked[0] <= LOOK_REUSE_SECONDS:
            return looked[1]
        return await self._raw("invoice", external_id)

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity_type = write.entity_type
        collection, _ = RESOURCES[entity_type]
        try:
            answer = await self.api.call(
                "PUT",
                f"/{collection}",
                json_body={collection: [write.body]},
                # Xero keeps an Idempotency-Key for a while and replays the first answer.
                headers={"Idempotency-Key": idempotency_key},
            )
        except ProviderError as exc:
            said = exc.provider_message.lower()
            if entity_type == "payment" and any(r.lower() in said for r in PAYMENT_REFUSALS):
                invoice = write.refs.get("invoice_id", "?")
                raise ProviderRuleError(
                    f"Xero invoice {invoice} takes no such payment: {exc.provider_message}"
                ) from None
            raise
        stored = self._only(answer, collection, f"PUT {API_PATH}/{collection}")
        return self.mapper.to_canonical(entity_type, stored, self.settings)

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        entity_type = write.entity_type
        collection, id_field = RESOURCES[entity_type]
        path = f"/{collection}/{external_id}"
        if entity_type == "payment":
            # Xero's Payments endpoint allows no edits; only a delete (Status DELETED).
            raise UnsupportedOperationError(
                "Xero payments cannot be edited, only deleted and re-created",
                request=f"POST {API_PATH}{path}",
            )
        if entity_type == "invoice":
            return await self._update_invoice(external_id, write.data, write.refs)
        body = write.body
        body[id_field] = external_id
        answer = await self.api.call("POST", path, json_body={collection: [body]})
        stored = self._only(answer, collection, f"POST {API_PATH}{path}")
        return self.mapper.to_canonical(entity_type, stored, self.settings)

    async def _update_invoice(
        self, external_id: str, data: Mapping[str, Any], refs: Mapping[str, str]
    ) -> RemoteRecord:
        """Only what the invoice in its current state can still take (lifecycle.py): the
        changed fields, a status move Xero allows. What it would refuse raises
        ProviderRuleError (after the rest was written), never a request Xero refuses."""
        raw = await self._invoice_for_update(external_id)
        current = self.mapper.to_canonical("invoice", raw, self.settings)
        paid = decimal_of(raw.get("AmountPaid") or 0, "AmountPaid")
        plan = plan_update(str(raw.get("Status")), paid, current, data, refs)
        written: RemoteRecord | None = None
        if plan.writes:
            path = f"/Invoices/{external_id}"
            body: dict[str, Any] = {"Type": "ACCREC"}
            if plan.send is not None:
                contact = {k: v for k, v in refs.items() if k == "customer_id"}
                body = self.mapper.from_canonical("invoice", plan.send, contact, self.settings)
            body.pop("Status", None)
            if plan.status is not None:
                body["Status"] = plan.status
            body["InvoiceID"] = external_id
            answer = await self._post_invoice(
                path, body, f"Xero invoice {external_id}: {PAYMENT_ALLOCATED}"
            )
            stored = self._only(answer, "Invoices", f"POST {API_PATH}{path}")
            written = self.mapper.to_canonical("invoice", stored, self.settings)
        if plan.refused:
            raise ProviderRuleError(
                f"Xero invoice {external_id}: " + "; ".join(plan.refused), written=written
            )
        return written or current

    async def _post_invoice(self, path: str, body: Mapping[str, Any], refusal: str) -> Any:
        """POST one invoice change. The state it was planned on was read a moment before: a
        payment allocated there meanwhile (our own push of it, or Xero's user) makes Xero
        refuse any change, which is its rule about the invoice as it now stands (parked
        once as ``refusal``), not a request to retry."""
        try:
            return await self.api.call("POST", path, json_body={"Invoices": [body]})
        except ProviderError as exc:
            if exc.status == 400 and PAYMENT_ALLOCATED in exc.provider_message:
                raise ProviderRuleError(refusal) from None
            raise

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        collection, id_field = RESOURCES[entity_type]
        path = f"/{collection}/{external_id}"
        if entity_type == "customer":
            change = {id_field: external_id, "ContactStatus": "ARCHIVED"}
            await self.api.call("POST", path, json_body={collection: [change]})
        elif entity_type == "invoice":
            status = (await self._raw("invoice", external_id)).get("Status")
            if status in FINAL_INVOICE_STATES:
                return
            if status in DELETABLE_INVOICE_STATES:
                target = "DELETED"
            elif status in VOIDABLE_INVOICE_STATES:
                target = "VOIDED"
            else:
                # Xero's rule about the invoice as it stands, not an operation it lacks.
                raise ProviderRuleError(
                    f"Xero invoice {external_id}: Xero cannot void a {status} invoice:"
                    " remove its payments first"
                )
            change = {id_field: external_id, "Status": target}
            await self._post_invoice(
                path,
                change,
                f"Xero invoice {external_id}: a payment was allocated as it was voided; Xero"
                " cannot void a paid invoice: remove its payments first",
            )
        else:
            await self.api.call("POST", path, json_body={"Status": "DELETED"})

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        collection, _ = RESOURCES[entity_type]
        page = page_number(cursor, "a Xero page cursor")
        params = {
            "page": str(page),
            "pageSize": str(self.options.xero_page_size),
            "order": "UpdatedDateUTC ASC",
            **LIST_FILTERS[entity_type],
        }
        headers = {}
        if modified_since is not None:
            # Xero reads a zone-less UTC time; whole seconds, rounded down, so a boundary
            # record is fetched again rather than missed.
            since = modified_since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
            headers["If-Modified-Since"] = since
        body = await self.api.call("GET", f"/{collection}", params=params, headers=headers)
        objects = self._objects(body, collection, f"GET {API_PATH}/{collection}")
        records = tuple(
            self.mapper.to_canonical(entity_type, obj, self.settings) for obj in objects
        )
        more = len(objects) >= self.options.xero_page_size
        pagination = body.get("pagination") if isinstance(body, Mapping) else None
        if isinstance(pagination, Mapping) and isinstance(pagination.get("pageCount"), int):
            more = page < pagination["pageCount"]
        return Page(records=records, next_cursor=str(page + 1) if more else None)


# connectors.spec.ApiSpec.make_client for Xero.
make_client = XeroClient.make
