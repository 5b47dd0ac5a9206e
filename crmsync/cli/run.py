"""``crmsync run`` and ``crmsync demo``: the services as child processes, stopped together.

Each service is its own process (``python -m services.<name>``), exactly as it runs in
production, so nothing here shares state with them. If one exits on its own, the others
are stopped too: a half-running pipeline is worse than a stopped one at 3 a.m.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import FrameType

from connectors.egress import provider_session
from crmsync.cli import infra
from crmsync.common.crypto import KeyRing
from crmsync.common.db import create_pool
from crmsync.common.settings import (
    ProviderCallSettings,
    ServiceSettings,
    env_name,
    parse_settings,
)
from crmsync.localstack.status import Say, StackError
from crmsync.settings.admin import AdminSettings
from crmsync.settings.ingest import IngestSettings
from crmsync.settings.outbound import OutboundSettings
from crmsync.settings.processor import ProcessorSettings
from schemas.errors import Stop

# Services that scale out by running more of them (``crmsync run --workers N``): the
# processor's workers share its consumer group, outbound's its group and the push queue's
# leases. Worker k listens on the service's port + 100 * (k - 1) (9101, 9201, … and 9102,
# 9202, …: never another service's port).
SCALABLE = {
    "processor": ("processor_port", "processor_data_dir"),
    "outbound": ("outbound_port", None),
}
WORKER_PORT_STEP = 100
# Start-up includes joining the consumer group; 60 s covers a cold JVM broker too.
READY_TIMEOUT_SECONDS = 60.0
# Each service drains in-flight work on SIGTERM; 15 s is ample for that at our batch sizes.
STOP_TIMEOUT_SECONDS = 15.0
# The demo's simulators listen on 127.0.0.1, where providers' URLs may not lead by default.
ALLOW_PRIVATE = env_name(ProviderCallSettings, "allow_private_provider_urls")


@dataclass(frozen=True)
class ServiceSpec:
    settings: type[ServiceSettings]
    role: str


SERVICES: dict[str, ServiceSpec] = {
    "ingest": ServiceSpec(IngestSettings, "webhooks in: POST /webhooks/{provider}/{connection}"),
    "processor": ServiceSpec(ProcessorSettings, "faust worker: webhooks and changes -> Postgres"),
    "outbound": ServiceSpec(OutboundSettings, "pushes changes to the other connected systems"),
    "admin": ServiceSpec(AdminSettings, "operator API"),
}


class _TerminateRequestedError(Stop):
    pass


def _raise_stop(_signum: int, _frame: FrameType | None) -> None:
    raise _TerminateRequestedError


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own http URL
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _signal_and_wait(
    procs: dict[str, subprocess.Popen[bytes]], sig: int, seconds: float
) -> list[str]:
    """Send sig to the live ones, wait up to seconds in all; return who is still alive."""
    for proc in procs.values():
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + seconds
    for proc in procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=max(0.05, deadline - time.monotonic()))
    return [name for name, proc in procs.items() if proc.poll() is None]


def _stop_all(procs: dict[str, subprocess.Popen[bytes]], say: Say) -> None:
    stuck = _signal_and_wait(procs, signal.SIGTERM, STOP_TIMEOUT_SECONDS)
    if stuck:
        # faust workers have been seen ignoring SIGTERM early in start-up; SIGINT works.
        say(f"{', '.join(stuck)}: still running after SIGTERM, sending SIGINT")
        stuck = _signal_and_wait({n: procs[n] for n in stuck}, signal.SIGINT, 5.0)
    for name in stuck:
        say(f"{name}: did not stop, killing it")
        procs[name].kill()
        procs[name].wait()
    say("all services stopped")


def _workers(
    names: list[str], workers: int
) -> list[tuple[str, str, tuple[str, int], dict[str, str]]]:
    """(label, service, address, extra environment) of each process to start: one of each
    service, ``workers`` of each of SCALABLE, the others on ports and data directories of
    their own."""
    found: list[tuple[str, str, tuple[str, int], dict[str, str]]] = []
    for name in names:
        spec = SERVICES[name]
        settings = parse_settings(spec.settings)
        host, port = settings.address
        found.append((name, name, (host, port), {}))
        if name not in SCALABLE:
            continue
        port_field, data_field = SCALABLE[name]
        for k in range(2, workers + 1):
            worker_port = port + WORKER_PORT_STEP * (k - 1)
            extra = {env_name(spec.settings, port_field): str(worker_port)}
            if data_field is not None:
                data_dir = f"{getattr(settings, data_field)}-{k}"
                extra[env_name(spec.settings, data_field)] = data_dir
            found.append((f"{name}-{k}", name, (host, worker_port), extra))
    return found


@contextlib.contextmanager
def services_running(
    names: list[str], say: Say, *, env: Mapping[str, str] | None = None, workers: int = 1
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The services as child processes, ready; stopped in order on the way out, however
    that is (Ctrl-C, SIGTERM, an error, one of them dying). ``env``: variables to set on
    top of this process's environment; ``workers``: processes of each SCALABLE service."""
    unknown = sorted(set(names) - SERVICES.keys())
    if unknown:
        raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICES)}")
    if workers < 1:
        raise StackError(f"--workers must be 1 or more, not {workers}")
    planned = _workers(names, workers)
    addresses = {label: address for label, _, address, _ in planned}
    roles = {label: SERVICES[service].role for label, service, _, _ in planned}
    names = list(addresses)
    procs: dict[str, subprocess.Popen[bytes]] = {}
    # Installed explicitly: a shell may start us with SIGINT ignored (background jobs).
    previous = {sig: signal.signal(sig, _raise_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for name, service, _, extra in planned:
            # Own session: a terminal's Ctrl-C reaches only this process, which then stops
            # the services in order, instead of racing them as they all exit at once.
            more = {**(env or {}), **extra}
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"],
                start_new_session=True,
                env={**os.environ, **more} if more else None,
            )
        pending = set(names)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while pending:
            for name in sorted(pending):
                host, port = addresses[name]
                if _ready(f"http://{host}:{port}/readyz"):
                    pending.discard(name)
            _check_alive(procs)
            if pending and time.monotonic() > deadline:
                raise StackError(
                    f"not ready after {READY_TIMEOUT_SECONDS:g}s: {', '.join(pending)}"
                )
            time.sleep(0.3)
        say("")
        say("crmsync is running:")
        for name in names:
            host, port = addresses[name]
            say(f"  {name:<10} http://{host}:{port}  {roles[name]}")
            say(f"  {'':<10}   /healthz /readyz /metrics")
        yield procs
    except _TerminateRequestedError:
        say("stopping…")
    finally:
        # A second Ctrl-C must not cut the orderly stop short and orphan services.
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)
        _stop_all(procs, say)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_services(names: list[str], say: Say, *, workers: int = 1) -> int:
    with services_running(names, say, workers=workers) as procs:
        say("Press Ctrl-C to stop.")
        while True:  # until Ctrl-C or SIGTERM, which services_running turns into a stop
            _check_alive(procs)
            time.sleep(0.5)
    return 0  # type: ignore[unreachable]  # reached after the stop signal


def _check_alive(procs: dict[str, subprocess.Popen[bytes]]) -> None:
    for name, proc in procs.items():
        code = proc.poll()
        if code is not None:
            raise StackError(f"{name} exited with status {code}; stopping the others")


def demo(say: Say, *, keep_infra: bool, once: bool, providers: tuple[str, ...]) -> int:
    """The README's main command: the stack, every service, simulated CRMs of one tenant
    edited on every side, and a live report until Ctrl-C (``once``: report and exit,
    0 when every system converged)."""
    settings = infra.local_settings()
    was_up = asyncio.run(infra.healthy(settings))
    code = 0
    try:
        asyncio.run(infra.up(say))
        asyncio.run(infra.migrate(say, as_json=False))
        # An explicit setting wins, as for the master keys (crmsync.localstack.keys).
        allow = {ALLOW_PRIVATE: os.environ.get(ALLOW_PRIVATE, "true")}
        with services_running(list(SERVICES), say, env=allow) as procs:
            code = asyncio.run(_demo_story(say, procs, once=once, providers=providers))
    finally:
        if not keep_infra and not was_up:
            infra.down(say, purge=False)
    return code


async def _demo_story(
    say: Say,
    procs: dict[str, subprocess.Popen[bytes]],
    *,
    once: bool,
    providers: tuple[str, ...],
) -> int:
    # Imported here: the simulators and their connectors are only needed by the demo.
    from crmsync.demo import scenario  # noqa: PLC0415

    common = parse_settings(IngestSettings)
    keyring = KeyRing.parse(common.master_keys.get_secret_value())
    ingest_url = common.ingest_public_base_url
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    pool = await create_pool(common.database_url, max_size=4)
    processor = parse_settings(ProcessorSettings)
    lag = scenario.LagProbe(
        common.kafka_bootstrap_servers, processor.processor_app_id, common.kafka_topic_prefix
    )
    await lag.start()
    try:
        # The scenario edits records through the simulators' APIs, on 127.0.0.1.
        async with provider_session(allow_private=True) as session:
            world = await scenario.setup(
                pool, keyring, session, ingest_url=ingest_url, providers=providers, lag=lag
            )
            try:
                say(f"demo tenant {world.tenant}: {', '.join(world.sims)} and an internal service")
                for provider, running in world.sims.items():
                    say(f"  {provider:<10} simulator at {running.base_url}")
                await scenario.story(world, say)
                settled = await scenario.settle(world)
                result = await scenario.report(world)
                say("")
                for line in result.lines:
                    say(line)
                if once:
                    return 0 if settled and result.converged else 1
                say("")
                say("The simulators keep running: edit through their APIs and watch it sync.")
                say("Press Ctrl-C to stop.")
                last: list[str] = result.lines
                while not stop.is_set():
                    _check_alive(procs)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=5.0)
                    result = await scenario.report(world)
                    if result.lines != last:
                        say("")
                        for line in result.lines:
                            say(line)
                        last = result.lines
                say("stopping…")
                return 0
            finally:
                await scenario.stop(world)
    finally:
        await lag.close()
        await pool.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
