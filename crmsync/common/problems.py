"""RFC 9457 problem details: every error answer has the same machine-readable shape."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from aiohttp import web

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
