"""``crmsync``: one entry point for operators and developers.

Exit status: 0 success, 1 the requested state could not be reached (the message says
why), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from crmsync.cli import config, infra, run
from crmsync.common.settings import EXIT_CONFIG, ConfigError
from crmsync.localstack.status import StackError


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crmsync", description=__doc__.splitlines()[0])
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

    p_demo = sub.add_parser(
        "demo", help="infra up + migrate + topics + run every service; Ctrl-C stops all"
    )
    p_demo.add_argument(
        "--keep-infra", action="store_true", help="leave Kafka and PostgreSQL running on exit"
    )

    p_config = sub.add_parser("config", help="configuration of every service")
    config_sub = p_config.add_subparsers(dest="action", required=True, metavar="ACTION")
    config_sub.add_parser("reference", help="every CRMSYNC_ variable as a Markdown table")

    p_schemas = sub.add_parser("schemas", help="JSON Schema of the event and API models")
    schemas_sub = p_schemas.add_subparsers(dest="action", required=True, metavar="ACTION")
    schemas_sub.add_parser("export", help="write schemas/json/*.schema.json")
    return parser


def _print_reference() -> int:
    print(config.reference(), end="")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    handlers: dict[tuple[str, str | None], Callable[[], int]] = {
        ("infra", "up"): lambda: asyncio.run(infra.up(_say)),
        ("infra", "down"): lambda: infra.down(_say, purge=args.purge),
        ("infra", "status"): lambda: asyncio.run(infra.status(as_json=args.json)),
        ("migrate", None): lambda: asyncio.run(infra.migrate(_say, as_json=args.json)),
        ("topics", "ensure"): lambda: asyncio.run(infra.ensure_topics(_say)),
        ("run", None): lambda: run.run_services(args.services.split(","), _say),
        ("demo", None): lambda: run.demo(_say, keep_infra=args.keep_infra),
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
