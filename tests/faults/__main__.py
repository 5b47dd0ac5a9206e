"""``python -m tests.faults [--size 2000] [--only NAME[,NAME]] [--workdir DIR]``: run the
fault scenarios one after another, each on a stack of its own, and print a table.

Exit status 0 when every scenario lost and duplicated nothing, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from crmsync.common.crypto import generate_master_key
from tests.faults.harness import SCENARIOS, Outcome, run_scenario

COLUMNS = ("scenario", "accepted", "applied", "pushed", "dead-lettered", "lost", "duplicated")


def table(outcomes: list[Outcome]) -> str:
    rows: list[tuple[str, ...]] = [(*COLUMNS, "audit", "seconds", "result")]
    for o in outcomes:
        led = o.ledger
        counts = (
            (
                led.accepted,
                led.applied,
                led.pushed,
                led.dead_lettered,
                led.lost,
                len(led.duplicated),
            )
            if led is not None
            else ("-",) * 6
        )
        verdict = "ok" if o.ok else ("FAIL" if o.problem is None else "ERROR")
        # crmsync audit's own verdict on the tenant: settled, or what it found unaccounted.
        audit = "-" if o.audit is None else ("settled" if o.audit.settled else "UNSETTLED")
        rows.append((o.scenario, *map(str, counts), audit, f"{o.seconds:.0f}", verdict))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/faults", description=__doc__)
    parser.add_argument("--size", type=int, default=2000, help="events per scenario")
    parser.add_argument("--only", default="", help=f"comma-separated: {', '.join(SCENARIOS)}")
    parser.add_argument("--workdir", type=Path, help="keep every scenario's logs here")
    args = parser.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown}; known: {', '.join(SCENARIOS)}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="crmsync-faults-"))

    # aiokafka logs every refused connection while a broker starts or restarts: expected.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)

    def say(line: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    # The services' key ring is the stack's own; the CLI helpers want one set too.
    os.environ.setdefault("CRMSYNC_MASTER_KEYS", generate_master_key("faults"))
    # A background run starts with SIGINT ignored: take SIGTERM and SIGINT as an
    # interrupt, so asyncio.run cancels the scenario and its clean-up stops every process
    # and drops the cluster instead of leaving them running.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _interrupt)
    outcomes: list[Outcome] = []
    for name in names:
        say(f"=== {name}: {SCENARIOS[name].what} ({args.size} events)")
        # A fresh directory each run: logs are appended to, and must be this run's.
        shutil.rmtree(workdir / name, ignore_errors=True)
        outcome = asyncio.run(run_scenario(SCENARIOS[name], args.size, workdir / name, say))
        outcomes.append(outcome)
        print(outcome.report(), flush=True)
        print(flush=True)
    print(table(outcomes))
    print(f"\nlogs: {workdir}")
    if args.workdir is None and all(o.ok for o in outcomes):
        shutil.rmtree(workdir, ignore_errors=True)
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
