"""PayPal's webhook signature: SHA256withRSA by a certificate PayPal names, offline.

PayPal signs ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of the raw
body>`` (the CRC32 as an unsigned decimal number) with the private key of a certificate
it publishes at ``PAYPAL-CERT-URL``, and sends the base64 signature in
``PAYPAL-TRANSMISSION-SIG`` (PayPal's "Verify webhook signature" guide, and the
``WebhookEvent.verify`` of its official SDKs). The webhook id is the id PayPal gave the
webhook subscription: it is what a connection stores as its "secret" (it is not secret,
but it binds a delivery to our subscription: a message signed for another merchant's
webhook does not verify here). Several ids may be configured during a move to a new
subscription.

Offline verification needs the certificate, which we must not take on trust: it is
accepted only from a PayPal host over https (unless the operator allows private provider
URLs, for the simulator), only if it chains to a trust anchor, only while valid, and only
if it names PayPal's message-verification service. Fetching it is I/O: the scheme is a
``connectors.base.FetchingScheme``, and everything here but ``PayPalScheme.verify_fetching``
is pure. PayPal also offers ``POST /v1/notifications/verify-webhook-signature``, which
needs a token and a round trip per delivery; a test can exercise only the offline path.
"""

from __future__ import annotations

import base64
import binascii
import re
import warnings
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from secrets import token_hex
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509 import verification
from cryptography.x509.oid import NameOID
from yarl import URL

from connectors.base import (
    DocumentFetcher,
    DocumentRefusedError,
    SignatureError,
    Verified,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    json_path_id,
    require_header,
    secret_keys,
    text_bytes,
)
from connectors.egress import classify_host

TRANSMISSION_ID = "paypal-transmission-id"
TRANSMISSION_TIME = "paypal-transmission-time"
TRANSMISSION_SIG = "paypal-transmission-sig"
CERT_URL = "paypal-cert-url"
AUTH_ALGO = "paypal-auth-algo"
# The one algorithm PayPal names in PAYPAL-AUTH-ALGO (its SDKs map it to SHA-256 + RSA).
ALGORITHM = "SHA256withRSA"
# Where PayPal publishes its certificates: api.paypal.com, api.sandbox.paypal.com and the
# api-m.* hosts, all under paypal.com.
PAYPAL_DOMAIN = "paypal.com"
# The subject PayPal's signing certificates carry (live and sandbox).
CERTIFICATE_NAMES = frozenset(
    {"messageverificationcerts.paypal.com", "messageverificationcerts.sandbox.paypal.com"}
)
# Settings key of a connection's trust anchors (PEM, one or more CA certificates).
TRUST_SETTING = "paypal_trust_anchors"
# A leaf, an intermediate and a root is what PayPal serves; 4 leaves room for a cross-sign.
MAX_CHAIN_DEPTH = 4


@dataclass(frozen=True)
class Transmission:
    """The signature headers of one delivery, parsed."""

    transmission_id: str
    transmission_time: str
    signature: bytes
    cert_url: str


def crc32_decimal(body: bytes) -> str:
    """CRC32 of the raw body as PayPal writes it: unsigned, in decimal."""
    return str(zlib.crc32(body) & 0xFFFF_FFFF)


def signed_message(transmission: Transmission, webhook_id: str, body: bytes) -> bytes:
    text = (
        f"{transmission.transmission_id}|{transmission.transmission_time}|{webhook_id}|"
        f"{crc32_decimal(body)}"
    )
    return text_bytes(text, "the signed transmission")


def parse_transmission(headers: Mapping[str, str]) -> Transmission:
    """The PAYPAL-* headers, or SignatureError naming the one that is absent or wrong."""
    transmission_id = require_header(headers, TRANSMISSION_ID)
    transmission_time = require_header(headers, TRANSMISSION_TIME)
    encoded = require_header(headers, TRANSMISSION_SIG)
    cert_url = require_header(headers, CERT_URL)
    algorithm = headers.get(AUTH_ALGO, ALGORITHM).strip()
    if algorithm != ALGORITHM:
        raise SignatureError("malformed_header", f"{AUTH_ALGO} {algorithm!r} is not {ALGORITHM}")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed_header", f"{TRANSMISSION_SIG} is not base64") from None
    return Transmission(transmission_id, transmission_time, signature, cert_url)


def check_cert_url(url: str, *, allow_private: bool) -> None:
    """Refuse a certificate URL that is not PayPal's: https on paypal.com or a subdomain.

    With ``allow_private`` (the operator's CRMSYNC_ALLOW_PRIVATE_PROVIDER_URLS, set where
    the simulator stands in for PayPal) a loopback or private host over http(s) is
    accepted too, never a public host that is not PayPal's.
    """
    try:
        parsed = URL(url)
    except (TypeError, ValueError):
        raise SignatureError("bad_certificate", f"{CERT_URL} is not a URL") from None
    host = (parsed.raw_host or "").rstrip(".").lower()
    paypal = host == PAYPAL_DOMAIN or host.endswith("." + PAYPAL_DOMAIN)
    if paypal and parsed.scheme == "https" and parsed.raw_user is None:
        return
    local = classify_host(host) in ("loopback", "private") if host else False
    if allow_private and local and parsed.scheme in ("http", "https"):
        return
    raise SignatureError("bad_certificate", f"{CERT_URL} is not on a PayPal host over https")


_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def load_anchors(pem: bytes) -> tuple[x509.Certificate, ...]:
    """CA certificates from PEM text, one block at a time: a system bundle may hold a
    certificate that cryptography refuses or warns about (a negative serial number), which
    must not cost the others. ValueError when none is usable."""
    anchors = []
    for block in _PEM_BLOCK.findall(pem):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CryptographyDeprecationWarning)
            try:
                anchors.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                continue
    if not anchors:
        raise ValueError("no certificate in the trust anchors")
    return tuple(anchors)


@lru_cache(maxsize=64)
def _store(anchors: tuple[x509.Certificate, ...]) -> verification.Store:
    # Building the store is most of a chain check against a system bundle (144 roots
    # here): measured 7.1 ms a delivery without this cache, 3.3 ms with it.
    return verification.Store(list(anchors))


@lru_cache(maxsize=64)
def _anchors_of(pem: bytes) -> tuple[x509.Certificate, ...]:
    return load_anchors(pem)


def _names(leaf: x509.Certificate) -> set[str]:
    names = {
        str(attr.value).lower() for attr in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    }
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return names
    return names | {name.lower() for name in san.value.get_values_for_type(x509.DNSName)}


def verified_leaf(
    chain_pem: bytes, anchors: Sequence[x509.Certificate], now: float
) -> x509.Certificate:
    """The signing certificate of ``chain_pem`` (the leaf first, then intermediates) if
    it chains to one of ``anchors``, is valid at ``now`` and names PayPal's
    message-verification service; else SignatureError("bad_certificate")."""
    try:
        certificates = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise SignatureError("bad_certificate", "the certificate is not PEM") from None
    if not certificates:
        raise SignatureError("bad_certificate", "the certificate document holds none")
    leaf, intermediates = certificates[0], certificates[1:]
    # The leaf signs messages, not TLS: its extensions are PayPal's to choose, so only the
    # CAs above it are held to the Web PKI's rules.
    verifier = (
        verification.PolicyBuilder()
        .store(_store(tuple(anchors)))
        .time(datetime.fromtimestamp(now, UTC))
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(
            ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
            ee_policy=verification.ExtensionPolicy.permit_all(),
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except verification.VerificationError as exc:
        raise SignatureError(
            "bad_certificate", f"the certificate does not chain to a trust anchor: {exc}"
        ) from None
    if not _names(leaf) & CERTIFICATE_NAMES:
        raise SignatureError("bad_certificate", "the certificate is not PayPal's signing one")
    if not isinstance(leaf.public_key(), rsa.RSAPublicKey):
        raise SignatureError("bad_certificate", "the certificate's key is not RSA")
    return leaf


def verify_transmission(
    request: WebhookRequest,
    webhook_ids: Sequence[str],
    now: float,
    *,
    chain_pem: bytes,
    anchors: Sequence[x509.Certificate],
) -> Verified:
    """Pure verification of one delivery against the certificate chain it names.

    ``webhook_ids`` are the connection's PayPal webhook ids (its "secrets"), ``chain_pem``
    the document at PAYPAL-CERT-URL. The URL's host was checked by the caller before
    anything was fetched (``check_cert_url``).
    """
    keys = secret_keys(webhook_ids)
    transmission = parse_transmission(request.headers)
    public_key = verified_leaf(chain_pem, anchors, now).public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)  # noqa: S101 - checked by verified_leaf
    for index, key in enumerate(keys):
        if key is None:
            continue
        message = signed_message(transmission, key.decode(), request.body)
        try:
            public_key.verify(transmission.signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            continue
        # PayPal's event id ("WH-…") is stable across its retries; the transmission id is not.
        event_id = json_path_id(request.body, "id") or body_hash_id(request.body)
        return Verified(secret_index=index, provider_event_id=bounded_event_id(event_id))
    raise SignatureError("bad_signature", f"{TRANSMISSION_SIG} does not match")


class PayPalScheme:
    """Verify PayPal webhooks. The webhook id comes from PayPal's developer dashboard.

    Settings read: ``paypal_trust_anchors`` (PEM); without it, the fetcher's
    ``trust_anchors_pem`` (the operator's: CRMSYNC_PAYPAL_TRUST_ANCHORS_FILE, else the
    system's CA bundle).
    """

    issues_own_secret = True

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        # Without the certificate nothing can be verified; ingest calls verify_fetching.
        secret_keys(secrets)
        parse_transmission(request.headers)
        raise SignatureError(
            "bad_certificate", "PayPal webhooks are verified with their certificate"
        )

    async def verify_fetching(
        self,
        request: WebhookRequest,
        secrets: Sequence[str],
        now: float,
        settings: Mapping[str, Any],
        fetch: DocumentFetcher,
    ) -> Verified:
        secret_keys(secrets)
        transmission = parse_transmission(request.headers)
        check_cert_url(transmission.cert_url, allow_private=fetch.allow_private)
        anchors = trust_anchors(settings, fetch.trust_anchors_pem)
        try:
            chain = await fetch.get(transmission.cert_url)
        except DocumentRefusedError as exc:
            raise SignatureError("bad_certificate", f"{CERT_URL}: {exc}") from None
        return verify_transmission(request, secrets, now, chain_pem=chain, anchors=anchors)

    def generate_secret(self) -> str:
        # The shape of PayPal's webhook ids (17 upper-case hex-like characters); tests only.
        return token_hex(9).upper()[:17]


def trust_anchors(
    settings: Mapping[str, Any], default: bytes | None
) -> tuple[x509.Certificate, ...]:
    """The connection's trust anchors, else the operator's; "bad_certificate" when neither
    holds a certificate (nothing could ever verify)."""
    configured = settings.get(TRUST_SETTING)
    pem = configured.encode() if isinstance(configured, str) and configured.strip() else default
    if not pem:
        raise SignatureError("bad_certificate", "no trust anchor is configured for PayPal")
    try:
        return _anchors_of(pem)
    except ValueError:
        raise SignatureError(
            "bad_certificate", "the configured trust anchors are not PEM"
        ) from None
