"""A configurable HMAC scheme for any provider that signs webhooks in a common way.

Covers the GitHub family (``X-Hub-Signature-256: sha256=<hex>`` over the raw body),
"timestamp.body" schemes with a separate timestamp header, and providers that sign nothing
but let the receiver put a secret in the webhook URL (``kind: "url_token"``, Mailchimp).
The configuration is per connection; header names are stored lower-case because request
headers arrive lower-cased.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from hmac import compare_digest
from secrets import token_urlsafe
from typing import Any, Final, Literal, Self
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from connectors.base import (
    HashAlgorithm,
    SignatureError,
    Verified,
    WebhookRequest,
    body_hash_id,
    bounded_event_id,
    check_tolerance,
    decode_base64,
    decode_hex,
    first_matching_secret,
    header_event_id,
    json_path_id,
    parse_timestamp,
    require_header,
    secret_keys,
)

# A common default replay window (Stripe's, Standard Webhooks') for schemes with timestamps.
DEFAULT_TOLERANCE_SECONDS = 300
# The longest replay window an operator may configure. Stripe, Standard Webhooks, Slack and
# HubSpot all allow 5 minutes; an hour leaves room for a provider's slow delivery or a
# skewed clock, while a captured webhook still cannot be replayed the next day.
MAX_TOLERANCE_SECONDS = 3600
# Validation context of a scheme being configured now (CLI, admin API, mapping file). A
# scheme read back from a stored connection is validated without it, so a connection made
# before these rules keeps verifying its webhooks instead of failing every request.
CONFIGURING: Final[dict[str, Any]] = {"configuring": True}
# The query parameter that carries a url_token connection's secret, unless a file says.
DEFAULT_TOKEN_PARAM = "token"  # noqa: S105 - a parameter name, not a secret
# We issue generic secrets: 32 bytes of entropy, URL-safe so any UI or config can carry it.
_SECRET_BYTES = 32


class GenericSchemeConfig(BaseModel):
    """How one connection's provider signs: header, hash, encoding, optional timestamp.

    ``kind`` ``url_token``: the provider signs nothing; the webhook URL we give it carries
    the connection's secret in the query parameter ``token_param`` and that is checked
    instead (every header field but ``keep_headers`` and ``event_id_*`` is then unused).
    ``keep_headers`` are headers the mapping reads later (an event type sent as a header).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["hmac", "url_token"] = "hmac"
    signature_header: str | None = Field(None, min_length=1)
    algorithm: HashAlgorithm = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field("", description='Text before the signature, e.g. "sha256=".')
    # Before timestamp_header: that field's check reads it. "form_json": the form body's
    # fields re-encoded as JSON (FreshBooks signs that, not the bytes it sends).
    signed_payload: Literal["body", "timestamp.body", "form_json"] = "body"
    timestamp_header: str | None = Field(None, min_length=1)
    tolerance_seconds: int = Field(DEFAULT_TOLERANCE_SECONDS, gt=0)
    event_id_header: str | None = Field(None, min_length=1)
    event_id_path: str | None = Field(
        None, min_length=1, description='Dotted path into the JSON body, e.g. "data.id".'
    )
    token_param: str = Field(DEFAULT_TOKEN_PARAM, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    keep_headers: tuple[str, ...] = ()

    @field_validator("signature_header", "timestamp_header", "event_id_header")
    @classmethod
    def _lower_case(cls, value: str | None) -> str | None:
        return value.strip().lower() if value is not None else None

    @field_validator("keep_headers")
    @classmethod
    def _kept_lower_case(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(name.strip().lower() for name in value)
        if any(not name for name in names):
            raise ValueError("header names must not be empty")
        return names

    @field_validator("timestamp_header")
    @classmethod
    def _timestamp_is_signed(cls, value: str | None, info: ValidationInfo) -> str | None:
        # An unsigned timestamp is the sender's to choose: a replayed webhook simply carries
        # a fresh one, so the window would only look like protection.
        if _configuring(info) and value is not None and info.data.get("signed_payload") == "body":
            raise ValueError(
                'the timestamp is not signed (signed_payload "body"), so a replay just sends '
                'a fresh one: set signed_payload "timestamp.body" if the provider signs it, '
                "else drop timestamp_header"
            )
        return value

    @field_validator("tolerance_seconds")
    @classmethod
    def _bounded_tolerance(cls, value: int, info: ValidationInfo) -> int:
        if _configuring(info) and value > MAX_TOLERANCE_SECONDS:
            raise ValueError(
                f"at most {MAX_TOLERANCE_SECONDS} seconds (1 hour): a longer window lets a "
                "captured webhook be replayed long after; providers use 5 minutes"
            )
        return value

    @model_validator(mode="after")
    def _timestamp_for_signed_timestamp(self) -> Self:
        if self.kind == "url_token":
            # Nothing is signed: a timestamp or signature header would only look checked.
            if self.signature_header is not None or self.timestamp_header is not None:
                raise ValueError(
                    'kind "url_token" checks no signature or timestamp: drop signature_header '
                    "and timestamp_header"
                )
            return self
        # Compared with the default, not "set": settings store the full dump of a config.
        if self.token_param != DEFAULT_TOKEN_PARAM:
            raise ValueError('"token_param" applies only to kind "url_token"')
        if self.signature_header is None:
            raise ValueError('kind "hmac" needs signature_header')
        if self.signed_payload == "timestamp.body" and self.timestamp_header is None:
            raise ValueError('signed_payload "timestamp.body" needs timestamp_header')
        return self

    @property
    def header_names(self) -> tuple[str, ...]:
        """Headers the processor needs later: content type, timestamp, event id, kept ones."""
        named = (self.timestamp_header, self.event_id_header, *self.keep_headers)
        return tuple(dict.fromkeys(("content-type", *(n for n in named if n is not None))))


def form_as_json(body: bytes) -> bytes:
    """A form body's fields as the JSON text a provider that signs "the form as JSON" signs:
    Python's ``json.dumps`` of the fields in the order sent (its ", " and ": " separators,
    non-ASCII escaped), the first value of a repeated name, as FreshBooks' own example
    computes it from Flask's ``request.form``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError("bad_signature", "the body is not UTF-8 form data") from None
    fields: dict[str, str] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        fields.setdefault(name, value)
    return json.dumps(fields).encode()


def _configuring(info: ValidationInfo) -> bool:
    return bool(info.context and info.context.get("configuring"))


class GenericScheme:
    """Verify webhooks signed as ``config`` describes; we issue the secret."""

    issues_own_secret = False

    def __init__(self, config: GenericSchemeConfig) -> None:
        self.config = config

    def verify(self, request: WebhookRequest, secrets: Sequence[str], now: float) -> Verified:
        config = self.config
        keys = secret_keys(secrets)
        if config.kind == "url_token":
            return Verified(
                secret_index=self._token_index(request, keys),
                provider_event_id=self._event_id(request),
            )
        assert config.signature_header is not None  # noqa: S101 - validated for kind hmac
        signature = self._signature(require_header(request.headers, config.signature_header))
        timestamp_header = config.timestamp_header
        timestamp_text = ""
        timestamp: int | None = None
        if timestamp_header is not None:
            timestamp_text = require_header(request.headers, timestamp_header)
            timestamp = parse_timestamp(timestamp_text, timestamp_header)
        message = request.body
        if config.signed_payload == "timestamp.body":
            # The header text exactly as sent: that is what the provider signed.
            message = f"{timestamp_text}.".encode() + request.body
        elif config.signed_payload == "form_json":
            message = form_as_json(request.body)
        index = first_matching_secret(keys, [message], [signature], config.algorithm)
        if index is None:
            raise SignatureError("bad_signature", f"{config.signature_header} does not match")
        if timestamp_header is not None and timestamp is not None:
            # After the signature so "stale_timestamp" counts authentic replays only.
            check_tolerance(timestamp, now, config.tolerance_seconds, timestamp_header)
        return Verified(secret_index=index, provider_event_id=self._event_id(request))

    def generate_secret(self) -> str:
        return token_urlsafe(_SECRET_BYTES)

    def _token_index(self, request: WebhookRequest, keys: Sequence[bytes | None]) -> int:
        """The secret the URL's token equals: the whole check a url_token provider allows."""
        param = self.config.token_param
        values = [
            v
            for k, v in parse_qsl(urlsplit(request.url).query, keep_blank_values=True)
            if k == param
        ]
        if not values:
            raise SignatureError("missing_header", f"the URL has no ?{param}=")
        if len(values) > 1 or not values[0]:
            raise SignatureError("malformed_header", f"the URL's ?{param}= is empty or repeated")
        token = values[0].encode()
        # Every secret is compared, so the time taken does not tell which one matched.
        matched = [key is not None and compare_digest(key, token) for key in keys]
        if True not in matched:
            raise SignatureError("bad_signature", f"?{param}= does not match")
        return matched.index(True)

    def _signature(self, value: str) -> bytes:
        header = self.config.signature_header
        if not value.startswith(self.config.prefix):
            raise SignatureError("malformed_header", f"{header} lacks its prefix")
        encoded = value.removeprefix(self.config.prefix)
        decoded = decode_hex(encoded) if self.config.encoding == "hex" else decode_base64(encoded)
        if not decoded:
            raise SignatureError("malformed_header", f"{header} is not {self.config.encoding}")
        return decoded

    def _event_id(self, request: WebhookRequest) -> str:
        """Header, then body path, then body hash: never fails once the signature matched."""
        config = self.config
        event_id: str | None = None
        if config.event_id_header is not None:
            event_id = header_event_id(request.headers, config.event_id_header)
        if event_id is None and config.event_id_path is not None:
            event_id = json_path_id(request.body, config.event_id_path)
        return bounded_event_id(event_id or body_hash_id(request.body))
