"""QuickBooks Online shapes <-> canonical records, and its two webhook formats.

Webhooks are thin: both the classic ``eventNotifications`` object and the CloudEvents array
newer apps receive name an entity and an operation, never its fields, so every item but a
delete has ``record=None`` and the processor fetches the record. QuickBooks delivers out of
order; ``occurred_at`` is the entity's own last-updated time so the merge can tell.

Objects are read as ``GET /v3/company/{realm}/{entity}/{id}`` returns them (the
``{"Customer": {...}, "time": ...}`` envelope or the bare entity) and written as the
create / sparse-update bodies the same endpoints take. Connection settings used here:
``realm_id`` (the company, required), ``home_currency`` (ISO 4217, for objects without a
``CurrencyRef``) and ``item_id`` (the product/service item invoice lines are booked to).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Final

from connectors.base import bounded_event_id, clean_text
from connectors.money import decimal_of
from connectors.overrides import with_field_overrides
from connectors.quickbooks.values import (
    country_code,
    from_minor,
    json_number,
    parse_date,
    parse_timestamp,
    to_minor,
)
from connectors.spec import (
    EntityType,
    MappingError,
    Op,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
    canonical_data,
    json_body,
    require,
)
from schemas.records import line_amount

# QuickBooks entity names (webhook ``name``, API object key) of the entities we sync.
ENTITY_NAMES: Final[dict[EntityType, str]] = {
    "customer": "Customer",
    "invoice": "Invoice",
    "payment": "Payment",
}
_ENTITY_BY_NAME: Final[dict[str, EntityType]] = {v: k for k, v in ENTITY_NAMES.items()}
_NAME_BY_TYPE: Final[dict[str, str]] = {str(k): v for k, v in ENTITY_NAMES.items()}

# The operations Intuit's webhooks documentation lists ("Create, Update, Delete, Merge,
# Void, Emailed"). Void keeps the record (an invoice becomes status "void"); Emailed
# changes no field we sync, so it is ignored rather than costing a fetch.
_OPERATIONS: Final[dict[str, Op | None]] = {
    "Create": "upsert",
    "Update": "upsert",
    "Merge": "upsert",
    "Void": "upsert",
    "Delete": "delete",
    "Emailed": None,
}
# CloudEvents ``type`` is ``qbo.<entity>.<past-tense operation>.v<n>``.
_CLOUD_ACTIONS: Final[dict[str, str]] = {
    "created": "Create",
    "updated": "Update",
    "merged": "Merge",
    "voided": "Void",
    "deleted": "Delete",
    "emailed": "Emailed",
}
_CLOUD_TYPE = re.compile(r"qbo\.(?P<entity>[a-z]+)\.(?P<action>[a-z]+)\.v(?P<version>\d+)")
_CLOUD_SPEC_VERSION = "1.0"

# QuickBooks marks a voided transaction by zeroing its amounts and prepending "Voided" to
# PrivateNote (Intuit developer blog, "Voiding Invoice Objects", 2016-04-06).
VOID_MARK = "Voided"

# Field limits from Intuit's Customer / Invoice / Payment API reference. Free text is cut
# to fit; identifiers that would change meaning when cut raise instead.
MAX_DISPLAY_NAME = 500
MAX_COMPANY_NAME = 100
MAX_NOTES = 2000
MAX_PHONE = 30
MAX_EMAIL = 100
MAX_ADDRESS_LINE = 500
MAX_CITY = 255
MAX_REGION = 255
MAX_POSTAL_CODE = 30
MAX_DOC_NUMBER = 21
MAX_PAYMENT_REF = 21
MAX_LINE_DESCRIPTION = 4000

_ADDRESS_FIELDS: Final[tuple[tuple[str, str, int], ...]] = (
    ("line1", "Line1", MAX_ADDRESS_LINE),
    ("line2", "Line2", MAX_ADDRESS_LINE),
    ("city", "City", MAX_CITY),
    ("region", "CountrySubDivisionCode", MAX_REGION),
    ("postal_code", "PostalCode", MAX_POSTAL_CODE),
)


@with_field_overrides
class Mapper:
    """QuickBooks Online's RecordMapper: pure, settings passed in, no I/O."""

    # --- webhooks ------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        realm = realm_of(settings)
        document = json_body(body)
        if isinstance(document, list):
            return _parse_cloud_events(document, realm)
        if isinstance(document, dict) and "eventNotifications" in document:
            return _parse_classic(document, realm)
        raise MappingError(
            "schema_violation",
            "body: neither an eventNotifications object nor a CloudEvents array",
        )

    # --- API objects -> canonical --------------------------------------------------------

    def to_canonical(
        self, entity_type: EntityType, obj: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> RemoteRecord:
        name = _entity_name(entity_type)
        entity = obj.get(name, obj)
        prefix = name if entity is not obj else ""
        if not isinstance(entity, Mapping):
            raise MappingError("schema_violation", f"{name}: expected an object")
        external_id = _id(_require(entity, "Id", prefix), _join(prefix, "Id"))
        updated_at = parse_timestamp(
            _require(entity, "MetaData.LastUpdatedTime", prefix),
            _join(prefix, "MetaData.LastUpdatedTime"),
        )
        sync_token = entity.get("SyncToken")
        version = None if sync_token is None else str(sync_token)
        reader = _Reader(entity, prefix)
        if entity_type == "customer":
            data, refs, deleted = _customer_data(reader)
        elif entity_type == "invoice":
            data, refs, deleted = _invoice_data(reader, settings)
        else:
            data, refs, deleted = _payment_data(reader, settings)
        return RemoteRecord(
            entity_type=entity_type,
            external_id=external_id,
            updated_at=updated_at,
            data=canonical_data(entity_type, data, f"{prefix or name} -> canonical "),
            refs=refs,
            deleted=deleted,
            version=version,
        )

    # --- canonical -> API bodies ---------------------------------------------------------

    def from_canonical(
        self,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:
        _entity_name(entity_type)
        if entity_type == "customer":
            return _customer_body(data)
        if entity_type == "invoice":
            return _invoice_body(data, refs, settings)
        return _payment_body(data, refs, settings)


def realm_of(settings: Mapping[str, Any]) -> str:
    """The connection's QuickBooks company id (``realm_id``), required for everything."""
    realm = settings.get("realm_id")
    if not isinstance(realm, str | int) or isinstance(realm, bool) or not str(realm).strip():
        raise MappingError("misconfigured", "settings.realm_id: the connection has no realm id")
    return str(realm).strip()


def home_currency(settings: Mapping[str, Any]) -> str | None:
    value = settings.get("home_currency")
    return value if isinstance(value, str) and value else None


# --- webhook parsing ---------------------------------------------------------------------


def _parse_classic(document: Mapping[str, Any], realm: str) -> WebhookParse:
    notifications = document["eventNotifications"]
    if not isinstance(notifications, list):
        raise MappingError("schema_violation", "eventNotifications: expected an array")
    items: list[WebhookItem] = []
    ignored = 0
    for n, notification in enumerate(notifications):
        path = f"eventNotifications.{n}"
        if not isinstance(notification, Mapping):
            raise MappingError("schema_violation", f"{path}: expected an object")
        _check_realm(_require(notification, "realmId", path), realm, f"{path}.realmId")
        entities = _require(notification, "dataChangeEvent.entities", path)
        if not isinstance(entities, list):
            raise MappingError(
                "schema_violation", f"{path}.dataChangeEvent.entities: expected an array"
            )
        for e, entity in enumerate(entities):
            entity_path = f"{path}.dataChangeEvent.entities.{e}"
            if not isinstance(entity, Mapping):
                raise MappingError("schema_violation", f"{entity_path}: expected an object")
            name = _text(_require(entity, "name", entity_path), f"{entity_path}.name")
            operation = _text(
                _require(entity, "operation", entity_path), f"{entity_path}.operation"
            )
            entity_type = _ENTITY_BY_NAME.get(name)
            if entity_type is None:
                ignored += 1
                continue
            op = _operation(operation, f"{entity_path}.operation")
            if op is None:
                ignored += 1
                continue
            external_id = _id(_require(entity, "id", entity_path), f"{entity_path}.id")
            last_updated = _text(
                _require(entity, "lastUpdated", entity_path), f"{entity_path}.lastUpdated"
            )
            occurred_at = parse_timestamp(last_updated, f"{entity_path}.lastUpdated")
            event_id = f"{realm}:{name}:{external_id}:{operation}:{last_updated}"
            items.append(
                WebhookItem(bounded_event_id(event_id), entity_type, external_id, op, occurred_at)
            )
            merged_away = entity.get("deletedId")
            if operation == "Merge" and merged_away is not None:
                items.append(
                    _merged_away(event_id, entity_type, merged_away, occurred_at, entity_path)
                )
    return WebhookParse(items=tuple(items), ignored=ignored)


def _parse_cloud_events(events: list[Any], realm: str) -> WebhookParse:
    items: list[WebhookItem] = []
    ignored = 0
    for n, event in enumerate(events):
        path = str(n)
        if not isinstance(event, Mapping):
            raise MappingError("schema_violation", f"{path}: expected a CloudEvent object")
        spec_version = _require(event, "specversion", path)
        if spec_version != _CLOUD_SPEC_VERSION:
            raise MappingError(
                "schema_violation", f"{path}.specversion: {spec_version!r} is not 1.0"
            )
        _check_realm(_require(event, "intuitaccountid", path), realm, f"{path}.intuitaccountid")
        event_type = _text(_require(event, "type", path), f"{path}.type")
        match = _CLOUD_TYPE.fullmatch(event_type)
        if match is None:
            raise MappingError(
                "unknown_event_type", f"{path}.type: {event_type!r} is not a qbo.* event type"
            )
        entity_type = _ENTITY_BY_NAME.get(match["entity"].capitalize())
        if entity_type is None:
            ignored += 1
            continue
        operation = _CLOUD_ACTIONS.get(match["action"])
        if operation is None:
            raise MappingError(
                "unknown_event_type", f"{path}.type: unknown operation {match['action']!r}"
            )
        op = _operation(operation, f"{path}.type")
        if op is None:
            ignored += 1
            continue
        event_id = _id(_require(event, "id", path), f"{path}.id")
        external_id = _id(_require(event, "intuitentityid", path), f"{path}.intuitentityid")
        occurred_at = parse_timestamp(_require(event, "time", path), f"{path}.time")
        items.append(
            WebhookItem(bounded_event_id(event_id), entity_type, external_id, op, occurred_at)
        )
        data = event.get("data")
        if data is not None and not isinstance(data, Mapping):
            raise MappingError("schema_violation", f"{path}.data: expected an object")
        merged_away = (data or {}).get("deletedid")
        if operation == "Merge" and merged_away is not None:
            items.append(
                _merged_away(event_id, entity_type, merged_away, occurred_at, f"{path}.data")
            )
    return WebhookParse(items=tuple(items), ignored=ignored)


def _merged_away(
    event_id: str, entity_type: EntityType, value: Any, occurred_at: datetime, path: str
) -> WebhookItem:
    """A merge folds one record into another: the folded one is gone for good."""
    external_id = _id(value, f"{path}.deletedId")
    return WebhookItem(
        bounded_event_id(f"{event_id}:merged:{external_id}"),
        entity_type,
        external_id,
        "delete",
        occurred_at,
    )


def _operation(operation: str, path: str) -> Op | None:
    if operation not in _OPERATIONS:
        raise MappingError(
            "unknown_event_type", f"{path}: {operation!r} is not a QuickBooks operation"
        )
    return _OPERATIONS[operation]


def _check_realm(value: Any, realm: str, path: str) -> None:
    if _id(value, path) != realm:
        raise MappingError("realm_mismatch", f"{path}: not this connection's company")


# --- reading objects -----------------------------------------------------------------------


class _Reader:
    """Typed access to one QuickBooks object, with errors naming the provider path."""

    def __init__(self, obj: Mapping[str, Any], prefix: str) -> None:
        self.obj = obj
        self.prefix = prefix

    def path(self, path: str) -> str:
        return _join(self.prefix, path)

    def get(self, path: str) -> Any:
        node: Any = self.obj
        for part in path.split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node

    def text(self, path: str) -> str | None:
        """A string field; empty counts as absent (QuickBooks clears fields that way)."""
        value = self.get(path)
        if value is None:
            return None
        if not isinstance(value, str):
            raise MappingError("schema_violation", f"{self.path(path)}: expected a string")
        return value or None

    def ref(self, path: str) -> str | None:
        value = self.get(f"{path}.value")
        return None if value is None else _id(value, self.path(f"{path}.value"))

    def currency(self, settings: Mapping[str, Any]) -> str:
        code = self.ref("CurrencyRef") or home_currency(settings)
        if code is None:
            raise MappingError(
                "schema_violation",
                f"{self.path('CurrencyRef')}: absent and settings.home_currency is not set",
            )
        return code

    def amount(self, path: str, currency: str) -> int:
        value = self.get(path)
        return 0 if value is None else to_minor(value, currency, self.path(path))


def _customer_data(entity: _Reader) -> tuple[dict[str, Any], dict[str, str], bool]:
    email = entity.text("PrimaryEmailAddr.Address")
    data: dict[str, Any] = {
        "name": entity.text("DisplayName"),
        "email": email.strip() if email else None,
        "phone": entity.text("PrimaryPhone.FreeFormNumber"),
        "company": entity.text("CompanyName"),
        "address": _address(entity),
        "notes": entity.text("Notes"),
    }
    # QuickBooks cannot delete a customer: it makes it inactive, which ends its life here.
    return data, {}, entity.get("Active") is False


def _address(entity: _Reader) -> dict[str, Any] | None:
    if entity.get("BillAddr") is None:
        return None
    address: dict[str, Any] = {
        field: entity.text(f"BillAddr.{qbo_field}") for field, qbo_field, _ in _ADDRESS_FIELDS
    }
    country = entity.text("BillAddr.Country")
    address["country"] = country_code(country) if country else None
    return address if any(v is not None for v in address.values()) else None


def _invoice_data(
    entity: _Reader, settings: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], bool]:
    currency = entity.currency(settings)
    total = entity.amount("TotalAmt", currency)
    tax = entity.amount("TxnTaxDetail.TotalTax", currency)
    balance = entity.amount("Balance", currency)
    note = entity.text("PrivateNote") or ""
    if note.startswith(VOID_MARK):
        status = "void"
    elif balance == 0:
        status = "paid"
    else:
        status = "open"
    issued = entity.get("TxnDate")
    due = entity.get("DueDate")
    data: dict[str, Any] = {
        "number": entity.text("DocNumber"),
        "status": status,
        "currency": currency,
        "issued_on": None if issued is None else _iso(parse_date(issued, entity.path("TxnDate"))),
        "due_on": None if due is None else _iso(parse_date(due, entity.path("DueDate"))),
        "lines": _lines(entity, currency),
        "subtotal": total - tax,
        "tax": tax,
        "total": total,
        "amount_due": balance,
    }
    refs = _refs(customer_id=entity.ref("CustomerRef"))
    return data, refs, False


def _lines(entity: _Reader, currency: str) -> list[dict[str, Any]]:
    """Sales and discount lines, group lines expanded; subtotal and text lines skipped."""
    lines = entity.get("Line")
    if lines is None:
        return []
    if not isinstance(lines, list):
        raise MappingError("schema_violation", f"{entity.path('Line')}: expected an array")
    out: list[dict[str, Any]] = []
    for n, line in enumerate(lines):
        _line(line, entity.path(f"Line.{n}"), currency, out)
    return out


def _line(line: Any, path: str, currency: str, out: list[dict[str, Any]]) -> None:
    if not isinstance(line, Mapping):
        raise MappingError("schema_violation", f"{path}: expected an object")
    kind = line.get("DetailType")
    description = line.get("Description")
    if description is not None and not isinstance(description, str):
        raise MappingError("schema_violation", f"{path}.Description: expected a string")
    if kind == "SalesItemLineDetail":
        detail = line.get("SalesItemLineDetail") or {}
        amount = to_minor(line.get("Amount", 0), currency, f"{path}.Amount")
        qty = detail.get("Qty")
        price = detail.get("UnitPrice")
        if qty is None or price is None:
            # A lump-sum line (or a voided one, whose quantities QuickBooks zeroes).
            quantity, unit = Decimal(1), amount
        else:
            quantity = decimal_of(qty, f"{path}.SalesItemLineDetail.Qty")
            unit = to_minor(
                price, currency, f"{path}.SalesItemLineDetail.UnitPrice", round_extra=True
            )
            if quantity < 0:  # a return line: canonical quantities are never negative
                quantity, unit = -quantity, -unit
        out.append(_canonical_line(description, quantity, unit))
    elif kind == "DiscountLineDetail":
        amount = to_minor(line.get("Amount", 0), currency, f"{path}.Amount")
        out.append(_canonical_line(description, Decimal(1), -amount))
    elif kind == "GroupLineDetail":
        group = (line.get("GroupLineDetail") or {}).get("Line") or []
        if not isinstance(group, list):
            raise MappingError(
                "schema_violation", f"{path}.GroupLineDetail.Line: expected an array"
            )
        for n, sub in enumerate(group):
            _line(sub, f"{path}.GroupLineDetail.Line.{n}", currency, out)


def _canonical_line(description: str | None, quantity: Decimal, unit: int) -> dict[str, Any]:
    return {
        "description": description or None,
        "quantity": format(quantity.normalize(), "f"),
        "unit_amount": unit,
        "tax_amount": 0,
    }


def _payment_data(
    entity: _Reader, settings: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str], bool]:
    currency = entity.currency(settings)
    amount = entity.amount("TotalAmt", currency)
    voided = (entity.text("PrivateNote") or "").startswith(VOID_MARK)
    paid_on = entity.get("TxnDate")
    data: dict[str, Any] = {
        "amount": amount if amount > 0 else None,
        "currency": currency,
        "status": "succeeded",
        "method": entity.text("PaymentMethodRef.name"),
        "paid_at": None
        if paid_on is None
        else datetime.combine(parse_date(paid_on, entity.path("TxnDate")), time(), UTC).isoformat(),
        "reference": entity.text("PaymentRefNum"),
    }
    refs = _refs(customer_id=entity.ref("CustomerRef"), invoice_id=_paid_invoice(entity))
    # A voided payment received no money: its life as a payment is over.
    return data, refs, voided


def _paid_invoice(entity: _Reader) -> str | None:
    """The first invoice the payment is applied to (canonical payments pay one invoice)."""
    lines = entity.get("Line") or []
    if not isinstance(lines, list):
        raise MappingError("schema_violation", f"{entity.path('Line')}: expected an array")
    for n, line in enumerate(lines):
        linked = line.get("LinkedTxn") if isinstance(line, Mapping) else None
        for m, txn in enumerate(linked or []):
            if isinstance(txn, Mapping) and txn.get("TxnType") == "Invoice":
                return _id(txn.get("TxnId"), entity.path(f"Line.{n}.LinkedTxn.{m}.TxnId"))
    return None


# --- writing bodies ----------------------------------------------------------------------


def _customer_body(data: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    # DisplayName is required and cannot be cleared in QuickBooks: a null name is not sent.
    if data.get("name") is not None:
        body["DisplayName"] = _cut(data["name"], MAX_DISPLAY_NAME)
    if "email" in data:
        email = data["email"] or ""
        _fits(email, MAX_EMAIL, "email")
        body["PrimaryEmailAddr"] = {"Address": email}
    if "phone" in data:
        phone = data["phone"] or ""
        _fits(phone, MAX_PHONE, "phone")
        body["PrimaryPhone"] = {"FreeFormNumber": phone}
    if "company" in data:
        body["CompanyName"] = _cut(data["company"] or "", MAX_COMPANY_NAME)
    if "notes" in data:
        body["Notes"] = _cut(data["notes"] or "", MAX_NOTES)
    if "address" in data:
        address = data["address"] or {}
        bill_addr = {
            qbo_field: _cut(address.get(field) or "", limit)
            for field, qbo_field, limit in _ADDRESS_FIELDS
        }
        bill_addr["Country"] = address.get("country") or ""
        body["BillAddr"] = bill_addr
    return body


def _sale_body(data: Mapping[str, Any], refs: Mapping[str, str]) -> dict[str, Any]:
    """What an Invoice's and a Payment's bodies start with: the customer and the currency,
    each when known (a JSON object's member order means nothing to QuickBooks)."""
    body: dict[str, Any] = {}
    if refs.get("customer_id"):
        body["CustomerRef"] = {"value": refs["customer_id"]}
    if data.get("currency") is not None:
        body["CurrencyRef"] = {"value": data["currency"]}
    return body


def _invoice_body(
    data: Mapping[str, Any], refs: Mapping[str, str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    body = _sale_body(data, refs)
    if data.get("number") is not None:
        _fits(data["number"], MAX_DOC_NUMBER, "number")
        body["DocNumber"] = data["number"]
    if data.get("issued_on") is not None:
        body["TxnDate"] = _iso(_date(data["issued_on"], "issued_on"))
    if data.get("due_on") is not None:
        body["DueDate"] = _iso(_date(data["due_on"], "due_on"))
    currency = data.get("currency") or home_currency(settings)
    if data.get("lines") is not None:
        body["Line"] = [
            _line_body(line, n, _need_currency(currency, "lines"), settings)
            for n, line in enumerate(data["lines"])
        ]
    if data.get("tax") is not None:
        tax = from_minor(data["tax"], _need_currency(currency, "tax"), "tax")
        body["TxnTaxDetail"] = {"TotalTax": json_number(tax, "tax")}
    return body


def _line_body(
    line: Mapping[str, Any], n: int, currency: str, settings: Mapping[str, Any]
) -> dict[str, Any]:
    path = f"lines.{n}"
    quantity = decimal_of(line["quantity"], f"{path}.quantity")
    unit = int(line["unit_amount"])
    description = line.get("description")
    body: dict[str, Any] = {}
    if description:
        body["Description"] = _cut(description, MAX_LINE_DESCRIPTION)
    if unit < 0 and quantity == 1:
        # A negative one-off line is how canonical data spells a discount.
        amount = from_minor(-unit, currency, f"{path}.unit_amount")
        body |= {
            "DetailType": "DiscountLineDetail",
            "Amount": json_number(amount, f"{path}.unit_amount"),
            "DiscountLineDetail": {"PercentBased": False},
        }
        return body
    detail: dict[str, Any] = {
        "Qty": json_number(quantity, f"{path}.quantity"),
        "UnitPrice": json_number(from_minor(unit, currency, path), f"{path}.unit_amount"),
    }
    item = settings.get("item_id")
    if item:
        detail["ItemRef"] = {"value": str(item)}
    amount = from_minor(line_amount(quantity, unit), currency, path)
    body |= {
        "DetailType": "SalesItemLineDetail",
        "Amount": json_number(amount, f"{path}.amount"),
        "SalesItemLineDetail": detail,
    }
    return body


def _payment_body(
    data: Mapping[str, Any], refs: Mapping[str, str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    body = _sale_body(data, refs)
    if data.get("amount") is not None:
        currency = _need_currency(data.get("currency") or home_currency(settings), "amount")
        amount = json_number(from_minor(data["amount"], currency, "amount"), "amount")
        body["TotalAmt"] = amount
        if refs.get("invoice_id"):
            body["Line"] = [
                {
                    "Amount": amount,
                    "LinkedTxn": [{"TxnId": refs["invoice_id"], "TxnType": "Invoice"}],
                }
            ]
    if data.get("paid_at") is not None:
        body["TxnDate"] = _iso(_paid_on(data["paid_at"]))
    if "reference" in data:
        reference = data["reference"] or ""
        _fits(reference, MAX_PAYMENT_REF, "reference")
        body["PaymentRefNum"] = reference
    return body


# --- small helpers -------------------------------------------------------------------------


def _entity_name(entity_type: str) -> str:
    name = _NAME_BY_TYPE.get(entity_type)
    if name is None:
        raise MappingError(
            "unsupported_entity", f"entity_type: QuickBooks has no {entity_type!r} here"
        )
    return name


def _require(obj: Mapping[str, Any], path: str, prefix: str) -> Any:
    """spec.require, with the error naming the path from the top of the body."""
    try:
        return require(obj, path)
    except MappingError as exc:
        raise MappingError(exc.reason, _join(prefix, exc.detail)) from None


def _join(prefix: str, path: str) -> str:
    return f"{prefix}.{path}" if prefix else path


def _id(value: Any, path: str) -> str:
    """A non-empty string or integer id, as a string."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MappingError("schema_violation", f"{path}: expected an id")
    text = clean_text(str(value).strip())
    if text is None:
        raise MappingError("schema_violation", f"{path}: empty id")
    return text


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise MappingError("schema_violation", f"{path}: expected a non-empty string")
    return value


def _refs(**refs: str | None) -> dict[str, str]:
    return {field: value for field, value in refs.items() if value is not None}


def _iso(day: date) -> str:
    return day.isoformat()


def _date(value: Any, field: str) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    return parse_date(value, field)


def _paid_on(value: Any) -> date:
    """The UTC calendar day of ``paid_at``: QuickBooks keeps only a transaction date."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        moment = parse_timestamp(value, "paid_at")
    else:
        raise MappingError("schema_violation", "paid_at: expected a timestamp")
    if moment.tzinfo is None:
        raise MappingError("schema_violation", "paid_at: timestamp without a timezone")
    return moment.astimezone(UTC).date()


def _need_currency(currency: str | None, field: str) -> str:
    if not currency:
        raise MappingError(
            "schema_violation",
            f"{field}: amounts need a currency and neither data nor settings.home_currency has one",
        )
    return currency


def _cut(value: str, limit: int) -> str:
    return value[:limit]


def _fits(value: str, limit: int, field: str) -> None:
    if len(value) > limit:
        raise MappingError(
            "schema_violation", f"{field}: longer than the {limit} characters QuickBooks keeps"
        )


def holds_back(entity_type: EntityType, data: Mapping[str, Any]) -> str | None:
    """Why QuickBooks cannot hold this record yet (connectors.spec.ApiSpec.holds_back): an
    invoice needs at least one line ("Required param missing ...: Line"), so one without
    lines (a Stripe draft before its items, say) waits until it has them."""
    if entity_type == "invoice" and not data.get("lines"):
        return "QuickBooks takes no invoice without a line: it waits until it has lines"
    return None
