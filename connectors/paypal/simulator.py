"""A PayPal stand-in: Invoicing v2, Payments v2 captures, the client-credentials token
endpoint, and webhooks signed as PayPal signs them.

What it reproduces, because the client, the signature check and the sync depend on it:

- ``/v2/invoicing/invoices`` (create with ``PayPal-Request-Id`` replays, get, full-replace
  update, delete drafts, ``/send``, ``/cancel``, ``/payments`` to record a payment and
  ``DELETE /payments/{id}`` to remove one), page/page_size paging with ``total_pages``,
  ``/v2/invoicing/search-invoices`` by recipient e-mail, ``/v2/payments/captures/{id}``;
- PayPal's error shape: ``{"name", "message", "debug_id", "details": [{"field", "issue",
  "description"}]}`` (``INVALID_REQUEST``, ``UNPROCESSABLE_ENTITY``, ``RESOURCE_NOT_FOUND``);
- ``POST /v1/oauth2/token`` with HTTP Basic client credentials (``grant_type=
  client_credentials``), no refresh tokens;
- webhooks: ``INVOICING.INVOICE.*`` with the invoice, ``PAYMENT.CAPTURE.COMPLETED`` and
  ``PAYMENT.CAPTURE.REFUNDED`` (a refund linking ``up`` to its capture), each signed with
  the private key of a certificate the simulator issues from its own CA at start-up and
  serves at the ``PAYPAL-CERT-URL`` it names. ``trust_anchor_pem`` is that CA: a
  connection to the simulator sets it as ``paypal_trust_anchors``.

Customers are the merchant's address book: a user "creates" one to address invoices to
it; PayPal sends no customer events and has no customer API, so the client never calls
these (only the control API and ``sim.create`` do).
"""

from __future__ import annotations

import base64
import itertools
import json
import uuid
import zlib
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connectors.money import percent_of
from connectors.paypal.mapping import money, paypal_time, recorded_id, split_recorded, to_minor
from connectors.paypal.signature import ALGORITHM
from connectors.simkit import Change, Simulator, json_object, seed_person
from connectors.spec import EntityType
from schemas.records import line_amount

SIGNING_NAME = "messageverificationcerts.paypal.com"
CERT_PATH = "/v1/notifications/certs/CERT-360caa42-fca2a594-sim"


def issue_chain(
    common_name: str = SIGNING_NAME, *, valid_from: datetime | None = None, days: int = 365
) -> tuple[bytes, bytes, rsa.RSAPrivateKey]:
    """A CA and a leaf it signed for ``common_name``: (CA PEM, leaf PEM, leaf key). Shared
    by the simulator and the tests (a locally made chain, no network)."""
    start = valid_from or datetime.now(UTC) - timedelta(days=1)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "crmsync simulated PayPal CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return ca.public_bytes(pem), leaf.public_bytes(pem), key


def sign_transmission(
    key: rsa.RSAPrivateKey, transmission_id: str, when: str, webhook_id: str, body: bytes
) -> str:
    """PayPal's PAYPAL-TRANSMISSION-SIG for ``body``."""
    message = f"{transmission_id}|{when}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    signature = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def paypal_error(
    status: int, name: str, message: str, issue: str = "", field: str = ""
) -> web.HTTPException:
    body: dict[str, Any] = {"name": name, "message": message, "debug_id": uuid.uuid4().hex[:13]}
    if issue:
        body["details"] = [{"field": field, "issue": issue, "description": message}]
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 422: web.HTTPUnprocessableEntity}[status]
    return cls(text=json.dumps(body), content_type="application/json")


def _unprocessable(issue: str, message: str) -> web.HTTPException:
    return paypal_error(422, "UNPROCESSABLE_ENTITY", message, issue)


class PayPalSimulator(Simulator):
    """Simulated PayPal merchant; see the module docstring for what it reproduces."""

    provider = "paypal"
    entity_types: tuple[EntityType, ...] = ("customer", "invoice", "payment")
    public_paths = ("/oauth/token", "/v1/oauth2/token", CERT_PATH)

    def __init__(self, *, currency: str = "AUD", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.currency = currency
        self.trust_anchor_pem, self.certificate_pem, self._signing_key = issue_chain()
        self._numbers = itertools.count(1)
        self._replays: dict[tuple[str, str], str] = {}
        self.cert_fetches = 0

    def new_id(self, entity_type: EntityType) -> str:
        raw = uuid.uuid4().hex.upper()
        if entity_type == "invoice":
            return f"INV2-{raw[0:4]}-{raw[4:8]}-{raw[8:12]}-{raw[12:16]}"
        if entity_type == "customer":
            return raw  # replaced by the e-mail in new_object's caller
        return raw[:17]

    def _now(self) -> str:
        return paypal_time(self.clock())

    # --- objects ------------------------------------------------------------------------

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        if entity_type == "customer":
            # The address book is keyed by e-mail, as invoices address recipients.
            email = str(body.get("email_address") or "").strip().lower()
            if not email:
                raise _unprocessable(
                    "MISSING_REQUIRED_PARAMETER", "A recipient needs an email_address."
                )
            obj = {
                **self.store["customer"].get(email, {}),
                **body,
                "email_address": email,
                "update_time": self._now(),
            }
            self.store["customer"][email] = obj
            self.deleted["customer"].discard(email)
            return obj
        if entity_type == "payment" and body.get("capture"):
            return self._capture(body, notify=notify)
        if entity_type == "payment":
            return self._record_payment(str(body.get("invoice_id")), body, notify=notify)
        return super().create(entity_type, body, notify=notify)

    def _announce(self, entity_type: EntityType, record_id: str, op: str) -> None:
        if entity_type == "customer":
            return  # PayPal sends no customer events
        super()._announce(entity_type, record_id, op)

    def snapshot(self, entity_type: EntityType, record_id: str) -> dict[str, Any] | None:
        # PayPal's event carries the resource as it was when the event was made: an
        # invoice's creation event carries the DRAFT even when it was sent a moment later.
        obj = self.store[entity_type].get(record_id)
        return None if obj is None else json.loads(json.dumps(obj))

    def _recipient(self, recipients: Any) -> list[dict[str, Any]]:
        out = []
        for recipient in recipients or []:
            info = dict((recipient or {}).get("billing_info") or {})
            email = str(info.get("email_address") or "").strip().lower()
            known = self.store["customer"].get(email, {})
            info = {
                **{k: v for k, v in known.items() if k != "update_time"},
                **{k: v for k, v in info.items() if v},
            }
            out.append({"billing_info": info})
        return out

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        now = self._now()
        detail = dict(body.get("detail") or {})
        detail.setdefault("currency_code", self.currency)
        detail.setdefault("invoice_number", f"{next(self._numbers):04d}")
        detail.setdefault("invoice_date", self.clock().date().isoformat())
        if any(
            i["detail"]["invoice_number"] == detail["invoice_number"] for i in self.live("invoice")
        ):
            raise _unprocessable("DUPLICATE_INVOICE_NUMBER", "Invoice number is already in use.")
        detail["metadata"] = {"create_time": now, "last_update_time": now}
        invoice: dict[str, Any] = {
            "id": record_id,
            "status": "DRAFT",
            "detail": detail,
            "invoicer": {"email_address": "merchant@example.com"},
            "primary_recipients": self._recipient(body.get("primary_recipients")),
            "items": list(body.get("items") or []),
        }
        if not invoice["primary_recipients"]:
            raise _unprocessable("MISSING_REQUIRED_PARAMETER", "primary_recipients is required.")
        self._totals(invoice)
        if body.get("send"):
            self._transition(invoice, "UNPAID")
        return invoice

    def _totals(self, invoice: dict[str, Any]) -> None:
        currency = invoice["detail"]["currency_code"]
        subtotal = tax = 0
        for index, item in enumerate(invoice["items"]):
            unit, item_currency = to_minor(item.get("unit_amount"), f"items.{index}.unit_amount")
            if item_currency != currency:
                raise paypal_error(400, "INVALID_REQUEST", "Currency mismatch", "CURRENCY_MISMATCH")
            base = line_amount(Decimal(str(item.get("quantity", "1"))), unit)
            item_tax = 0
            if isinstance(item.get("tax"), Mapping):
                item_tax = percent_of(base, Decimal(str(item["tax"].get("percent", "0"))))
                item["tax"] = {**item["tax"], "amount": money(item_tax, currency)}
            subtotal += base
            tax += item_tax
        total = subtotal + tax
        paid = sum(to_minor(t["amount"], "amount")[0] for t in _transactions(invoice))
        invoice["amount"] = {
            **money(total, currency),
            "breakdown": {
                "item_total": money(subtotal, currency),
                "tax_total": money(tax, currency),
            },
        }
        invoice["due_amount"] = money(max(0, total - paid), currency)
        if paid:
            invoice["payments"]["paid_amount"] = money(paid, currency)
        if invoice["status"] in ("UNPAID", "SENT", "PARTIALLY_PAID", "PAID", "MARKED_AS_PAID"):
            if paid >= total and paid:
                invoice["status"] = "MARKED_AS_PAID" if _all_external(invoice) else "PAID"
            elif paid:
                invoice["status"] = "PARTIALLY_PAID"
            else:
                invoice["status"] = "UNPAID"
        invoice["detail"]["metadata"]["last_update_time"] = self._now()

    def _transition(self, invoice: dict[str, Any], target: str) -> None:
        current = invoice["status"]
        if target == "UNPAID" and current != "DRAFT":
            raise _unprocessable(
                "INVALID_INVOICE_STATUS", f"Cannot send an invoice in {current} status."
            )
        if target == "CANCELLED" and current not in (
            "SENT",
            "UNPAID",
            "SCHEDULED",
            "PARTIALLY_PAID",
        ):
            raise _unprocessable(
                "INVALID_INVOICE_STATUS", f"Cannot cancel an invoice in {current} status."
            )
        invoice["status"] = target
        invoice["detail"]["metadata"]["last_update_time"] = self._now()

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        obj = json.loads(json.dumps(obj))
        if entity_type == "invoice":
            fields = {k: v for k, v in body.items() if k not in ("send", "cancel")}
            if fields:
                if obj["status"] not in ("DRAFT", "SCHEDULED", "SENT", "UNPAID"):
                    raise _unprocessable(
                        "INVALID_INVOICE_STATUS",
                        f"Cannot update an invoice in {obj['status']} status.",
                    )
                if "detail" in fields:
                    metadata = obj["detail"]["metadata"]
                    obj["detail"] = {**obj["detail"], **fields["detail"], "metadata": metadata}
                if "items" in fields:
                    obj["items"] = list(fields["items"])
                if "primary_recipients" in fields:
                    obj["primary_recipients"] = self._recipient(fields["primary_recipients"])
            self._totals(obj)
            if body.get("send"):
                self._transition(obj, "UNPAID")
            if body.get("cancel"):
                self._transition(obj, "CANCELLED")
            return obj
        if body.get("refund") and "status" in obj:
            obj["status"] = "REFUNDED"
            obj["update_time"] = self._now()
            return obj
        raise _unprocessable("INVALID_RESOURCE_STATE", "A payment cannot be edited.")

    def _record_payment(
        self, invoice_id: str, body: Mapping[str, Any], *, notify: bool
    ) -> dict[str, Any]:
        invoice = self.store["invoice"].get(invoice_id)
        if invoice is None or invoice_id in self.deleted["invoice"]:
            raise paypal_error(
                404,
                "RESOURCE_NOT_FOUND",
                "The specified resource does not exist.",
                "INVALID_RESOURCE_ID",
            )
        if invoice["status"] not in ("SENT", "UNPAID", "PARTIALLY_PAID"):
            raise _unprocessable(
                "INVALID_INVOICE_STATUS",
                f"Cannot record a payment on an invoice in {invoice['status']} status.",
            )
        amount, currency = to_minor(body.get("amount"), "amount")
        due = to_minor(invoice["due_amount"], "due_amount")[0]
        if amount <= 0 or amount > due or currency != invoice["detail"]["currency_code"]:
            raise _unprocessable(
                "INVALID_PAYMENT_AMOUNT", "The payment amount is invalid or exceeds the amount due."
            )
        payment_id = "EXTR-" + uuid.uuid4().hex[:15].upper()
        transaction = {
            "payment_id": payment_id,
            "type": "EXTERNAL",
            "method": body.get("method") or "OTHER",
            "payment_date": body.get("payment_date") or self.clock().date().isoformat(),
            "amount": money(amount, currency),
        }
        if body.get("note"):
            transaction["note"] = body["note"]
        invoice.setdefault("payments", {"transactions": []})["transactions"].append(transaction)
        self._totals(invoice)
        record_id = recorded_id(invoice_id, payment_id)
        obj = {"invoice_id": invoice_id, "update_time": self._now(), "transaction": transaction}
        self.store["payment"][record_id] = obj
        if notify:
            self._announce("invoice", invoice_id, "update")
        return obj

    def _capture(self, body: Mapping[str, Any], *, notify: bool) -> dict[str, Any]:
        """A buyer paid an invoice through PayPal: a capture and a PAYPAL transaction."""
        invoice = self.get("invoice", str(body.get("invoice_id")))
        due, currency = to_minor(invoice["due_amount"], "due_amount")
        capture_id = self.new_id("payment")
        now = self._now()
        capture = {
            "id": capture_id,
            "status": "COMPLETED",
            "amount": money(due, currency),
            "final_capture": True,
            "invoice_id": invoice["detail"]["invoice_number"],
            "create_time": now,
            "update_time": now,
        }
        invoice.setdefault("payments", {"transactions": []})["transactions"].append(
            {
                "payment_id": capture_id,
                "type": "PAYPAL",
                "payment_date": now[:10],
                "amount": money(due, currency),
            }
        )
        self._totals(invoice)
        self.store["payment"][capture_id] = capture
        if notify:
            self._announce("payment", capture_id, "create")
            self._announce("invoice", invoice["id"], "update")
        return capture

    def delete(self, entity_type: EntityType, record_id: str) -> None:
        obj = self.get(entity_type, record_id)
        if entity_type == "invoice":
            if obj["status"] in ("DRAFT", "SCHEDULED"):
                super().delete(entity_type, record_id)
            else:
                self.update("invoice", record_id, {"cancel": True})
            return
        if entity_type == "payment":
            recorded = split_recorded(record_id)
            if recorded is None:
                raise _unprocessable(
                    "INVALID_RESOURCE_STATE", "A capture cannot be deleted; refund it."
                )
            invoice = self.store["invoice"][recorded[0]]
            invoice["payments"]["transactions"] = [
                t for t in _transactions(invoice) if t["payment_id"] != recorded[1]
            ]
            self._totals(invoice)
            self.deleted["payment"].add(record_id)
            self._announce("invoice", recorded[0], "update")
            return
        self.deleted[entity_type].add(record_id)

    # --- webhooks -----------------------------------------------------------------------

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        if self.webhook_secret is None or self.webhook_url is None:
            raise RuntimeError(
                "the PayPal simulator signs webhooks: give it a webhook_secret (a webhook id)"
            )
        out = []
        for change in changes:
            event = self._event(change)
            if event is None:
                continue
            body = json.dumps(event).encode()
            out.append((body, self.signed_headers(body)))
        return out

    def signed_headers(self, body: bytes, *, webhook_id: str | None = None) -> dict[str, str]:
        transmission_id = str(uuid.uuid4())
        when = paypal_time(datetime.now(UTC))
        return {
            "paypal-transmission-id": transmission_id,
            "paypal-transmission-time": when,
            "paypal-transmission-sig": sign_transmission(
                self._signing_key,
                transmission_id,
                when,
                webhook_id or self.webhook_secret or "",
                body,
            ),
            "paypal-cert-url": self.cert_url,
            "paypal-auth-algo": ALGORITHM,
        }

    @property
    def cert_url(self) -> str:
        """Where the signing certificate is served: on the simulator's own address."""
        if self.public_url is None:
            raise RuntimeError("the PayPal simulator names its certificate URL: set public_url")
        return self.public_url.rstrip("/") + CERT_PATH

    def _event(self, change: Change) -> dict[str, Any] | None:
        obj = change.snapshot or self.store[change.entity_type].get(change.record_id)
        if obj is None:
            return None
        if change.entity_type == "invoice":
            kind = {"create": "CREATED", "delete": "CANCELLED"}.get(change.op, "UPDATED")
            if obj["status"] == "CANCELLED":
                kind = "CANCELLED"
            elif obj["status"] in ("PAID", "MARKED_AS_PAID"):
                kind = "PAID"
            event_type, resource_type, resource = f"INVOICING.INVOICE.{kind}", "invoices", obj
        elif change.entity_type == "payment" and "status" in obj:
            if obj["status"] == "REFUNDED":
                event_type, resource_type = "PAYMENT.CAPTURE.REFUNDED", "refund"
                resource = {
                    "id": uuid.uuid4().hex[:17].upper(),
                    "status": "COMPLETED",
                    "amount": obj["amount"],
                    "create_time": obj["update_time"],
                    "update_time": obj["update_time"],
                    "links": [
                        {
                            "rel": "up",
                            "method": "GET",
                            "href": f"https://api.paypal.com/v2/payments/captures/{obj['id']}",
                        }
                    ],
                }
            else:
                event_type, resource_type, resource = "PAYMENT.CAPTURE.COMPLETED", "capture", obj
        else:
            return None
        return {
            "id": "WH-" + uuid.uuid4().hex[:17].upper(),
            "event_version": "1.0",
            "create_time": paypal_time(change.at),
            "resource_type": resource_type,
            "event_type": event_type,
            "summary": event_type,
            "resource_version": "2.0",
            "resource": resource,
        }

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        if entity_type == "customer":
            person = seed_person(index)
            return {
                "email_address": person.email,
                "name": {"given_name": person.first, "surname": person.last},
            }
        if entity_type == "invoice":
            customers = self.live("customer")
            amount = 10_000 + 250 * index
            issued = date(2024, 1, 1) + timedelta(days=index)
            return {
                "detail": {
                    "currency_code": self.currency,
                    "invoice_date": issued.isoformat(),
                    "payment_term": {"due_date": (issued + timedelta(days=20)).isoformat()},
                },
                "primary_recipients": [
                    {
                        "billing_info": {
                            "email_address": customers[index % len(customers)]["email_address"]
                        }
                    }
                ],
                "items": [
                    {
                        "name": "Service visit",
                        "quantity": "1",
                        "unit_amount": money(amount, self.currency),
                    }
                ],
                "send": True,
            }
        open_invoices = [i for i in self.live("invoice") if i["status"] == "UNPAID"]
        invoice = open_invoices[index % len(open_invoices)]
        half = to_minor(invoice["due_amount"], "due")[0] // 2
        return {
            "invoice_id": invoice["id"],
            "method": "BANK_TRANSFER",
            "amount": money(half, self.currency),
            "payment_date": (date(2024, 1, 8) + timedelta(days=index)).isoformat(),
            "note": f"SEED-{index + 1}",
        }

    # --- HTTP ---------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        r = app.router
        r.add_post("/v1/oauth2/token", self._client_credentials)
        r.add_get(CERT_PATH, self._certificate)
        r.add_get("/v2/invoicing/invoices", self._list)
        r.add_post("/v2/invoicing/invoices", self._create)
        r.add_post("/v2/invoicing/search-invoices", self._search)
        r.add_get("/v2/invoicing/invoices/{id}", self._get_invoice)
        r.add_put("/v2/invoicing/invoices/{id}", self._replace)
        r.add_delete("/v2/invoicing/invoices/{id}", self._delete_invoice)
        r.add_post("/v2/invoicing/invoices/{id}/send", self._send)
        r.add_post("/v2/invoicing/invoices/{id}/cancel", self._cancel)
        r.add_post("/v2/invoicing/invoices/{id}/payments", self._payments)
        r.add_delete("/v2/invoicing/invoices/{id}/payments/{payment}", self._delete_payment)
        r.add_get("/v2/payments/captures/{id}", self._get_capture)

    async def _client_credentials(self, request: web.Request) -> web.Response:
        form = await request.post()
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            pair = base64.b64decode(encoded).decode()
        except ValueError:
            pair = ""
        client = tuple(pair.split(":", 1)) if ":" in pair else None
        self.refresh_calls += 1
        if (
            self.fail_refresh
            or scheme.lower() != "basic"
            or form.get("grant_type") != "client_credentials"
            or (self.oauth_client is not None and client != self.oauth_client)
        ):
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status=401,
            )
        issued = self.issue_tokens()
        issued.pop("refresh_token")
        return web.json_response({**issued, "app_id": "APP-SIMULATED", "nonce": uuid.uuid4().hex})

    async def _certificate(self, _request: web.Request) -> web.Response:
        self.cert_fetches += 1
        return web.Response(body=self.certificate_pem, content_type="application/x-pem-file")

    def _invoice(self, request: web.Request) -> dict[str, Any]:
        invoice_id = request.match_info["id"]
        obj = self.store["invoice"].get(invoice_id)
        if obj is None or invoice_id in self.deleted["invoice"]:
            raise paypal_error(
                404,
                "RESOURCE_NOT_FOUND",
                "The specified resource does not exist.",
                "INVALID_RESOURCE_ID",
                "invoice_id",
            )
        return obj

    async def _list(self, request: web.Request) -> web.Response:
        try:
            page = max(1, int(request.query.get("page", "1")))
            size = max(1, min(100, int(request.query.get("page_size", "20"))))
        except ValueError:
            raise paypal_error(
                400, "INVALID_REQUEST", "page and page_size are numbers", "INVALID_PARAMETER_VALUE"
            ) from None
        objects = sorted(self.live("invoice"), key=lambda i: i["detail"]["metadata"]["create_time"])
        chunk = objects[(page - 1) * size : page * size]
        return web.json_response(
            {
                "items": chunk,
                "total_items": len(objects),
                "total_pages": max(1, -(-len(objects) // size)),
            }
        )

    async def _search(self, request: web.Request) -> web.Response:
        body = await _json(request)
        email = str(body.get("recipient_email") or "").lower()
        found = [
            i
            for i in self.live("invoice")
            if any(
                (r["billing_info"].get("email_address") or "").lower() == email
                for r in i["primary_recipients"]
            )
        ]
        return web.json_response({"items": found, "total_items": len(found), "total_pages": 1})

    async def _create(self, request: web.Request) -> web.Response:
        key = request.headers.get("PayPal-Request-Id")
        if key and ("invoice", key) in self._replays:
            return web.Response(
                status=201, text=self._replays[("invoice", key)], content_type="application/json"
            )
        body = await _json(request)
        invoice = self.create(
            "invoice", {k: v for k, v in body.items() if k not in ("send", "cancel")}
        )
        text = json.dumps(invoice)
        if key:
            self._replays[("invoice", key)] = text
        return web.Response(status=201, text=text, content_type="application/json")

    async def _get_invoice(self, request: web.Request) -> web.Response:
        return web.json_response(self._invoice(request))

    async def _replace(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        body = await _json(request)
        fields: dict[str, Any] = {
            k: body[k] for k in ("detail", "items", "primary_recipients") if k in body
        }
        return web.json_response(self.update("invoice", invoice["id"], fields))

    async def _delete_invoice(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        if invoice["status"] not in ("DRAFT", "SCHEDULED"):
            raise _unprocessable(
                "INVALID_INVOICE_STATUS", f"Cannot delete an invoice in {invoice['status']} status."
            )
        self.delete("invoice", invoice["id"])
        return web.Response(status=204)

    async def _send(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        self.update("invoice", invoice["id"], {"send": True})
        return web.json_response(
            {"rel": "self", "href": f"/v2/invoicing/invoices/{invoice['id']}"}, status=200
        )

    async def _cancel(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        self.update("invoice", invoice["id"], {"cancel": True})
        return web.Response(status=204)

    async def _payments(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        key = request.headers.get("PayPal-Request-Id")
        if key and ("payment", key) in self._replays:
            return web.Response(
                text=self._replays[("payment", key)], content_type="application/json"
            )
        body = await _json(request)
        obj = self._record_payment(invoice["id"], body, notify=True)
        text = json.dumps({"payment_id": obj["transaction"]["payment_id"]})
        if key:
            self._replays[("payment", key)] = text
        return web.Response(text=text, content_type="application/json")

    async def _delete_payment(self, request: web.Request) -> web.Response:
        invoice = self._invoice(request)
        record_id = recorded_id(invoice["id"], request.match_info["payment"])
        if record_id not in self.store["payment"] or record_id in self.deleted["payment"]:
            raise paypal_error(
                404,
                "RESOURCE_NOT_FOUND",
                "The specified resource does not exist.",
                "INVALID_RESOURCE_ID",
            )
        self.delete("payment", record_id)
        return web.Response(status=204)

    async def _get_capture(self, request: web.Request) -> web.Response:
        capture = self.store["payment"].get(request.match_info["id"])
        if capture is None or "status" not in capture:
            raise paypal_error(
                404,
                "RESOURCE_NOT_FOUND",
                "The specified resource does not exist.",
                "INVALID_RESOURCE_ID",
            )
        return web.json_response(capture)


def _transactions(invoice: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list((invoice.get("payments") or {}).get("transactions") or [])


def _all_external(invoice: Mapping[str, Any]) -> bool:
    return all(t.get("type") == "EXTERNAL" for t in _transactions(invoice))


async def _json(request: web.Request) -> dict[str, Any]:
    return await json_object(
        request,
        not_json=lambda: paypal_error(
            400,
            "INVALID_REQUEST",
            "Request is not well-formed, syntactically incorrect, or violates schema.",
            "MALFORMED_REQUEST_JSON",
        ),
        not_object=lambda: paypal_error(
            400, "INVALID_REQUEST", "The request body must be an object.", "MALFORMED_REQUEST_JSON"
        ),
    )
