"""Ingest: sustained verified webhooks/s and latency at fixed offered loads, each against
a bare aiohttp handler driven by the same load generator with the same requests.

Ingest runs as ``python -m services.ingest`` on this run's database and topics; every
request it answers 200 was verified (Stripe or Standard Webhooks signature over a ~1 KiB
body) and acknowledged by Kafka with acks=all. Nothing consumes the topic meanwhile.
"""

from __future__ import annotations

import sys
from typing import Any

from bench.harness import Run, add_connection, generate_load, measured, scrape, target
from bench.report import Result, Target
from bench.stack import Service
from crmsync.localstack.ports import free_port

KINDS = ("stripe", "standard-webhooks")
# The targets: >= 50 % of the bare handler's throughput; p99 < 50 ms at 1,000/s.
THROUGHPUT_TARGET = Target(">=", 0.5, of_baseline=True)
P99_TARGET_RATE = 1000
P99_TARGET_MS = 50.0


def _errors(summary: dict[str, Any]) -> int:
    refused = sum(
        int(n) for status, n in summary["statuses"].items() if not 200 <= int(status) < 300
    )
    return refused + int(summary["errors"])


async def run_ingest(run: Run) -> list[Result]:
    sizes = run.sizes
    results: list[Result] = []
    async with run.stack("ingest") as stack:
        keyring = run.keyring
        conns = {
            kind: await add_connection(
                stack, keyring, tenant="bench-ingest", provider=kind, name=kind
            )
            for kind in KINDS
        }
        bare_port = free_port()
        bare_url = f"http://127.0.0.1:{bare_port}"
        bare = stack.spawn(
            "bare-aiohttp",
            [sys.executable, "-m", "bench.bare", str(bare_port)],
            ready_url=f"{bare_url}/readyz",
        )
        ingest, ingest_url = stack.ingest()
        await run.ready(bare, ingest)

        def targets(base: str, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
            return [
                target(
                    base,
                    f"/webhooks/{kind}/{conns[kind].id}",
                    kind,
                    conns[kind].webhook_secret,
                )
                for kind in kinds
            ]

        async def drive(server: Service, base: str, kinds: tuple[str, ...], **mode: Any) -> Any:
            spec = {
                "targets": targets(base, kinds),
                "warmup": sizes.warmup_seconds,
                "duration": sizes.ingest_seconds,
                **mode,
            }
            before = await scrape(run, server)
            summary, cpu = await measured([server], generate_load(run, spec))
            after = await scrape(run, server)
            # Server CPU per answered request: what one webhook costs it.
            summary["server_cpu_ms"] = 1000 * cpu[server.name] / max(1, summary["sent"])
            # Ingest's own view: mean time Kafka took to acknowledge (acks=all).
            acks = "crmsync_ingest_kafka_produce_duration_seconds"
            count = after.get(f"{acks}_count", 0.0) - before.get(f"{acks}_count", 0.0)
            total = after.get(f"{acks}_sum", 0.0) - before.get(f"{acks}_sum", 0.0)
            summary["kafka_ack_ms"] = 1000 * total / count if count else 0.0
            return summary

        # Warm both (imports, connection cache, Kafka metadata) before measuring.
        await drive(ingest, ingest_url, KINDS, mode="rate", rate=50, warmup=0, duration=1)

        for kind in KINDS:
            run.say(f"ingest: sustained throughput, {kind} signatures")
            mode = {"mode": "max", "concurrency": sizes.ingest_concurrency}
            base = await drive(bare, bare_url, (kind,), **mode)
            got = await drive(ingest, ingest_url, (kind,), **mode)
            name = f"ingest.{kind}"
            results += [
                Result(
                    f"{name}.throughput",
                    got["throughput"],
                    "webhooks/s",
                    baseline=base["throughput"],
                    targets=(THROUGHPUT_TARGET,),
                    note=f"{sizes.ingest_concurrency} connections, closed loop; "
                    f"refused/failed {_errors(got)}",
                ),
                Result(
                    f"{name}.throughput.p99",
                    got["latency_ms"]["p99"],
                    "ms",
                    base["latency_ms"]["p99"],
                    note=f"mean Kafka ack {got['kafka_ack_ms']:.1f} ms",
                ),
                Result(
                    f"{name}.server_cpu",
                    got["server_cpu_ms"],
                    "ms CPU/request",
                    base["server_cpu_ms"],
                ),
                Result(f"{name}.loadgen_cpu", got["cpu_percent"], "% of a core"),
                Result(f"bare.{kind}.loadgen_cpu", base["cpu_percent"], "% of a core"),
            ]

        for rate in sizes.ingest_rates:
            run.say(f"ingest: {rate}/s offered, Stripe and Standard Webhooks alternating")
            mode = {"mode": "rate", "rate": rate}
            base = await drive(bare, bare_url, KINDS, **mode)
            got = await drive(ingest, ingest_url, KINDS, **mode)
            p99_targets = (Target("<", P99_TARGET_MS),) if rate == P99_TARGET_RATE else ()
            name = f"ingest.rate_{rate}"
            results += [
                Result(f"{name}.achieved", got["throughput"], "webhooks/s", base["throughput"]),
                Result(f"{name}.p50", got["latency_ms"]["p50"], "ms", base["latency_ms"]["p50"]),
                Result(
                    f"{name}.p99",
                    got["latency_ms"]["p99"],
                    "ms",
                    base["latency_ms"]["p99"],
                    targets=p99_targets,
                    note=f"mean Kafka ack {got['kafka_ack_ms']:.1f} ms",
                ),
                Result(
                    f"{name}.errors",
                    _errors(got),
                    "requests",
                    note=f"non-2xx or failed; bare handler {_errors(base)}",
                ),
                Result(
                    f"{name}.server_cpu",
                    got["server_cpu_ms"],
                    "ms CPU/request",
                    base["server_cpu_ms"],
                ),
                Result(
                    f"{name}.loadgen_cpu",
                    got["cpu_percent"],
                    "% of a core",
                    note=f"send lag p99 {got['send_lag_ms'].get('p99', 0):.1f} ms",
                ),
            ]
    return results
