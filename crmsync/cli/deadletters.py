"""``crmsync dead-letters``: list, show, redrive (back into their stage) and discard."""

from __future__ import annotations

import argparse

from crmsync.application.models import DeadLetterQuery, RedriveMany
from crmsync.cli import admin_common as cli

_ID = "dead letter id"
STAGES = ("ingest", "processor", "hydrate", "outbound")
COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "stage",
    "reason",
    "connection=connection_id",
    "created=created_at",
    ("detail", lambda d: (d.detail or "")[:60]),
)


@cli.command
def _redrive(args: argparse.Namespace) -> int:
    if len(args.ids) == 1 and not (args.stage or args.reason or args.connection):
        done = cli.call(args, "redriveDeadLetter", dead_letter_id=args.ids[0])
        return cli.emit(done, args.json)
    body = cli.body_from(RedriveMany, args, ids=args.ids or None)
    result = cli.call(args, "redriveDeadLetters", body=body)
    cli.emit(result, args.json)
    # Some could not be redriven: a script should notice.
    return cli.EXIT_UNAVAILABLE if result.failed else cli.EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = cli.add_group(sub, "dead-letters", "events parked with their reason; redrive them")
    list_ = cli.add_list_action(
        actions, "newest first", "listDeadLetters", DeadLetterQuery, COLUMNS
    )
    list_.add_argument("--stage", choices=STAGES, help="where it was parked")
    list_.add_argument("--reason", help="a reason code, e.g. signature_invalid")
    list_.add_argument("--connection", type=cli.connection_arg, help="id or TENANT/NAME")
    list_.add_argument(
        "--state", choices=("open", "redriven", "discarded", "all"), help="default open"
    )
    cli.add_id_action(
        actions, "show", "one dead letter with its payload", "getDeadLetter", id_help=_ID
    )
    redrive = cli.add_action(
        actions,
        "redrive",
        "back into their stage: ids, or every open one matching the filters",
        _redrive,
    )
    redrive.add_argument("ids", nargs="*", type=cli.uuid_arg, help="dead letter ids")
    redrive.add_argument("--stage", choices=STAGES, help="every open one of this stage")
    redrive.add_argument("--reason", help="every open one of this reason code")
    redrive.add_argument(
        "--connection", type=cli.connection_arg, help="every open one of it (id or TENANT/NAME)"
    )
    redrive.add_argument("--limit", type=int, help="most redriven at once (default 100)")
    cli.add_id_action(
        actions, "discard", "give up on a dead letter", "discardDeadLetter", id_help=_ID
    )
