"""``crmsync quotas``: a tenant's limits and their usage (``/v1/quotas``): show them, set
some (the others stay; ``none`` lifts one)."""

from __future__ import annotations

import argparse
from typing import cast

from crmsync.application.models import QuotaLimits, QuotasOut
from crmsync.cli import admin_common as cli
from crmsync.cli.backend import call

_NONE = "none"


def _limit(text: str) -> int | str:
    """argparse type: a whole number, or ``none`` for no limit."""
    if text.lower() == _NONE:
        return _NONE
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number or 'none': {text!r}") from None


def _print(result: QuotasOut, as_json: bool) -> int:
    if as_json:
        return cli.emit(result, as_json)
    rows = [
        ("connections", result.connections.limit, result.connections.usage),
        ("events_per_minute", result.events_per_minute.limit, result.events_per_minute.usage),
        ("records", result.records.limit, result.records.usage),
    ]
    print(f"{'quota':<18} {'limit':>10} {'usage':>10}")
    for name, limit, usage in rows:
        print(f"{name:<18} {'-' if limit is None else limit:>10} {usage:>10}")
    events = result.events_per_minute
    print(
        f"(events: this minute since {events.window_start:%H:%M}Z; {events.last_minute} the"
        f" minute before; {events.accepted_over_limit} webhooks accepted over the limit,"
        f" {events.refused} internal refused)"
    )
    return 0


@cli.command
def _show(args: argparse.Namespace) -> int:
    return _print(cast(QuotasOut, call(args, "getQuotas")), args.json)


@cli.command
def _set(args: argparse.Namespace) -> int:
    given = {
        name: None if value == _NONE else value
        for name in ("max_connections", "events_per_minute", "max_records")
        if (value := getattr(args, name)) is not None
    }
    if not given:
        raise cli.CommandError(
            "give at least one of --max-connections, --events-per-minute, --max-records",
            cli.EXIT_INVALID,
        )
    body = cli.validate(QuotaLimits, given)
    return _print(cast(QuotasOut, call(args, "updateQuotas", body=body)), args.json)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("quotas", help="a tenant's limits and their usage")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    cli.add_action(actions, "show", "limits and usage: connections, events, records", _show)
    set_ = cli.add_action(actions, "set", "set the limits given ('none': no limit)", _set)
    set_.add_argument("--max-connections", type=_limit, help="connections, whatever their status")
    set_.add_argument(
        "--events-per-minute",
        type=_limit,
        help="change events per minute: internal changes past it get 429, webhooks are "
        "accepted and the tenant notified",
    )
    set_.add_argument(
        "--max-records",
        type=_limit,
        help="canonical records: internal creates past it get 409, provider records are "
        "applied and the tenant notified",
    )
