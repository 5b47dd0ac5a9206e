"""``crmsync connectors matrix``: what each provider does per record kind, as Markdown.

The README's providers-by-kinds table is this output, generated from each
connector's declaration (``connectors/<provider>/capabilities.py``); a test fails when
they differ, as it does for ``crmsync config reference``.
"""

from __future__ import annotations

import argparse

from connectors.capabilities import matrix
from connectors.registry import CAPABILITIES


def table() -> str:
    return matrix(CAPABILITIES)


def _print(_: argparse.Namespace) -> int:
    print(table(), end="")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("connectors", help="what each provider's connector supports")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser(
        "matrix", help="providers by record kinds: read and write support as a Markdown table"
    ).set_defaults(handler=_print)
