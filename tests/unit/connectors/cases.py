"""One case per scheme, so the contract every scheme shares is tested against all of them."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from connectors.base import Connector, WebhookRequest
from connectors.generic import GenericSchemeConfig
from connectors.registry import connector
from tests.signing import DEFAULT_URL, sign

NOW = 1_700_000_000.0
EVENT_ID = "msg_2bKf9xQ"

GITHUB_CONFIG = GenericSchemeConfig(
    signature_header="x-hub-signature-256", prefix="sha256=", event_id_header="x-github-delivery"
)
TIMESTAMPED_CONFIG = GenericSchemeConfig(
    signature_header="x-signature",
    algorithm="sha512",
    encoding="base64",
    timestamp_header="x-timestamp",
    signed_payload="timestamp.body",
    event_id_path="data.id",
)


def body_hash(body: bytes) -> str:
    return "sha256:" + hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Case:
    name: str
    slug: str
    old_secret: str
    new_secret: str
    body: bytes
    event_id: str
    # Headers whose absence is "missing_header"; the first is the signature header.
    required_headers: tuple[str, ...]
    malformed_value: str
    timestamped: bool
    generic_config: GenericSchemeConfig | None = field(default=None)

    @property
    def connector(self) -> Connector:
        return connector(self.slug, self.generic_config)

    @property
    def signature_header(self) -> str:
        return self.required_headers[0]

    def headers(
        self, secret: str, *, now: float = NOW, body: bytes | None = None
    ) -> dict[str, str]:
        return sign(
            self.slug,
            secret,
            self.body if body is None else body,
            now=now,
            event_id=EVENT_ID,
            generic_config=self.generic_config,
        )

    def request(
        self, headers: dict[str, str], *, body: bytes | None = None, url: str = DEFAULT_URL
    ) -> WebhookRequest:
        return WebhookRequest("POST", url, headers, self.body if body is None else body)

    def signed(self, secret: str, *, now: float = NOW) -> WebhookRequest:
        return self.request(self.headers(secret, now=now))


_THIN = b'{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[]}}]}'
_XERO = b'{"events":[{"resourceId":"r1","eventCategory":"CONTACT","eventType":"UPDATE"}]}'
_SQUARE = (
    b'{"merchant_id":"6SSW7HV8K2ST5","type":"customer.updated",'
    b'"event_id":"6a8f5f28-54a1-4eb0-a98a-3111513fd4fc","data":{"type":"customer","id":"C1"}}'
)
_SHOP = b'{"id":820982911946154508,"email":"jon@example.com"}'

CASES = (
    Case(
        name="stripe",
        slug="stripe",
        old_secret="whsec_OLDoldOLDoldOLDoldOLDoldOLDold12",
        new_secret="whsec_NEWnewNEWnewNEWnewNEWnewNEWnew34",
        body=b'{"id":"evt_1NG8Du2eZvKYlo2C","type":"customer.updated"}',
        event_id="evt_1NG8Du2eZvKYlo2C",
        required_headers=("stripe-signature",),
        malformed_value="v1=abc",
        timestamped=True,
    ),
    Case(
        name="standard-webhooks",
        slug="standard-webhooks",
        old_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        new_secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        body=b'{"type":"customer.updated","data":{"id":"c_1"}}',
        event_id=EVENT_ID,
        required_headers=("webhook-signature", "webhook-id", "webhook-timestamp"),
        malformed_value="v2,abc",
        timestamped=True,
    ),
    Case(
        name="ascora",
        slug="ascora",
        old_secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        new_secret="whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
        body=b'{"type":"job.updated","data":{"id":"j_1"}}',
        event_id=EVENT_ID,
        required_headers=("webhook-signature", "webhook-id", "webhook-timestamp"),
        malformed_value="not-a-signature-list",
        timestamped=True,
    ),
    Case(
        name="xero",
        slug="xero",
        old_secret="old-xero-webhook-key",
        new_secret="new-xero-webhook-key",
        body=_XERO,
        event_id=body_hash(_XERO),
        required_headers=("x-xero-signature",),
        malformed_value="%%%not base64%%%",
        timestamped=False,
    ),
    Case(
        name="quickbooks",
        slug="quickbooks",
        old_secret="old-verifier-token",
        new_secret="new-verifier-token",
        body=_THIN,
        event_id=body_hash(_THIN),
        required_headers=("intuit-signature",),
        malformed_value="***",
        timestamped=False,
    ),
    Case(
        name="hubspot",
        slug="hubspot",
        old_secret="old-client-secret",
        new_secret="new-client-secret",
        body=b'[{"eventId":200,"objectId":1},{"eventId":100,"objectId":2}]',
        event_id="100,200",
        required_headers=("x-hubspot-signature-v3", "x-hubspot-request-timestamp"),
        malformed_value="!!",
        timestamped=True,
    ),
    Case(
        name="square",
        slug="square",
        old_secret="old-square-signature-key",
        new_secret="new-square-signature-key",
        body=_SQUARE,
        event_id="6a8f5f28-54a1-4eb0-a98a-3111513fd4fc",
        required_headers=("x-square-hmacsha256-signature",),
        malformed_value="not base64!",
        timestamped=False,
    ),
    Case(
        name="shopify",
        slug="shopify",
        old_secret="old-app-secret",
        new_secret="new-app-secret",
        body=_SHOP,
        event_id=EVENT_ID,
        required_headers=("x-shopify-hmac-sha256",),
        malformed_value="@@@",
        timestamped=False,
    ),
    Case(
        name="generic-github",
        slug="generic",
        old_secret="old generic secret",
        new_secret="new generic secret",
        body=b'{"action":"opened"}',
        event_id=EVENT_ID,
        required_headers=("x-hub-signature-256",),
        malformed_value="sha1=abc",
        timestamped=False,
        generic_config=GITHUB_CONFIG,
    ),
    Case(
        name="generic-timestamped",
        slug="generic",
        old_secret="old generic secret",
        new_secret="new generic secret",
        body=b'{"data":{"id":"obj_9"}}',
        event_id="obj_9",
        required_headers=("x-signature", "x-timestamp"),
        malformed_value="not base64!",
        timestamped=True,
        generic_config=TIMESTAMPED_CONFIG,
    ),
)
TIMESTAMPED = tuple(c for c in CASES if c.timestamped)
CASE_IDS = [c.name for c in CASES]
