"""MYOB Business API (AccountRight v2) as an ApiClient, for one company file.

Every call goes to the company file's URI (``{base}/{company file id}/...``) with the
developer key (``x-myobapi-key``) and the API version (``x-myobapi-version: v2``) beside
the OAuth2 bearer token. Lists are OData: ``$top``/``$skip`` pages ordered by
``LastModified``, made incremental with ``$filter=LastModified gt datetime'...'``.

Updates are ``PUT`` of the whole record with the ``RowVersion`` it was read at (MYOB
answers 409 when the record changed since): the client reads the record, lays the
changed fields over it and writes it back; on a 409 it reads again and tries once more,
then raises StaleVersionError. ``returnBody=true`` makes POST and PUT answer with the
record as stored (else MYOB answers 201 with only a Location header).

MYOB's gateway answers an exceeded rate limit with 403, not 429 (its "API key has
exceeded the per second / daily rate limit"): that answer is a RateLimitedError, which
the caller waits out like a 429, never an authorisation failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from connectors.apiclient import ProviderClient, Write, retry_once_if_stale, unchanged
from connectors.http import (
    AuthError,
    ProviderError,
    RateLimitedError,
    UnsupportedOperationError,
    page_number,
)
from connectors.myob.mapping import MAIN_ADDRESS, Mapper, MyobOptions, myob_time
from connectors.spec import EntityType, Page, RemoteRecord
from schemas.errors import ProviderRuleError

API_VERSION = "v2"
RESOURCES: dict[EntityType, str] = {
    "customer": "/Contact/Customer",
    "invoice": "/Sale/Invoice/Item",
    "payment": "/Sale/CustomerPayment",
}
# MYOB's published limits are per second and per day; what a 403 over either says.
RATE_LIMIT_WORDS = ("rate limit", "over qps", "over rate")
# How long to wait after each: the per-second window passes in a second; the daily one
# is the API key's for the rest of MYOB's day (when that day turns is not published, so
# the caller looks again in 15 minutes rather than hammering a spent key).
PER_SECOND_PAUSE_SECONDS = 1.0
DAILY_PAUSE_SECONDS = 900.0
RETURN_BODY = {"returnBody": "true"}


def _rate_limited(exc: AuthError) -> RateLimitedError | None:
    said = f"{exc.provider_message} {exc.body_excerpt}".lower()
    if exc.status != 403 or not any(words in said for words in RATE_LIMIT_WORDS):
        return None
    pause = DAILY_PAUSE_SECONDS if "daily" in said or "over rate" in said else None
    return RateLimitedError(
        str(exc),
        status=exc.status,
        retry_after=exc.retry_after or pause or PER_SECOND_PAUSE_SECONDS,
        body_excerpt=exc.body_excerpt,
        request=exc.request,
        provider_message=exc.provider_message,
    )


class MyobClient(ProviderClient[MyobOptions, Mapper]):
    """connectors.spec.ApiClient over the MYOB Business API for one company file."""

    settings_model = MyobOptions
    mapper_type = Mapper

    def api_root(self, base_url: str) -> str:
        # The company file URI: {base}/{company file id} (GET {base}/ lists the files).
        return f"{base_url}/{self.options.myob_company_file_id}"

    def api_headers(self) -> Mapping[str, str]:
        headers = {"x-myobapi-version": API_VERSION}
        if self.options.myob_api_key:
            headers["x-myobapi-key"] = self.options.myob_api_key
        return headers

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await self.api.call(method, path, **kwargs)
        except AuthError as exc:
            limited = _rate_limited(exc)
            if limited is not None:
                raise limited from None
            raise

    def _object(self, body: Any, request: str) -> Mapping[str, Any]:
        if not isinstance(body, Mapping):
            raise ProviderError(f"{request} answered without a record", status=200, request=request)
        return body

    async def _raw(self, entity_type: EntityType, uid: str) -> Mapping[str, Any]:
        path = f"{RESOURCES[entity_type]}/{uid}"
        return self._object(await self._call("GET", path), f"GET {path}")

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        return self.record(entity_type, await self._raw(entity_type, external_id))

    # --- writes -------------------------------------------------------------------------------

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        # MYOB takes no idempotency key: a create retried after a lost answer can make a
        # second record (README, assumptions); the outbound's link after the first success
        # is what keeps a push from creating twice.
        path = RESOURCES[write.entity_type]
        body = write.body
        if (
            write.entity_type == "payment"
            and "Customer" not in body
            and write.refs.get("invoice_id")
        ):
            # MYOB requires a CustomerPayment's Customer; a canonical payment names its
            # invoice alone: the customer is the invoice's, as MYOB holds it.
            invoice = await self._raw("invoice", write.refs["invoice_id"])
            customer = invoice.get("Customer")
            if isinstance(customer, Mapping) and customer.get("UID"):
                body = {**body, "Customer": {"UID": customer["UID"]}}
        try:
            answer = await self._call("POST", path, json_body=body, params=RETURN_BODY)
        except ProviderError as exc:
            if exc.status == 400 and "AmountAppliedExceedsBalance" in str(exc):
                # MYOB's own rule: the invoice is paid already, or would be overpaid.
                raise ProviderRuleError(
                    f"MYOB invoice {write.refs.get('invoice_id')}: a payment cannot exceed its"
                    " balance due (AmountAppliedExceedsBalance)"
                ) from None
            raise
        return self.record(write.entity_type, self._object(answer, f"POST {path}"))

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        if write.entity_type == "payment":
            return await self._update_payment(external_id, write.data)
        written = await self._put_fresh(write, external_id)
        if write.entity_type == "invoice" and write.data.get("status") == "void":
            # MYOB has no void sale invoice (a mistaken one is deleted or reversed there):
            # the rest of the change is written, the voiding is the operator's to do.
            raise ProviderRuleError(
                f"MYOB invoice {external_id}: MYOB has no void invoices; delete or reverse "
                "it in MYOB",
                written=written,
            )
        return written

    async def _put_fresh(self, write: Write, external_id: str) -> RemoteRecord:
        expected = write.expected_version
        return await retry_once_if_stale(
            lambda: self._put(write.entity_type, external_id, write.body, expected),
            lambda exc: exc.status == 409,
            f"MYOB {write.entity_type} {external_id}",
            again=expected is None,
        )

    async def _put(
        self,
        entity_type: EntityType,
        uid: str,
        changes: Mapping[str, Any],
        expected: str | None = None,
    ) -> RemoteRecord:
        """Read the record, lay ``changes`` over it, write it back at its RowVersion;
        ``expected``: the RowVersion the caller read, written at (a newer one there is
        a 409, as MYOB would answer)."""
        current = dict(await self._raw(entity_type, uid))
        merged = merge_record(current, changes)
        if expected is not None:
            merged["RowVersion"] = expected
        path = f"{RESOURCES[entity_type]}/{uid}"
        answer = await self._call("PUT", path, json_body=merged, params=RETURN_BODY)
        return self.record(entity_type, self._object(answer, f"PUT {path}"))

    async def _update_payment(self, uid: str, data: Mapping[str, Any]) -> RemoteRecord:
        current = await self.fetch("payment", uid)
        # Sale/CustomerPayment has GET, POST and DELETE only: what MYOB holds of a payment
        # cannot change (delete it and record it again).
        return unchanged(
            current,
            (k for k in ("amount", "reference") if k in data and data[k] != current.data.get(k)),
            lambda fields: (
                f"MYOB payment {uid}: a customer payment cannot be edited "
                f"({fields}); delete it and record it again"
            ),
        )

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        if entity_type == "customer":
            # A card with transactions cannot be deleted; an inactive card is how MYOB
            # retires one (and how the mapper reads it back: deleted).
            await self._put("customer", external_id, {"IsActive": False})
            return
        if entity_type not in RESOURCES:
            raise UnsupportedOperationError(f"MYOB has no {entity_type} records here")
        try:
            await self._call("DELETE", f"{RESOURCES[entity_type]}/{external_id}")
        except ProviderError as exc:
            if (
                entity_type == "invoice"
                and exc.status == 400
                and "TransactionHasPayments" in str(exc)
            ):
                # MYOB's own rule: an invoice with payments applied stays until they are
                # deleted (README, "RowVersion, limits, errors"). Retrying cannot help.
                raise ProviderRuleError(
                    f"MYOB invoice {external_id}: {exc.provider_message or exc}"
                ) from None
            raise

    # --- pages --------------------------------------------------------------------------------

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        path = RESOURCES.get(entity_type)
        if path is None:
            raise UnsupportedOperationError(f"MYOB has no {entity_type} records here")
        skip = page_number(cursor, "a MYOB page cursor", first=0)
        size = self.options.myob_page_size
        params = {"$top": str(size), "$skip": str(skip), "$orderby": "LastModified"}
        if modified_since is not None:
            # Whole seconds, rounded down by strftime, and ``ge``: a record changed in the
            # boundary second is read again rather than missed.
            params["$filter"] = f"LastModified ge datetime'{myob_time(modified_since)}'"
        body = await self._call("GET", path, params=params)
        items = body.get("Items") if isinstance(body, Mapping) else None
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise ProviderError(f"GET {path} answered without Items", status=200, request=path)
        records = tuple(self.record(entity_type, item) for item in items)
        more = bool(body.get("NextPageLink")) and len(items) > 0
        return Page(records=records, next_cursor=str(skip + len(items)) if more else None)


def merge_record(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The whole record MYOB's PUT wants: ``current`` (its UID and RowVersion kept) with
    ``changes`` laid over it; the main address's fields are merged, the other addresses
    kept, so a change of email leaves the street as it was."""
    merged = {
        **current,
        **changes,
        "UID": current.get("UID"),
        "RowVersion": current.get("RowVersion"),
    }
    if "Addresses" in changes:
        given: list[Mapping[str, Any]] = list(changes["Addresses"])
        new = next((a for a in given if a.get("Location") == MAIN_ADDRESS), {})
        old: list[Mapping[str, Any]] = [
            a for a in current.get("Addresses") or [] if isinstance(a, Mapping)
        ]
        main = next((a for a in old if a.get("Location") == MAIN_ADDRESS), {})
        others = [a for a in old if a.get("Location") != MAIN_ADDRESS]
        merged["Addresses"] = [{**main, **new}, *others]
    return merged


# connectors.spec.ApiSpec.make_client for MYOB.
make_client = MyobClient.make
