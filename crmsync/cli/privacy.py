"""``crmsync privacy``: export or erase one person, by email, across every connected system
(``/v1/privacy/export``, ``/v1/privacy/erase``; crmsync.application.privacy)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

from crmsync.application.models import PrivacyErasure, PrivacyExport, PrivacyRequest
from crmsync.cli import admin_common as cli
from crmsync.cli.backend import call

STEPS: list[cli.Column] = cli.columns(
    ("system", lambda r: r[0]),
    ("kind", lambda r: r[1].entity_type),
    ("id there", lambda r: r[1].external_id),
    ("action", lambda r: r[1].action),
    ("status", lambda r: r[1].status),
    ("detail", lambda r: r[1].detail),
)


@cli.command
def _export(args: argparse.Namespace) -> int:
    body = cli.model(PrivacyRequest, email=args.email)
    bundle = cast(PrivacyExport, call(args, "exportPerson", body=body))
    text = bundle.model_dump_json(indent=2)
    if args.out is None:
        print(text)
        return cli.EXIT_OK
    try:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    except OSError as exc:
        raise cli.CommandError(
            f"cannot write {args.out}: {exc.strerror}", cli.EXIT_INVALID
        ) from None
    held = sum(len(s.records) for s in bundle.systems)
    print(
        f"wrote {args.out}: {len(bundle.customers)} customer(s), {len(bundle.jobs)} job(s),"
        f" {len(bundle.invoices)} invoice(s), {len(bundle.payments)} payment(s),"
        f" {held} record(s) in {len(bundle.systems)} connected system(s)",
        file=sys.stderr,
    )
    return cli.EXIT_OK


def _print_erasure(report: PrivacyErasure) -> None:
    pg = report.postgres
    print(
        f"postgres: {pg.customers_anonymised} customer(s) and {pg.jobs_anonymised} job(s)"
        f" anonymised, {pg.invoices_kept} invoice(s) and {pg.payments_kept} payment(s) kept,"
        f" {pg.links_cleared} link snapshot(s), {pg.conflicts_cleared} conflict(s) and"
        f" {pg.dead_letters_cleared} dead letter(s) cleared; tombstone {report.subject.identity}"
    )
    rows = [(f"{s.provider}/{s.name}", step) for s in report.systems for step in s.steps]
    if rows:
        print(cli.table(rows, STEPS))


@cli.command
def _erase(args: argparse.Namespace) -> int:
    body = cli.model(PrivacyRequest, email=args.email)
    report = cast(PrivacyErasure, call(args, "erasePerson", body=body))
    if args.json:
        print(report.model_dump_json())
    else:
        _print_erasure(report)
    if not report.complete:
        print(
            "crmsync: some systems could not be erased (status failed); run this again to"
            " retry them",
            file=sys.stderr,
        )
        return cli.EXIT_UNAVAILABLE
    return cli.EXIT_OK


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("privacy", help="export or erase one person across every system")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = _person_action(
        actions,
        "export",
        "one JSON bundle: records, links, sync log, audit entries and what each"
        " connected system holds (read through its API)",
        _export,
    )
    export.add_argument(
        "--out", metavar="FILE", help="write the bundle here (default: standard output)"
    )
    _person_action(
        actions,
        "erase",
        "anonymise the person here, delete or anonymise them in every connected system,"
        " and leave a tombstone so nothing brings them back; exits 1 when a system failed",
        _erase,
    )


def _person_action(
    actions: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    handler: Callable[[argparse.Namespace], int],
) -> argparse.ArgumentParser:
    """An action on one person, named by ``--email`` (what both API routes take)."""
    action = cli.add_action(actions, name, help_text, handler)
    action.add_argument("--email", required=True, help="the person's email address")
    return action
