"""``crmsync trigger PROVIDER EVENT --connection C``: send a connection a correctly signed
sample webhook of its provider (``crmsync.application.trigger``), as ``stripe trigger``
does; ``crmsync trigger --list`` lists the samples."""

from __future__ import annotations

import argparse
import sys
from typing import Any, cast

from crmsync.application import trigger
from crmsync.application.models import TriggerRequest, TriggerResult
from crmsync.cli import admin_common as cli
from crmsync.cli.backend import call, connection_arg, connection_id, is_remote


def _list(as_json: bool) -> int:
    found = trigger.catalogue()
    if as_json:
        return cli.emit(found, as_json)
    for provider, events in found.providers.items():
        for event in events:
            print(f"{provider:<12} {event}")
    return 0


@cli.command
def _trigger(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.json)
    if args.provider is None or args.event is None or args.connection is None:
        raise cli.CommandError("give PROVIDER EVENT --connection C (or --list)", cli.EXIT_INVALID)
    body = cli.model(TriggerRequest, event=args.event, provider=args.provider)
    arguments: dict[str, Any] = {"body": body}
    if args.ingest_url is not None:
        if is_remote(args):
            raise cli.CommandError(
                "--ingest-url is for local mode: a remote admin API posts to its own ingest",
                cli.EXIT_INVALID,
            )
        arguments["send_to"] = args.ingest_url
    cid = connection_id(args, args.connection)
    result = cast(TriggerResult, call(args, "triggerWebhook", connection_id=cid, **arguments))
    cli.emit(result, args.json)
    if not 200 <= result.ingest_status < 300:
        print(f"crmsync: ingest answered {result.ingest_status}", file=sys.stderr)
        return cli.EXIT_UNAVAILABLE
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "trigger",
        help="send a connection a signed sample webhook of its provider",
        description="Send a connection a correctly signed sample webhook of its provider, "
        "through ingest, as a new delivery (unique event ids, dated now).",
    )
    p.add_argument("provider", nargs="?", help="the connection's provider, e.g. stripe")
    p.add_argument("event", nargs="?", help="a sample event, e.g. customer.created (--list)")
    p.add_argument("--connection", type=connection_arg, help="connection id, or TENANT/NAME")
    p.add_argument("--list", action="store_true", help="list every provider's sample events")
    p.add_argument(
        "--ingest-url",
        help="POST to this base URL instead of the public one the webhook is signed for "
        "(default: CRMSYNC_INGEST_PUBLIC_BASE_URL)",
    )
    cli.add_common(p)
    p.set_defaults(handler=_trigger)
