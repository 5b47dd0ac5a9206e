"""The HTTP side every API client shares: errors that say what to do, auth, one request,
one connection's API root, page cursors.

A client turns each failure into a ProviderError whose ``transient`` flag tells the caller
whether a retry can help (network errors, timeouts, 429, 5xx) or not (other 4xx: the
request itself is wrong). Retry policy, rate limits and circuit breaking belong to the
caller (the outbound service, the processor's hydration), not to the client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import urljoin

import aiohttp
from yarl import URL

from connectors.egress import EgressRefusedError
from schemas.errors import DeadLetter

# Enough of a provider's error body to diagnose a dead letter, small enough for a log line.
BODY_EXCERPT_CHARS = 500
# The provider's own words about a failure, taken from anywhere in its error body (Xero
# echoes the whole invoice before its ValidationErrors, far past the excerpt); a dead
# letter's detail holds 2,000 characters, so this leaves room for the rest of it.
PROVIDER_MESSAGE_CHARS = 1000
# The most of one answer we hold. A record passes through changes.normalized, whose records
# are at most Kafka's default 1 MiB; the largest page we ask for is 1,000 records of a few
# KiB (QuickBooks' MAXRESULTS cap). 10 MiB is well above both, and bounds memory: outbound's
# 32 pushes in flight hold at most 320 MiB of answers, whatever a provider URL sends.
MAX_RESPONSE_BYTES = 10 * 1024 * 1024
# Providers answer in well under a second; 15 s is a stuck connection, not a slow API.
DEFAULT_TIMEOUT_SECONDS = 15.0
# Refresh an OAuth2 access token this long before it expires (Xero's last 30 minutes).
REFRESH_MARGIN_SECONDS = 120.0


class ProviderError(DeadLetter):
    """A provider call that did not succeed: parked with ``reason`` once the caller's
    retries, if ``transient`` says they can help, run out.

    ``status`` is None for network errors and timeouts. ``retry_after`` is the provider's
    own Retry-After in seconds when it sent one. ``request`` is "METHOD /path" (no query,
    no host): enough to find the call, nothing secret. ``reason`` is the bounded label
    connectors.calls reports: a subclass's own, or one that follows from the status.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        body_excerpt: str = "",
        request: str = "",
        provider_message: str = "",
    ) -> None:
        # A subclass that names its reason as a class attribute keeps it.
        reason = getattr(type(self), "reason", None) or _status_reason(status)
        super().__init__(reason, message, message=message)
        self.status = status
        self.retry_after = retry_after
        self.body_excerpt = body_excerpt
        self.request = request
        # What the provider said was wrong, in its words (provider_message): "" when its
        # answer had none we know how to read.
        self.provider_message = provider_message

    @property
    def transient(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500

    @property
    def status_class(self) -> str:
        """A bounded metric label: "2xx".."5xx", or "network"."""
        return "network" if self.status is None else f"{self.status // 100}xx"


def _status_reason(status: int | None) -> str:
    """The label of a failure by its status, as connectors.calls reports it."""
    if status is None:
        return "network"
    if status == 429:
        return "rate_limited"
    return "provider_5xx" if status >= 500 else "provider_4xx"


class NotFoundError(ProviderError):
    """404: the record does not exist at the provider (or no longer)."""

    reason = "not_found"


class StaleVersionError(ProviderError):
    """The provider refused an update made against an old version (QuickBooks SyncToken)."""


class UnsupportedOperationError(ProviderError):
    """The provider cannot do this (delete a Xero payment, say); not retried."""

    reason = "unsupported"

    @property
    def transient(self) -> bool:
        return False


class RateLimitedError(ProviderError):
    """The provider said its rate limit is spent with a status other than 429 (MYOB's
    gateway answers 403): waited out like a 429, never read as an authorisation failure."""

    reason = "rate_limited"

    @property
    def transient(self) -> bool:
        return True


class AuthError(ProviderError):
    """401/403 after a fresh token, or a refresh the provider refused: re-authorise."""

    reason = "auth"


class RefusedError(ProviderError):
    """A call our own rules stopped (DESIGN invariant 12): the same call would be stopped
    again, so it is never retried. ``reason`` is the bounded label callers report."""

    @property
    def transient(self) -> bool:
        return False


class AddressRefusedError(RefusedError):
    """The URL or the address it resolved to is not a public provider's
    (connectors.egress); nothing was sent."""

    reason = "address_refused"


class RedirectRefusedError(RefusedError):
    """The provider answered 3xx. Redirects are not followed: they would carry the
    connection's credentials, or its request, to wherever the answer points."""

    reason = "redirect_refused"


class ResponseTooLargeError(RefusedError):
    """The answer was larger than MAX_RESPONSE_BYTES; it was not read further."""

    reason = "response_too_large"


# --- auth ----------------------------------------------------------------------------------


class Auth(Protocol):
    async def headers(self) -> Mapping[str, str]:
        """Headers that authenticate the next request (refreshing a token first if due)."""
        ...

    async def invalidate(self) -> None:
        """The provider answered 401: the next ``headers()`` must get a new token."""
        ...


@dataclass(frozen=True)
class StaticAuth:
    """An API key or a private-app token: never expires, nothing to refresh."""

    header_value: str
    header_name: str = "Authorization"

    @classmethod
    def bearer(cls, token: str) -> StaticAuth:
        return cls(f"Bearer {token}")

    async def headers(self) -> Mapping[str, str]:
        return {self.header_name: self.header_value}

    async def invalidate(self) -> None:
        return None


@dataclass(frozen=True)
class OAuthTokens:
    access_token: str
    refresh_token: str
    expires_at: float  # unix seconds
    client_id: str
    client_secret: str
    token_url: str


TokenRefresher = Callable[[OAuthTokens], Awaitable[OAuthTokens]]
TokenSaver = Callable[[OAuthTokens], Awaitable[None]]


class OAuth2Auth:
    """OAuth2 bearer tokens refreshed shortly before expiry, one refresh in flight.

    Concurrent requests that find the token due all wait on the same refresh. ``save`` is
    called with the new tokens before anyone uses them (so a crash right after a refresh
    does not lose a rotated refresh token). A refused refresh raises AuthError and keeps
    raising it without calling the provider again until ``reset`` is given new tokens.
    """

    def __init__(
        self,
        tokens: OAuthTokens,
        refresh: TokenRefresher,
        save: TokenSaver,
        *,
        clock: Callable[[], float] = time.time,
        margin_seconds: float = REFRESH_MARGIN_SECONDS,
    ) -> None:
        self.tokens = tokens
        self._refresh = refresh
        self._save = save
        self._clock = clock
        self._margin = margin_seconds
        self._inflight: asyncio.Future[OAuthTokens] | None = None
        self.failed: AuthError | None = None
        self.refreshes = 0

    def reset(self, tokens: OAuthTokens) -> None:
        self.tokens = tokens
        self.failed = None

    @property
    def seconds_left(self) -> float:
        return self.tokens.expires_at - self._clock()

    async def headers(self) -> Mapping[str, str]:
        if self.failed is not None:
            raise self.failed
        if self.seconds_left <= self._margin:
            await self._refreshed(self.tokens)
        return {"Authorization": f"Bearer {self.tokens.access_token}"}

    async def invalidate(self) -> None:
        await self._refreshed(self.tokens)

    async def _refreshed(self, seen: OAuthTokens) -> OAuthTokens:
        if self.tokens is not seen:  # someone refreshed since the caller looked
            return self.tokens
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._do_refresh())
        inflight = self._inflight
        try:
            return await asyncio.shield(inflight)
        finally:
            if inflight.done() and self._inflight is inflight:
                self._inflight = None

    async def _do_refresh(self) -> OAuthTokens:
        try:
            tokens = await self._refresh(self.tokens)
        except ProviderError as exc:
            if exc.transient:
                raise
            self.failed = AuthError(
                f"token refresh refused: {exc}",
                status=exc.status,
                body_excerpt=exc.body_excerpt,
                request=exc.request,
            )
            raise self.failed from None
        await self._save(tokens)
        self.tokens = tokens
        self.refreshes += 1
        return tokens


def refresh_with(
    session: aiohttp.ClientSession, base_url: str, *, clock: Callable[[], float] = time.time
) -> TokenRefresher:
    """The standard refresh_token grant (RFC 6749 §6) against ``tokens.token_url``; for
    tokens without a refresh token, the client-credentials grant (§4.4)."""

    async def refresh(tokens: OAuthTokens) -> OAuthTokens:
        url = urljoin(base_url.rstrip("/") + "/", tokens.token_url)
        if tokens.refresh_token:
            body = await send(
                session,
                "POST",
                url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": tokens.refresh_token,
                    "client_id": tokens.client_id,
                    "client_secret": tokens.client_secret,
                },
            )
        else:
            # No refresh token: the client-credentials grant (RFC 6749 §4.4), the client
            # authenticated with HTTP Basic as PayPal's token endpoint wants it.
            pair = f"{tokens.client_id}:{tokens.client_secret}".encode()
            body = await send(
                session,
                "POST",
                url,
                data={"grant_type": "client_credentials"},
                headers={"Authorization": "Basic " + base64.b64encode(pair).decode("ascii")},
            )
        if not isinstance(body, dict) or "access_token" not in body:
            raise AuthError("token endpoint answered without an access_token", status=200)
        return replace(
            tokens,
            access_token=str(body["access_token"]),
            refresh_token=str(body.get("refresh_token") or tokens.refresh_token),
            expires_at=clock() + float(body.get("expires_in", 1800)),
        )

    return refresh


# --- one request -----------------------------------------------------------------------------


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        when = parsedate_to_datetime(value).timestamp()
        return max(0.0, when - (time.time() if now is None else now))
    return None


def error_for(status: int, message: str, **kwargs: Any) -> ProviderError:
    if status == 404:
        return NotFoundError(message, status=status, **kwargs)
    if status in (401, 403):
        return AuthError(message, status=status, **kwargs)
    return ProviderError(message, status=status, **kwargs)


def provider_message(text: str) -> str:
    """The provider's own error message in an error answer's body, "" when there is none.

    The shapes are the providers' documented error bodies: Stripe's ``error.message`` (with
    its ``code`` and ``param``), Xero's ``Elements[].ValidationErrors[].Message`` (else its
    ``Message`` or ``Detail``), QuickBooks' ``Fault.Error[]`` (``Message``, ``Detail``,
    ``code``; lower-case in some answers), Ascora's ``error.message`` with its
    ``details[]``, Square's ``errors[]`` (``detail``, ``code``, ``field``), PayPal's
    ``message`` with its ``details[]`` (``field``, ``issue``, ``description``) and ``name``,
    Shopify's ``errors`` (text, a list, or field -> messages), MYOB's ``Errors[]``
    (``Message``, ``AdditionalDetails``, ``Name``), and a plain ``message``/``error`` or
    RFC 9457 ``title``/``detail``.
    """
    try:
        body = json.loads(text)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    said = _said(body)
    return said[:PROVIDER_MESSAGE_CHARS]


def _text_of(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _square_said(body: dict[str, Any]) -> str:
    """Square's ``errors[]``: each error's ``detail`` (else its ``code``), code and field."""
    parts = []
    for e in _dicts(body.get("errors")):
        words = _text_of(e.get("detail")) or _text_of(e.get("code"))
        tags = [f"{k} {_text_of(e.get(k))}" for k in ("code", "field") if _text_of(e.get(k))]
        parts.append(words + (f" ({', '.join(tags)})" if tags else ""))
    return "; ".join(p for p in parts if p)


def _paypal_said(body: dict[str, Any]) -> str:
    """PayPal's ``message`` and each of its ``details[]`` (field: issue: description),
    with its ``name``; "" for a body without both a name and details."""
    details = _dicts(body.get("details"))
    name = _text_of(body.get("name"))
    if not details or not name:
        return ""
    issues = [
        ": ".join(w for w in (_text_of(d.get(k)) for k in ("field", "issue", "description")) if w)
        for d in details
    ]
    words = [w for w in (_text_of(body.get("message")), *issues) if w]
    return "; ".join(words) + f" ({name})"


def _myob_said(body: dict[str, Any]) -> str:
    """MYOB's ``Errors[]``: each error's ``Message`` with its ``AdditionalDetails`` and
    ``Name`` (its kind: RateLimitError, ConcurrencyViolation, ...)."""
    parts = []
    for e in _dicts(body.get("Errors")):
        words = " - ".join(
            w for w in (_text_of(e.get("Message")), _text_of(e.get("AdditionalDetails"))) if w
        )
        name = _text_of(e.get("Name"))
        parts.append(words + (f" ({name})" if name and words else name))
    return "; ".join(p for p in parts if p)


def _shopify_said(body: dict[str, Any]) -> str:
    """Shopify's ``errors``: a sentence, a list of them, or field -> messages
    (``{"email": ["has already been taken"]}``, read "email has already been taken")."""
    errors = body.get("errors")
    if isinstance(errors, str):
        return errors.strip()
    if isinstance(errors, list):
        return "; ".join(t for t in (_text_of(e) for e in errors) if t)
    if isinstance(errors, dict):
        parts: list[str] = []
        for field_name, messages in errors.items():
            listed = messages if isinstance(messages, list) else [messages]
            words = [t for t in (_text_of(m) for m in listed) if t]
            parts.extend(w if field_name == "base" else f"{field_name} {w}" for w in words)
        return "; ".join(parts)
    return ""


def _said(body: dict[str, Any]) -> str:
    error = body.get("error")
    if isinstance(error, dict):  # Stripe, Ascora
        message = _text_of(error.get("message"))
        extra = [
            f"{_text_of(d.get('field'))}: {_text_of(d.get('message'))}".strip(": ")
            for d in _dicts(error.get("details"))
        ]
        tags = [f"{k} {error[k]}" for k in ("code", "param") if _text_of(error.get(k))]
        return "; ".join(p for p in (message, *extra) if p) + (
            f" ({', '.join(tags)})" if tags else ""
        )
    fault = body.get("Fault", body.get("fault"))
    if isinstance(fault, dict):  # QuickBooks Online
        parts = []
        for e in _dicts(fault.get("Error", fault.get("error"))):
            message = _text_of(e.get("Message", e.get("message")))
            detail = _text_of(e.get("Detail", e.get("detail")))
            code = _text_of(e.get("code"))
            words = [message] + ([detail] if detail and detail != message else [])
            parts.append(" - ".join(w for w in words if w) + (f" (code {code})" if code else ""))
        return "; ".join(p for p in parts if p)
    said = _square_said(body) or _paypal_said(body) or _shopify_said(body) or _myob_said(body)
    if said:
        return said
    validation = [
        _text_of(v.get("Message"))
        for element in _dicts(body.get("Elements"))
        for v in _dicts(element.get("ValidationErrors"))
    ]
    if any(validation):  # Xero
        return "; ".join(dict.fromkeys(m for m in validation if m))
    for key in ("Message", "message", "Detail", "detail", "title", "error_description"):
        said = _text_of(body.get(key))
        if said:
            return said
    return _text_of(error)


@lru_cache(maxsize=16)
def _timeout(total_seconds: float) -> aiohttp.ClientTimeout:
    """One ClientTimeout per bound (it is frozen): building one per call cost 2-3 µs of a
    push's CPU, and a deployment uses a handful of bounds."""
    return aiohttp.ClientTimeout(total=total_seconds)


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    auth: Auth | None = None,
    json_body: Any = None,
    data: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    response_headers: dict[str, str] | None = None,
) -> Any:
    """One request; the parsed JSON body (None for an empty one) or a ProviderError.

    ``response_headers``, when given, is filled with the answer's headers (lower-case
    names), for providers that page or meter in headers (Shopify's ``Link`` and
    ``X-Shopify-Shop-Api-Call-Limit``).

    A 401 invalidates the token and tries once more with a fresh one. Network errors and
    timeouts become ProviderError(status=None), transient. A 3xx is RedirectRefusedError,
    never followed; a body over MAX_RESPONSE_BYTES is ResponseTooLargeError; a URL or
    address the session's egress rules refuse (connectors.egress) is AddressRefusedError.
    """
    path = URL(url).path
    label = f"{method} {path}"
    for attempt in (1, 2):
        all_headers = {"Accept": "application/json"}
        if auth is not None:
            all_headers.update(await auth.headers())
        all_headers.update(headers or {})
        try:
            async with session.request(
                method,
                url,
                json=json_body,
                data=data,
                params=params,
                headers=all_headers,
                timeout=_timeout(timeout_seconds),
                allow_redirects=False,
            ) as response:
                status = response.status
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if response_headers is not None:
                    response_headers.clear()
                    response_headers.update({k.lower(): v for k, v in response.headers.items()})
                if 300 <= status < 400:
                    raise _redirect_refused(label, response)
                text = await _read_capped(response, label)
        except EgressRefusedError as exc:  # the URL, checked as the request starts
            raise AddressRefusedError(f"{label}: refused: {exc}", request=label) from None
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, EgressRefusedError):  # the address, on connecting
                raise AddressRefusedError(
                    f"{label}: refused: {exc.os_error}", request=label
                ) from None
            raise ProviderError(f"{label}: {type(exc).__name__}: {exc}", request=label) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(f"{label}: {type(exc).__name__}: {exc}", request=label) from None
        if status == 401 and auth is not None and attempt == 1:
            await auth.invalidate()
            continue
        if status >= 400:
            said = provider_message(text)
            raise error_for(
                status,
                f"{label} answered {status}" + (f": {said}" if said else ""),
                retry_after=retry_after,
                body_excerpt=text[:BODY_EXCERPT_CHARS],
                request=label,
                provider_message=said,
            )
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise ProviderError(
                f"{label} answered {status} with a body that is not JSON",
                status=status,
                body_excerpt=text[:BODY_EXCERPT_CHARS],
                request=label,
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _redirect_refused(label: str, response: aiohttp.ClientResponse) -> RedirectRefusedError:
    # Where it pointed helps to fix a moved base URL; its query and credentials are cut.
    location = response.headers.get("Location")
    target = "nowhere"
    if location:
        try:
            absolute = response.url.join(URL(location))
            target = str(absolute.with_user(None).with_query(None).with_fragment(None))
        except ValueError:
            target = "an invalid Location"
    return RedirectRefusedError(
        f"{label} answered {response.status}, a redirect to {target}; redirects are not "
        "followed (if the provider's API moved, update the connection's URL)",
        status=response.status,
        request=label,
    )


async def _read_capped(response: aiohttp.ClientResponse, label: str) -> str:
    """The body as text, refused once it passes MAX_RESPONSE_BYTES (before reading, when
    the length is declared). Bytes that are not valid in the declared charset are replaced,
    not an exception: a garbled error body is still worth its excerpt."""
    declared = response.content_length
    if declared is not None and declared > MAX_RESPONSE_BYTES:
        raise _too_large(label, response.status)
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise _too_large(label, response.status)
    charset = response.charset or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return body.decode("utf-8", errors="replace")


def _too_large(label: str, status: int) -> ResponseTooLargeError:
    return ResponseTooLargeError(
        f"{label} answered {status} with more than {MAX_RESPONSE_BYTES} bytes; not read",
        status=status,
        request=label,
    )


# --- one connection's API ------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where one connection's requests go and what each carries: the API root, the auth,
    and the headers (Xero's tenant, Ascora's company code, Stripe's version) and query
    parameters (QuickBooks' minor version) the provider wants on every call.

    ``path`` is appended to ``root`` as given; a client whose URLs come whole (generic
    mappings) leaves ``root`` empty.
    """

    session: aiohttp.ClientSession
    root: str
    auth: Auth
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)

    async def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> Any:
        """connectors.http.send of one request; a call's own headers win over the
        connection's, the connection's parameters are added after the call's."""
        merged = {**(params or {}), **self.params}
        return await send(
            self.session,
            method,
            self.root + path,
            auth=self.auth,
            json_body=json_body,
            data=data,
            params=merged or None,
            headers={**self.headers, **(headers or {})},
            response_headers=response_headers,
        )


def page_number(cursor: str | None, what: str, *, first: int = 1) -> int:
    """The page (or start position) a cursor this client made names; ``first`` without
    one. A cursor is only ever our own digits, so anything else is a ValueError."""
    if cursor is None:
        return first
    if not (cursor.isascii() and cursor.isdigit()) or int(cursor) < first:
        raise ValueError(f"not {what}: {cursor!r}")
    return int(cursor)
