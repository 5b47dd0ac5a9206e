"""What every connector's webhook verification shares: request, result, error, scheme port.

Verification is a pure function of the request, the connection's secrets and the time the
caller passes in. It looks only at the raw body bytes and the headers; the body is parsed
(for the event id) only after a signature matched, so an unauthenticated body never reaches
a JSON parser.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from secrets import token_urlsafe
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    Literal,
    Protocol,
    get_args,
    runtime_checkable,
)

from schemas.errors import RefuseInput, RetryLater

if TYPE_CHECKING:
    from connectors.spec import ApiSpec, RecordMapper

SignatureErrorReason = Literal[
    "missing_header",
    "malformed_header",
    "bad_signature",
    "stale_timestamp",
    "no_secret",
    "bad_certificate",
]
# The complete, bounded set: ingest uses it as a Prometheus label and may pre-register it.
SIGNATURE_ERROR_REASONS: tuple[SignatureErrorReason, ...] = get_args(SignatureErrorReason)

HashAlgorithm = Literal["sha256", "sha1", "sha512"]

# schemas.envelope.WebhookEnvelope.provider_event_id is capped at 512 characters; longer ids
# are replaced by their hash so the envelope always validates and dedup stays deterministic.
MAX_EVENT_ID_LENGTH = 512

# A timestamp header longer than this is not a unix time (seconds or milliseconds); the cap
# keeps int() away from huge digit strings.
_MAX_TIMESTAMP_DIGITS = 20


class SignatureError(RefuseInput):
    """A webhook failed verification; the edge answers 401 and counts ``reason``.

    The message names the header or the check that failed, never a secret or a signature.
    """

    def __init__(self, reason: SignatureErrorReason, detail: str = "") -> None:
        self.reason: SignatureErrorReason = reason
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class WebhookRequest:
    """A webhook exactly as received.

    ``url`` is the full public URL the provider called, query string included (HubSpot signs
    it), not the URL as seen behind a proxy. ``headers`` keys must be lower-cased by the
    caller; schemes look headers up by lower-case name only. ``body`` is the raw bytes.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Verified:
    """The outcome of a successful verification.

    ``secret_index`` is the position in the given secrets of the one that matched (during a
    rotation old and new are both passed). ``provider_event_id`` is the provider's id for the
    delivery, the dedup key. ``handshake`` is True only for a validation ping (Xero's Intent
    to Receive): answer 200 with an empty body and produce nothing.
    """

    secret_index: int
    provider_event_id: str
    handshake: bool = False


class SignatureScheme(Protocol):
    """How one provider signs its webhooks."""

    @property
    def issues_own_secret(self) -> bool:
        """True when the provider's dashboard issues the secret; we only store it."""
        ...

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        """Return what verified, or raise SignatureError; empty ``secrets`` is "no_secret"."""
        ...

    def generate_secret(self) -> str:
        """A fresh secret in the provider's own format (for providers that take ours)."""
        ...


class DocumentRefusedError(RefuseInput):
    """A document a webhook names (PayPal's certificate) cannot be used: its URL or
    address is refused, the host answered 4xx, or it is too large. The delivery fails
    verification."""


class DocumentUnavailableError(RetryLater):
    """A document a webhook names could not be fetched now (network, 5xx): the edge
    answers 503 so the provider delivers again later."""


class DocumentFetcher(Protocol):
    """What a FetchingScheme may fetch through: the process's provider egress rules
    (connectors.egress), a cache, a size cap. ``trust_anchors_pem`` is the operator's CA
    bundle for schemes that check a certificate chain (None: none configured)."""

    allow_private: bool
    trust_anchors_pem: bytes | None

    async def get(self, url: str) -> bytes:
        """The document at ``url``; DocumentRefusedError or DocumentUnavailableError."""
        ...


@runtime_checkable
class FetchingScheme(Protocol):
    """A scheme that must fetch what the request names before it can verify it (PayPal
    signs with a certificate it publishes at a URL in the request). The edge awaits
    ``verify_fetching`` instead of calling ``verify``; everything but the fetch is pure."""

    async def verify_fetching(
        self,
        request: WebhookRequest,
        secrets: Sequence[str],
        now: float,
        settings: Mapping[str, Any],
        fetch: DocumentFetcher,
    ) -> Verified: ...


@dataclass(frozen=True)
class Connector:
    """Everything production needs of one provider: webhook verification, mapping, API.

    ``kept_headers`` are lower-case names the processor needs later (content type, topic);
    signature headers are never kept. ``mapper`` (connectors.spec.RecordMapper) turns
    webhooks and API objects into canonical data and back; ``api`` (connectors.spec.ApiSpec)
    says how to call the provider. A webhook-only provider (Shopify, bare Standard
    Webhooks) has neither. Its simulator is test and demo code, found through
    connectors.simulators, never through this.
    """

    slug: str
    scheme: SignatureScheme
    kept_headers: tuple[str, ...]
    mapper: RecordMapper | None = None
    api: ApiSpec | None = None
    # False for a provider that sends no webhooks (MYOB): ingest has no endpoint for it,
    # its connections get no webhook secret, and its changes come by polling
    # (ApiSpec.poll_seconds).
    webhooks: bool = True


class NoWebhooksScheme:
    """The scheme of a provider that sends no webhooks: every delivery is refused.
    Ingest never routes one here (the provider is not in WEBHOOK_PROVIDERS); this keeps
    a call that gets here anyway from verifying anything."""

    @property
    def issues_own_secret(self) -> bool:
        return False

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        raise SignatureError("no_secret", "this provider sends no webhooks; it is polled")

    def generate_secret(self) -> str:
        raise ValueError("this provider sends no webhooks, so it has no webhook secret")


# --- helpers shared by the schemes -------------------------------------------------------


def _utf8_key(secret: str) -> bytes:
    return secret.encode()


def secret_keys(
    secrets: Sequence[str], to_key: Callable[[str], bytes | None] = _utf8_key
) -> list[bytes | None]:
    """The HMAC key of each secret, position kept; None for one that cannot be a key.

    Called before any header is read: a connection without a usable secret is a
    configuration problem ("no_secret"), whatever the request looks like. An empty key
    would make the signature computable by anyone, so it counts as unusable.
    """
    if not secrets:
        raise SignatureError("no_secret", "the connection has no webhook secret")
    keys = [to_key(secret) or None for secret in secrets]
    if all(key is None for key in keys):
        raise SignatureError("no_secret", "no configured webhook secret is usable")
    return keys


def require_header(headers: Mapping[str, str], name: str) -> str:
    """The stripped value of ``name``; absent is "missing_header", blank "malformed_header"."""
    value = headers.get(name)
    if value is None:
        raise SignatureError("missing_header", f"{name} header absent")
    value = value.strip()
    if not value:
        raise SignatureError("malformed_header", f"{name} header empty")
    return value


def text_bytes(value: str, what: str) -> bytes:
    """``value`` as the UTF-8 bytes a provider signed.

    Servers may decode header bytes with ``surrogateescape``; such text was never UTF-8 from
    the provider, so it is a malformed header rather than a UnicodeEncodeError.
    """
    try:
        return value.encode()
    except UnicodeEncodeError:
        raise SignatureError("malformed_header", f"{what} is not UTF-8 text") from None


def clean_text(value: str) -> str | None:
    """``value`` if it is non-empty and encodable as UTF-8 (an id safe to put in an envelope).

    JSON escapes ("\\ud800") and surrogateescape-decoded headers can both yield lone
    surrogates, which Kafka serialisation would choke on later.
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        return None
    return value or None


def header_event_id(headers: Mapping[str, str], name: str) -> str | None:
    """An event id from an (unsigned) header if present and clean UTF-8, else None."""
    return clean_text(headers.get(name, "").strip())


def parse_timestamp(value: str, header: str) -> int:
    """A non-negative integer made of ASCII digits only.

    ``int()`` alone would accept signs, underscores and non-ASCII digits, any of which would
    make the signed string differ from what the provider meant.
    """
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS):
        raise SignatureError("malformed_header", f"{header} is not a unix timestamp")
    return int(value)


def check_tolerance(timestamp: float, now: float, tolerance: float, header: str) -> None:
    """Reject timestamps too old (replays) or too far ahead (clock skew, pre-signed replays)."""
    if abs(now - timestamp) > tolerance:
        raise SignatureError("stale_timestamp", f"{header} outside the ±{tolerance:g} s window")


def hmac_digest(algorithm: HashAlgorithm, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, algorithm).digest()


def decode_hex(value: str) -> bytes | None:
    """Bytes of a hex signature, or None if it is not hex (it then matches nothing)."""
    try:
        return bytes.fromhex(value)
    except ValueError:
        return None


def decode_base64(value: str) -> bytes | None:
    """Bytes of a standard base64 signature, or None if it is not base64."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII input
        return None


def first_matching_secret(
    keys: Sequence[bytes | None],
    messages: Iterable[bytes],
    candidates: Iterable[bytes],
    algorithm: HashAlgorithm = "sha256",
) -> int | None:
    """Index of the first key whose HMAC of any of ``messages`` is one of ``candidates``.

    ``keys`` keeps the position of each configured secret (None for an unusable one) so the
    index reported is the caller's. Every comparison is constant-time; more than one message
    serves a provider whose signed form is ambiguous (HubSpot's URI).
    """
    signed = list(messages)
    wanted = list(candidates)
    for index, key in enumerate(keys):
        if key is None:
            continue
        for message in signed:
            expected = hmac_digest(algorithm, key, message)
            # any() stops early only on a full match, which reveals nothing about the key.
            if any(hmac.compare_digest(expected, candidate) for candidate in wanted):
                return index
    return None


def body_hash_id(body: bytes) -> str:
    """The event id for providers without one: the same bytes always dedup together."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def bounded_event_id(event_id: str) -> str:
    """``event_id``, or its hash when it would not fit the envelope's event id field."""
    if len(event_id) <= MAX_EVENT_ID_LENGTH:
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode()).hexdigest()


_NOT_JSON = object()


def parse_json(body: bytes) -> object:
    """The parsed body, or a sentinel when it is not JSON. Call only after verification."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers bad JSON and bad UTF-8
        return _NOT_JSON


def scalar_id(value: object) -> str | None:
    """A JSON string or integer as an id; anything else (bool, float, object) is not one."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def json_path_id(body: bytes, path: str) -> str | None:
    """The id at a dotted ``path`` in the JSON body ("data.id", "items.0.id"), or None."""
    node = parse_json(body)
    for part in path.split("."):
        if isinstance(node, dict):
            node = node.get(part, _NOT_JSON)
        elif isinstance(node, list) and part.isascii() and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return scalar_id(node)


def match_base64_body_signature(
    request: WebhookRequest, secrets: Sequence[str], header: str
) -> int:
    """Index of the secret whose base64 HMAC-SHA256 of the raw body is in ``header``.

    The scheme Xero, QuickBooks and Shopify share: one signature, no timestamp, the secret
    used as a UTF-8 key.
    """
    keys = secret_keys(secrets)
    signature = decode_base64(require_header(request.headers, header))
    if signature is None:
        raise SignatureError("malformed_header", f"{header} is not base64")
    index = first_matching_secret(keys, [request.body], [signature])
    if index is None:
        raise SignatureError("bad_signature", f"{header} does not match")
    return index


def sign_base64_body(secret: str, body: bytes) -> str:
    """The sending side of :func:`match_base64_body_signature`: base64 HMAC-SHA256 of the
    raw body, the secret as a UTF-8 key (``crmsync trigger`` signs samples with it)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# A provider that issues its own secret shows it in its dashboard and we only store it, so
# a secret we make only stands in for it in tests and simulators: 32 bytes of entropy,
# URL-safe, more than any of them shows (Square's signature key is 22 characters).
_STAND_IN_SECRET_BYTES = 32


class ProviderIssuedSecret:
    """Base of a scheme whose provider issues the secret (Xero, QuickBooks, Shopify,
    Square, HubSpot): a connection stores the one the provider shows."""

    issues_own_secret = True

    def generate_secret(self) -> str:
        """A stand-in for tests and simulators; a real connection pastes the provider's."""
        return token_urlsafe(_STAND_IN_SECRET_BYTES)


class Base64BodyScheme(ProviderIssuedSecret):
    """The scheme Xero, QuickBooks and Shopify share (``match_base64_body_signature``):
    one base64 HMAC-SHA256 of the raw body in ``header``, no timestamp. A subclass names
    the header, and says where its provider puts a delivery id or a handshake."""

    header: ClassVar[str]

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        index = match_base64_body_signature(request, secrets, self.header)
        # Both read the request only now that its signature matched.
        return Verified(
            secret_index=index,
            provider_event_id=self.event_id(request),
            handshake=self.is_handshake(request.body),
        )

    def event_id(self, request: WebhookRequest) -> str:
        """The dedup key: the body hash, for a provider whose payload has no delivery id."""
        return body_hash_id(request.body)

    def is_handshake(self, body: bytes) -> bool:
        """A validation ping, answered 200 and dropped (Xero's Intent to Receive)."""
        return False
