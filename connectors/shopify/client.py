"""Shopify's REST Admin API (``https://{shop}.myshopify.com/admin/api/{version}``) as an
ApiClient.

Why REST and not GraphQL (README): every record we sync is one REST resource with one
URL, the webhooks deliver the REST shape of the same resources, so one mapper serves
both, and REST's leaky bucket (a request is a request) is what the connection's token
bucket already models; GraphQL's cost-based throttle would need each query's cost.

Every call carries the access token in ``X-Shopify-Access-Token`` (Shopify does not take
a bearer token). Lists page by cursor: the ``Link`` header's ``rel="next"`` URL carries
``page_info``, and a request with ``page_info`` may carry nothing but ``limit`` (Shopify
refuses any other filter beside it), so the cursor is the ``page_info`` alone.

Rate limits: Shopify meters an app per store with a leaky bucket (40 requests, leaking 2
a second on standard plans) and reports its level in ``X-Shopify-Shop-Api-Call-Limit``
(``32/40``) on every answer; over it, a 429 with ``Retry-After``. The connection's token
bucket (ApiSpec.rate_limit) paces us at the same figures; the header tells the client
what the store's bucket holds whoever else spent it (a second worker, a restart), and the
client waits out what it would overflow before its next call.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import StringConstraints
from yarl import URL

from connectors.apiclient import ProviderClient, Write, answer_list, refused_or
from connectors.http import Auth, NotFoundError, ProviderError, UnsupportedOperationError
from connectors.shopify.mapping import (
    PAYMENT_KINDS,
    UNPAID,
    Mapper,
    payment_terms,
    shopify_time,
    split_payment_id,
)
from connectors.spec import ClientSettings, EntityType, OptionalText, Page, RemoteRecord
from schemas.errors import ProviderRuleError

# The Admin API version this client and its mapper were written against (Shopify
# supports each stable version for at least twelve months).
API_VERSION = "2024-10"
# Shopify's maximum page size for customers and orders ("limit": at most 250).
PAGE_SIZE = 250
# The REST leaky bucket of a standard plan: 40 requests, 2 leak out a second (Shopify's
# "REST Admin API rate limits"; Plus stores get 400 and 20, which the header reports).
BUCKET_SIZE = 40
LEAK_PER_SECOND = 2.0
# Requests the client leaves free in the store's bucket for the merchant's other apps'
# bursts and its own concurrent calls (one connection may run several at once).
BUCKET_RESERVE = 4
CALL_LIMIT_HEADER = "x-shopify-shop-api-call-limit"
# Where a transaction we create carries our idempotency key (its `receipt`, which a
# manual transaction's gateway leaves to the creator: an assumption, README).
RECEIPT_KEY = "crmsync_idempotency_key"
_NEXT = re.compile(r'<([^>]+)>;\s*rel="?next"?')


class ShopifySettings(ClientSettings):
    """What the client reads of a Shopify connection's settings."""

    shopify_api_version: Annotated[str, StringConstraints(pattern=r"^\d{4}-\d{2}$")] | None = None
    # Which store the connection is for, for messages; the base URL is the store's.
    shopify_shop: OptionalText = None

    messages: ClassVar[dict[str, str]] = {
        "shopify_api_version": "settings['shopify_api_version'] is a Shopify API version "
        "such as 2024-10, not {value!r}",
    }


class AccessTokenAuth:
    """The connection's token (a bearer token to the runtime) as Shopify wants it."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth

    async def headers(self) -> Mapping[str, str]:
        headers = dict(await self._auth.headers())
        value = headers.pop("Authorization", "")
        scheme, _, token = value.partition(" ")
        headers["X-Shopify-Access-Token"] = token if scheme.lower() == "bearer" else value
        return headers

    async def invalidate(self) -> None:
        await self._auth.invalidate()


def call_limit(value: str | None) -> tuple[int, int] | None:
    """``X-Shopify-Shop-Api-Call-Limit`` (``"32/40"``) as (used, size); None if absent."""
    if not value:
        return None
    used, _, size = value.partition("/")
    if not (used.strip().isdigit() and size.strip().isdigit()) or int(size) <= 0:
        return None
    return int(used), int(size)


def wait_for(used: int, size: int, reserve: int = BUCKET_RESERVE) -> float:
    """Seconds to wait before the next call so the store's bucket keeps ``reserve`` free."""
    over = used - (size - reserve) + 1
    return max(0.0, over / LEAK_PER_SECOND)


def next_page_info(link: str | None) -> str | None:
    """The ``page_info`` of the ``Link`` header's ``rel="next"`` URL; None on the last page."""
    if not link:
        return None
    for part in link.split(","):
        match = _NEXT.search(part)
        if match:
            return URL(match.group(1)).query.get("page_info")
    return None


class ShopifyClient(ProviderClient[ShopifySettings, Mapper]):
    """connectors.spec.ApiClient over one Shopify store."""

    settings_model = ShopifySettings
    mapper_type = Mapper

    # ProviderClient's arguments as they are (as Xero's client takes them): this client
    # adds only its own state.
    def __init__(
        self, *args: Any, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._sleep = sleep
        # The store's bucket as its last answer reported it: (used, size).
        self.bucket: tuple[int, int] | None = None
        # Seconds waited for the store's bucket in all (tests and metrics read it).
        self.waited = 0.0

    def api_auth(self, auth: Auth) -> Auth:
        return AccessTokenAuth(auth)

    def api_root(self, base_url: str) -> str:
        version = self.options.shopify_api_version or API_VERSION
        return f"{base_url}/admin/api/{version}"

    # --- one call ---------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        headers_out: dict[str, str] | None = None,
    ) -> Any:
        if self.bucket is not None:
            pause = wait_for(*self.bucket)
            if pause > 0:
                self.waited += pause
                await self._sleep(pause)
                # What leaked meanwhile; the next answer says the rest.
                used, size = self.bucket
                self.bucket = (max(0, used - int(pause * LEAK_PER_SECOND)), size)
        seen: dict[str, str] = {} if headers_out is None else headers_out
        try:
            return await self.api.call(
                method, path, json_body=json_body, params=params, response_headers=seen
            )
        finally:
            reported = call_limit(seen.get(CALL_LIMIT_HEADER))
            if reported is not None:
                self.bucket = reported

    async def _member(self, method: str, path: str, key: str, **kwargs: Any) -> dict[str, Any]:
        body = await self._call(method, path, **kwargs)
        value = body.get(key) if isinstance(body, Mapping) else None
        if not isinstance(value, dict):
            request = f"{method} {path}"
            raise ProviderError(f"{request} answered without {key!r}", status=200, request=request)
        return value

    # --- reads ------------------------------------------------------------------------------

    async def _transaction(self, external_id: str) -> dict[str, Any]:
        ids = split_payment_id(external_id)
        if ids is None:
            raise NotFoundError(
                f"{external_id!r} is not a Shopify payment id (<order id>:<transaction id>)"
            )
        order_id, transaction_id = ids
        return await self._member(
            "GET", f"/orders/{order_id}/transactions/{transaction_id}.json", "transaction"
        )

    async def _order(self, order_id: str) -> dict[str, Any]:
        return await self._member("GET", f"/orders/{order_id}.json", "order")

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        if entity_type == "customer":
            obj = await self._member("GET", f"/customers/{external_id}.json", "customer")
        elif entity_type == "invoice":
            obj = await self._order(external_id)
        elif entity_type == "payment":
            obj = await self._transaction(external_id)
        else:
            raise _unsupported(entity_type, "fetch")
        return self.record(entity_type, obj)

    # --- writes -----------------------------------------------------------------------------

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity_type = write.entity_type
        if entity_type == "customer":
            customer = await self._member(
                "POST", "/customers.json", "customer", json_body={"customer": write.body}
            )
            return self.record("customer", customer)
        if entity_type == "invoice":
            return await self._create_order(write, idempotency_key)
        if entity_type == "payment":
            return await self._create_transaction(write, idempotency_key)
        raise _unsupported(entity_type, "create")

    async def _create_order(self, write: Write, key: str) -> RemoteRecord:
        status = write.data.get("status")
        if status == "draft":
            # The Orders API has no draft: a draft invoice is created once it is issued.
            raise ProviderRuleError(
                "Shopify: a draft invoice is not an order yet (the Orders API has no "
                "drafts); it is created once it is open"
            )
        body = write.body
        # Shopify's REST Orders API takes no idempotency key: the key rides on the order
        # as its source_identifier, and a retried create finds the order it made by name.
        existing = await self._order_made_with(key, body["order"].get("name"))
        if existing is not None:
            return self.record("invoice", existing)
        order = {
            **body["order"],
            "financial_status": "pending",
            "taxes_included": False,
            "source_name": "crmsync",
            "source_identifier": key,
        }
        created = await self._member("POST", "/orders.json", "order", json_body={"order": order})
        if status == "void":
            created = await self._cancel(created)
        return self.record("invoice", created)

    async def _order_made_with(self, key: str, name: object) -> dict[str, Any] | None:
        if not isinstance(name, str) or not name:
            return None
        body = await self._call(
            "GET", "/orders.json", params={"name": name, "status": "any", "limit": "10"}
        )
        for order in answer_list(body, "orders"):
            if order.get("source_identifier") == key:
                return order
        return None

    async def _cancel(self, order: Mapping[str, Any]) -> dict[str, Any]:
        path = f"/orders/{order['id']}/cancel.json"
        return await self._member("POST", path, "order", json_body={})

    async def _create_transaction(self, write: Write, key: str) -> RemoteRecord:
        body = write.body
        order_id = body.get("order_id")
        if not isinstance(order_id, str):
            raise ProviderRuleError("Shopify: a payment is a transaction of an order; none named")
        # REST transactions take no idempotency key either: the key rides in the
        # transaction's receipt, and a create first looks for the transaction it made (a
        # retry after Shopify recorded the payment and its answer was lost would pay the
        # order twice, within its balance). Looked for before the balance is checked: the
        # payment it made may be what settled the order.
        for made in await self._transactions(order_id):
            receipt = made.get("receipt")
            if isinstance(receipt, Mapping) and receipt.get(RECEIPT_KEY) == key:
                return self.record("payment", made)
        order = await self._order(order_id)
        if order.get("cancelled_at"):
            raise ProviderRuleError(f"Shopify order {order_id} is cancelled: it takes no payment")
        owed, amount = order.get("total_outstanding"), body["transaction"].get("amount")
        if owed is not None and amount is not None and Decimal(str(amount)) > Decimal(str(owed)):
            # Shopify's own rule (it answers 422, "exceeds the order's outstanding balance"):
            # the order is paid already, or would be overpaid.
            raise ProviderRuleError(
                f"Shopify order {order_id} owes {owed}: a payment of {amount} exceeds its"
                " outstanding balance"
            )
        transaction = await self._member(
            "POST",
            f"/orders/{order_id}/transactions.json",
            "transaction",
            json_body={"transaction": {**body["transaction"], "receipt": {RECEIPT_KEY: key}}},
        )
        return self.record("payment", transaction)

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        entity_type = write.entity_type
        if entity_type == "customer":
            return await self._update_customer(write, external_id)
        if entity_type == "invoice":
            return await self._update_order(write, external_id)
        if entity_type == "payment":
            return await self._update_transaction(write, external_id)
        raise _unsupported(entity_type, "update")

    async def _update_customer(self, write: Write, customer_id: str) -> RemoteRecord:
        body = dict(write.body)
        if "addresses" in body:
            current = await self._member("GET", f"/customers/{customer_id}.json", "customer")
            default = current.get("default_address")
            if isinstance(default, Mapping) and default.get("id") is not None:
                # With the default address's id Shopify edits it; without, it adds one.
                body["addresses"] = [{**body["addresses"][0], "id": default["id"]}]
        customer = await self._member(
            "PUT",
            f"/customers/{customer_id}.json",
            "customer",
            json_body={"customer": {"id": int(customer_id), **body}},
        )
        return self.record("customer", customer)

    async def _update_order(self, write: Write, order_id: str) -> RemoteRecord:
        order = await self._order(order_id)
        current = self.record("invoice", order)
        refused: list[str] = []
        data = write.data
        for field in ("lines", "currency", "number"):
            if field in data and _differs(current.data.get(field), data[field]):
                # Orders' items, currency and name are fixed once placed (REST: "You can't
                # change the items or the quantities in an order").
                refused.append(f"an order's {field} cannot change once placed")
        if "customer_id" in write.refs and write.refs["customer_id"] != current.refs.get(
            "customer_id"
        ):
            refused.append("an order's customer cannot change once placed")
        wanted = data.get("status")
        have = current.data.get("status")
        if wanted == "void" and have != "void":
            if order.get("financial_status") in UNPAID:
                order = await self._cancel(order)
            else:
                refused.append(
                    f"a {order.get('financial_status')} order is not cancelled from here "
                    "(money was taken: refund it in Shopify)"
                )
        elif wanted == "draft":
            refused.append("an order cannot return to draft")
        elif wanted in ("open", "overdue") and have == "void":
            refused.append("a cancelled order cannot reopen")
        if "due_on" in data and data["due_on"] != current.data.get("due_on"):
            order = await self._member(
                "PUT",
                f"/orders/{order_id}.json",
                "order",
                json_body={
                    "order": {"id": int(order_id), "payment_terms": payment_terms(data["due_on"])}
                },
            )
        # ``paid`` is not written: Shopify marks an order paid when its transactions
        # cover it (a payment pushed here is such a transaction).
        return refused_or(self.record("invoice", order), f"Shopify order {order_id}", refused)

    async def _update_transaction(self, write: Write, external_id: str) -> RemoteRecord:
        current = self.record("payment", await self._transaction(external_id))
        changed = sorted(
            key
            for key in ("amount", "currency", "reference")
            if key in write.data and write.data[key] != current.data.get(key)
        )
        if changed:
            raise ProviderRuleError(
                f"Shopify transaction {external_id}: transactions are created, never edited "
                f"({', '.join(changed)})",
                written=current,
            )
        return current

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        if entity_type == "customer":
            try:
                await self._call("DELETE", f"/customers/{external_id}.json")
            except ProviderError as exc:
                if exc.status == 422:
                    # "Error deleting customer: customer has orders" and the like.
                    raise ProviderRuleError(
                        f"Shopify customer {external_id}: {exc.provider_message or exc}"
                    ) from None
                raise
            return
        if entity_type == "invoice":
            order = await self._order(external_id)
            financial = order.get("financial_status")
            if financial not in UNPAID and financial != "voided":
                raise ProviderRuleError(
                    f"Shopify order {external_id} is {financial}: an order that took money "
                    "is not deleted"
                )
            await self._call("DELETE", f"/orders/{external_id}.json")
            return
        raise _unsupported(entity_type, "delete")

    # --- pages ------------------------------------------------------------------------------

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        if entity_type == "customer":
            path, key = "/customers.json", "customers"
        elif entity_type in ("invoice", "payment"):
            path, key = "/orders.json", "orders"
        else:
            raise _unsupported(entity_type, "list")
        params = {"limit": str(PAGE_SIZE)}
        if cursor:
            # With page_info Shopify takes only limit (and fields): the filters the first
            # page had are inside the cursor.
            params["page_info"] = cursor
        else:
            if key == "orders":
                params["status"] = "any"
            if modified_since is not None:
                params["updated_at_min"] = shopify_time(modified_since)
        headers: dict[str, str] = {}
        body = await self._call("GET", path, params=params, headers_out=headers)
        objects = answer_list(body, key)
        if entity_type == "payment":
            records = []
            for order in objects:
                for transaction in await self._transactions(str(order.get("id"))):
                    records.append(self.record("payment", transaction))
            return Page(tuple(records), next_page_info(headers.get("link")))
        return Page(
            tuple(self.record(entity_type, o) for o in objects),
            next_page_info(headers.get("link")),
        )

    async def _transactions(self, order_id: str) -> list[dict[str, Any]]:
        body = await self._call("GET", f"/orders/{order_id}/transactions.json")
        return [t for t in answer_list(body, "transactions") if t.get("kind") in PAYMENT_KINDS]


def _differs(have: Any, want: Any) -> bool:
    if isinstance(have, list | tuple) and isinstance(want, list | tuple):
        if len(have) != len(want):
            return True
        return any(_line_key(a) != _line_key(b) for a, b in zip(have, want, strict=True))
    return bool(have != want)


def _line_key(line: Any) -> tuple[Any, ...]:
    if not isinstance(line, Mapping):
        return (line,)
    return (
        line.get("description") or "Item",
        str(line.get("quantity", "1")).split(".")[0],
        line.get("unit_amount"),
        line.get("tax_amount") or 0,
    )


def _unsupported(entity_type: str, operation: str) -> UnsupportedOperationError:
    return UnsupportedOperationError(f"Shopify has no {entity_type} {operation}")


# connectors.spec.ApiSpec.make_client for Shopify.
make_client = ShopifyClient.make


__all__ = ["API_VERSION", "NotFoundError", "ShopifyClient", "make_client"]
