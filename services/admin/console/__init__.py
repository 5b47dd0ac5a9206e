"""The operator console: server-rendered pages at /console/ over the admin API's routes.

Every page and action runs a route of the /v1 table through ``services.admin.api.invoke``
with the signed-in key: the same scope check, validation and application operation as an
API call, so the console can neither see nor do more than the key could over HTTP.
"""

from aiohttp import web

from crmsync.common.crypto import KeyRing
from services.admin.api import Route
from services.admin.console import views
from services.admin.console.tenant_pages import add_tenant_pages


def add_console(app: web.Application, routes: list[Route], keyring: KeyRing) -> None:
    views.add_console(app, routes, keyring)
    add_tenant_pages(app.router)


__all__ = ["add_console"]
