"""``python -m tests.convergence [--seed N] [--ops N] [--kinds customer,job] [--serial]
[--fresh-values] [--providers ascora,xero] [--concurrency N]``: one seeded run, a report.

Exit status 0 when every system converged (same records through each connector's
mapping, no duplicates, nothing pushed after quiet, only injected dead letters), 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from tests.convergence.plan import DEFAULT_PROVIDERS, KINDS, PROVIDERS, Kind, generate
from tests.convergence.run import run
from tests.convergence.stack import default_workdir, running_systems


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _names(text: str, allowed: tuple[str, ...], what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{what} among {', '.join(allowed)}; got {text!r}")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/converge", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--kinds", type=lambda t: _names(t, KINDS, "kinds"), default=list(KINDS))
    parser.add_argument(
        "--providers",
        type=lambda t: _names(t, PROVIDERS, "providers"),
        default=list(DEFAULT_PROVIDERS),
    )
    parser.add_argument("--serial", action="store_true", help="one op at a time, quiet after each")
    parser.add_argument(
        "--fresh-values", action="store_true", help="every edit writes a value never seen before"
    )
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="edit a record again before its last edit reached every system",
    )
    parser.add_argument("--no-faults", action="store_true", help="inject nothing")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument(
        "--keep-database",
        action="store_true",
        help="keep the run's database (its sync log and field provenance) afterwards",
    )
    args = parser.parse_args()
    kinds: list[Kind] = args.kinds
    plan = generate(
        args.seed,
        args.ops,
        kinds,
        fresh_values=args.fresh_values,
        faults=not args.no_faults,
        providers=args.providers,
    )
    workdir = args.workdir or default_workdir() / f"seed{args.seed}-{time.strftime('%H%M%S')}"

    async def go() -> bool:
        async with running_systems(
            workdir, args.providers, kinds, _say, keep_database=args.keep_database
        ) as systems:
            result = await run(
                plan,
                systems,
                _say,
                concurrency=args.concurrency,
                serial=args.serial,
                overlap=args.overlap,
            )
        print(result.report())
        # Every mismatch and foreign dead letter, not only the report's first ones.
        (workdir / "examples.txt").write_text("\n".join(result.examples) + "\n")
        return result.converged

    return 0 if asyncio.run(go()) else 1


if __name__ == "__main__":
    sys.exit(main())
