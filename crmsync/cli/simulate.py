"""``crmsync simulate``: provider simulators as real HTTP servers, connected to a tenant.

Each simulator speaks its provider's API (pagination, error bodies, 429 + Retry-After,
OAuth2 token refresh, QuickBooks SyncToken conflicts) and POSTs signed webhooks to ingest
when a record changes. Connections ``<tenant>/<provider>`` are created on the first run
and adopted on the next ones (same ids, same records). Ctrl-C stops them.

Exit status: 0 stopped by Ctrl-C, 1 a simulator could not start, 2 bad usage.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys

from connectors.egress import ALLOW_SETTING
from crmsync.cli.backend import reach_stack
from crmsync.common.crypto import CryptoError, KeyRing
from crmsync.common.db import create_pool
from crmsync.common.settings import ConfigError, parse_settings
from crmsync.demo.sims import (
    PROVIDERS,
    RunningSim,
    awaits_handshake,
    connect,
    start_simulator,
)
from crmsync.localstack.status import StackError
from crmsync.settings.ingest import IngestSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:

    p = sub.add_parser(
        "simulate",
        help="run provider simulators connected to a tenant, until Ctrl-C",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "--providers",
        default=",".join(PROVIDERS),
        help=f"comma-separated subset of {','.join(PROVIDERS)}",
    )
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="N records of each entity type, each"
    )
    p.add_argument("--tenant", default="sim", help="tenant slug of the connections")
    p.add_argument("--host", default="127.0.0.1", help="listen address of the simulators")
    p.add_argument(
        "--port-base",
        type=int,
        default=9300,
        help="simulators listen on PORT_BASE+1, +2, … in the order of --providers",
    )
    p.add_argument("--no-connect", action="store_true", help="only serve; create no connections")
    p.set_defaults(handler=_main)


def _main(args: argparse.Namespace) -> int:

    providers = [p for p in args.providers.split(",") if p]
    unknown = sorted(set(providers) - set(PROVIDERS))
    if unknown or not providers:
        raise StackError(f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(PROVIDERS)}")
    if args.seed < 0:
        raise StackError("--seed must be 0 or more")
    settings = parse_settings(IngestSettings)
    try:
        keyring = KeyRing.parse(settings.master_keys.get_secret_value())
    except CryptoError as exc:
        raise ConfigError(f"CRMSYNC_MASTER_KEYS: {exc}") from None
    return asyncio.run(_serve(args, providers, settings, keyring))


async def _serve(
    args: argparse.Namespace, providers: list[str], settings: IngestSettings, keyring: KeyRing
) -> int:

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    running: list[RunningSim] = []
    pool = None
    try:
        if not args.no_connect:
            pool = await reach_stack(create_pool(settings.database_url, max_size=2))
        for n, provider in enumerate(providers, start=1):
            try:
                sim = await start_simulator(provider, host=args.host, port=args.port_base + n)
            except OSError as exc:
                raise StackError(f"{provider} simulator: {exc}") from None
            running.append(sim)
            if args.seed:
                sim.sim.seed(args.seed)
            if pool is not None:
                await connect(
                    pool,
                    keyring,
                    sim,
                    tenant=args.tenant,
                    name=provider,
                    ingest_url=settings.ingest_public_base_url,
                )
        _print_table(running, seed=args.seed, tenant=args.tenant)
        await stop.wait()
        print("stopping…", file=sys.stderr)
        return 0
    finally:
        for sim in running:
            with contextlib.suppress(Exception):
                await sim.stop()
        if pool is not None:
            await pool.close()


def _print_table(running: list[RunningSim], *, seed: int, tenant: str) -> None:
    print(f"{'provider':<11} {'API':<24} connection", flush=True)
    for sim in running:
        print(f"{sim.provider:<11} {sim.base_url:<24} {sim.connection_id or '-'}")
        if sim.sim.webhook_url:
            print(f"{'':<11} webhooks → {sim.sim.webhook_url}")
        if awaits_handshake(sim):
            # FreshBooks: its secret is the code its callback handshake carries, which
            # ingest stores and outbound confirms; nothing is delivered before that.
            print(
                f"{'':<11} callback registered: delivers once ingest and outbound confirmed"
                f" its handshake; register again: POST {sim.base_url}/_sim/callback"
            )
    if seed:
        print(f"seeded {seed} of each entity type per simulator (no webhooks sent);")
        print(f"`crmsync backfill {tenant}/<provider>` brings them in.")
    # Provider URLs may not lead to loopback or private addresses by default.
    print(f"The services and `crmsync backfill` reach these APIs only with {ALLOW_SETTING}=true.")
    print("Control API: POST <API>/_sim/… (faults, drop_webhooks). Ctrl-C stops.", flush=True)
