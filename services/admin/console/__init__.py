"""The operator console: server-rendered pages at /console/ over the admin API's routes.

Every page and action runs a route of the /v1 table through ``services.admin.api.invoke``
with the signed-in key: the same scope check, validation and application operation as an
API call, so the console can neither see nor do more than the key could over HTTP.
"""

from services.admin.console.views import add_console

__all__ = ["add_console"]
