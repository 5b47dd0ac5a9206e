"""Console pages and actions. Each one reads or acts through the /v1 route table, with the
key of the session (see the package docstring); nothing here queries the database."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
from aiohttp import web
from multidict import MultiDict, MultiMapping

from connectors.generic import MappingFileError, load_mapping_file, mapping_settings
from connectors.registry import PROVIDERS, UnknownProviderError, connector
from crmsync.application.errors import AdminError
from crmsync.common.apikeys import authenticate
from crmsync.common.crypto import KeyRing
from crmsync.common.faults import describe, is_transient
from schemas.errors import RefuseInput
from services.admin.api import SERVICES, RequestInvalidError, Route, invoke
from services.admin.console.render import MONEY_FIELDS, STATIC, ago, environment, hexdump, when
from services.admin.console.session import COOKIE, Session, clear_cookie, now, set_cookie

log = logging.getLogger(__name__)

ROOT = "/console/"
SIGN_IN = "/console/sign-in"
_STATIC = "/console/static/"

_ROUTES = web.AppKey("console_routes", dict)
_ENV = web.AppKey("console_env", jinja2.Environment)
_KEYRING = web.AppKey("console_keyring", KeyRing)
_SESSION = web.RequestKey("console_session", Session)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Script and style only from this service (htmx and the stylesheet are vendored): no CDN,
# no inline code, and no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

ENTITY_ROUTES = {
    "customer": "getCustomer",
    "job": "getJob",
    "invoice": "getInvoice",
    "payment": "getPayment",
}
ENTITY_TYPES = tuple(ENTITY_ROUTES)
# An OAuth token this close to expiry is a problem: the refresh may fail overnight.
TOKEN_WARNING = timedelta(days=1)
# Where a successful action lands, and what it says there (fixed texts: nothing the user
# typed travels in the URL).
DONE = {
    "settings": "Settings saved.",
    "disabled": "The connection is disabled: nothing is received or pushed.",
    "enabled": "The connection is enabled.",
    "credentials": "Credentials saved (stored encrypted; they are never shown).",
    "job": "Sync job started.",
    "cancelled": "Sync job cancelled (a running one stops after its current page).",
    "paused": "Paused: what arrives waits, nothing is refused or lost.",
    "resumed": "Resumed: what was held back goes on in order.",
    "deleted": "Connection deleted (its records stay).",
    "endpoint_deleted": "Notification endpoint deleted.",
    "test_queued": "Test message queued: its delivery is listed below.",
    "window_created": "Freeze window scheduled.",
    "window_deleted": "Freeze window removed (one in force ends now).",
    "redriven": "Redriven: it re-enters at its stage.",
    "discarded": "Discarded.",
    "resolved": "Conflict resolved.",
    "revoked": "Key revoked.",
}


class RefusalError(RefuseInput):
    """An API refusal, as the console shows it: the status, the problem's detail, and the
    per-field errors keyed by JSON pointer (``/body/rate_limit/rate``). Like the
    application's AdminError it is answered at the edge: here as a page."""

    def __init__(self, status: int, detail: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or {}

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"

    def shown(self, form: Mapping[str, Any] | None = None) -> Shown:
        """What a form's page is shown again with: this status, what was typed (``form``),
        the headline above the form and each field's error beside it."""
        return Shown(self.status, form, self.errors, self.detail)


@dataclass(frozen=True)
class Shown:
    """A form's page as it is shown: at first (200, nothing typed, no errors), or again
    after a refusal (:meth:`RefusalError.shown`). Every page with a form takes one of these
    rather than the four as keywords of its own; it fills in its own empty ``form``."""

    status: int = 200
    form: Mapping[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None

    def context(self) -> dict[str, Any]:
        """:func:`render`'s status and the template's ``errors`` and ``error``."""
        return {"status": self.status, "errors": self.errors, "error": self.error}


# A form's page at first: the default of every page that takes a Shown (never changed).
FIRST = Shown()


# The API's headline for a request that failed validation, as a person reads it on a page
# where each field's error is beside it (or listed under the headline).
_READABLE = {
    "invalid body": "Some fields are not valid: each one says why.",
    "invalid query": "A filter is not valid: it says why.",
}


def _errors(raw: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in raw or []:
        out.setdefault(str(e.get("loc", "")), str(e.get("msg", "")))
    return out


async def call(
    request: web.Request,
    operation_id: str,
    *,
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: Any = None,
) -> Any:
    """Run the API route ``operation_id`` with the session's key; refusals become RefusalError."""
    route: Route = request.app[_ROUTES][operation_id]
    session: Session = request[_SESSION]
    try:
        return await invoke(
            route, request.app[SERVICES], session.key, path=path, query=query, body=body
        )
    except RequestInvalidError as exc:
        errors = _errors(exc.errors)
        detail = _READABLE.get(exc.detail, exc.detail) if errors else exc.detail
        raise RefusalError(exc.status, detail, errors) from None
    except AdminError as exc:
        raise RefusalError(exc.status, exc.detail, _errors(exc.extensions.get("errors"))) from None


async def call_or_refusal(
    request: web.Request,
    operation_id: str,
    *,
    raised: tuple[int, ...] = (401,),
    path: Mapping[str, str] | None = None,
    body: Any = None,
) -> tuple[Any, RefusalError | None]:
    """``call``, for a form: a refusal comes back (with no result) so that the form's page
    is shown again with it; one whose status is in ``raised`` (401: signed out) goes on to
    ``page``, which shows it as a whole page."""
    try:
        return await call(request, operation_id, path=path, body=body), None
    except RefusalError as failure:
        if failure.status in raised:
            raise
        return None, failure


def filters_of(query: MultiMapping[str], names: tuple[str, ...]) -> dict[str, str]:
    """The non-empty filters of a listing's query string (an empty select means "any")."""
    return {n: query[n] for n in names if query.get(n)}


def kept_filters(query: MultiMapping[str], names: tuple[str, ...]) -> dict[str, str]:
    """The filters a listing's form keeps: those of the query but the cursor."""
    return {n: v for n, v in filters_of(query, names).items() if n != "cursor"}


def next_page(keep: Mapping[str, str], cursor: str | None) -> str | None:
    """The query string of the page after this one, its filters kept; None on the last."""
    return urlencode({**keep, "cursor": cursor}) if cursor else None


@dataclass(frozen=True)
class Listed:
    """A page of a /v1 list route as a listing page shows it: its ``items``, the
    ``filters`` its form keeps (those of the query but the cursor) and ``next_query``."""

    items: list[Any]
    filters: dict[str, str]
    next_query: str | None


async def listed(
    request: web.Request,
    operation_id: str,
    names: tuple[str, ...],
    *,
    path: Mapping[str, str] | None = None,
    sent: Mapping[str, str] | None = None,
) -> Listed:
    """50 rows of ``operation_id``, filtered by the query's ``names`` (``sent``: values
    that replace what the query says)."""
    query = filters_of(request.query, names) | {"limit": "50"} | dict(sent or {})
    page = await call(request, operation_id, path=path, query=query)
    keep = kept_filters(request.query, names)
    return Listed(page.items, keep, next_page(keep, page.next_cursor))


async def form_of(request: web.Request) -> MultiDict[str]:
    """The posted form's text fields (the console uploads no files)."""
    posted = await request.post()
    return MultiDict((k, v) for k, v in posted.items() if isinstance(v, str))


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    session: Session | None = request.get(_SESSION)
    html = (
        request.app[_ENV]
        .get_template(template)
        .render(
            session=session,
            can_act=session is not None and session.scope == "admin",
            csrf=session.csrf if session else "",
            done=DONE.get(request.query.get("done", "")),
            path=request.path,
            **context,
        )
    )
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def redirect(location: str) -> web.Response:
    """303 See Other: after a form post, the browser GETs the page (reload does not re-post)."""
    return web.Response(status=303, headers={"Location": location})


def _same_origin(request: web.Request) -> bool:
    """A form posted from this console's own pages. SameSite=Strict already keeps the cookie
    off cross-site requests; this also covers the sign-in form, which has no session yet."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin"
    return urlsplit(origin).netloc == request.host


def page(handler: Handler) -> Handler:
    """A signed-in page or action: opens the session, checks CSRF on POSTs, and renders an
    API refusal as a readable error page (a revoked key signs the browser out)."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        session = Session.open(request.app[_KEYRING], request.cookies.get(COOKIE), now())
        if session is None:
            return _signed_out(request)
        request[_SESSION] = session
        if request.method == "POST":
            form = await form_of(request)
            if not _same_origin(request) or not session.csrf_ok(form.get("csrf")):
                return render(
                    request,
                    "error.html",
                    status=403,
                    failure=RefusalError(
                        403, "The form expired or came from elsewhere; reload it."
                    ),
                )
        try:
            return await handler(request)
        except RefusalError as failure:
            if failure.status == 401:
                return _signed_out(request)
            return render(request, "error.html", status=failure.status, failure=failure)
        except Exception as exc:
            # Never a blank page: what the API answers as a problem document, a person
            # reads as a page.
            if is_transient(exc):
                log.warning("a dependency is unavailable: %s", describe(exc))
                shown = RefusalError(503, "The database is unavailable; try again.")
            else:
                log.exception("unhandled error in %s %s", request.method, request.path)
                shown = RefusalError(500, "Something went wrong; it was logged.")
            return render(request, "error.html", status=shown.status, failure=shown)

    return wrapped


def _signed_out(request: web.Request) -> web.StreamResponse:
    if request.headers.get("HX-Request"):
        # htmx follows HX-Redirect with a full page load; a 3xx it would follow in place.
        response: web.StreamResponse = web.Response(status=401, headers={"HX-Redirect": SIGN_IN})
    else:
        response = redirect(SIGN_IN)
    if COOKIE in request.cookies:
        clear_cookie(response, request)
    return response


# -- sign in and out ----------------------------------------------------------------------


async def sign_in_form(request: web.Request) -> web.StreamResponse:
    return render(request, "sign_in.html", error=None)


async def sign_in(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    key = form.get("key", "").strip()
    if not _same_origin(request):
        return render(request, "sign_in.html", status=403, error="Sign in from this page.")
    principal = None
    if key:
        principal = await authenticate(request.app[SERVICES].pool, key)
    if principal is None or principal.scope not in ("read", "admin"):
        return render(
            request,
            "sign_in.html",
            status=401,
            error="That key is unknown, revoked or expired, or it is a publish key.",
        )
    session = Session.new(key, principal.scope, now())
    response = redirect(ROOT)
    set_cookie(response, request, session.seal(request.app[_KEYRING]))
    return response


@page
async def sign_out(request: web.Request) -> web.StreamResponse:
    response = redirect(SIGN_IN)
    clear_cookie(response, request)
    return response


# -- overview -----------------------------------------------------------------------------


def problems(health: Any) -> list[str]:
    """What an operator should look at, most urgent first."""
    out = []
    if health.needs_reauth:
        out.append("needs re-authorisation")
    if health.circuit == "open":
        out.append("circuit open")
    if health.status == "disabled":
        out.append("disabled")
    # Deliberate, but what it holds back piles up: the operator should see it first.
    if health.paused_inbound and health.paused_outbound:
        out.append("paused")
    elif health.paused_inbound:
        out.append("paused inbound")
    elif health.paused_outbound:
        out.append("paused outbound")
    if health.open_dead_letters:
        out.append(f"{health.open_dead_letters} open dead letters")
    if health.errors_in_window:
        out.append(f"{health.errors_in_window} errors in the last hour")
    if health.credentials == "unreadable":
        out.append("credentials unreadable")
    expires = health.token_expires_at
    if expires is not None and expires <= now():
        out.append("token expired")
    elif expires is not None and expires - now() <= TOKEN_WARNING:
        out.append(f"token expires {ago(expires)}")
    return out


@page
async def overview(request: web.Request) -> web.StreamResponse:
    listing = await call(
        request, "listConnections", query=filters_of(request.query, ("cursor",)) | {"limit": "100"}
    )
    rows = []
    for connection in listing.items:
        health = await call(
            request, "getConnectionHealth", path={"connection_id": str(connection.id)}
        )
        rows.append((connection, health, problems(health)))
    rows.sort(key=lambda r: (-len(r[2]), r[0].name))
    # Pipeline lag: how long events took in the last hour (p95), from the sync log.
    since = (now() - timedelta(hours=1)).isoformat()
    summary = await call(request, "getSyncLogSummary", query={"since": since})
    lag = {
        (o.direction, o.outcome): o.p95_latency_ms
        for o in summary.outcomes
        if o.p95_latency_ms is not None
    }
    return render(
        request,
        "overview.html",
        rows=rows,
        next_cursor=listing.next_cursor,
        lag_in=lag.get(("in", "applied")),
        lag_out=lag.get(("out", "pushed")),
        pending=sum(h.pending_pushes for _, h, _ in rows),
    )


# -- connections --------------------------------------------------------------------------

_SETTINGS_FIELDS = (
    "/body/name",
    "/body/direction",
    "/body/entity_types",
    "/body/conflict_policy",
    "/body/rate_limit",
    "/body/rate_limit/rate",
    "/body/rate_limit/per_seconds",
    "/body/rate_limit/burst",
    "/body/max_concurrency",
    "/body/base_url",
    "/body/provider_settings",
)


# Errors of the page's other forms (credentials, pause), shown beside their fields there.
_PLACED_ELSEWHERE = ("/body/api_key/", "/body/oauth2/", "/body/token_url", "/body/until")


async def _connection_page(
    request: web.Request, shown: Shown = FIRST, *, shown_once: dict[str, str] | None = None
) -> web.Response:
    ids = {"connection_id": request.match_info["connection_id"]}
    connection = await call(request, "getConnection", path=ids)
    health = await call(request, "getConnectionHealth", path=ids)
    jobs = await call(
        request, "listSyncJobs", query={"connection": str(connection.id), "limit": "5"}
    )
    windows = await call(
        request, "listFreezeWindows", query={"connection": str(connection.id), "limit": "20"}
    )
    return render(
        request,
        "connection.html",
        **shown.context(),
        connection=connection,
        health=health,
        problems=problems(health),
        jobs=jobs.items,
        windows=windows.items,
        credentials_kind=credentials_kind(connection.provider),
        token_url=default_token_url(connection.provider),
        form=shown.form if shown.form is not None else _settings_form(connection),
        unplaced={
            k: v
            for k, v in shown.errors.items()
            if k not in _SETTINGS_FIELDS and not k.startswith(_PLACED_ELSEWHERE)
        },
        shown_once=shown_once,
        entity_types=ENTITY_TYPES,
    )


_SETTINGS_INPUTS = (
    "name",
    "direction",
    "policy",
    "rate",
    "per_seconds",
    "burst",
    "max_concurrency",
    "base_url",
    "provider_settings",
)


# Settings with a field of their own in the form (or none: generic mappings are edited
# through the API); the rest are provider settings (crmsync.application.connections).
_OWN_FIELDS = frozenset(
    {
        "direction",
        "entity_types",
        "conflict_policy",
        "rate_limit",
        "max_concurrency",
        "field_mapping",
        "generic",
        "generic_mapping",
    }
)


def _provider_settings(connection: Any) -> dict[str, Any]:
    return {k: v for k, v in connection.settings.items() if k not in _OWN_FIELDS}


def _settings_form(connection: Any) -> dict[str, Any]:
    s = connection.settings
    rate = s.get("rate_limit") or {}
    policy = (s.get("conflict_policy") or {}).get("default") or {}
    provider_settings = _provider_settings(connection)
    return {
        "name": connection.name,
        "direction": s.get("direction") or "both",
        "entity_types": s.get("entity_types") or [],
        "policy": policy.get("kind", "newest_wins"),
        "rate": str(rate.get("rate", "")),
        "per_seconds": str(rate.get("per_seconds", "")),
        "burst": str(rate.get("burst", "")),
        "max_concurrency": str(s.get("max_concurrency") or ""),
        "base_url": connection.base_url or "",
        "provider_settings": json.dumps(provider_settings, indent=2) if provider_settings else "",
    }


def _settings_body(
    form: MultiMapping[str], connection: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """The PATCH body for what the operator changed in the form. Only changed fields are
    sent: a PATCH replaces each setting it names, so sending the whole form would reset
    what the form does not show (per-type conflict policies, a priority list). Values go to
    the API as typed: it validates them and says which field is wrong; only JSON syntax is
    checked here."""
    was = _settings_form(connection)
    changed = {k for k in _SETTINGS_INPUTS if form.get(k, "") != was[k]}
    if sorted(form.getall("entity_types", ())) != sorted(was["entity_types"]):
        changed.add("entity_types")
    body: dict[str, Any] = {}
    for name in ("name", "direction", "base_url", "max_concurrency"):
        if name in changed:
            body[name] = form.get(name) or None
    if "entity_types" in changed:
        body["entity_types"] = list(form.getall("entity_types", ())) or None
    if "policy" in changed:
        policies = dict(connection.settings.get("conflict_policy") or {})
        policies["default"] = {**policies.get("default", {}), "kind": form.get("policy")}
        body["conflict_policy"] = policies
    if changed & {"rate", "per_seconds", "burst"}:
        body["rate_limit"] = _rate_limit(form)
    errors = {}
    if "provider_settings" in changed:
        try:
            body["provider_settings"] = _provider_settings_of(form, connection)
        except ValueError as exc:
            errors["/body/provider_settings"] = str(exc)
    return body, errors


def _rate_limit(form: MultiMapping[str]) -> dict[str, Any] | None:
    if not (form.get("rate") or form.get("per_seconds") or form.get("burst")):
        return None  # all three cleared: back to the provider's documented limit
    rate: dict[str, Any] = {"rate": form.get("rate") or None}
    for name in ("per_seconds", "burst"):
        if form.get(name):
            rate[name] = form[name]
    return rate


def _provider_settings_of(form: MultiMapping[str], connection: Any) -> dict[str, Any]:
    raw = form.get("provider_settings", "").strip()
    try:
        typed = json.loads(raw) if raw else {}
    except ValueError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(typed, dict):
        raise ValueError("must be a JSON object")
    # A key deleted from the text is removed (null removes a key).
    removed = dict.fromkeys(set(_provider_settings(connection)) - set(typed))
    return {**removed, **typed}


@page
async def update_settings(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    connection = await call(request, "getConnection", path=request.match_info)
    body, errors = _settings_body(form, connection)
    # What was typed goes back into the form, so a refused field can be corrected.
    shown: dict[str, Any] = {k: form.get(k, "") for k in _SETTINGS_INPUTS}
    shown["entity_types"] = list(form.getall("entity_types", ()))
    if errors:
        return await _connection_page(request, Shown(422, shown, errors))
    _, failure = await call_or_refusal(
        request, "updateConnection", raised=(401, 404), path=request.match_info, body=body
    )
    if failure:
        return await _connection_page(request, failure.shown(shown))
    return redirect(f"{request.path.rsplit('/', 1)[0]}?done=settings")


@page
async def set_status(request: web.Request) -> web.StreamResponse:
    action = request.match_info["action"]
    operation = {"disable": "disableConnection", "enable": "enableConnection"}[action]
    await call(request, operation, path={"connection_id": request.match_info["connection_id"]})
    return redirect(f"{ROOT}connections/{request.match_info['connection_id']}?done={action}d")


@page
async def rotate_secret(request: web.Request) -> web.StreamResponse:
    rotated = await call(request, "rotateWebhookSecret", path=request.match_info, body={})
    return await _connection_page(
        request,
        shown_once={
            "what": "New webhook secret",
            "value": rotated.webhook_secret,
            "note": "The previous secret keeps verifying until "
            f"{when(rotated.previous_expire_at)}.",
        },
    )


async def _connection_action(
    request: web.Request, operation: str, done: str, **given: Any
) -> web.StreamResponse:
    """Run ``operation`` for the connection of the URL, then back to its page: with
    ``?done=``, or with the API's refusal shown there (401 and 404 are whole-page errors)."""
    connection_id = request.match_info["connection_id"]
    _, failure = await call_or_refusal(request, operation, raised=(401, 404), **given)
    if failure:
        return await _connection_page(request, failure.shown())
    return redirect(f"{ROOT}connections/{connection_id}?done={done}")


def credentials_kind(provider: str) -> str:
    """Which credentials the provider's API takes, so the form asks for those: ``oauth2``
    (client id and secret, the tokens and their expiry, the token URL), ``api_key`` (one
    token), ``any`` (generic: its mapping decides) or ``none`` (internal services call us)."""
    if provider == "internal":
        return "none"
    if provider == "generic":
        return "any"
    try:
        spec = connector(provider).api
    except UnknownProviderError:
        return "api_key"
    return "oauth2" if spec is not None and spec.auth_kind == "oauth2" else "api_key"


def default_token_url(provider: str) -> str:
    """The provider's documented OAuth2 token endpoint, to prefill the form (a relative one
    resolves against the base URL at run time, so it is not offered)."""
    if credentials_kind(provider) != "oauth2":
        return ""
    spec = connector(provider).api
    url = spec.token_url if spec is not None else None
    return url if url and url.startswith("https://") else ""


_OAUTH_FIELDS = (
    "client_id",
    "client_secret",
    "access_token",
    "refresh_token",
    "expires_at",
    "token_url",
)


def credentials_of(form: MultiMapping[str], *, required: bool) -> dict[str, Any] | None:
    """The credentials typed into a form, as the API takes them (it validates each field and
    says which is wrong). ``None`` when none were typed and none are ``required``; the token
    URL alone (prefilled) is not typing."""
    if form.get("credentials_type") == "oauth2":
        typed = {k: form.get(k, "").strip() for k in _OAUTH_FIELDS}
        if not required and not any(v for k, v in typed.items() if k != "token_url"):
            return None
        return {"type": "oauth2", **typed}
    if form.get("token") or required:
        return {"type": "api_key", "token": form.get("token", "")}
    return None


@page
async def set_credentials(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    return await _connection_action(
        request,
        "setConnectionCredentials",
        "credentials",
        path=request.match_info,
        body=credentials_of(form, required=True),
    )


@page
async def delete_connection(request: web.Request) -> web.StreamResponse:
    await call(request, "deleteConnection", path=request.match_info)
    return redirect(f"{ROOT}?done=deleted")


@page
async def cancel_job(request: web.Request) -> web.StreamResponse:
    return await _connection_action(
        request, "cancelSyncJob", "cancelled", path={"job_id": request.match_info["job_id"]}
    )


@page
async def pause_connection(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    body = {k: form[k] for k in ("direction", "until", "reason") if form.get(k)}
    return await _connection_action(
        request,
        "pauseConnection",
        "paused",
        path={"connection_id": request.match_info["connection_id"]},
        body=body,
    )


@page
async def resume_connection(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    return await _connection_action(
        request,
        "resumeConnection",
        "resumed",
        path={"connection_id": request.match_info["connection_id"]},
        body={"direction": form.get("direction") or "both"},
    )


@page
async def start_job(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    return await _connection_action(
        request,
        "createSyncJob",
        "job",
        body={"connection": request.match_info["connection_id"], "kind": form.get("kind", "")},
    )


@page
async def jobs_fragment(request: web.Request) -> web.StreamResponse:
    jobs = await call(
        request,
        "listSyncJobs",
        query={"connection": request.match_info["connection_id"], "limit": "5"},
    )
    return render(
        request, "_jobs.html", jobs=jobs.items, connection_id=request.match_info["connection_id"]
    )


# What the connect form shows again after a refusal (never a secret or a token).
_CONNECT_KEPT = (
    "provider",
    "name",
    "base_url",
    "credentials_type",
    "client_id",
    "expires_at",
    "token_url",
    "generic_config",
)
# Where each field's error is shown; the rest are listed above the form.
_CONNECT_FIELDS = frozenset(
    {
        "/body/provider",
        "/body/name",
        "/body/base_url",
        "/body/webhook_secret",
        "/body/generic_config",
        "/body/credentials/api_key/token",
        *(f"/body/credentials/oauth2/{k}" for k in _OAUTH_FIELDS),
        "/body/credentials/token_url",
    }
)


def _connect_page(request: web.Request, provider: str, shown: Shown = FIRST) -> web.Response:
    form = dict(shown.form or {})
    form.setdefault("token_url", default_token_url(provider))
    return render(
        request,
        "connect.html",
        **shown.context(),
        providers=PROVIDERS,
        provider=provider,
        credentials_kind=credentials_kind(provider),
        form=form,
        unplaced={k: v for k, v in shown.errors.items() if k not in _CONNECT_FIELDS},
    )


@page
async def connect_form(request: web.Request) -> web.StreamResponse:
    provider = request.query.get("provider", PROVIDERS[0])
    if provider not in PROVIDERS:
        provider = PROVIDERS[0]
    return _connect_page(request, provider)


def _json_object(raw: str, loc: str, errors: dict[str, str]) -> dict[str, Any] | None:
    """A JSON object typed into a textarea; a syntax error is put in ``errors`` at ``loc``."""
    if not raw.strip():
        return None
    try:
        typed = json.loads(raw)
    except ValueError as exc:
        errors[loc] = f"not JSON: {exc}"
        return None
    if not isinstance(typed, dict):
        errors[loc] = "must be a JSON object"
        return None
    return typed


def generic_of(text: str, errors: dict[str, str]) -> dict[str, Any]:
    """What a generic connection's textarea holds, as the create body's fields: a whole
    mapping file (an object with ``signature``: the scheme and the field mapping, as
    ``crmsync connections create --generic-config FILE`` takes it) or only the scheme.
    A file that does not validate is put in ``errors`` with each problem's path and line."""
    loc = "/body/generic_config"
    document = _json_object(text, loc, errors)
    if document is None or "signature" not in document:
        return {} if document is None else {"generic_config": document}
    try:
        signature, mapping = load_mapping_file(text)
    except MappingFileError as exc:
        errors[loc] = "; ".join(
            f"{path} (line {line}): {message}" if line else f"{path}: {message}"
            for path, line, message in exc.problems
        )
        return {}
    return {
        "generic_config": signature.model_dump(mode="json"),
        "settings": {"field_mapping": mapping_settings(mapping)},
    }


@page
async def connect(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    provider = form.get("provider", "")
    body: dict[str, Any] = {"provider": provider}
    for name in ("name", "base_url", "webhook_secret"):
        if form.get(name):
            body[name] = form[name]
    credentials = credentials_of(form, required=False)
    if credentials is not None:
        body["credentials"] = credentials
    errors: dict[str, str] = {}
    if provider == "generic":
        body |= generic_of(form.get("generic_config", ""), errors)
    kept = {k: form.get(k, "") for k in _CONNECT_KEPT}
    shown_as = provider if provider in PROVIDERS else PROVIDERS[0]
    if errors:
        return _connect_page(request, shown_as, Shown(422, kept, errors, "Fix the fields below."))
    created, failure = await call_or_refusal(request, "createConnection", body=body)
    if failure:
        return _connect_page(request, shown_as, failure.shown(kept))
    return render(request, "connected.html", created=created)


# -- events and records -------------------------------------------------------------------

_EVENT_FILTERS = ("connection", "direction", "outcome", "entity_type", "entity_id", "cursor")


async def _events(request: web.Request) -> dict[str, Any]:
    listing = await listed(request, "listSyncLog", _EVENT_FILTERS)
    connections = await call(request, "listConnections", query={"limit": "100"})
    names = {c.id: c.name for c in connections.items}
    return {
        "entries": listing.items,
        "names": names,
        "filters": listing.filters,
        "live": not request.query.get("cursor"),
        "query": urlencode(listing.filters),
        "next_query": listing.next_query,
        "connections": connections.items,
        "entity_types": ENTITY_TYPES,
    }


@page
async def events(request: web.Request) -> web.StreamResponse:
    try:
        context = await _events(request)
    except RefusalError as failure:
        if failure.status != 422:
            raise
        return render(request, "error.html", status=422, failure=failure)
    return render(request, "events.html", **context)


@page
async def events_rows(request: web.Request) -> web.StreamResponse:
    return render(request, "_events.html", **await _events(request))


@page
async def record(request: web.Request) -> web.StreamResponse:
    operation = ENTITY_ROUTES.get(request.match_info["entity_type"])
    if operation is None:
        raise RefusalError(404, f"no entity type {request.match_info['entity_type']!r}")
    found = await call(request, operation, path={"record_id": request.match_info["record_id"]})
    log = await call(
        request,
        "listSyncLog",
        query={"entity_id": str(found.id), "direction": "out", "limit": "20"},
    )
    pushes = log.items
    connections = await call(request, "listConnections", query={"limit": "100"})
    names = {c.id: c.name for c in connections.items}
    # Provenance names a connection by its id as text, or "admin" for an operator's value.
    sources = {str(k): v for k, v in names.items()} | {"admin": "an operator (conflict)"}
    return render(request, "record.html", record=found, pushes=pushes, names=names, sources=sources)


# -- dead letters -------------------------------------------------------------------------

_DEAD_LETTER_FILTERS = ("stage", "reason", "connection", "state", "cursor")


@page
async def dead_letters(request: web.Request) -> web.StreamResponse:
    listing = await listed(request, "listDeadLetters", _DEAD_LETTER_FILTERS)
    return render(
        request,
        "dead_letters.html",
        items=listing.items,
        filters=listing.filters,
        next_query=listing.next_query,
        result=None,
    )


@page
async def dead_letter(request: web.Request) -> web.StreamResponse:
    found = await call(request, "getDeadLetter", path=request.match_info)
    try:
        payload = base64.b64decode(found.payload_base64)
    except (binascii.Error, ValueError):
        payload = b""
    return render(request, "dead_letter.html", item=found, hexdump=render_hex(payload))


def render_hex(payload: bytes) -> str:
    # A page shows the first 64 KiB; the API's payload_base64 has the rest.
    return hexdump(payload[:65536])


@page
async def dead_letter_action(request: web.Request) -> web.StreamResponse:
    action = request.match_info["action"]
    operation = {"redrive": "redriveDeadLetter", "discard": "discardDeadLetter"}[action]
    ids = {"dead_letter_id": request.match_info["dead_letter_id"]}
    await call(request, operation, path=ids)
    done = {"redrive": "redriven", "discard": "discarded"}[action]
    return redirect(f"{ROOT}dead-letters?done={done}")


@page
async def redrive_many(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    body = {k: form[k] for k in ("stage", "reason", "connection") if form.get(k)}
    result = await call(request, "redriveDeadLetters", body=body)
    listing = await call(request, "listDeadLetters", query=body | {"limit": "50"})
    return render(
        request,
        "dead_letters.html",
        items=listing.items,
        filters=body,
        next_query=None,
        result=result,
    )


# -- conflicts ----------------------------------------------------------------------------


@page
async def conflicts(request: web.Request) -> web.StreamResponse:
    listing = await listed(request, "listConflicts", ("state", "entity_type", "cursor"))
    return render(
        request,
        "conflicts.html",
        items=listing.items,
        filters=listing.filters,
        entity_types=ENTITY_TYPES,
        next_query=listing.next_query,
    )


async def _currency_of(request: web.Request, item: Any) -> str | None:
    """The currency of a conflict's record when the field holds money (minor units), so
    both sides show as money; None for any other field."""
    if item.field not in MONEY_FIELDS or item.entity_type not in ENTITY_ROUTES:
        return None
    found = await call(
        request, ENTITY_ROUTES[item.entity_type], path={"record_id": str(item.entity_id)}
    )
    currency = found.data.get("currency")
    return currency if isinstance(currency, str) else None


async def _conflict_page(request: web.Request, item: Any, shown: Shown = FIRST) -> web.Response:
    return render(
        request,
        "conflict.html",
        **shown.context(),
        item=item,
        currency=await _currency_of(request, item),
    )


@page
async def conflict(request: web.Request) -> web.StreamResponse:
    found = await call(request, "getConflict", path=request.match_info)
    return await _conflict_page(request, found)


def typed_value(raw: str) -> Any:
    """A value typed by the operator: JSON when it parses (42, true, "x", {...}), else the
    text as a string."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@page
async def resolve_conflict(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    choose = form.get("choose", "")
    body: dict[str, Any] = {"choose": choose}
    if choose == "value":
        body["value"] = typed_value(str(form.get("value", "")))
    _, failure = await call_or_refusal(
        request, "resolveConflict", raised=(401, 404), path=request.match_info, body=body
    )
    if failure:
        found = await call(request, "getConflict", path=request.match_info)
        return await _conflict_page(request, found, failure.shown())
    return redirect(f"{ROOT}conflicts?done=resolved")


# -- API keys -----------------------------------------------------------------------------


async def _keys_page(
    request: web.Request, shown: Shown = FIRST, *, created: Any = None
) -> web.Response:
    keep = {"include_revoked": "1"} if request.query.get("include_revoked") else {}
    query = {"include_revoked": "true" if keep else "false", "limit": "50"}
    if request.query.get("cursor"):
        query["cursor"] = request.query["cursor"]
    listing = await call(request, "listApiKeys", query=query)
    return render(
        request,
        "api_keys.html",
        **shown.context(),
        items=listing.items,
        created=created,
        include_revoked=bool(keep),
        next_query=next_page(keep, listing.next_cursor),
    )


@page
async def create_key(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    body: dict[str, Any] = {"scope": form.get("scope", "")}
    if form.get("expires_at"):
        body["expires_at"] = form["expires_at"]
    created, failure = await call_or_refusal(request, "createApiKey", body=body)
    if failure:
        detail = "; ".join([failure.detail, *failure.errors.values()])
        return await _keys_page(request, Shown(failure.status, error=detail))
    return await _keys_page(request, created=created)


@page
async def key_action(request: web.Request) -> web.StreamResponse:
    ids = {"key_id": request.match_info["key_id"]}
    if request.match_info["action"] == "revoke":
        await call(request, "revokeApiKey", path=ids)
        return redirect(f"{ROOT}api-keys?done=revoked")
    created = await call(request, "rotateApiKey", path=ids, body={})
    return await _keys_page(request, created=created)


# -- wiring -------------------------------------------------------------------------------


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if not request.path.startswith(ROOT):
        return
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    if not request.path.startswith(_STATIC):
        # Pages carry a tenant's data: never kept in a shared or back-button cache.
        response.headers["Cache-Control"] = "no-store"


async def _root(_request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(ROOT)


def add_console(app: web.Application, routes: list[Route], keyring: KeyRing) -> None:
    app[_ROUTES] = {r.operation_id: r for r in routes}
    app[_ENV] = environment()
    app[_KEYRING] = keyring
    app.on_response_prepare.append(_security_headers)
    r = app.router
    r.add_get("/console", _root)
    r.add_static(_STATIC, STATIC)
    r.add_get(ROOT, overview)
    r.add_get(SIGN_IN, sign_in_form)
    r.add_post(SIGN_IN, sign_in)
    r.add_post(f"{ROOT}sign-out", sign_out)
    r.add_get(f"{ROOT}connections/new", connect_form)
    r.add_post(f"{ROOT}connections", connect)
    c = f"{ROOT}connections/{{connection_id}}"
    r.add_get(c, page(_connection_page))
    r.add_post(f"{c}/settings", update_settings)
    r.add_post(f"{c}/{{action:disable|enable}}", set_status)
    r.add_post(f"{c}/rotate-secret", rotate_secret)
    r.add_post(f"{c}/credentials", set_credentials)
    r.add_post(f"{c}/delete", delete_connection)
    r.add_post(f"{c}/pause", pause_connection)
    r.add_post(f"{c}/resume", resume_connection)
    r.add_post(f"{c}/sync-jobs", start_job)
    r.add_get(f"{c}/sync-jobs", jobs_fragment)
    r.add_post(f"{c}/sync-jobs/{{job_id}}/cancel", cancel_job)
    r.add_get(f"{ROOT}events", events)
    r.add_get(f"{ROOT}events/rows", events_rows)
    r.add_get(f"{ROOT}records/{{entity_type}}/{{record_id}}", record)
    r.add_get(f"{ROOT}dead-letters", dead_letters)
    r.add_post(f"{ROOT}dead-letters/redrive", redrive_many)
    r.add_get(f"{ROOT}dead-letters/{{dead_letter_id}}", dead_letter)
    r.add_post(
        f"{ROOT}dead-letters/{{dead_letter_id}}/{{action:redrive|discard}}", dead_letter_action
    )
    r.add_get(f"{ROOT}conflicts", conflicts)
    r.add_get(f"{ROOT}conflicts/{{conflict_id}}", conflict)
    r.add_post(f"{ROOT}conflicts/{{conflict_id}}/resolve", resolve_conflict)
    r.add_get(f"{ROOT}api-keys", page(_keys_page))
    r.add_post(f"{ROOT}api-keys", create_key)
    r.add_post(f"{ROOT}api-keys/{{key_id}}/{{action:revoke|rotate}}", key_action)
