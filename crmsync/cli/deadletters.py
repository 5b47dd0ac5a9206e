"""``crmsync dead-letters``: list, show, redrive (back into their stage) and discard."""

from __future__ import annotations

import argparse

from crmsync.application import deadletters
from crmsync.application.models import DeadLetterQuery, RedriveMany
from crmsync.cli.admin_common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    Column,
    add_common,
    add_group,
    add_id_action,
    add_list_action,
    command,
    emit,
    model,
    run,
    uuid_arg,
)

STAGES = ("ingest", "processor", "hydrate", "outbound")
COLUMNS: list[Column] = [
    ("id", lambda d: d.id),
    ("stage", lambda d: d.stage),
    ("reason", lambda d: d.reason),
    ("connection", lambda d: d.connection_id),
    ("created", lambda d: d.created_at),
    ("detail", lambda d: (d.detail or "")[:60]),
]


@command
def _redrive(args: argparse.Namespace) -> int:
    if len(args.ids) == 1 and not (args.stage or args.reason or args.connection):
        done = run(args, lambda c, ctx: deadletters.redrive_one(c, ctx, args.ids[0]))
        return emit(done, args.json)
    body = model(
        RedriveMany,
        ids=args.ids or None,
        stage=args.stage,
        reason=args.reason,
        connection=args.connection,
        limit=args.limit,
    )
    result = run(args, lambda c, ctx: deadletters.redrive_many(c, ctx, body))
    emit(result, args.json)
    # Some could not be redriven: a script should notice.
    return EXIT_UNAVAILABLE if result.failed else EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    actions = add_group(sub, "dead-letters", "events parked with their reason; redrive them")
    list_ = add_list_action(actions, "newest first", deadletters.list_, DeadLetterQuery, COLUMNS)
    list_.add_argument("--stage", choices=STAGES)
    list_.add_argument("--reason")
    list_.add_argument("--connection", type=uuid_arg)
    list_.add_argument("--state", choices=("open", "redriven", "discarded", "all"))
    add_id_action(actions, "show", "one dead letter with its payload", deadletters.get)
    redrive = actions.add_parser(
        "redrive", help="back into their stage: ids, or every open one matching the filters"
    )
    add_common(redrive)
    redrive.add_argument("ids", nargs="*", type=uuid_arg)
    redrive.add_argument("--stage", choices=STAGES)
    redrive.add_argument("--reason")
    redrive.add_argument("--connection", type=uuid_arg)
    redrive.add_argument("--limit", type=int, help="most redriven at once (default 100)")
    redrive.set_defaults(handler=_redrive)
    add_id_action(actions, "discard", "give up on a dead letter", deadletters.discard)
