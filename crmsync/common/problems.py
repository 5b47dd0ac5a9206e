"""RFC 9457 problem details: every error answer has the same machine-readable shape."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

CONTENT_TYPE = "application/problem+json"


def problem(
    status: int,
    detail: str | None = None,
    *,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> web.Response:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase}
    body["status"] = status
    if detail:
        body["detail"] = detail
    body.update(extensions)
    return web.json_response(body, status=status, content_type=CONTENT_TYPE, headers=headers)


def from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's own error answers (an unknown path, a wrong method) in the same shape as
    the handlers' own, ``Allow`` kept; a redirect (below 400) goes on as it was raised."""
    if exc.status < 400:
        raise exc
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    return problem(exc.status, exc.reason, headers=headers)


@web.middleware
async def router_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Router errors (404, 405) answer in the same JSON shape as the handlers' own."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return from_http_exception(exc)
