"""The console's connection page (services/admin/console/templates/connection.html): its
title is the connection's name, and its one Delete section is in the page, not the title.
The template's title block once ran on over a second copy of that section, so an
admin's browser tab showed the section's markup as text after the name."""

from __future__ import annotations

import re

from tests.integration.test_admin_api import Admin, admin, new_connection
from tests.integration.test_console import page, sign_in

__all__ = ["admin"]  # the fixture, imported for pytest


async def test_the_connection_page_title_is_its_name_and_delete_is_offered_once(
    admin: Admin,
) -> None:
    conn = await new_connection(admin)
    await sign_in(admin, admin.key)
    html = await page(admin, f"/console/connections/{conn['id']}")
    title = re.search(r"<title>(.*?)</title>", html, re.DOTALL)
    assert title is not None
    assert title.group(1) == f"{conn['name']} · crmsync console"
    assert html.count("Delete this connection") == 1
