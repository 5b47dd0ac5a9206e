"""A Xero Accounting API stand-in: Contacts, Invoices and Payments for one organisation.

What it reproduces, because the client and the sync depend on it:

- paths under ``/api.xro/2.0``, bodies wrapped as ``{"Contacts": [...]}``, ``PUT`` to
  create, ``POST`` to update, amounts as decimal JSON numbers, ``/Date(ms+0000)/`` and
  ``DateString`` dates, ``page``/``pageSize`` paging with a ``pagination`` block,
  ``If-Modified-Since``, ``includeArchived`` and the ``where`` filters the client sends;
- the ``xero-tenant-id`` header on every call (403 without the connected tenant's id);
- 400 ``ValidationException`` bodies with ``Elements[].ValidationErrors[]``, plain 404s;
- Xero's lifecycle: contacts archive, invoices void or (drafts) delete, payments are only
  ever deleted; a payment changes its invoice's AmountPaid/AmountDue/Status;
- thin webhooks: one payload of ``events`` per change, CONTACT or INVOICE, CREATE or
  UPDATE (a delete is an UPDATE: nothing disappears in Xero), signed in
  ``x-xero-signature``. Xero has no payment events: a payment announces its invoice;
- ``Idempotency-Key`` on creates replays the first answer.

Tax is not modelled from tax rates: a line's TaxAmount is what the request said (0 if
absent).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import re
import secrets
import string
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from email.utils import parsedate_to_datetime
from typing import Any

from aiohttp import web

from connectors.money import decimal_of, minor_unit_digits
from connectors.simkit import Change, Simulator
from connectors.spec import EntityType, MappingError
from connectors.xero.client import API_PATH, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, RESOURCES
from connectors.xero.mapping import (
    iso_date_string,
    json_number,
    parse_date,
    parse_datetime,
    wcf_date,
    wcf_datetime,
)

# The simulated organisation's id unless a test names another (a fixed UUID, so demo
# connections can be configured once).
SIM_TENANT_ID = "c2cc9b6e-9458-4c7d-93cc-f02b81b0594f"
_ID_NAMESPACE = uuid.UUID("5b0f3a51-8a4e-4d0c-9d3c-2f1e6a7b8c90")
# Xero's webhook entropy is 20 upper-case letters ("S0m3r4Nd0mt3xt" in the docs aside).
_ENTROPY_LENGTH = 20
_WHERE_CLAUSE = re.compile(r'^\s*(\w+)\s*={1,2}\s*"([^"]*)"\s*$')
_NOT_FOUND = "The resource you're looking for cannot be found"

_CATEGORIES: dict[EntityType, str] = {"customer": "CONTACT", "invoice": "INVOICE"}
_PHONE_TYPES = ("DEFAULT", "DDI", "FAX", "MOBILE")
_ADDRESS_TYPES = ("POBOX", "STREET")
_CONTACT_TEXT = ("Name", "FirstName", "LastName", "EmailAddress", "AccountNumber")
_CONTACT_STATES = frozenset({"ACTIVE", "ARCHIVED", "GDPRREQUEST"})
_EDITABLE_INVOICE = frozenset({"DRAFT", "SUBMITTED", "AUTHORISED"})
_CREATE_INVOICE_STATES = frozenset({"DRAFT", "SUBMITTED", "AUTHORISED"})

_FIRST = ("Aroha", "Ben", "Chloe", "Dev", "Emma", "Finn", "Grace", "Hemi", "Isla", "Jack")
_LAST = ("Ngata", "Smith", "Wong", "Patel", "Brown", "Walker", "Taylor", "Parata", "Li", "Kerr")
_COMPANIES = (
    "Ridgeway University",
    "Bayside Club",
    "City Limousines",
    "Hamilton Smith Ltd",
    "Marine Systems",
    "Port & Philip Freight",
    "Young Bros Transport",
    "Petrie McLoud Watson & Associates",
    "Boom FM",
    "DIISR - Small Business Services",
)
_CITIES = (("Wellington", "6011"), ("Auckland", "1010"), ("Christchurch", "8011"))
_SERVICES = (
    ("Quarterly maintenance visit", Decimal("1"), Decimal("180.00")),
    ("Labour (hours)", Decimal("2.5"), Decimal("85.00")),
    ("Replacement filter", Decimal("3"), Decimal("24.95")),
)
_SEED_EPOCH = date(2024, 1, 1)


def _validation_error(element: Mapping[str, Any], *messages: str) -> web.HTTPBadRequest:
    """Xero's 400: a ValidationException naming the element and what was wrong with it."""
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [
            {**element, "ValidationErrors": [{"Message": message} for message in messages]}
        ],
    }
    return web.HTTPBadRequest(
        text=json.dumps(body, default=_json_default), content_type="application/json"
    )


def _json_default(value: object) -> object:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _post_data_invalid(message: str) -> web.HTTPBadRequest:
    body = {"ErrorNumber": 14, "Type": "PostDataInvalidException", "Message": message}
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


def _forbidden() -> web.Response:
    # What Xero answers for a tenant id the token was not granted (or none at all).
    body: dict[str, Any] = {
        "Type": None,
        "Title": "Forbidden",
        "Status": 403,
        "Detail": "AuthenticationUnsuccessful",
        "Instance": str(uuid.uuid4()),
        "Extensions": {},
    }
    return web.json_response(body, status=403)


def _signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def _money(value: Decimal, currency: str) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-minor_unit_digits(currency)), rounding=ROUND_HALF_UP)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class XeroSimulator(Simulator):
    """Simulated Xero organisation; see the module docstring for what it reproduces."""

    provider = "xero"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")
    # Xero's own token endpoint path is served as well as simkit's /oauth/token.
    public_paths = ("/oauth/token", "/connect/token")

    def __init__(
        self, *, tenant_id: str = SIM_TENANT_ID, base_currency: str = "NZD", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.tenant_id = tenant_id
        self.base_currency = base_currency
        self._serial = itertools.count(1)
        self._invoice_numbers = itertools.count(1)
        self._idempotent: dict[tuple[str, str, str], tuple[int, str]] = {}

    # --- ids, times, numbers ------------------------------------------------------------

    def new_id(self, entity_type: EntityType) -> str:
        return str(uuid.uuid5(_ID_NAMESPACE, f"{entity_type}:{next(self._serial)}"))

    def _now(self) -> datetime:
        return self.clock().astimezone(UTC)

    def _number(self, value: Decimal, element: Mapping[str, Any], field: str) -> int | float:
        try:
            return json_number(value, field)
        except MappingError:
            raise _validation_error(element, f"{field} has too many digits") from None

    def _decimal(self, body: Mapping[str, Any], field: str, default: Decimal) -> Decimal:
        if body.get(field) is None:
            return default
        try:
            return decimal_of(body[field], field)
        except MappingError:
            raise _validation_error(body, f"{field} must be a number") from None

    def _date(self, body: Mapping[str, Any], field: str) -> date | None:
        if not body.get(field):
            return None
        try:
            return parse_date(body[field], field)
        except MappingError:
            raise _validation_error(body, f"{field} is not a valid date") from None

    # --- contacts -----------------------------------------------------------------------

    def _contact(self, record_id: str) -> dict[str, Any]:
        return {
            "ContactID": record_id,
            "ContactStatus": "ACTIVE",
            "Name": "",
            "FirstName": "",
            "LastName": "",
            "EmailAddress": "",
            "AccountNumber": "",
            "Addresses": [{"AddressType": kind} for kind in _ADDRESS_TYPES],
            "Phones": [{"PhoneType": kind} for kind in _PHONE_TYPES],
            "IsSupplier": False,
            "IsCustomer": False,
            "HasAttachments": False,
            "HasValidationErrors": False,
            "UpdatedDateUTC": wcf_datetime(self._now()),
        }

    def _edit_contact(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        contact = dict(obj)
        for field in _CONTACT_TEXT:
            if field in body:
                contact[field] = str(body[field] or "")
        if "ContactStatus" in body:
            status = body["ContactStatus"]
            if status not in _CONTACT_STATES:
                raise _validation_error(body, f"ContactStatus {status!r} is not valid")
            contact["ContactStatus"] = status
        for key, kind_field, kinds in (
            ("Phones", "PhoneType", _PHONE_TYPES),
            ("Addresses", "AddressType", _ADDRESS_TYPES),
        ):
            for change in body.get(key) or []:
                kind = change.get(kind_field) if isinstance(change, Mapping) else None
                if kind not in kinds:
                    raise _validation_error(body, f"{kind_field} {kind!r} is not valid")
                contact[key] = [
                    {**entry, **change} if entry[kind_field] == kind else entry
                    for entry in contact[key]
                ]
        name = contact["Name"].strip()
        if not name:
            raise _validation_error(body, "The contact name must be specified")
        for other in self.live("customer"):
            if other["ContactID"] != contact["ContactID"] and other["Name"] == name:
                raise _validation_error(
                    body, f"The contact name {name} is already assigned to another contact."
                )
        email = contact["EmailAddress"]
        if email and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
            raise _validation_error(body, "Email address must be valid.")
        contact["UpdatedDateUTC"] = wcf_datetime(self._now())
        return contact

    # --- invoices -----------------------------------------------------------------------

    def _line(self, raw: object, currency: str, account: str) -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise _post_data_invalid("LineItems must be objects")
        quantity = self._decimal(raw, "Quantity", Decimal(1))
        unit = self._decimal(raw, "UnitAmount", Decimal(0))
        tax = self._decimal(raw, "TaxAmount", Decimal(0))
        return {
            "LineItemID": str(uuid.uuid4()),
            "Description": str(raw.get("Description") or ""),
            "Quantity": self._number(quantity, raw, "Quantity"),
            "UnitAmount": self._number(unit, raw, "UnitAmount"),
            "TaxAmount": self._number(_money(tax, currency), raw, "TaxAmount"),
            "LineAmount": self._number(_money(quantity * unit, currency), raw, "LineAmount"),
            "AccountCode": str(raw.get("AccountCode") or account),
        }

    def _totals(self, invoice: dict[str, Any]) -> None:
        currency = invoice["CurrencyCode"]
        lines = invoice["LineItems"]
        amounts = sum((decimal_of(line["LineAmount"], "LineAmount") for line in lines), Decimal())
        tax = sum((decimal_of(line["TaxAmount"], "TaxAmount") for line in lines), Decimal())
        if invoice["LineAmountTypes"] == "NoTax":
            tax = Decimal()
        subtotal = amounts - tax if invoice["LineAmountTypes"] == "Inclusive" else amounts
        total = subtotal + tax
        paid = decimal_of(invoice["AmountPaid"], "AmountPaid")
        invoice["SubTotal"] = self._number(_money(subtotal, currency), invoice, "SubTotal")
        invoice["TotalTax"] = self._number(_money(tax, currency), invoice, "TotalTax")
        invoice["Total"] = self._number(_money(total, currency), invoice, "Total")
        invoice["AmountDue"] = self._number(_money(total - paid, currency), invoice, "AmountDue")

    def _invoice(self, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        kind = body.get("Type")
        if kind not in ("ACCREC", "ACCPAY"):
            raise _validation_error(body, "Invoice Type must be specified")
        status = body.get("Status", "DRAFT")
        if status not in _CREATE_INVOICE_STATES:
            raise _validation_error(body, f"Invoice Status {status!r} is not valid on create")
        today = self._now().date()
        number = body.get("InvoiceNumber") or (
            f"INV-{next(self._invoice_numbers):04d}" if kind == "ACCREC" else ""
        )
        return {
            "Type": kind,
            "InvoiceID": record_id,
            "InvoiceNumber": number,
            "Reference": "",
            "Status": "DRAFT",
            "LineAmountTypes": "Exclusive",
            "CurrencyCode": self.base_currency,
            "CurrencyRate": 1,
            "Date": wcf_date(today),
            "DateString": iso_date_string(today),
            "LineItems": [],
            "AmountPaid": 0,
            "AmountCredited": 0,
            "Payments": [],
            "HasAttachments": False,
            "IsDiscounted": False,
        }

    def _edit_invoice(
        self, obj: dict[str, Any], body: Mapping[str, Any], *, creating: bool = False
    ) -> dict[str, Any]:
        invoice = dict(obj)
        current = invoice["Status"]
        target = body.get("Status", current)
        if not creating:
            _check_transition(invoice, body, current, target)
        if target not in (*_EDITABLE_INVOICE, "DELETED", "VOIDED"):
            raise _validation_error(body, f"Invoice Status {target!r} is not valid")
        invoice["Status"] = target
        self._link_contact(invoice, body)
        self._copy_invoice_fields(invoice, body)
        self._totals(invoice)
        if target == "AUTHORISED" and not invoice["LineItems"]:
            raise _validation_error(body, "An invoice must have at least one line item")
        invoice["UpdatedDateUTC"] = wcf_datetime(self._now())
        if invoice["Type"] == "ACCREC":
            self.store["customer"][invoice["Contact"]["ContactID"]]["IsCustomer"] = True
        return invoice

    def _link_contact(self, invoice: dict[str, Any], body: Mapping[str, Any]) -> None:
        contact = body.get("Contact")
        if contact is not None:
            contact_id = contact.get("ContactID") if isinstance(contact, Mapping) else None
            found = self.store["customer"].get(str(contact_id))
            if found is None:
                raise _validation_error(body, "The Contact specified could not be found")
            invoice["Contact"] = {"ContactID": found["ContactID"], "Name": found["Name"]}
        if "Contact" not in invoice:
            raise _validation_error(
                body, "A Contact must be specified for this type of transaction"
            )

    def _copy_invoice_fields(self, invoice: dict[str, Any], body: Mapping[str, Any]) -> None:
        for field in ("InvoiceNumber", "Reference", "CurrencyCode"):
            if body.get(field):
                invoice[field] = str(body[field])
        if body.get("LineAmountTypes"):
            if body["LineAmountTypes"] not in ("Exclusive", "Inclusive", "NoTax"):
                raise _validation_error(body, "LineAmountTypes is not valid")
            invoice["LineAmountTypes"] = body["LineAmountTypes"]
        for field in ("Date", "DueDate"):
            when = self._date(body, field)
            if when is not None:
                invoice[field] = wcf_date(when)
                invoice[f"{field}String"] = iso_date_string(when)
        if "LineItems" in body:
            lines = body["LineItems"]
            if not isinstance(lines, list):
                raise _post_data_invalid("LineItems must be an array")
            invoice["LineItems"] = [
                self._line(line, invoice["CurrencyCode"], "200") for line in lines
            ]

    # --- payments -----------------------------------------------------------------------

    def _payment(self, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        ref = body.get("Invoice")
        invoice_id = ref.get("InvoiceID") if isinstance(ref, Mapping) else None
        invoice = self.store["invoice"].get(str(invoice_id))
        if invoice is None:
            raise _validation_error(body, "Invoice could not be found")
        if invoice["Status"] != "AUTHORISED":
            raise _validation_error(body, "Payments can only be made against Authorised documents")
        account = body.get("Account")
        code = account.get("Code") if isinstance(account, Mapping) else None
        if not code:
            raise _validation_error(body, "Account code must be specified")
        currency = invoice["CurrencyCode"]
        amount = self._decimal(body, "Amount", Decimal(0))
        if amount <= 0 or _money(amount, currency) != amount:
            raise _validation_error(body, "Payment amount must be a positive money amount")
        due = decimal_of(invoice["AmountDue"], "AmountDue")
        if amount > due:
            raise _validation_error(
                body, "Payment amount exceeds the amount outstanding on this document"
            )
        paid_on = self._date(body, "Date") or self._now().date()
        number = self._number(amount, body, "Amount")
        payment = {
            "PaymentID": record_id,
            "Date": wcf_date(paid_on),
            "Amount": number,
            "BankAmount": number,
            "Reference": str(body.get("Reference") or ""),
            "CurrencyRate": 1,
            "PaymentType": "ACCRECPAYMENT",
            "Status": "AUTHORISED",
            "IsReconciled": False,
            "HasAccount": True,
            "HasValidationErrors": False,
            "Account": {"AccountID": str(uuid.uuid5(_ID_NAMESPACE, str(code))), "Code": code},
            "Invoice": {
                "Type": invoice["Type"],
                "InvoiceID": invoice["InvoiceID"],
                "InvoiceNumber": invoice["InvoiceNumber"],
                "Contact": dict(invoice["Contact"]),
                "CurrencyCode": currency,
            },
            "UpdatedDateUTC": wcf_datetime(self._now()),
        }
        self._settle(invoice, payment, amount)
        return payment

    def _settle(self, invoice: dict[str, Any], payment: Mapping[str, Any], amount: Decimal) -> None:
        """Apply (positive ``amount``) or reverse (negative) a payment on its invoice."""
        currency = invoice["CurrencyCode"]
        paid = decimal_of(invoice["AmountPaid"], "AmountPaid") + amount
        invoice["AmountPaid"] = self._number(_money(paid, currency), invoice, "AmountPaid")
        self._totals(invoice)
        if amount > 0:
            invoice["Payments"] = [
                *invoice["Payments"],
                {
                    "PaymentID": payment["PaymentID"],
                    "Date": payment["Date"],
                    "Amount": payment["Amount"],
                },
            ]
        else:
            invoice["Payments"] = [
                p for p in invoice["Payments"] if p["PaymentID"] != payment["PaymentID"]
            ]
        settled = decimal_of(invoice["AmountDue"], "AmountDue") == 0
        invoice["Status"] = "PAID" if settled else "AUTHORISED"
        invoice["UpdatedDateUTC"] = wcf_datetime(self._now())

    def _edit_payment(self, obj: dict[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        if set(body) - {"Status", "PaymentID"} or body.get("Status") != "DELETED":
            raise _validation_error(body, "Payments can only be deleted (Status DELETED)")
        if obj["Status"] == "DELETED":
            raise _validation_error(body, "This payment has already been deleted")
        payment = {**obj, "Status": "DELETED", "UpdatedDateUTC": wcf_datetime(self._now())}
        invoice = self.store["invoice"][obj["Invoice"]["InvoiceID"]]
        self._settle(invoice, payment, -decimal_of(obj["Amount"], "Amount"))
        return payment

    # --- Simulator hooks ----------------------------------------------------------------

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if entity_type == "customer":
            return self._edit_contact(self._contact(record_id), body)
        if entity_type == "invoice":
            return self._edit_invoice(self._invoice(record_id, body), body, creating=True)
        return self._payment(record_id, body)

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        if entity_type == "customer":
            return self._edit_contact(obj, body)
        if entity_type == "invoice":
            return self._edit_invoice(obj, body)
        return self._edit_payment(obj, body)

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        """What "delete" means in Xero: nothing disappears, its status says it is gone."""
        obj = self.get(entity_type, record_id)
        if entity_type == "customer":
            self.update(entity_type, record_id, {"ContactStatus": "ARCHIVED"})
        elif entity_type == "invoice":
            draft = obj["Status"] in ("DRAFT", "SUBMITTED")
            self.update(entity_type, record_id, {"Status": "DELETED" if draft else "VOIDED"})
        else:
            self.update(entity_type, record_id, {"Status": "DELETED"})

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        if self.webhook_secret is None:
            raise RuntimeError("the Xero simulator signs webhooks: give it a webhook_secret")
        events = [self._event(change) for change in changes]
        payload = {
            "events": events,
            "firstEventSequence": min(change.seq for change in changes),
            "lastEventSequence": max(change.seq for change in changes),
            "entropy": "".join(
                secrets.choice(string.ascii_uppercase) for _ in range(_ENTROPY_LENGTH)
            ),
        }
        body = json.dumps(payload).encode()
        return [(body, {"x-xero-signature": _signature(self.webhook_secret, body)})]

    def _event(self, change: Change) -> dict[str, Any]:
        category = _CATEGORIES.get(change.entity_type)
        resource_id = change.record_id
        event_type = "CREATE" if change.op == "create" else "UPDATE"
        if category is None:
            # Xero sends no payment events; the invoice a payment settles is updated.
            category = "INVOICE"
            resource_id = self.store["payment"][change.record_id]["Invoice"]["InvoiceID"]
            event_type = "UPDATE"
        collection = "Contacts" if category == "CONTACT" else "Invoices"
        at = change.at.astimezone(UTC)
        return {
            "resourceUrl": f"https://api.xero.com{API_PATH}/{collection}/{resource_id}",
            "resourceId": resource_id,
            "eventDateUtc": f"{at:%Y-%m-%dT%H:%M:%S}.{at.microsecond // 1000:03d}",
            "eventType": event_type,
            "eventCategory": category,
            "tenantId": self.tenant_id,
            "tenantType": "ORGANISATION",
        }

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        if entity_type == "customer":
            return self._seed_contact(index)
        if entity_type == "invoice":
            return self._seed_invoice(index)
        return self._seed_payment(index)

    def _seed_contact(self, index: int) -> dict[str, Any]:
        first, last = _FIRST[index % len(_FIRST)], _LAST[(index // 3) % len(_LAST)]
        company = _COMPANIES[index % len(_COMPANIES)]
        city, postcode = _CITIES[index % len(_CITIES)]
        return {
            "Name": f"{company} #{index + 1}",
            "FirstName": first,
            "LastName": last,
            "EmailAddress": f"{first}.{last}.{index + 1}@example.com".lower(),
            "Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": f"04 {555_0100 + index}"}],
            "Addresses": [
                {
                    "AddressType": "STREET",
                    "AddressLine1": f"{index + 1} Lambton Quay",
                    "City": city,
                    "PostalCode": postcode,
                    "Country": "NZ",
                }
            ],
        }

    def _seed_invoice(self, index: int) -> dict[str, Any]:
        contacts = self.live("customer")
        if not contacts:
            raise RuntimeError("seed contacts before invoices")
        description, quantity, unit = _SERVICES[index % len(_SERVICES)]
        issued = _SEED_EPOCH + timedelta(days=index)
        return {
            "Type": "ACCREC",
            "Contact": {"ContactID": contacts[index % len(contacts)]["ContactID"]},
            "Status": "AUTHORISED",
            "Date": issued.isoformat(),
            "DueDate": (issued + timedelta(days=20)).isoformat(),
            "LineAmountTypes": "Exclusive",
            "LineItems": [
                {
                    "Description": description,
                    "Quantity": quantity,
                    "UnitAmount": unit,
                    "TaxAmount": _money(quantity * unit * Decimal("0.15"), self.base_currency),
                    "AccountCode": "200",
                }
            ],
        }

    def _seed_payment(self, index: int) -> dict[str, Any]:
        open_invoices = [
            i for i in self.live("invoice") if i["Type"] == "ACCREC" and i["Status"] == "AUTHORISED"
        ]
        if not open_invoices:
            raise RuntimeError("seed approved invoices before payments")
        invoice = open_invoices[index % len(open_invoices)]
        due = decimal_of(invoice["AmountDue"], "AmountDue")
        step = Decimal(1).scaleb(-minor_unit_digits(invoice["CurrencyCode"]))
        half = (due / 2).quantize(step, rounding=ROUND_DOWN)
        return {
            "Invoice": {"InvoiceID": invoice["InvoiceID"]},
            "Account": {"Code": "090"},
            "Date": (_SEED_EPOCH + timedelta(days=index + 7)).isoformat(),
            "Amount": half if half > 0 else due,
            "Reference": f"Direct credit {index + 1:04d}",
        }

    # --- HTTP ---------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        app.router.add_post("/connect/token", self._token)
        for entity_type, (collection, _) in RESOURCES.items():
            base = f"{API_PATH}/{collection}"
            app.router.add_get(base, self._tenanted(self._list_handler(entity_type)))
            app.router.add_put(base, self._tenanted(self._create_handler(entity_type)))
            app.router.add_post(base, self._tenanted(self._create_handler(entity_type)))
            app.router.add_get(base + "/{id}", self._tenanted(self._get_handler(entity_type)))
            app.router.add_post(base + "/{id}", self._tenanted(self._edit_handler(entity_type)))

    def _tenanted(self, handler: Handler) -> Handler:
        async def checked(request: web.Request) -> web.StreamResponse:
            if request.headers.get("xero-tenant-id") != self.tenant_id:
                return _forbidden()
            return await handler(request)

        return checked

    def _envelope(self, collection: str, objects: list[dict[str, Any]], **extra: Any) -> Any:
        return {
            "Id": str(uuid.uuid4()),
            "Status": "OK",
            "ProviderName": "crmsync simulator",
            "DateTimeUTC": wcf_datetime(self._now()),
            **extra,
            collection: objects,
        }

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.text(), parse_float=Decimal)
        except ValueError:
            raise _post_data_invalid("The request body is not valid JSON") from None

    def _items(self, body: Any, collection: str) -> list[Mapping[str, Any]]:
        """The objects of a request: ``{"Contacts": [...]}``, or one bare object."""
        if not isinstance(body, Mapping):
            raise _post_data_invalid(f"Expected {collection} as a JSON object")
        items = body.get(collection, [body])
        if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
            raise _post_data_invalid(f"Expected {collection} as an array of objects")
        return items

    def _list_handler(self, entity_type: EntityType) -> Handler:
        collection, _ = RESOURCES[entity_type]

        async def handler(request: web.Request) -> web.StreamResponse:
            objects = list(self.store[entity_type].values())
            query = request.query
            if entity_type == "customer" and query.get("includeArchived", "").lower() != "true":
                objects = [o for o in objects if o["ContactStatus"] != "ARCHIVED"]
            if "where" in query:
                match = _WHERE_CLAUSE.match(query["where"])
                if match is None:
                    body = {"ErrorNumber": 16, "Type": "QueryParseException", "Message": "where"}
                    return web.json_response(body, status=400)
                field, value = match.groups()
                objects = [o for o in objects if str(o.get(field)) == value]
            since_header = request.headers.get("If-Modified-Since")
            if since_header:
                since = _http_since(since_header)
                objects = [o for o in objects if parse_datetime(o["UpdatedDateUTC"], "u") >= since]
            if query.get("order", "").replace(" ", "").upper() == "UPDATEDDATEUTCASC":
                objects.sort(key=lambda o: parse_datetime(o["UpdatedDateUTC"], "u"))
            if "page" not in query:
                return web.json_response(self._envelope(collection, objects))
            try:
                page = int(query["page"])
                size = int(query.get("pageSize", DEFAULT_PAGE_SIZE))
            except ValueError:
                return web.json_response(
                    {"ErrorNumber": 16, "Type": "QueryParseException", "Message": "page"},
                    status=400,
                )
            size = max(1, min(size, MAX_PAGE_SIZE))
            page = max(page, 1)
            chunk = objects[(page - 1) * size : page * size]
            pagination = {
                "page": page,
                "pageSize": size,
                "pageCount": max(1, -(-len(objects) // size)),
                "itemCount": len(objects),
            }
            return web.json_response(self._envelope(collection, chunk, pagination=pagination))

        return handler

    def _get_handler(self, entity_type: EntityType) -> Handler:
        collection, _ = RESOURCES[entity_type]

        async def handler(request: web.Request) -> web.StreamResponse:
            obj = self.store[entity_type].get(request.match_info["id"])
            if obj is None:
                return web.Response(status=404, text=_NOT_FOUND)
            return web.json_response(self._envelope(collection, [obj]))

        return handler

    def _create_handler(self, entity_type: EntityType) -> Handler:
        collection, id_field = RESOURCES[entity_type]

        async def handler(request: web.Request) -> web.StreamResponse:
            key = request.headers.get("Idempotency-Key")
            replay_key = (request.method, request.path, key or "")
            if key and replay_key in self._idempotent:
                status, text = self._idempotent[replay_key]
                return web.Response(status=status, text=text, content_type="application/json")
            items = self._items(await self._body(request), collection)
            stored = []
            for item in items:
                existing = item.get(id_field)
                if request.method == "POST" and existing:
                    if existing not in self.store[entity_type]:
                        return web.Response(status=404, text=_NOT_FOUND)
                    stored.append(self.update(entity_type, str(existing), item))
                else:
                    stored.append(self.create(entity_type, item))
            text = json.dumps(self._envelope(collection, stored))
            if key:
                self._idempotent[replay_key] = (200, text)
            return web.Response(status=200, text=text, content_type="application/json")

        return handler

    def _edit_handler(self, entity_type: EntityType) -> Handler:
        collection, id_field = RESOURCES[entity_type]

        async def handler(request: web.Request) -> web.StreamResponse:
            record_id = request.match_info["id"]
            if record_id not in self.store[entity_type]:
                return web.Response(status=404, text=_NOT_FOUND)
            items = self._items(await self._body(request), collection)
            if len(items) != 1 or items[0].get(id_field, record_id) != record_id:
                raise _post_data_invalid(
                    f"Expected one {collection[:-1]} with {id_field} {record_id}"
                )
            stored = self.update(entity_type, record_id, items[0])
            return web.json_response(self._envelope(collection, [stored]))

        return handler


def _check_transition(
    invoice: Mapping[str, Any], body: Mapping[str, Any], current: str, target: str
) -> None:
    """Xero's rules for changing an existing invoice (status changes included)."""
    if current not in _EDITABLE_INVOICE:
        raise _validation_error(body, "Invoice not of valid status for modification")
    if decimal_of(invoice["AmountPaid"], "AmountPaid") > 0:
        raise _validation_error(
            body,
            "This document cannot be edited as it has a payment or credit note allocated to it.",
        )
    if target == "DELETED" and current not in ("DRAFT", "SUBMITTED"):
        raise _validation_error(body, "Only draft invoices can be deleted; void it")
    if target == "VOIDED" and current != "AUTHORISED":
        raise _validation_error(body, "Only approved invoices can be voided")
    if target in ("DRAFT", "SUBMITTED") and current == "AUTHORISED":
        raise _validation_error(body, "An approved invoice cannot return to draft")


def _http_since(value: str) -> datetime:
    """If-Modified-Since as Xero reads it: ISO 8601 (zone-less is UTC) or an HTTP date."""
    try:
        return parse_datetime(value, "If-Modified-Since")
    except MappingError:
        try:
            return parsedate_to_datetime(value).astimezone(UTC)
        except (TypeError, ValueError):
            raise _post_data_invalid("If-Modified-Since is not a date") from None
