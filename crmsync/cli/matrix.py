"""``crmsync connectors matrix``: what each provider does per record kind, as Markdown.

The README's providers-by-kinds table is this output, generated from each connector's
declaration (``connectors/<provider>/capabilities.toml``) and from the mapping files we
ship; a test fails when they differ, as it does for ``crmsync config reference``. With
``--mapping FILE`` it prints the rows one generic mapping file gives.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from connectors.capabilities import generic_capabilities, matrix
from connectors.generic import MappingFileError, load_mapping_file
from connectors.registry import documented_capabilities
from crmsync.common.settings import EXIT_CONFIG


def table() -> str:
    return matrix(documented_capabilities())


def _print(args: argparse.Namespace) -> int:
    path: Path | None = args.mapping
    if path is None:
        print(table(), end="")
        return 0
    try:
        _, mapping = load_mapping_file(path)
    except OSError as exc:
        print(f"crmsync: --mapping {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_CONFIG
    except MappingFileError as exc:
        print(f"crmsync: --mapping {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(matrix({path.name: generic_capabilities(mapping)}), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("connectors", help="what each provider's connector supports")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p_matrix = actions.add_parser(
        "matrix", help="providers by record kinds: read and write support as a Markdown table"
    )
    p_matrix.add_argument(
        "--mapping", type=Path, help="only the rows this generic mapping file gives"
    )
    p_matrix.set_defaults(handler=_print)
