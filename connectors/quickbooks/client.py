"""The QuickBooks Online Accounting API (v3) for one company (realm).

Paths are Intuit's: ``/v3/company/{realmId}/{entity}`` to create and update (POST, the
update carrying ``Id`` + ``SyncToken`` + ``"sparse": true``), ``/{entity}/{id}`` to read,
``/query`` for pages, ``?operation=delete`` to delete a transaction. Customers cannot be
deleted in QuickBooks: "delete" makes them inactive, which the mapper reads as deleted.

QuickBooks answers most failures with HTTP 400 and a ``Fault`` body; the codes that mean
something to the caller are turned into the shared error types here: 5010 (Stale Object
Error: our SyncToken is old) is StaleVersionError, 610 (Object Not Found) is NotFoundError.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Final

from pydantic import BeforeValidator, Field, StrictInt

from connectors.apiclient import ProviderClient, Write
from connectors.http import (
    NotFoundError,
    ProviderError,
    StaleVersionError,
    UnsupportedOperationError,
    page_number,
)
from connectors.quickbooks.mapping import ENTITY_NAMES, Mapper, realm_of
from connectors.spec import ClientSettings, EntityType, MappingError, Page, RemoteRecord

# Intuit retired minor versions 1-74 on 2025-08-01; 75 is the oldest one still served and
# the shape the mapper reads.
MINOR_VERSION = "75"
# The query endpoint's own cap on MAXRESULTS ("The maximum number of entities that can be
# returned in a response is 1000", Intuit's query reference).
MAX_PAGE_SIZE = 1000
# Fault codes from Intuit's error-code reference.
STALE_OBJECT: Final = "5010"
OBJECT_NOT_FOUND: Final = "610"
UNSUPPORTED_OPERATION: Final = "500"
# Namespace for turning our idempotency keys into Intuit ``requestid`` values: a UUID is
# well inside the length Intuit accepts, and the same key always gives the same one.
_REQUEST_ID_NAMESPACE = uuid.UUID("5b0c1a52-6d53-4c8e-9a55-0f4f3f7e9b1d")
_FAULT_CODE = re.compile(r'"code"\s*:\s*"?(\d+)')


def _realm_id(value: Any) -> str:
    try:
        return realm_of({"realm_id": value})
    except MappingError as exc:
        raise ValueError(exc.detail) from None


class QuickBooksSettings(ClientSettings):
    """What the client reads of a QuickBooks connection's settings."""

    # The mapper checks webhooks against the same realm (mapping.realm_of).
    realm_id: Annotated[str, BeforeValidator(_realm_id)]
    page_size: Annotated[StrictInt, Field(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE

    messages: ClassVar[dict[str, str]] = {
        "realm_id": "settings.realm_id: the connection has no realm id",
        "page_size": f"settings.page_size must be an integer in 1..{MAX_PAGE_SIZE}",
    }


class QuickBooksClient(ProviderClient[QuickBooksSettings, Mapper]):
    """ApiClient for one QuickBooks Online company; see the module docstring."""

    settings_model = QuickBooksSettings
    mapper_type = Mapper

    def api_root(self, base_url: str) -> str:
        return f"{base_url}/v3/company/{self.options.realm_id}"

    def api_params(self) -> Mapping[str, str]:
        return {"minorversion": MINOR_VERSION}

    # --- ApiClient -----------------------------------------------------------------------

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        name = _name(entity_type)
        return self.record(entity_type, await self._read(name, external_id))

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        name = _name(write.entity_type)
        write = await self._with_invoice_customer(write)
        request_id = str(uuid.uuid5(_REQUEST_ID_NAMESPACE, idempotency_key))
        stored = await self._post(name, write.body, {"requestid": request_id})
        return self.record(write.entity_type, stored)

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        name = _name(write.entity_type)
        write = await self._with_invoice_customer(write)
        body = write.body
        if write.expected_version is not None:
            # Conditional: at the SyncToken the caller read, so an edit made there since
            # is QuickBooks' 5010 (StaleVersionError), never overwritten; no read of ours.
            token = write.expected_version
            stored = await self._post(
                name, {**body, "Id": external_id, "SyncToken": token, "sparse": True}
            )
            return self.record(write.entity_type, stored)
        stored = await self._write_current(
            name,
            external_id,
            lambda token: {**body, "Id": external_id, "SyncToken": token, "sparse": True},
        )
        return self.record(write.entity_type, stored)

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        name = _name(entity_type)
        if entity_type == "customer":
            await self._write_current(
                name,
                external_id,
                lambda token: {
                    "Id": external_id,
                    "SyncToken": token,
                    "sparse": True,
                    "Active": False,
                },
            )
            return
        await self._write_current(
            name,
            external_id,
            lambda token: {"Id": external_id, "SyncToken": token},
            {"operation": "delete"},
        )

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        name = _name(entity_type)
        # STARTPOSITION is 1-based; the cursor is the next one as digits.
        start = page_number(cursor, "a QuickBooks page cursor")
        clauses = []
        if entity_type == "customer":
            # Without this the query hides inactive customers, which are our deletes.
            clauses.append("Active IN (true, false)")
        if modified_since is not None:
            # ">=": a change in the same second as the last one seen is fetched again,
            # never missed. QuickBooks keeps whole seconds.
            clauses.append(f"Metadata.LastUpdatedTime >= '{_query_time(modified_since)}'")
        where = f" where {' and '.join(clauses)}" if clauses else ""
        # Intuit's query language, not SQL; only our own names, ints and times go in.
        query = (
            f"select * from {name}{where} orderby Metadata.LastUpdatedTime"  # noqa: S608
            f" startposition {start} maxresults {self.options.page_size}"
        )
        answer = await self._call("GET", "/query", params={"query": query})
        result = answer.get("QueryResponse") if isinstance(answer, Mapping) else None
        if not isinstance(result, Mapping):
            raise ProviderError(
                "GET /query answered without a QueryResponse", status=200, request="GET /query"
            )
        rows = result.get(name) or []
        if not isinstance(rows, list):
            raise ProviderError(
                f"GET /query answered a {name} that is not a list", status=200, request="GET /query"
            )
        records = tuple(self.mapper.to_canonical(entity_type, row, self.settings) for row in rows)
        more = len(rows) >= self.options.page_size
        return Page(records=records, next_cursor=str(start + len(rows)) if more else None)

    # --- requests ------------------------------------------------------------------------

    async def _with_invoice_customer(self, write: Write) -> Write:
        """A payment's write with the customer its invoice has here. QuickBooks requires a
        Payment's CustomerRef ("Required parameter CustomerRef is missing", code 2020) and
        applies it only to that customer's invoices, while a canonical payment often names
        only its invoice (Xero's and Ascora's payments do): the invoice is read for it."""
        refs = write.refs
        if write.entity_type != "payment" or refs.get("customer_id") or not refs.get("invoice_id"):
            return write
        invoice = await self._read(ENTITY_NAMES["invoice"], refs["invoice_id"])
        customer = (invoice.get("CustomerRef") or {}).get("value")
        if not customer:
            raise ProviderError(
                "GET /invoice answered without a CustomerRef",
                status=200,
                request="GET /invoice",
            )
        return replace(write, refs={**refs, "customer_id": str(customer)}, _body=None)

    async def _read(self, name: str, external_id: str) -> dict[str, Any]:
        answer = await self._call("GET", f"/{name.lower()}/{external_id}")
        return _entity(answer, name, f"GET /{name.lower()}")

    async def _post(
        self, name: str, body: Mapping[str, Any], params: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        answer = await self._call("POST", f"/{name.lower()}", json_body=dict(body), params=params)
        return _entity(answer, name, f"POST /{name.lower()}")

    async def _write_current(
        self,
        name: str,
        external_id: str,
        body_for: Callable[[str], dict[str, Any]],
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST a write made against the record's current SyncToken.

        Someone editing the record between our read and our write makes QuickBooks answer
        5010; the write is then made once more against a fresh read, and a second 5010 is
        the caller's StaleVersionError.
        """
        for attempt in (1, 2):
            current = await self._read(name, external_id)
            token = current.get("SyncToken")
            if token is None:
                raise ProviderError(
                    f"GET /{name.lower()} answered without a SyncToken",
                    status=200,
                    request=f"GET /{name.lower()}",
                )
            try:
                return await self._post(name, body_for(str(token)), params)
            except StaleVersionError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            return await self.api.call(method, path, json_body=json_body, params=params)
        except ProviderError as exc:
            raise _classified(exc) from None


# ApiSpec.make_client: ``settings`` needs ``realm_id``; ``page_size`` is optional.
make_client = QuickBooksClient.make


def fault_codes(body: str) -> list[str]:
    """The ``Fault.Error[].code`` values of a QuickBooks error body (even a truncated one)."""
    with contextlib.suppress(ValueError, RecursionError):
        document = json.loads(body)
        errors = document.get("Fault", {}).get("Error", []) if isinstance(document, dict) else []
        if isinstance(errors, list):
            return [str(e.get("code")) for e in errors if isinstance(e, dict) and "code" in e]
    return _FAULT_CODE.findall(body)


def _classified(exc: ProviderError) -> ProviderError:
    """A 400 whose Fault code means "stale", "gone" or "cannot" as the matching error."""
    if type(exc) is not ProviderError or exc.status != 400:
        return exc
    codes = fault_codes(exc.body_excerpt)
    kind: type[ProviderError]
    if STALE_OBJECT in codes:
        kind = StaleVersionError
    elif OBJECT_NOT_FOUND in codes:
        kind = NotFoundError
    elif UNSUPPORTED_OPERATION in codes:
        kind = UnsupportedOperationError
    else:
        return exc
    return kind(
        str(exc),
        status=exc.status,
        retry_after=exc.retry_after,
        body_excerpt=exc.body_excerpt,
        request=exc.request,
        provider_message=exc.provider_message,
    )


def _name(entity_type: str) -> str:
    for known, name in ENTITY_NAMES.items():
        if known == entity_type:
            return name
    raise UnsupportedOperationError(f"QuickBooks Online has no {entity_type} entity to sync")


def _entity(answer: Any, name: str, request: str) -> dict[str, Any]:
    obj = answer.get(name) if isinstance(answer, Mapping) else None
    if not isinstance(obj, dict):
        raise ProviderError(
            f"{request} answered without a {name} object", status=200, request=request
        )
    return obj


def _query_time(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("modified_since must be timezone-aware")
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()
