"""``crmsync sync-log``: inbound and outbound events as ``GET /v1/sync-log`` lists them,
and ``--follow`` to tail them as they happen (like ``tail -f``; Ctrl-C stops).

Followed events print oldest first, one per line (JSON Lines with ``--json``). The log's
ids come from a sequence, and a transaction that drew an id may commit after a later one:
each poll looks back ``LOOKBACK_IDS`` ids before the newest it printed, so such an event
is printed late rather than never, and each event is printed once.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable

from crmsync.application.models import Page, SyncLogEntry, SyncLogQuery
from crmsync.application.pagination import MAX_LIMIT
from crmsync.cli import admin_common as cli
from crmsync.cli.backend import Backend, run

LOOKBACK_IDS = 1000
COLUMNS: list[cli.Column] = cli.columns(
    "id",
    "at=created_at",
    "dir=direction",
    "connection=connection_id",
    "type=entity_type",
    "external id=external_id",
    "outcome",
    "rule",
    "ms=latency_ms",
    "error",
)


def _line(entry: SyncLogEntry) -> str:
    cells = [get(entry) for _, get in COLUMNS]
    return "  ".join("-" if c is None else str(c) for c in cells)


# One page of the sync log for a query, in either mode (see ``_follow``).
ListPage = Callable[[SyncLogQuery], Awaitable[Page[SyncLogEntry]]]


async def _newer(list_page: ListPage, query: SyncLogQuery, floor: int) -> list[SyncLogEntry]:
    """Every entry with an id above ``floor``, oldest first."""
    found: list[SyncLogEntry] = []
    page_query = query.model_copy(update={"cursor": None, "limit": MAX_LIMIT})
    while True:
        page = await list_page(page_query)
        found += [e for e in page.items if e.id > floor]
        if not page.next_cursor or (page.items and page.items[-1].id <= floor):
            return sorted(found, key=lambda e: e.id)
        page_query = page_query.model_copy(update={"cursor": page.next_cursor})


async def follow(
    list_page: ListPage,
    query: SyncLogQuery,
    *,
    interval: float,
    out: Callable[[SyncLogEntry], None],
    polls: int | None = None,
) -> None:
    """Print the last ``query.limit`` entries, then each new one as it commits; ``polls``
    bounds the loop (tests), else it runs until cancelled."""
    first = await list_page(query.model_copy(update={"cursor": None}))
    newest = max((e.id for e in first.items), default=0)
    # Every id visible now, printed or older than the first page: never printed later.
    printed = {e.id for e in await _newer(list_page, query, newest - LOOKBACK_IDS)}
    for entry in reversed(first.items):
        out(entry)
    done = 0
    while polls is None or done < polls:
        await asyncio.sleep(interval)
        done += 1
        for entry in await _newer(list_page, query, newest - LOOKBACK_IDS):
            if entry.id not in printed:
                out(entry)
                printed.add(entry.id)
                newest = max(newest, entry.id)
        # Only ids still inside the look-back window can come again.
        printed = {i for i in printed if i > newest - LOOKBACK_IDS}


@cli.command
def _follow(args: argparse.Namespace) -> int:
    query = cli.query_from(SyncLogQuery, args, entity_type="entity_type")

    def out(entry: SyncLogEntry) -> None:
        print(entry.model_dump_json() if args.json else _line(entry), flush=True)

    async def tail(backend: Backend) -> None:
        async def list_page(q: SyncLogQuery) -> Page[SyncLogEntry]:
            page: Page[SyncLogEntry] = await backend.call("listSyncLog", {"query": q})
            return page

        await follow(list_page, query, interval=args.interval, out=out)

    if not args.json:
        print("  ".join(h for h, _ in COLUMNS), flush=True)
    try:
        run(args, tail)
    except KeyboardInterrupt:
        return cli.EXIT_OK
    return cli.EXIT_UNAVAILABLE  # the loop only ends by Ctrl-C or an error


def _handler(args: argparse.Namespace) -> int:
    if args.follow:
        return _follow(args)
    return cli.list_command("listSyncLog", SyncLogQuery, COLUMNS)(args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sync-log", help="inbound and outbound events; --follow tails them")
    cli.add_common(p, page=True)
    p.add_argument(
        "--connection", type=cli.connection_arg, help="one connection's events (id or TENANT/NAME)"
    )
    p.add_argument(
        "--direction", choices=("in", "out"), help="webhooks received, or pushes to providers"
    )
    p.add_argument("--outcome", help="applied, pushed, dead_letter, skipped_echo, ...")
    p.add_argument(
        "--rule", help="inbound events decided by this apply rule: earlier_push, echo, ..."
    )
    p.add_argument(
        "--entity-type",
        choices=("customer", "job", "invoice", "payment"),
        help="only events of this kind of record",
    )
    p.add_argument("--entity-id", type=cli.uuid_arg, help="one record's events")
    p.add_argument("--since", help="ISO 8601 time with offset")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    p.add_argument(
        "--interval", type=float, default=1.0, help="--follow: seconds between polls (1)"
    )
    p.set_defaults(handler=_handler)
