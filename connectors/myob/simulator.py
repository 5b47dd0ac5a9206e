"""A MYOB Business API simulator (test and demo code): one company file's customers,
Item-layout sale invoices and customer payments, in MYOB's shapes.

What it holds to, as MYOB documents it: ``x-myobapi-version: v2`` on every call (400
without it) and the developer key when one is configured (403 "API key is missing or
inactive"); OData ``$top``/``$skip``/``$orderby=LastModified`` and ``$filter`` on
``LastModified`` (``gt``/``ge datetime'...'``), answers ``{"Items", "NextPageLink",
"Count"}``; ``RowVersion`` on every record, a new one on each change, a PUT at an old one
409; ``returnBody=true``; errors as ``{"Errors": [{"Name", "Message", "AdditionalDetails",
"ErrorCode", "Severity"}]}``; over the rate limit, 403 with MYOB's RateLimitError (not
429). MYOB computes an invoice's totals, tax, balance and status; a customer payment
applied to an invoice lowers its balance (Closed at zero). It sends no webhooks.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from aiohttp import web

from connectors.simkit import Change, Simulator, TokenBucket, json_object
from connectors.spec import EntityType, RateLimit

SIM_COMPANY_FILE_ID = "c1f5e0d2-5a4b-4f3c-9d8e-0123456789ab"
SIM_ITEM_UID = "1a2b3c4d-0000-4000-8000-00000000150a"  # the "SERVICES" item
SIM_GST_UID = "1a2b3c4d-0000-4000-8000-0000000000a1"  # GST, 10%
SIM_FRE_UID = "1a2b3c4d-0000-4000-8000-0000000000b2"  # FRE, GST free
TAX_RATES: dict[str, Decimal] = {SIM_GST_UID: Decimal(10), SIM_FRE_UID: Decimal(0)}
RESOURCES: dict[str, EntityType] = {
    "Contact/Customer": "customer",
    "Sale/Invoice/Item": "invoice",
    "Sale/CustomerPayment": "payment",
}
DEFAULT_TOP = 400  # MYOB's page size when $top is not given
MAX_TOP = 1000
CENT = Decimal("0.01")


def myob_error(
    status: int, name: str, message: str, *, code: int | None = None, details: str = ""
) -> web.HTTPException:
    body = {
        "Errors": [
            {
                "Name": name,
                "Message": message,
                "AdditionalDetails": details,
                "ErrorCode": code,
                "Severity": "Error",
            }
        ],
        "Information": "Warning, error messages have not been finalised in this release",
    }
    return _http(status, body)


def _http(status: int, body: Mapping[str, Any]) -> web.HTTPException:
    exc = web.HTTPException(text=web.json_response(body).text, content_type="application/json")
    exc.set_status(status)
    return exc


def _money(value: Decimal) -> float:
    return float(value.quantize(CENT, ROUND_HALF_UP))


def _dec(value: object, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise myob_error(
            400, "SerializationError", f"Error converting value to decimal: {name}", code=50
        )
    try:
        return Decimal(str(value))
    except ArithmeticError:
        raise myob_error(
            400, "SerializationError", f"Error converting value {value!r}", code=50
        ) from None


class MyobSimulator(Simulator):
    provider = "myob"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")

    def __init__(
        self,
        *,
        company_file_id: str = SIM_COMPANY_FILE_ID,
        api_key: str | None = None,
        rate_limit: RateLimit | None = None,
        **kwargs: Any,
    ) -> None:
        # MYOB answers an exceeded limit with 403, so the base's 429 bucket stays off.
        super().__init__(**{**kwargs, "rate_limit": None})
        self.company_file_id = company_file_id
        self.api_key = api_key
        self.myob_bucket = TokenBucket(rate_limit) if rate_limit else None
        self._versions = itertools.count(7_000_000_000_000_000_001, 7919)
        self._display = itertools.count(1)
        self._numbers = itertools.count(1)

    def new_id(self, entity_type: EntityType) -> str:
        return str(uuid.uuid4())

    def _stamp(self, obj: dict[str, Any]) -> dict[str, Any]:
        # MYOB writes LastModified in UTC without an offset, with milliseconds.
        obj["LastModified"] = self.clock().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        obj["RowVersion"] = str(next(self._versions))
        return obj

    # --- objects ------------------------------------------------------------------------------

    def _customer(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        for key in ("CompanyName", "FirstName", "LastName", "IsIndividual", "IsActive", "Notes"):
            if key in body:
                obj[key] = body[key]
        if "Addresses" in body:
            # Address by address (Location 1..5), field by field: a user who changes a
            # card's phone keeps its email (a PUT carries the whole address anyway).
            kept = {a.get("Location"): dict(a) for a in obj.get("Addresses") or []}
            for given in body["Addresses"] or []:
                if isinstance(given, Mapping):
                    location = given.get("Location")
                    kept[location] = {**kept.get(location, {}), **given}
            obj["Addresses"] = list(kept.values())
        if obj.get("IsIndividual") and not obj.get("LastName"):
            raise myob_error(400, "Required", "LastName is required", code=100)
        if not obj.get("IsIndividual") and not obj.get("CompanyName"):
            raise myob_error(400, "Required", "CompanyName is required", code=100)
        return obj

    def _found_customer(self, ref: object) -> str:
        uid = ref.get("UID") if isinstance(ref, Mapping) else None
        live = {c["UID"] for c in self.live("customer")}
        if uid not in live:
            raise myob_error(400, "NotFound", f"Customer {uid} not found", code=150)
        return str(uid)

    def _invoice(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        for key in ("Number", "Date", "IsTaxInclusive", "Terms", "Comment"):
            if key in body:
                obj[key] = body[key]
        if "Customer" in body:
            obj["Customer"] = {"UID": self._found_customer(body["Customer"])}
        if "Lines" in body:
            obj["Lines"] = [self._line(line, i) for i, line in enumerate(body["Lines"] or [])]
        if not obj.get("Number"):
            obj["Number"] = f"{next(self._numbers):08d}"
        if not obj.get("Customer"):
            raise myob_error(400, "Required", "Customer is required", code=100)
        self._amounts(obj)
        return obj

    def _line(self, raw: Any, index: int) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise myob_error(400, "SerializationError", f"Lines[{index}] is not an object", code=50)
        item = raw.get("Item") or {}
        code = (raw.get("TaxCode") or {}).get("UID")
        if item.get("UID") != SIM_ITEM_UID:
            raise myob_error(400, "NotFound", f"Item {item.get('UID')} not found", code=150)
        if code not in TAX_RATES:
            raise myob_error(400, "NotFound", f"TaxCode {code} not found", code=150)
        quantity = _dec(raw.get("ShipQuantity", 1), "ShipQuantity")
        price = _dec(raw.get("UnitPrice", 0), "UnitPrice")
        total = (quantity * price).quantize(CENT, ROUND_HALF_UP)
        return {
            "RowID": index + 1,
            "Type": "Transaction",
            "Description": raw.get("Description") or "",
            "ShipQuantity": float(quantity),
            "UnitPrice": float(price),
            "Total": _money(total),
            "Item": {"UID": SIM_ITEM_UID, "Number": "SERVICES"},
            "TaxCode": {"UID": code, "Code": "GST" if code == SIM_GST_UID else "FRE"},
        }

    def _amounts(self, invoice: dict[str, Any]) -> None:
        subtotal = tax = Decimal(0)
        inclusive = bool(invoice.get("IsTaxInclusive"))
        for line in invoice.get("Lines", []):
            total = Decimal(str(line["Total"]))
            rate = TAX_RATES[line["TaxCode"]["UID"]]
            if inclusive:
                line_tax = (total * rate / (100 + rate)).quantize(CENT, ROUND_HALF_UP)
                subtotal += total - line_tax
            else:
                line_tax = (total * rate / 100).quantize(CENT, ROUND_HALF_UP)
                subtotal += total
            tax += line_tax
        paid = sum(
            (Decimal(str(applied)) for applied in self._applied(invoice["UID"]).values()),
            Decimal(0),
        )
        total = subtotal + tax
        balance = total - paid
        invoice.update(
            Subtotal=_money(subtotal if not inclusive else subtotal + tax),
            TotalTax=_money(tax),
            TotalAmount=_money(total),
            BalanceDueAmount=_money(balance),
            Status="Open" if balance > 0 else ("Closed" if balance == 0 else "Credit"),
        )
        terms = dict(invoice.get("Terms") or {})
        days = terms.get("BalanceDueDate")
        if invoice.get("Date") and isinstance(days, int):
            issued = datetime.fromisoformat(str(invoice["Date"])).date()
            terms["DueDate"] = f"{issued + timedelta(days=days)}T00:00:00"
            invoice["Terms"] = terms

    def _applied(self, invoice_uid: str) -> dict[str, float]:
        """Payment UID -> amount it applies to the invoice (live payments only)."""
        out = {}
        for payment in self.live("payment"):
            for applied in payment.get("Invoices", []):
                if applied.get("UID") == invoice_uid:
                    out[payment["UID"]] = applied.get("AmountApplied", 0)
        return out

    def _payment(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        obj["Customer"] = {"UID": self._found_customer(body.get("Customer"))}
        received = _dec(body.get("AmountReceived"), "AmountReceived")
        invoices = []
        for raw in body.get("Invoices") or []:
            uid = raw.get("UID") if isinstance(raw, Mapping) else None
            invoice = self.store["invoice"].get(str(uid))
            if invoice is None or uid in self.deleted["invoice"]:
                raise myob_error(400, "NotFound", f"Invoice {uid} not found", code=150)
            applied = _dec(raw.get("AmountApplied"), "AmountApplied")
            if applied > Decimal(str(invoice["BalanceDueAmount"])):
                raise myob_error(
                    400,
                    "AmountAppliedExceedsBalance",
                    "Amount applied cannot exceed the balance due",
                    code=25010,
                )
            invoices.append(
                {"UID": uid, "Number": invoice["Number"], "AmountApplied": _money(applied),
                 "Type": "Invoice"}
            )  # fmt: skip
        obj.update(
            DepositTo=body.get("DepositTo", "UndepositedFunds"),
            Account=body.get("Account"),
            AmountReceived=_money(received),
            Date=body.get("Date") or self.clock().strftime("%Y-%m-%dT00:00:00"),
            Memo=body.get("Memo") or "",
            PaymentMethod=body.get("PaymentMethod") or "Cash",
            ReceiptNumber=f"CR{next(self._numbers):06d}",
            Invoices=invoices,
        )
        return obj

    def _settle(self, payment: Mapping[str, Any]) -> None:
        for applied in payment.get("Invoices", []):
            invoice = self.store["invoice"].get(applied["UID"])
            if invoice is not None:
                self._amounts(invoice)
                self._stamp(invoice)

    # --- the store ------------------------------------------------------------------------------

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj: dict[str, Any] = {"UID": record_id}
        if entity_type == "customer":
            obj.update(IsActive=True, IsIndividual=False, DisplayID=f"CUS{next(self._display):06d}")
            obj = self._customer(obj, body)
        elif entity_type == "invoice":
            obj.update(Date=self.clock().strftime("%Y-%m-%dT00:00:00"), IsTaxInclusive=False)
            obj = self._invoice(obj, body)
        else:
            obj = self._payment(obj, body)
        return self._stamp(obj)

    def payment_recorded(self, payment: Mapping[str, Any], *, notify: bool) -> None:
        self._settle(payment)

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        edited = dict(obj)
        if entity_type == "customer":
            edited = self._customer(edited, body)
        elif entity_type == "invoice":
            edited = self._invoice(edited, body)
        else:
            raise myob_error(405, "MethodNotAllowed", "Customer payments cannot be updated")
        return self._stamp(edited)

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        obj = self.get(entity_type, record_id)
        if entity_type == "invoice" and self._applied(record_id):
            raise myob_error(
                400,
                "TransactionHasPayments",
                "An invoice with payments applied cannot be deleted; delete the payments first",
                code=25001,
            )
        super().delete(entity_type, record_id)
        if entity_type == "payment":
            self._settle(obj)

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        return []  # MYOB has no webhooks

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        if entity_type == "customer":
            return {
                "IsIndividual": True,
                "FirstName": f"Seeded{index}",
                "LastName": "Customer",
                "Addresses": [
                    {
                        "Location": 1,
                        "Email": f"seeded{index}@example.com",
                        "Phone1": f"04{index:08d}",
                    }
                ],
            }
        customers = self.live("customer")
        if entity_type == "invoice":
            return {
                "Customer": {"UID": customers[index % len(customers)]["UID"]},
                "Number": f"S{index:07d}",
                "Terms": {"PaymentIsDue": "InAGivenNumberOfDays", "BalanceDueDate": 14},
                "Lines": [
                    {
                        "Description": "Call-out",
                        "ShipQuantity": 1,
                        "UnitPrice": 100 + index,
                        "Item": {"UID": SIM_ITEM_UID},
                        "TaxCode": {"UID": SIM_GST_UID},
                    }
                ],
            }
        invoices = [i for i in self.live("invoice") if i["BalanceDueAmount"] > 1]
        invoice = invoices[index % len(invoices)]
        return {
            "Customer": invoice["Customer"],
            "AmountReceived": 1,
            "Invoices": [{"UID": invoice["UID"], "AmountApplied": 1, "Type": "Invoice"}],
        }

    # --- the API ----------------------------------------------------------------------------------

    @web.middleware
    async def _myob_headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_sim") or request.path in self.public_paths:
            return await handler(request)  # type: ignore[no-any-return]
        if self.myob_bucket is not None and self.myob_bucket.take() > 0:
            raise myob_error(
                403, "RateLimitError", "API key has exceeded the per second rate limit",
                details="Header: x-myobapi-key",
            )  # fmt: skip
        if request.headers.get("x-myobapi-version") != "v2":
            raise myob_error(400, "BadRequest", "x-myobapi-version header must be v2")
        if self.api_key is not None and request.headers.get("x-myobapi-key") != self.api_key:
            raise myob_error(403, "DeveloperInactive", "API key is missing or inactive")
        return await handler(request)  # type: ignore[no-any-return]

    def app(self) -> web.Application:
        app = super().app()
        app.middlewares.append(self._myob_headers)
        return app

    def add_api_routes(self, app: web.Application) -> None:
        app.router.add_get("/", self._company_files)
        for resource, entity_type in RESOURCES.items():
            base = f"/{{cf}}/{resource}"
            app.router.add_get(base, self._lister(entity_type))
            app.router.add_post(base, self._creator(entity_type))
            app.router.add_get(base + "/{id}", self._getter(entity_type))
            app.router.add_put(base + "/{id}", self._putter(entity_type))
            app.router.add_delete(base + "/{id}", self._remover(entity_type))

    async def _company_files(self, request: web.Request) -> web.Response:
        root = f"{request.scheme}://{request.host}"
        return web.json_response(
            [{"Id": self.company_file_id, "Name": "Simulated Services Pty Ltd",
              "Uri": f"{root}/{self.company_file_id}", "Country": "AU"}]
        )  # fmt: skip

    def _file(self, request: web.Request) -> None:
        if request.match_info["cf"] != self.company_file_id:
            raise myob_error(404, "NotFound", "Company file not found")

    def _one(self, entity_type: EntityType, uid: str) -> dict[str, Any]:
        obj = self.store[entity_type].get(uid)
        if obj is None or uid in self.deleted[entity_type]:
            raise myob_error(404, "NotFound", f"{uid} not found", code=150)
        return obj

    def _answer(self, request: web.Request, obj: Mapping[str, Any], status: int) -> web.Response:
        uri = f"{request.scheme}://{request.host}{request.path.rstrip('/')}"
        if request.method == "POST":
            uri += f"/{obj['UID']}"
        if request.query.get("returnBody") == "true":
            return web.json_response({**obj, "URI": uri}, status=status, headers={"Location": uri})
        return web.Response(status=status, headers={"Location": uri})

    def _lister(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self._file(request)
            items = self.live(entity_type)
            since = request.query.get("$filter")
            if since:
                items = [i for i in items if _matches(since, i["LastModified"])]
            if request.query.get("$orderby", "").split(" ")[0] == "LastModified":
                items.sort(key=lambda i: (i["LastModified"], i["UID"]))
            try:
                top = min(int(request.query.get("$top", DEFAULT_TOP)), MAX_TOP)
                skip = int(request.query.get("$skip", 0))
            except ValueError:
                raise myob_error(400, "BadRequest", "$top and $skip must be integers") from None
            page = items[skip : skip + top]
            more = skip + top < len(items)
            next_link = None
            if more:
                query = dict(request.query)
                query["$skip"] = str(skip + top)
                next_link = str(request.url.with_query(query))
            return web.json_response(
                {"Items": page, "NextPageLink": next_link, "Count": len(items)}
            )

        return handler

    def _creator(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self._file(request)
            body = await _body(request)
            for read_only in ("UID", "RowVersion"):
                if read_only in body:
                    raise myob_error(400, "BadRequest", f"{read_only} is not allowed on create")
            return self._answer(request, self.create(entity_type, body), 201)

        return handler

    def _getter(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self._file(request)
            return web.json_response(self._one(entity_type, request.match_info["id"]))

        return handler

    def _putter(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self._file(request)
            if entity_type == "payment":
                raise myob_error(405, "MethodNotAllowed", "Customer payments cannot be updated")
            uid = request.match_info["id"]
            current = self._one(entity_type, uid)
            body = await _body(request)
            if body.get("UID") != uid:
                raise myob_error(400, "BadRequest", "UID in the body must match the URI")
            if body.get("RowVersion") != current["RowVersion"]:
                raise myob_error(
                    409,
                    "ConcurrencyViolation",
                    "The RowVersion supplied is not the current RowVersion of the entity",
                )
            return self._answer(request, self.update(entity_type, uid, body), 200)

        return handler

    def _remover(self, entity_type: EntityType) -> Any:
        async def handler(request: web.Request) -> web.Response:
            self._file(request)
            self._one(entity_type, request.match_info["id"])
            self.delete(entity_type, request.match_info["id"])
            return web.Response(status=200)

        return handler


def _matches(odata: str, last_modified: str) -> bool:
    """``LastModified gt|ge datetime'YYYY-MM-DDTHH:MM:SS'``, the one filter MYOB's lists
    are polled with here; anything else is a 400 as MYOB's OData parser would give."""
    parts = odata.split(" ", 2)
    if len(parts) != 3 or parts[0] != "LastModified" or parts[1] not in ("gt", "ge"):
        raise myob_error(400, "BadRequest", f"unsupported $filter {odata!r}")
    value = parts[2]
    if not (value.startswith("datetime'") and value.endswith("'")):
        raise myob_error(400, "BadRequest", f"unsupported $filter value {value!r}")
    try:
        since = datetime.fromisoformat(value[len("datetime'") : -1])
        stamp = datetime.fromisoformat(last_modified)
    except ValueError:
        raise myob_error(400, "BadRequest", f"bad datetime in $filter {odata!r}") from None
    return stamp > since if parts[1] == "gt" else stamp >= since


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object(
        request,
        not_json=lambda: myob_error(400, "SerializationError", "the body is not JSON", code=50),
        not_object=lambda: myob_error(
            400, "SerializationError", "the body is not an object", code=50
        ),
    )
