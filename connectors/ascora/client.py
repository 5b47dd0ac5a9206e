"""Ascora's REST API (the shape assumed in connectors/ascora/README.md) as an ApiClient.

Every call carries the connection's bearer token and its ``X-Company-Code`` (Ascora
instances can hold several companies; the code says which one a call is about). Retries,
rate limiting and circuit breaking belong to the caller, as connectors.spec says.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar
from urllib.parse import quote

from pydantic import Field, StrictInt, StringConstraints

from connectors.apiclient import ProviderClient, Write
from connectors.ascora.mapping import Mapper
from connectors.http import ProviderError, UnsupportedOperationError, page_number
from connectors.spec import ClientSettings, EntityType, MappingError, Page, RemoteRecord
from schemas.errors import ProviderRuleError

# The path every Ascora instance serves its API under (PROVIDERS.md: {instance}/api/v1).
API_PREFIX = "/api/v1"
COMPANY_HEADER = "X-Company-Code"
# Sent on creates so a retried POST after a lost response does not create twice.
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Collection path of each entity type.
COLLECTIONS: dict[EntityType, str] = {
    "customer": "customers",
    "job": "jobs",
    "invoice": "invoices",
    "payment": "payments",
}
# Invoice fields the assumed API takes on create only (README: update invoice).
INVOICE_CREATE_ONLY = ("customerId", "currency")
# The largest page the assumed API serves; fewer round trips for a full poll.
MAX_PAGE_SIZE = 100
# 405 rather than no status: ProviderError counts a missing status as a network error,
# which is transient, and an operation Ascora does not have never becomes possible.
UNSUPPORTED_STATUS = 405
# Ascora's refusals of a payment by its rules (README, "Payment"), by error code: a Draft
# or Void invoice takes no payments, and none beyond its balance due. The request is
# right; the invoice as it stands cannot take it (provider_rule).
PAYMENT_REFUSALS = ("invoice_not_payable", "overpayment")


class AscoraSettings(ClientSettings):
    """What the client reads of an Ascora connection's settings."""

    company_code: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
    page_size: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE

    messages: ClassVar[dict[str, str]] = {
        "company_code": "an Ascora connection needs settings['company_code']",
        "page_size": f"settings['page_size'] must be an integer in 1..{MAX_PAGE_SIZE}",
    }


class AscoraClient(ProviderClient[AscoraSettings, Mapper]):
    """One Ascora connection (instance URL, token, company code)."""

    settings_model = AscoraSettings
    mapper_type = Mapper
    api_path = API_PREFIX

    def api_headers(self) -> Mapping[str, str]:
        return {COMPANY_HEADER: self.options.company_code}

    # --- ApiClient ---------------------------------------------------------------------------

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        return self.record(entity_type, await self.api.call("GET", _item(entity_type, external_id)))

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity_type, body = write.entity_type, write.body
        path = f"/{COLLECTIONS[entity_type]}"
        if entity_type == "payment":
            # Ascora records a payment against its invoice; there is no bare payment create.
            invoice_id = body.pop("invoiceId", None)
            if not invoice_id:
                raise MappingError(
                    "schema_violation", "refs.invoice_id: a payment is recorded against an invoice"
                )
            body.pop("customerId", None)  # the invoice's customer, set by Ascora
            path = f"{_item('invoice', invoice_id)}/payments"
        try:
            obj = await self.api.call(
                "POST", path, json_body=body, headers={IDEMPOTENCY_HEADER: idempotency_key}
            )
        except ProviderError as exc:
            if entity_type == "payment" and any(
                f"(code {code})" in exc.provider_message for code in PAYMENT_REFUSALS
            ):
                raise ProviderRuleError(
                    f"Ascora invoice {write.refs.get('invoice_id', '?')}: {exc.provider_message}"
                ) from None
            raise
        return self.record(entity_type, obj)

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        entity_type = write.entity_type
        if entity_type == "payment":
            raise UnsupportedOperationError(
                "Ascora payments cannot be edited: delete and record again",
                status=UNSUPPORTED_STATUS,
                request=f"PATCH {_item(entity_type, external_id)}",
            )
        body = write.body
        if entity_type == "invoice":
            # Set once, on create: whose invoice it is and its currency. The pusher sends
            # the whole record, so a PATCH carrying them would be refused (400).
            for field in INVOICE_CREATE_ONLY:
                body.pop(field, None)
        status = body.pop("status", None) if entity_type == "job" else None
        obj: Any = None
        if body:
            try:
                obj = await self.api.call("PATCH", _item(entity_type, external_id), json_body=body)
            except ProviderError as exc:
                if entity_type == "invoice" and "(code invoice_void)" in exc.provider_message:
                    # A void invoice is final at Ascora (README, "Invoice lifecycle").
                    raise ProviderRuleError(
                        f"Ascora invoice {external_id}: {exc.provider_message}"
                    ) from None
                raise
        if status is not None:
            # A job's status moves only through its own endpoint (it drives Ascora's
            # scheduling board), never through the job PATCH.
            obj = await self.api.call(
                "PATCH", f"{_item('job', external_id)}/status", json_body={"status": status}
            )
        if obj is None:  # nothing to change: no write, so no echo webhook either
            obj = await self.api.call("GET", _item(entity_type, external_id))
        return self.record(entity_type, obj)

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        if entity_type == "invoice":
            # Issued invoices are voided, never deleted (the number stays used).
            try:
                await self.api.call(
                    "PATCH", _item("invoice", external_id), json_body={"status": "Void"}
                )
            except ProviderError as exc:
                if "(code invoice_has_payments)" in exc.provider_message:
                    raise ProviderRuleError(
                        f"Ascora invoice {external_id}: {exc.provider_message}"
                    ) from None
                raise
            return
        await self.api.call("DELETE", _item(entity_type, external_id))

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        """Oldest change first. The cursor is the next page number: Ascora pages by number
        and sorts by lastModified, so a record changed mid-walk moves to the end and is
        seen again there rather than lost (the next poll's modifiedSince picks it up)."""
        page = page_number(cursor, "an Ascora page cursor")
        params = {"page": str(page), "pageSize": str(self.options.page_size)}
        if modified_since is not None:
            params["modifiedSince"] = _iso(modified_since)
        body = await self.api.call("GET", f"/{COLLECTIONS[entity_type]}", params=params)
        items = body.get("items") if isinstance(body, dict) else None
        total_pages = body.get("totalPages") if isinstance(body, dict) else None
        if not isinstance(items, list) or not isinstance(total_pages, int):
            raise MappingError("schema_violation", "list body: expected items and totalPages")
        records = tuple(self.record(entity_type, item) for item in items)
        next_cursor = str(page + 1) if page < total_pages else None
        return Page(records=records, next_cursor=next_cursor)

    # --- Ascora operations beyond the sync contract ------------------------------------------

    async def set_job_status(self, external_id: str, status: str) -> RemoteRecord:
        """Move a job to a canonical ``status`` ("in_progress", ...) through Ascora's status
        endpoint."""
        body = self.mapper.from_canonical("job", {"status": status}, {}, self.settings)
        obj = await self.api.call("PATCH", f"{_item('job', external_id)}/status", json_body=body)
        return self.record("job", obj)

    async def add_job_note(self, external_id: str, text: str) -> dict[str, Any]:
        """Add a note to a job; the note as Ascora stored it (noteId, text, createdAt)."""
        note = await self.api.call(
            "POST", f"{_item('job', external_id)}/notes", json_body={"text": text}
        )
        if not isinstance(note, dict):
            raise MappingError("schema_violation", "note: expected an object")
        return note


def _item(entity_type: EntityType, external_id: str) -> str:
    return f"/{COLLECTIONS[entity_type]}/{_segment(external_id)}"


def _segment(external_id: str) -> str:
    """An id as one percent-encoded path segment: no id may reach another path."""
    if external_id in {"", ".", ".."}:
        raise ValueError(f"{external_id!r} is not an Ascora id")
    return quote(external_id, safe="-_.~")


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("modified_since must be timezone-aware")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ApiSpec.make_client: ``base_url`` is the instance root (https://acme.ascora.com).
make_client = AscoraClient.make
