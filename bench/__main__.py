"""``bench/run``: the benchmark suite on the local stack; a table, and JSON with --json.

Exit status: 0 every section ran (targets missed or not), 1 a section failed, 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from bench.backfill import run_backfill
from bench.e2e import run_e2e
from bench.harness import FULL, QUICK, Run
from bench.host import HostCpu, cores, sampling, stack_roots
from bench.ingest import run_ingest
from bench.limiter import run_limiter
from bench.processor import run_processor
from bench.report import Result, Target, table, write_json
from bench.stack import BenchError
from crmsync.common.crypto import generate_master_key
from crmsync.common.settings import CommonSettings

SECTIONS: dict[str, Callable[[Run], Awaitable[list[Result]]]] = {
    "ingest": run_ingest,
    "e2e": run_e2e,
    "processor": run_processor,
    "backfill": run_backfill,
    "limiter": run_limiter,
}
# Sections that run N processor and N outbound workers under ``--workers N``.
SCALED = ("processor", "e2e")
# The target: < 250 MB RSS per service.
RSS_TARGET = Target("<", 250.0)
SERVICES = ("ingest", "processor", "outbound")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the harness works")
    p.add_argument("--json", type=Path, metavar="PATH", help="write the results here as JSON")
    p.add_argument(
        "--only", action="append", choices=list(SECTIONS), help="run only this section (repeat)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory (service logs)")
    p.add_argument(
        "--workers",
        type=_counts,
        default=(1,),
        metavar="N[,N...]",
        help="processor and outbound workers in the processor and e2e sections; several "
        "(--workers 1,2) run those sections once per count and compare them (default 1)",
    )
    p.add_argument(
        "--set",
        dest="settings",
        type=_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a CRMSYNC_ setting for every service the run starts (repeat), e.g. "
        "--set processor_batch_quiet_seconds=0.01: A/B a knob without editing its default",
    )
    p.add_argument(
        "--rates",
        type=_rates,
        metavar="N,N,...",
        help="offered webhooks/s of the e2e section (default 200,1000): find the highest "
        "rate that holds a latency",
    )
    return p.parse_args(argv)


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(sorted({int(part) for part in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of worker counts: {text!r}") from None
    if not counts or counts[0] < 1:
        raise argparse.ArgumentTypeError(f"worker counts are 1 or more: {text!r}")
    return counts


def with_workers(results: list[Result], workers: int) -> list[Result]:
    """A run with N > 1 workers: its figures named ``<name>.workers_N``."""
    if workers == 1:
        return results
    return [dataclasses.replace(r, name=f"{r.name}.workers_{workers}") for r in results]


def scale_out(results: list[Result], counts: tuple[int, ...]) -> list[Result]:
    """Each section figure at N workers beside the same figure at the fewest workers of
    this run: ``scaleout.<name>.workers_N``, baseline the fewest's value, ratio N / fewest."""
    fewest = counts[0]
    by_name = {r.name: r for r in results}
    bases = dict.fromkeys(
        base
        for r in results
        if (base := re.sub(r"\.workers_\d+$", "", r.name)).startswith(
            tuple(f"{s}." for s in SCALED)
        )
    )
    compared: list[Result] = []
    for base in bases:
        first = by_name.get(_named(base, fewest))
        for n in counts[1:]:
            other = by_name.get(_named(base, n))
            if first is None or other is None:
                continue
            compared.append(
                Result(
                    f"scaleout.{base}.workers_{n}",
                    other.value,
                    other.unit,
                    baseline=first.value,
                    note=f"{n} workers (value) against {fewest} (baseline), in this run",
                )
            )
    return compared


def _named(base: str, workers: int) -> str:
    return base if workers == 1 else f"{base}.workers_{workers}"


def _setting(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    name = name.strip().lower().removeprefix("crmsync_")
    if not sep or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise argparse.ArgumentTypeError(f"not NAME=VALUE: {text!r}")
    return name, value


def _rates(text: str) -> tuple[int, ...]:
    try:
        rates = tuple(int(r) for r in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError("rates are positive webhooks/s")
    return rates


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def memory(run: Run) -> list[Result]:
    results = []
    for name, kib in sorted(run.peak_rss_kib.items()):
        if kib == 0:
            continue
        results.append(
            Result(
                f"memory.{name}.peak_rss",
                kib * 1024 / 1e6,
                "MB",
                targets=(RSS_TARGET,) if name in SERVICES else (),
                note="VmHWM at the end of its runs",
            )
        )
    return results


async def section(run: Run, host: HostCpu, name: str) -> list[Result]:
    """One section's results, then how busy the machine was meanwhile."""
    start = host.snapshot()
    results = await SECTIONS[name](run)
    end = host.snapshot()
    used = cores(start, end)
    say(f"{name}: {end[0] - start[0]:.1f} s")
    n = os.cpu_count() or 0
    return [
        *results,
        Result(
            f"host.{name}.others_cpu",
            used["others"],
            "cores",
            note=f"of {n}: processes not of this run nor the stack (others' tests)",
        ),
        Result(
            f"host.{name}.stack_cpu",
            used["stack"],
            "cores",
            note=f"of {n}: the local stack's PostgreSQL and Kafka (shared with anyone using them)",
        ),
        Result(f"host.{name}.bench_cpu", used["bench"], "cores", note=f"of {n}: this run"),
    ]


async def main(args: argparse.Namespace) -> int:
    # aiokafka warns while a new topic's partitions elect leaders; it retries by itself.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp(prefix="crmsync-bench-"))
    failed = False
    results: list[Result] = []
    sizes = QUICK if args.quick else FULL
    if args.rates:
        sizes = dataclasses.replace(sizes, e2e_rates=args.rates)
    async with aiohttp.ClientSession() as session:
        run = Run(
            CommonSettings(),
            sizes,
            generate_master_key("bench"),
            workdir,
            session,
            say,
            settings=dict(args.settings),
        )
        if run.settings:
            named = (f"CRMSYNC_{k.upper()}={v}" for k, v in run.settings.items())
            say("settings: " + ", ".join(named))
        kafka_port = int(run.common.kafka_bootstrap_servers.split(",")[0].rsplit(":", 1)[1])
        roots = await stack_roots(run.common.database_url, kafka_port)
        async with sampling(roots) as host:
            run.host = host
            for name in args.only or list(SECTIONS):
                for workers in args.workers if name in SCALED else (1,):
                    run.workers = workers
                    if name in SCALED and args.workers != (1,):
                        say(f"{name}: {workers} worker(s) of processor and outbound")
                    try:
                        results += with_workers(await section(run, host, name), workers)
                    except BenchError as exc:
                        failed = True
                        say(f"{name}: FAILED: {exc}")
                    except Exception:  # noqa: BLE001 - report, run the other sections
                        failed = True
                        say(f"{name}: FAILED:\n{traceback.format_exc()}")
        if len(args.workers) > 1:
            results += scale_out(results, args.workers)
        results += memory(run)
    print(table(results))
    if args.json:
        write_json(args.json, results)
    if args.keep or failed:
        say(f"service logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args(sys.argv[1:]))))
