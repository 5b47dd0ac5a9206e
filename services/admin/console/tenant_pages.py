"""Console pages of the tenant as a whole, beside its connections: the audit trail,
notification endpoints and freeze windows. Like every page they run /v1 routes with the
session's key (``views.call``); nothing here queries the database."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.admin.console.session import now
from services.admin.console.views import (
    FIRST,
    ROOT,
    RefusalError,
    Shown,
    call,
    call_or_refusal,
    form_of,
    kept_filters,
    listed,
    page,
    redirect,
    render,
)

# The kinds of message an endpoint can ask for (crmsync.application.models.NotificationType).
NOTIFICATION_TYPES = (
    "connection.needs_reauth",
    "connection.circuit_open",
    "connection.dead_letters",
    "sync_job.failed",
)
# Actions the audit trail records, by kind, for the filter's suggestions (any text is
# accepted: an action or a kind).
AUDIT_KINDS = (
    "connection",
    "api_key",
    "dead_letter",
    "conflict",
    "sync_job",
    "notification_endpoint",
    "freeze_window",
)


# -- audit trail --------------------------------------------------------------------------

_AUDIT_FILTERS = ("actor", "action", "target", "since", "until", "cursor")


@page
async def audit(request: web.Request) -> web.StreamResponse:
    try:
        listing = await listed(request, "listAuditLog", _AUDIT_FILTERS)
    except RefusalError as failure:
        if failure.status != 422:
            raise
        # A filter the API refused (a target that is not an id, a time without an
        # offset): said beside the filter, the form kept.
        return render(
            request,
            "audit.html",
            items=[],
            filters=kept_filters(request.query, _AUDIT_FILTERS),
            kinds=AUDIT_KINDS,
            next_query=None,
            **failure.shown().context(),
        )
    return render(
        request,
        "audit.html",
        items=listing.items,
        filters=listing.filters,
        kinds=AUDIT_KINDS,
        next_query=listing.next_query,
        **FIRST.context(),
    )


# -- notification endpoints ---------------------------------------------------------------


async def _endpoints_page(
    request: web.Request, shown: Shown = FIRST, *, created: Any = None
) -> web.Response:
    listing = await listed(request, "listNotificationEndpoints", ("cursor",))
    return render(
        request,
        "notifications.html",
        **shown.context(),
        items=listing.items,
        next_query=listing.next_query,
        created=created,
        types=NOTIFICATION_TYPES,
        form=shown.form or {"event_types": []},
    )


@page
async def create_endpoint(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    body: dict[str, Any] = {
        "url": form.get("url", ""),
        "event_types": list(form.getall("event_types", ())),
    }
    if form.get("description"):
        body["description"] = form["description"]
    created, failure = await call_or_refusal(request, "createNotificationEndpoint", body=body)
    if failure:
        typed = body | {"description": form.get("description", "")}
        return await _endpoints_page(request, failure.shown(typed))
    return await _endpoints_page(request, created=created)


@page
async def endpoint(request: web.Request) -> web.StreamResponse:
    found = await call(request, "getNotificationEndpoint", path=request.match_info)
    deliveries = await listed(
        request, "listNotificationDeliveries", ("status", "cursor"), path=request.match_info
    )
    return render(
        request,
        "notification.html",
        item=found,
        deliveries=deliveries.items,
        filters=deliveries.filters,
        next_query=deliveries.next_query,
    )


@page
async def endpoint_action(request: web.Request) -> web.StreamResponse:
    ids = {"endpoint_id": request.match_info["endpoint_id"]}
    if request.match_info["action"] == "delete":
        await call(request, "deleteNotificationEndpoint", path=ids)
        return redirect(f"{ROOT}notifications?done=endpoint_deleted")
    await call(request, "testNotificationEndpoint", path=ids)
    return redirect(f"{ROOT}notifications/{ids['endpoint_id']}?done=test_queued")


# -- freeze windows -----------------------------------------------------------------------


async def _windows_page(request: web.Request, shown: Shown = FIRST) -> web.Response:
    # The form's checkbox sends "on"; the API takes a boolean.
    past = {"include_past": "true"} if request.query.get("include_past") else {}
    listing = await listed(
        request, "listFreezeWindows", ("connection", "include_past", "cursor"), sent=past
    )
    connections = await call(request, "listConnections", query={"limit": "100"})
    return render(
        request,
        "freeze_windows.html",
        **shown.context(),
        items=listing.items,
        # Over: history (the API refuses to delete it), so no button.
        over={w.id for w in listing.items if w.ends_at is not None and w.ends_at <= now()},
        names={c.id: c.name for c in connections.items},
        connections=connections.items,
        filters=listing.filters,
        next_query=listing.next_query,
        form=shown.form or {"connection": listing.filters.get("connection", "")},
    )


@page
async def create_window(request: web.Request) -> web.StreamResponse:
    form = await form_of(request)
    typed = {
        k: form.get(k, "") for k in ("connection", "direction", "starts_at", "ends_at", "reason")
    }
    body = {k: v for k, v in typed.items() if v}
    _, failure = await call_or_refusal(request, "createFreezeWindow", body=body)
    if failure:
        return await _windows_page(request, failure.shown(typed))
    return redirect(f"{ROOT}freeze-windows?done=window_created")


@page
async def delete_window(request: web.Request) -> web.StreamResponse:
    try:
        await call(request, "deleteFreezeWindow", path=request.match_info)
    except RefusalError as failure:
        if failure.status != 409:
            raise
        return await _windows_page(request, Shown(409, error=failure.detail))
    return redirect(f"{ROOT}freeze-windows?done=window_deleted")


def add_tenant_pages(router: web.UrlDispatcher) -> None:
    router.add_get(f"{ROOT}audit", audit)
    router.add_get(f"{ROOT}notifications", page(_endpoints_page))
    router.add_post(f"{ROOT}notifications", create_endpoint)
    router.add_get(f"{ROOT}notifications/{{endpoint_id}}", endpoint)
    router.add_post(f"{ROOT}notifications/{{endpoint_id}}/{{action:delete|test}}", endpoint_action)
    router.add_get(f"{ROOT}freeze-windows", page(_windows_page))
    router.add_post(f"{ROOT}freeze-windows", create_window)
    router.add_post(f"{ROOT}freeze-windows/{{window_id}}/delete", delete_window)
