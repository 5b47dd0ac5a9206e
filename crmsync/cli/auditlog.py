"""``crmsync audit-log``: who changed what, newest first (``GET /v1/audit-log``).

Every mutating command and API call is recorded with its actor: ``api-key:<id>`` for the
admin API and the console, ``cli:<OS user>`` for this CLI. Secrets are never recorded.
(``crmsync audit`` is the other audit: the ledger of events.)
"""

from __future__ import annotations

import argparse

from crmsync.application.models import AuditLogQuery
from crmsync.cli.admin_common import Column, add_common, columns, list_command, uuid_arg

COLUMNS: list[Column] = columns(
    "at",
    "actor",
    "action",
    "target=target_id",
    "change",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit-log", help="who changed what: every mutating call, newest first")
    add_common(p, page=True)
    p.add_argument("--actor", help='"api-key:<id>" or "cli:<OS user>"')
    p.add_argument("--action", help='an action ("connection.update") or a kind ("connection")')
    p.add_argument("--target", type=uuid_arg, help="the id of what was changed")
    p.add_argument("--since", help="ISO 8601 time with offset: at or after")
    p.add_argument("--until", help="ISO 8601 time with offset: before")
    p.set_defaults(handler=list_command("listAuditLog", AuditLogQuery, COLUMNS))
