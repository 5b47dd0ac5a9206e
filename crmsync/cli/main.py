"""``crmsync``: one entry point for operators and developers.

Exit status: 0 success, 1 the requested state could not be reached (the message says
why), 2 bad usage or configuration (in remote mode also: an API key refused). The admin
commands (connections, api-keys, records, dead-letters, replay, sync-jobs, conflicts, ...)
add: 3 not found in that tenant, 4 refused by the current state (a name taken, a job
already active, already resolved).

Remote mode: with --api-url/CRMSYNC_API_URL and --api-key/CRMSYNC_API_KEY the operator
commands call a deployed admin API instead of PostgreSQL (crmsync/cli/backend.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Protocol

from crmsync.cli import (
    apikeys,
    audit,
    auditlog,
    config,
    conflicts,
    connections,
    deadletters,
    freezewindows,
    infra,
    matrix,
    notifications,
    privacy,
    quotas,
    records,
    replay,
    run,
    simulate,
    sync,
    syncjobs,
    synclog,
    trigger,
)
from crmsync.cli.admin_common import add_remote
from crmsync.common.settings import EXIT_CONFIG, ConfigError, parse_settings
from crmsync.localstack.keys import export_master_key
from crmsync.localstack.settings import LocalStackSettings
from crmsync.localstack.status import StackError
from crmsync.settings.remote import RemoteSettings


class CommandModule(Protocol):
    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


# Modules adding their own commands (see build_parser).
COMMAND_MODULES: list[CommandModule] = [
    sync,
    simulate,
    apikeys,
    records,
    deadletters,
    replay,
    syncjobs,
    conflicts,
    audit,
    auditlog,
    synclog,
    notifications,
    freezewindows,
    privacy,
    quotas,
    trigger,
    matrix,
]


# Commands that work on this machine's stack, never through the admin API: refused when
# remote mode is set (CRMSYNC_API_URL), rather than quietly acting on a local database.
LOCAL_ONLY = frozenset({"infra", "migrate", "topics", "run", "demo", "simulate"})


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _version() -> str:
    try:
        return metadata.version("crmsync")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmsync", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--version", action="version", version=f"crmsync {_version()}", help="print the version"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p_infra = sub.add_parser("infra", help="manage the local Kafka and PostgreSQL")
    infra_sub = p_infra.add_subparsers(dest="action", required=True, metavar="ACTION")
    infra_sub.add_parser("up", help="start Kafka and PostgreSQL, create role, database, topics")
    p_down = infra_sub.add_parser("down", help="stop Kafka and PostgreSQL")
    p_down.add_argument(
        "--purge", action="store_true", help="also delete their data (Kafka log, PG cluster)"
    )
    p_status = infra_sub.add_parser("status", help="is each component healthy, and why not")
    p_status.add_argument("--json", action="store_true", help="machine-readable output")

    p_migrate = sub.add_parser("migrate", help="apply SQL migrations not applied yet")
    p_migrate.add_argument("--json", action="store_true", help="machine-readable output")

    p_topics = sub.add_parser("topics", help="Kafka topics of the pipeline")
    topics_sub = p_topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    topics_sub.add_parser("ensure", help="create the pipeline's topics that do not exist")

    p_run = sub.add_parser("run", help="run the services in the foreground until Ctrl-C")
    p_run.add_argument(
        "--services",
        default=",".join(run.SERVICES),
        help=f"comma-separated subset of {','.join(run.SERVICES)}",
    )
    p_run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="processes of each of processor and outbound (worker k listens on the "
        "service's port + 100 * (k - 1)); default 1",
    )

    p_demo = sub.add_parser(
        "demo",
        help="the stack, every service and simulated CRMs syncing, with a live report",
    )
    p_demo.add_argument(
        "--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running on exit"
    )
    p_demo.add_argument(
        "--once", action="store_true", help="report once and exit: 0 when all converged"
    )
    p_demo.add_argument(
        "--providers",
        default="ascora,xero,stripe",
        help="simulated CRMs of the demo tenant (comma-separated)",
    )

    p_conn = sub.add_parser("connections", help="tenants' connections to providers")
    conn_sub = p_conn.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_add = conn_sub.add_parser("add", help="create a connection (and its tenant if new)")
    p_add.add_argument(
        "--provider",
        required=True,
        help="provider slug, e.g. stripe, square or paypal; mailchimp, mautic, woocommerce, "
        "freshbooks: a generic connection from the mapping file shipped for it",
    )
    p_add.add_argument(
        "--tenant",
        help="tenant slug, created if new (remote mode: the API key's tenant; checked if given)",
    )
    p_add.add_argument("--name", help="connection name, unique per tenant (default: provider)")
    p_add.add_argument("--webhook-secret", help="the provider's signing secret (else generated)")
    p_add.add_argument(
        "--provider-api-key", help="API credentials for calls to the provider (an API token)"
    )
    p_add.add_argument("--base-url", help="the provider API's base URL")
    p_add.add_argument(
        "--generic-config",
        type=Path,
        help="a generic connection's JSON signature scheme, or its whole mapping file",
    )
    p_add.add_argument("--json", action="store_true", help="machine-readable output")
    add_remote(p_add)
    p_add.set_defaults(handler=connections.add)
    connections.register_actions(conn_sub)

    p_config = sub.add_parser("config", help="configuration of every service")
    config_sub = p_config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_sub.add_parser("reference", help="every CRMSYNC_ variable as a Markdown table")

    p_schemas = sub.add_parser("schemas", help="JSON Schema of the event and API models")
    schemas_sub = p_schemas.add_subparsers(dest="action", required=True, metavar="ACTION")
    schemas_sub.add_parser("export", help="write schemas/json/*.schema.json")

    # Command groups that live in their own module register themselves: each calls
    # ``set_defaults(handler=fn)`` with ``fn(args) -> exit status``.
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _print_reference() -> int:
    print(config.reference(), end="")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is not None:
        return handler(args)
    handlers: dict[tuple[str, str | None], Callable[[], int]] = {
        ("infra", "up"): lambda: asyncio.run(infra.up(_say)),
        ("infra", "down"): lambda: infra.down(_say, purge=args.purge),
        ("infra", "status"): lambda: asyncio.run(infra.status(as_json=args.json)),
        ("migrate", None): lambda: asyncio.run(infra.migrate(_say, as_json=args.json)),
        ("topics", "ensure"): lambda: asyncio.run(infra.ensure_topics(_say)),
        ("run", None): lambda: run.run_services(
            args.services.split(","), _say, workers=args.workers
        ),
        ("demo", None): lambda: run.demo(
            _say,
            keep_infra=args.keep_infra,
            once=args.once,
            providers=tuple(p for p in args.providers.split(",") if p),
        ),
        ("schemas", "export"): infra.export_schemas,
        ("config", "reference"): _print_reference,
    }
    return handlers[(args.command, getattr(args, "action", None))]()


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # The CLI reports what it could not reach in its own words; aiokafka's connection
    # errors during a probe would only repeat it, noisily.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        if args.command in LOCAL_ONLY and parse_settings(RemoteSettings).api_url is not None:
            print(
                f"crmsync: `crmsync {args.command}` works on this machine's stack only, not "
                "through an admin API; unset CRMSYNC_API_URL to run it here",
                file=sys.stderr,
            )
            sys.exit(EXIT_CONFIG)
        # The local stack's generated master key, unless CRMSYNC_MASTER_KEYS is set.
        export_master_key(parse_settings(LocalStackSettings))
        code = _dispatch(args)
    except ConfigError as exc:
        print(f"crmsync: configuration error: {exc}", file=sys.stderr)
        code = EXIT_CONFIG
    except StackError as exc:
        print(f"crmsync: {exc}", file=sys.stderr)
        code = 1
    except KeyboardInterrupt:
        print("crmsync: interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
