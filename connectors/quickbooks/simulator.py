"""A QuickBooks Online company, for tests and the demo: the v3 endpoints the client uses.

What it reproduces, because the connector depends on it:

- ``/v3/company/{realmId}/...`` paths, JSON bodies wrapped as ``{"Customer": {...},
  "time": ...}``, numeric ids per entity, SyncToken bumped on every change, timestamps
  with the company's UTC offset (Pacific, like Intuit's examples).
- Errors as HTTP 400 + ``Fault``: 5010 for a stale SyncToken, 610 for an unknown or
  deleted id, 6240 for a duplicate customer DisplayName, 2020 for a missing required
  field, 4000 for a query it cannot parse, 500 for deleting a customer.
- ``select * from <Entity> [where ...] [orderby ...] [startposition n] [maxresults m]``
  with Intuit's defaults: 1-based positions, at most 1000 rows, inactive customers hidden
  unless the query asks for ``Active IN (true, false)``.
- Sparse and full updates, ``?operation=delete``, invoice ``?operation=void`` (amounts
  zeroed, "Voided" prepended to PrivateNote), payments applied to invoices lowering their
  Balance, ``requestid`` idempotency on creates.
- Thin webhooks in either format (``webhook_format="classic"`` or ``"cloudevents"``), one
  POST per change, signed with ``intuit-signature`` = base64 HMAC-SHA256 of the body keyed
  with the verifier token.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Final, Literal

from aiohttp import web

from connectors.money import decimal_of, exponent
from connectors.quickbooks.mapping import ENTITY_NAMES, VOID_MARK
from connectors.quickbooks.values import json_number, parse_timestamp
from connectors.simkit import Change, Simulator, json_object, utcnow
from connectors.spec import EntityType, MappingError

WebhookFormat = Literal["classic", "cloudevents"]

# A sandbox-looking company id (Intuit realm ids are 15-19 digit numbers).
DEFAULT_REALM = "9341453908059321"
# Intuit's examples carry Pacific offsets; a fixed one keeps the simulator deterministic
# while still making every client convert to UTC.
COMPANY_OFFSET = timezone(timedelta(hours=-8))
# Intuit's query reference: MAXRESULTS is capped at 1000; STARTPOSITION counts from 1.
MAX_RESULTS = 1000
# QuickBooks numbers invoices from 1001 when custom transaction numbers are off.
FIRST_DOC_NUMBER = 1001
# Namespace for CloudEvent ids: stable for a change, so a redelivery has the same id.
_EVENT_NAMESPACE = uuid.UUID("0d9c7a8e-3f7e-4f55-b5a5-6a3c2c1b8e11")

_CURRENCY_NAMES: Final[dict[str, str]] = {
    "USD": "United States Dollar",
    "CAD": "Canadian Dollar",
    "GBP": "British Pound Sterling",
    "EUR": "Euro",
    "AUD": "Australian Dollar",
    "JPY": "Japanese Yen",
}
_OPERATION_NAMES: Final[dict[str, str]] = {
    "create": "Create",
    "update": "Update",
    "delete": "Delete",
    "void": "Void",
}
_CLOUD_ACTIONS: Final[dict[str, str]] = {
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "void": "voided",
}
_WRITABLE: Final[dict[str, frozenset[str]]] = {
    "customer": frozenset(
        {
            "DisplayName",
            "Title",
            "GivenName",
            "MiddleName",
            "FamilyName",
            "Suffix",
            "CompanyName",
            "PrimaryEmailAddr",
            "PrimaryPhone",
            "Mobile",
            "Fax",
            "WebAddr",
            "BillAddr",
            "ShipAddr",
            "Notes",
            "Active",
            "Taxable",
            "PrintOnCheckName",
            "CurrencyRef",
        }
    ),
    "invoice": frozenset(
        {
            "CustomerRef",
            "DocNumber",
            "TxnDate",
            "DueDate",
            "CurrencyRef",
            "Line",
            "TxnTaxDetail",
            "PrivateNote",
            "CustomerMemo",
            "BillEmail",
            "BillAddr",
            "ShipAddr",
            "SalesTermRef",
        }
    ),
    "payment": frozenset(
        {
            "CustomerRef",
            "TotalAmt",
            "TxnDate",
            "CurrencyRef",
            "Line",
            "PaymentRefNum",
            "PaymentMethodRef",
            "PrivateNote",
            "DepositToAccountRef",
        }
    ),
}
_NAME_PARTS = ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")

_QUERY = re.compile(
    r"\s*select\s+\*\s+from\s+(?P<entity>\w+)"
    r"(?:\s+where\s+(?P<where>.+?))?"
    r"(?:\s+orderby\s+(?P<order>[\w.]+)(?:\s+(?P<direction>asc|desc))?)?"
    r"(?:\s+startposition\s+(?P<start>\d+))?"
    r"(?:\s+maxresults\s+(?P<max>\d+))?\s*",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(
    r"(?P<field>[\w.]+)\s*(?P<op>>=|<=|=|>|<|\bin\b)\s*(?P<value>'[^']*'|\([^)]*\)|\w+)",
    re.IGNORECASE,
)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)

# Realistic, deterministic seed data: an Intuit sandbox-like landscaping customer base.
_GIVEN = ("Amy", "Bill", "Dylan", "Geeta", "Kate", "Mark", "Nadia", "Rondonuwu", "Sasha", "Tony")
_FAMILY = ("Lauterbach", "Lucchini", "Sollfrank", "Kalapatapu", "Whelan", "Cho", "Fruit")
_TRADES = ("Bird Sanctuary", "Windsurf Shop", "Cat Cafe", "Photography", "Bakery", "Diner")
_CITIES = (
    ("Bayshore", "CA", "94326"),
    ("Half Moon Bay", "CA", "94213"),
    ("Middlefield", "CA", "94303"),
    ("Sunnyvale", "CA", "94086"),
    ("Tucson", "AZ", "85719"),
)
_SERVICES = (
    ("Weekly gardening service", "25"),
    ("Rock fountain installation", "275"),
    ("Sprinkler pipes", "4.75"),
    ("Pest control", "35"),
    ("Sod, per square foot", "1.75"),
)


class QuickBooksSimulator(Simulator):
    """One QuickBooks Online company; see the module docstring for what it reproduces."""

    provider = "quickbooks"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")

    def __init__(
        self,
        *,
        realm_id: str = DEFAULT_REALM,
        webhook_format: WebhookFormat = "classic",
        home_currency: str = "USD",
        clock: Callable[[], datetime] = utcnow,
        **options: Any,
    ) -> None:
        self.realm_id = realm_id
        self.webhook_format: WebhookFormat = webhook_format
        self.home_currency = home_currency
        self._wall = clock
        self._pinned: datetime | None = None
        self._counters = {entity: itertools.count(1) for entity in self.entity_types}
        self._doc_numbers = itertools.count(FIRST_DOC_NUMBER)
        self._request_ids: dict[str, dict[str, Any]] = {}
        super().__init__(clock=self._now, **options)

    # --- time: one instant per change --------------------------------------------------------

    def _now(self) -> datetime:
        if self._pinned is not None:
            return self._pinned
        moment = self._wall()
        return moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    @contextlib.contextmanager
    def _instant(self) -> Iterator[None]:
        """Every timestamp of one change (LastUpdatedTime, webhook) is the same instant."""
        if self._pinned is not None:
            yield
            return
        self._pinned = self._now()
        try:
            yield
        finally:
            self._pinned = None

    def stamp(self, moment: datetime | None = None) -> str:
        """A MetaData time: whole seconds, the company's offset (``...T10:58:12-08:00``)."""
        moment = (moment or self.clock()).replace(microsecond=0)
        return moment.astimezone(COMPANY_OFFSET).isoformat()

    # --- the store -----------------------------------------------------------------------

    def new_id(self, entity_type: EntityType) -> str:
        return str(next(self._counters[entity_type]))

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        with self._instant():
            obj = super().create(entity_type, body, notify=notify)
            if entity_type == "payment":
                self._rebalance(_linked_invoices(obj), notify=notify)
            return obj

    def update(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        with self._instant():
            before = self.get(entity_type, record_id)
            obj = super().update(entity_type, record_id, body)
            if entity_type == "payment":
                self._rebalance(_linked_invoices(before) | _linked_invoices(obj))
            return obj

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        """Customers are made inactive (QuickBooks never deletes them); others deleted."""
        with self._instant():
            if entity_type == "customer":
                self.update(entity_type, record_id, {"Active": False, "sparse": True})
                return
            obj = self.get(entity_type, record_id)
            super().delete(entity_type, record_id)
            if entity_type == "payment":
                self._rebalance(_linked_invoices(obj))

    def void(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        """Zero amounts and quantities and prepend "Voided" to PrivateNote, as QBO does."""
        with self._instant():
            obj = copy.deepcopy(self.get(entity_type, record_id))
            note = obj.get("PrivateNote") or ""
            obj["PrivateNote"] = f"{VOID_MARK} {note}".strip() if note else VOID_MARK
            for line in obj.get("Line", []):
                line["Amount"] = 0
                line.get("SalesItemLineDetail", {}).pop("Qty", None)
                line.get("SalesItemLineDetail", {}).pop("UnitPrice", None)
            obj["TotalAmt"] = 0
            obj["Balance"] = 0
            if "TxnTaxDetail" in obj:
                obj["TxnTaxDetail"] = {"TotalTax": 0}
            if entity_type == "payment":
                obj["UnappliedAmt"] = 0
            obj = self._touched(obj)
            self.store[entity_type][record_id] = obj
            self._announce(entity_type, record_id, "void")
            if entity_type == "payment":
                self._rebalance(_linked_invoices(obj))
            return obj

    def find(self, entity_type: EntityType, record_id: str) -> dict[str, Any] | None:
        if record_id in self.deleted[entity_type]:
            return None
        return self.store[entity_type].get(record_id)

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        stamp = self.stamp()
        obj: dict[str, Any] = {
            "Id": record_id,
            "SyncToken": "0",
            "domain": "QBO",
            "sparse": False,
            "MetaData": {"CreateTime": stamp, "LastUpdatedTime": stamp},
        }
        obj.update({k: v for k, v in body.items() if k in _WRITABLE[entity_type]})
        if entity_type == "invoice" and not obj.get("DocNumber"):
            obj["DocNumber"] = str(next(self._doc_numbers))
        return self._derived(entity_type, _pruned(obj))

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        writable = _WRITABLE[entity_type]
        if body.get("sparse") is False:
            # A full update: every writable field it leaves out is cleared.
            edited = {k: v for k, v in obj.items() if k not in writable}
        else:
            edited = dict(obj)
        edited.update({k: v for k, v in body.items() if k in writable})
        return self._touched(self._derived(entity_type, _pruned(edited)))

    def _touched(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {
            **obj,
            "SyncToken": str(int(obj.get("SyncToken", "0")) + 1),
            "MetaData": {**obj.get("MetaData", {}), "LastUpdatedTime": self.stamp()},
        }

    # --- derived fields ------------------------------------------------------------------

    def _derived(self, entity_type: EntityType, obj: dict[str, Any]) -> dict[str, Any]:
        currency = (obj.get("CurrencyRef") or {}).get("value") or self.home_currency
        obj["CurrencyRef"] = {"value": currency, "name": _CURRENCY_NAMES.get(currency, currency)}
        if entity_type == "customer":
            display = obj.get("DisplayName") or _joined_name(obj) or obj.get("CompanyName")
            if display:
                obj["DisplayName"] = display
                obj["FullyQualifiedName"] = display
                obj.setdefault("PrintOnCheckName", display)
            obj.setdefault("Active", True)
            obj.setdefault("Balance", 0)
            obj.setdefault("BalanceWithJobs", 0)
            obj.setdefault("Job", False)
            obj.setdefault("BillWithParent", False)
            obj.setdefault("Taxable", False)
        elif entity_type == "invoice":
            self._invoice_totals(obj, currency)
        else:
            today = self.clock().astimezone(COMPANY_OFFSET).date().isoformat()
            obj.setdefault("TxnDate", today)
            total = _decimal(obj.get("TotalAmt", 0))
            applied = sum(
                (_decimal(line.get("Amount", 0)) for line in obj.get("Line", [])), Decimal(0)
            )
            obj["UnappliedAmt"] = _money(total - applied, currency)
            obj.setdefault("ProcessPayment", False)
        return obj

    def _invoice_totals(self, obj: dict[str, Any], currency: str) -> None:
        today = self.clock().astimezone(COMPANY_OFFSET).date().isoformat()
        obj.setdefault("TxnDate", today)
        obj.setdefault("DueDate", obj["TxnDate"])
        obj.setdefault("EmailStatus", "NotSet")
        obj.setdefault("PrintStatus", "NotSet")
        lines = [
            dict(line)
            for line in obj.get("Line", [])
            if line.get("DetailType") != "SubTotalLineDetail"
        ]
        subtotal = Decimal(0)
        discount = Decimal(0)
        for number, line in enumerate(lines, start=1):
            line["Id"] = str(number)
            line["LineNum"] = number
            amount = _decimal(line.get("Amount", 0))
            if line.get("DetailType") == "DiscountLineDetail":
                discount += amount
            else:
                subtotal += amount
        lines.append(
            {
                "Amount": _money(subtotal, currency),
                "DetailType": "SubTotalLineDetail",
                "SubTotalLineDetail": {},
            }
        )
        obj["Line"] = lines
        tax = _decimal((obj.get("TxnTaxDetail") or {}).get("TotalTax", 0))
        obj["TxnTaxDetail"] = {**(obj.get("TxnTaxDetail") or {}), "TotalTax": _money(tax, currency)}
        total = subtotal - discount + tax
        obj["TotalAmt"] = _money(total, currency)
        obj["Balance"] = _money(max(total - self._applied(obj["Id"]), Decimal(0)), currency)
        obj.setdefault("Deposit", 0)

    def _applied(self, invoice_id: str) -> Decimal:
        """What live, unvoided payments apply to ``invoice_id``."""
        applied = Decimal(0)
        for payment in self.live("payment"):
            if str(payment.get("PrivateNote") or "").startswith(VOID_MARK):
                continue
            for line in payment.get("Line", []):
                if invoice_id in _linked_invoices({"Line": [line]}):
                    applied += _decimal(line.get("Amount", 0))
        return applied

    def _rebalance(self, invoice_ids: set[str], *, notify: bool = True) -> None:
        """A payment changed: the invoices it pays get a new Balance (and a webhook)."""
        for invoice_id in sorted(invoice_ids):
            invoice = self.find("invoice", invoice_id)
            if invoice is None:
                continue
            currency = invoice["CurrencyRef"]["value"]
            total = _decimal(invoice.get("TotalAmt", 0))
            balance = _money(max(total - self._applied(invoice_id), Decimal(0)), currency)
            if _decimal(invoice.get("Balance", 0)) == _decimal(balance):
                continue
            self.store["invoice"][invoice_id] = self._touched({**invoice, "Balance": balance})
            if notify:
                self._announce("invoice", invoice_id, "update")

    # --- webhooks ------------------------------------------------------------------------

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        requests = []
        for change in changes:
            body = json.dumps(self._webhook_body(change), separators=(",", ":")).encode()
            headers: dict[str, str] = {}
            if self.webhook_secret:
                digest = hmac.new(self.webhook_secret.encode(), body, hashlib.sha256).digest()
                headers["intuit-signature"] = base64.b64encode(digest).decode("ascii")
            requests.append((body, headers))
        return requests

    def _webhook_body(self, change: Change) -> Any:
        name = ENTITY_NAMES[change.entity_type]
        if self.webhook_format == "classic":
            entity = {
                "name": name,
                "id": change.record_id,
                "operation": _OPERATION_NAMES[change.op],
                # The form of Intuit's 2025 sample ("2025-09-08T20:52:31.657Z"): UTC with
                # milliseconds, which keeps two changes in one second apart.
                "lastUpdated": _utc_millis(change.at),
            }
            return {
                "eventNotifications": [
                    {"realmId": self.realm_id, "dataChangeEvent": {"entities": [entity]}}
                ]
            }
        event_id = uuid.uuid5(
            _EVENT_NAMESPACE, f"{self.realm_id}:{name}:{change.record_id}:{change.op}:{change.seq}"
        )
        return [
            {
                "specversion": "1.0",
                "id": str(event_id),
                "source": f"intuit.{self.realm_id}",
                "type": f"qbo.{name.lower()}.{_CLOUD_ACTIONS[change.op]}.v1",
                "datacontenttype": "application/json",
                "time": _utc_millis(change.at),
                "intuitentityid": change.record_id,
                "intuitaccountid": self.realm_id,
                "data": {},
            }
        ]

    # --- seed ----------------------------------------------------------------------------

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        if entity_type == "customer":
            given = _GIVEN[index % len(_GIVEN)]
            family = _FAMILY[index % len(_FAMILY)]
            trade = _TRADES[index % len(_TRADES)]
            city, region, postal = _CITIES[index % len(_CITIES)]
            company = f"{given}'s {trade}"
            display = company if index < len(_GIVEN) else f"{company} #{index + 1}"
            return {
                "DisplayName": display,
                "GivenName": given,
                "FamilyName": family,
                "CompanyName": company,
                "PrimaryEmailAddr": {
                    "Address": f"{given.lower()}.{family.lower()}{index}@example.com"
                },
                "PrimaryPhone": {"FreeFormNumber": f"(650) 555-{1000 + index:04d}"},
                "BillAddr": {
                    "Line1": f"{100 + 17 * index} Main Street",
                    "City": city,
                    "CountrySubDivisionCode": region,
                    "PostalCode": postal,
                    "Country": "USA",
                },
            }
        customers = sorted(self.store["customer"], key=int)
        if entity_type == "invoice":
            first = date(2025, 1, 6) + timedelta(days=3 * index)
            lines = []
            for n in range(1 + index % 3):
                description, price = _SERVICES[(index + n) % len(_SERVICES)]
                qty = Decimal(1 + (index + n) % 4)
                amount = qty * Decimal(price)
                lines.append(
                    {
                        "Description": description,
                        "DetailType": "SalesItemLineDetail",
                        "Amount": _money(amount, self.home_currency),
                        "SalesItemLineDetail": {
                            "ItemRef": {"value": str(1 + (index + n) % len(_SERVICES))},
                            "Qty": json_number(qty, "Qty"),
                            "UnitPrice": json_number(Decimal(price), "UnitPrice"),
                        },
                    }
                )
            return {
                "CustomerRef": {"value": customers[index % len(customers)] if customers else "1"},
                "TxnDate": first.isoformat(),
                "DueDate": (first + timedelta(days=30)).isoformat(),
                "Line": lines,
            }
        invoices = sorted(self.store["invoice"], key=int)
        invoice = self.store["invoice"].get(invoices[index % len(invoices)]) if invoices else None
        if invoice is None:
            return {"CustomerRef": {"value": customers[0] if customers else "1"}, "TotalAmt": 10}
        amount = _decimal(invoice["TotalAmt"]) / 2
        amount = amount.quantize(Decimal(1).scaleb(-exponent(self.home_currency, "TotalAmt")))
        paid = _money(amount, self.home_currency)
        return {
            "CustomerRef": invoice["CustomerRef"],
            "TotalAmt": paid,
            "TxnDate": invoice["TxnDate"],
            "PaymentRefNum": f"CHK{2000 + index}",
            "Line": [
                {"Amount": paid, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}
            ],
        }

    # --- HTTP API ------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        app.router.add_get("/v3/company/{realm}/query", self._query)
        app.router.add_get("/v3/company/{realm}/{entity}/{id}", self._read)
        app.router.add_post("/v3/company/{realm}/{entity}", self._write)

    def _envelope(self, name: str, obj: Mapping[str, Any]) -> web.Response:
        return web.json_response({name: obj, "time": self._response_time()})

    def _response_time(self) -> str:
        return self._wall().astimezone(COMPANY_OFFSET).isoformat(timespec="milliseconds")

    def _fault(
        self,
        code: str,
        message: str,
        detail: str,
        *,
        status: int = 400,
        kind: str = "ValidationFault",
    ) -> _Refused:
        """A QuickBooks error answer, raised: ``raise self._fault(...)``."""
        error = {"Message": message, "Detail": detail, "code": code, "element": ""}
        body = {"Fault": {"Error": [error], "type": kind}, "time": self._response_time()}
        return _Refused(web.json_response(body, status=status))

    def _not_found(self) -> _Refused:
        return self._fault(
            "610",
            "Object Not Found",
            "Object Not Found : Something you're trying to use has been made inactive. "
            "Check the fields with accounts, customers, items, vendors or employees.",
        )

    def _missing(self, field: str) -> _Refused:
        return self._fault(
            "2020",
            "Required param missing, need to supply the required value for the API",
            f"Required parameter {field} is missing in the request",
        )

    def _entity_of(self, request: web.Request) -> tuple[EntityType, str]:
        if request.match_info["realm"] != self.realm_id:
            raise self._fault(
                "3100",
                "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
                "The token is not authorised for this company",
                status=403,
                kind="AUTHENTICATION",
            )
        segment = request.match_info.get("entity", "").lower()
        for entity_type, name in ENTITY_NAMES.items():
            if name.lower() == segment:
                return entity_type, name
        raise self._fault("2010", "Unsupported entity", f"{segment} is not served here")

    def _current(
        self, entity_type: EntityType, body: Mapping[str, Any], *, check_token: bool = True
    ) -> dict[str, Any]:
        """The stored object ``body`` addresses by Id, at the SyncToken it names."""
        if "Id" not in body:
            raise self._missing("Id")
        current = self.find(entity_type, str(body["Id"]))
        if current is None:
            raise self._not_found()
        if check_token and "SyncToken" not in body:
            raise self._missing("SyncToken")
        if check_token and str(body["SyncToken"]) != current["SyncToken"]:
            raise self._fault(
                "5010",
                "Stale Object Error",
                "Stale Object Error : You and another user were working on the same thing. "
                "Please try again",
            )
        return current

    async def _read(self, request: web.Request) -> web.Response:
        try:
            entity_type, name = self._entity_of(request)
            obj = self.find(entity_type, request.match_info["id"])
            if obj is None:
                raise self._not_found()
        except _Refused as refused:
            return refused.response
        return self._envelope(name, obj)

    async def _write(self, request: web.Request) -> web.Response:
        try:
            entity_type, name = self._entity_of(request)
            body = await json_object(
                request,
                not_json=lambda: self._fault(
                    "2010", "Request has invalid or unsupported property", "not JSON"
                ),
                not_object=lambda: self._fault(
                    "2010", "Request has invalid or unsupported property", "no object"
                ),
            )
            operation = request.query.get("operation", "")
            if request.query.get("include") == "void" and operation == "update":
                operation = "void"
            try:
                return self._write_operation(entity_type, name, body, operation, request.query)
            except MappingError as exc:
                raise self._fault(
                    "2010", "Request has invalid or unsupported property", exc.detail
                ) from None
        except _Refused as refused:
            return refused.response

    def _write_operation(
        self,
        entity_type: EntityType,
        name: str,
        body: dict[str, Any],
        operation: str,
        query: Mapping[str, str],
    ) -> web.Response:
        if operation == "delete":
            if entity_type == "customer":
                raise self._fault(
                    "500", "Unsupported Operation", "Operation Delete is not supported."
                )
            current = self._current(entity_type, body)
            self.delete(entity_type, current["Id"])
            return self._envelope(name, {"domain": "QBO", "status": "Deleted", "Id": current["Id"]})
        if operation == "void":
            current = self._current(entity_type, body)
            return self._envelope(name, self.void(entity_type, current["Id"]))
        if operation:
            raise self._fault(
                "500", "Unsupported Operation", f"Operation {operation} is not supported."
            )
        if "Id" in body:
            current = self._current(entity_type, body)
            self._validate(entity_type, {**current, **body})
            return self._envelope(name, self.update(entity_type, current["Id"], body))
        request_id = query.get("requestid")
        if request_id and request_id in self._request_ids:
            return self._envelope(name, self._request_ids[request_id])
        self._validate(entity_type, body)
        obj = self.create(entity_type, body)
        if request_id:
            self._request_ids[request_id] = obj
        return self._envelope(name, obj)

    def _validate(self, entity_type: EntityType, obj: Mapping[str, Any]) -> None:
        """Raise the ValidationFault QuickBooks would answer for this create/update."""
        if entity_type == "customer":
            display = obj.get("DisplayName") or _joined_name(obj) or obj.get("CompanyName")
            if not display:
                raise self._missing("DisplayName")
            for other in self.store["customer"].values():
                if other.get("DisplayName") == display and other["Id"] != obj.get("Id"):
                    raise self._fault(
                        "6240",
                        "Duplicate Name Exists Error",
                        "The name supplied already exists. : Another customer, vendor or "
                        "employee is already using this name. Please use a different name.",
                    )
            return
        customer = (obj.get("CustomerRef") or {}).get("value")
        if not customer:
            raise self._missing("CustomerRef")
        if str(customer) not in self.store["customer"]:
            raise self._invalid_reference("Customer", customer)
        if entity_type == "invoice":
            if not obj.get("Line"):
                raise self._missing("Line")
            for line in obj["Line"]:
                self._validate_line(line, obj)
            return
        if "TotalAmt" not in obj:
            raise self._missing("TotalAmt")
        for invoice_id in _linked_invoices(obj):
            if self.find("invoice", invoice_id) is None:
                raise self._invalid_reference("Invoice", invoice_id)

    def _invalid_reference(self, name: str, value: Any) -> _Refused:
        return self._fault("2500", "Invalid Reference Id", f"Invalid Reference Id : {name} {value}")

    def _validate_line(self, line: Mapping[str, Any], invoice: Mapping[str, Any]) -> None:
        """Amount is required and must be UnitPrice * Qty to the currency's precision."""
        if line.get("DetailType") == "SubTotalLineDetail":
            return
        if "Amount" not in line:
            raise self._missing("Line.Amount")
        detail = line.get("SalesItemLineDetail") or {}
        if "Qty" not in detail or "UnitPrice" not in detail:
            return
        currency = (invoice.get("CurrencyRef") or {}).get("value") or self.home_currency
        half_unit = Decimal(1).scaleb(-exponent(currency, "CurrencyRef")) / 2
        expected = _decimal(detail["Qty"]) * _decimal(detail["UnitPrice"])
        if abs(_decimal(line["Amount"]) - expected) > half_unit:
            raise self._fault(
                "6070", "Amount calculation incorrect", "Amount is not equal to UnitPrice * Qty"
            )

    async def _query(self, request: web.Request) -> web.Response:
        try:
            return self._answer_query(request)
        except _Refused as refused:
            return refused.response

    def _answer_query(self, request: web.Request) -> web.Response:
        if request.match_info["realm"] != self.realm_id:
            self._entity_of(request)
        text = request.query.get("query", "")
        match = _QUERY.fullmatch(text)
        entity_type = None
        if match is not None:
            for known, known_name in ENTITY_NAMES.items():
                if known_name.lower() == match["entity"].lower():
                    entity_type = known
        if match is None or entity_type is None:
            raise self._parse_error(text)
        name = ENTITY_NAMES[entity_type]
        start = max(int(match["start"] or 1), 1)
        size = min(int(match["max"] or MAX_RESULTS), MAX_RESULTS)
        try:
            keep = _filters(entity_type, match["where"])
        except ValueError:
            raise self._parse_error(text) from None
        rows = sorted(
            (obj for obj in self.live(entity_type) if keep(obj)),
            key=lambda o: (_updated(o), int(o["Id"])),
            reverse=(match["direction"] or "").lower() == "desc",
        )
        page = rows[start - 1 : start - 1 + size]
        result: dict[str, Any] = {}
        if page:
            result = {name: page, "startPosition": start, "maxResults": len(page)}
        return web.json_response({"QueryResponse": result, "time": self._response_time()})

    def _parse_error(self, text: str) -> _Refused:
        return self._fault(
            "4000", "Error parsing query", f"QueryParserError: Encountered an error in: {text[:80]}"
        )


class _Refused(Exception):  # noqa: N818 - it is the answer, not a programming error
    """An error answer QuickBooks would give, raised from deep in a handler."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


Predicate = Callable[[Mapping[str, Any]], bool]


def _filters(entity_type: EntityType, where: str | None) -> Predicate:
    """A predicate for a WHERE clause; ValueError for what this simulator cannot read."""
    checks: list[Predicate] = []
    mentions_active = False
    for clause in _AND.split(where.strip()) if where else []:
        condition = _CONDITION.fullmatch(clause.strip())
        if condition is None:
            raise ValueError(clause)
        field, op, value = condition["field"].lower(), condition["op"].lower(), condition["value"]
        if field == "active":
            mentions_active = True
            checks.append(_active_in({v.strip().lower() for v in value.strip("()").split(",")}))
        elif field == "metadata.lastupdatedtime":
            checks.append(_updated_compared(op, _query_time(value.strip("'"))))
        elif field == "id":
            checks.append(_id_in({v.strip().strip("'") for v in value.strip("()").split(",")}))
        else:
            raise ValueError(field)
    if entity_type == "customer" and not mentions_active:
        # Intuit: a Customer query returns only active customers unless asked otherwise.
        checks.append(_active_in({"true"}))
    return lambda obj: all(check(obj) for check in checks)


def _active_in(allowed: set[str]) -> Predicate:
    return lambda obj: str(obj.get("Active", True)).lower() in allowed


def _id_in(ids: set[str]) -> Predicate:
    return lambda obj: str(obj.get("Id")) in ids


def _updated_compared(op: str, bound: datetime) -> Predicate:
    return lambda obj: _compare(_updated(obj), op, bound)


# --- helpers -----------------------------------------------------------------------------


def _utc_millis(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _decimal(value: Any) -> Decimal:
    return decimal_of(value, "amount")


def _money(value: Decimal, currency: str) -> int | float:
    places = Decimal(1).scaleb(-exponent(currency, "CurrencyRef"))
    return json_number(value.quantize(places, rounding=ROUND_HALF_UP), "amount")


def _joined_name(obj: Mapping[str, Any]) -> str:
    return " ".join(str(obj[part]) for part in _NAME_PARTS if obj.get(part))


def _linked_invoices(obj: Mapping[str, Any]) -> set[str]:
    return {
        str(txn.get("TxnId"))
        for line in obj.get("Line", []) or []
        for txn in line.get("LinkedTxn", []) or []
        if txn.get("TxnType") == "Invoice"
    }


def _pruned(obj: dict[str, Any]) -> dict[str, Any]:
    """QuickBooks drops a field written as "" (and an address or email left empty)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if value == "":
            continue
        if isinstance(value, dict) and key not in ("MetaData", "SubTotalLineDetail"):
            inner = {k: v for k, v in value.items() if v != ""}
            if {k for k in inner if k != "Id"}:
                out[key] = inner
            continue
        out[key] = value
    return out


def _updated(obj: Mapping[str, Any]) -> datetime:
    return parse_timestamp(obj["MetaData"]["LastUpdatedTime"], "MetaData.LastUpdatedTime")


def _query_time(value: str) -> datetime:
    """A query literal: a full timestamp, or a date meaning midnight in the company."""
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime(day.year, day.month, day.day, tzinfo=COMPANY_OFFSET).astimezone(UTC)
    try:
        return parse_timestamp(value, "query")
    except MappingError:
        raise ValueError(value) from None


def _compare(left: datetime, op: str, right: datetime) -> bool:
    return {
        ">": left > right,
        ">=": left >= right,
        "<": left < right,
        "<=": left <= right,
        "=": left == right,
    }[op]
