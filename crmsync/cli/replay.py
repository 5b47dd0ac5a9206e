"""``crmsync replay``: re-process a connection's webhooks from a time or an offset."""

from __future__ import annotations

import argparse

from crmsync.application.models import ReplayRequest
from crmsync.cli import admin_common as cli


@cli.command
def _replay(args: argparse.Namespace) -> int:
    body = cli.body_from(ReplayRequest, args)
    return cli.emit(cli.call(args, "replayWebhooks", body=body), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay", help="re-process a connection's webhooks.raw from a time or an offset"
    )
    cli.add_common(p)
    p.add_argument("--connection", required=True, type=cli.connection_arg, help="id or TENANT/NAME")
    p.add_argument("--since", help="ISO 8601 time with offset")
    p.add_argument("--from-offset", type=int, help="offset to start at (every partition)")
    p.add_argument("--partition", type=int, help="only this partition")
    p.add_argument("--max-records", type=int, help="most envelopes re-produced (default 10000)")
    p.set_defaults(handler=_replay)
