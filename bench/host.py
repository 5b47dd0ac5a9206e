"""Who used the machine's CPU while a section ran: this run, the shared stack, the rest.

The benchmarks share their cores with whatever else runs (on the development machines,
other engineers' test suites). Sampling /proc once a second and attributing every
process's CPU time to one of three groups makes that visible next to the figures:

- ``bench``: this run's process and its descendants (services, load generator, simulators);
- ``stack``: PostgreSQL and Kafka, which serve this run and anyone else using them: the
  processes of the local stack the run uses (its PostgreSQL postmaster and Kafka broker and
  their children), or, for whichever of the two cannot be found, every process called
  postgres (or java);
- ``others``: everything else, including a second local stack on the same machine.

A process that starts and ends between two samples is missed; at one sample a second
that is noise next to what a benchmark section spends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# "stack" is postgres + kafka (``cores`` adds it).
GROUPS = ("bench", "postgres", "kafka", "others")
# Without roots: PostgreSQL's processes are all called postgres; Kafka runs in a JVM.
STACK_COMMANDS = {"postgres": "postgres", "java": "kafka"}
SAMPLE_SECONDS = 1.0


@dataclass(frozen=True)
class _Proc:
    command: str
    parent: int
    ticks: int
    started: int


def _processes() -> dict[int, _Proc]:
    found: dict[int, _Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        command = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # proc(5), counting from "state" as 0: ppid 1, utime 11, stime 12, starttime 19.
        found[int(entry)] = _Proc(
            command, int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19])
        )
    return found


def _descendants(root: int, procs: dict[int, _Proc]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, proc in procs.items():
        children.setdefault(proc.parent, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


async def stack_roots(database_url: str, kafka_port: int) -> dict[int, str]:
    """The local stack's PostgreSQL postmaster (the parent of our backend) and Kafka
    broker (the process listening on ``kafka_port``), those that can be found, each with
    its group: what ``stack`` counts. Other stacks on the same machine are ``others``."""
    roots: dict[int, str] = {}
    with contextlib.suppress(OSError, asyncpg.PostgresError):
        conn = await asyncpg.connect(database_url)
        try:
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            # While it is connected: the backend's parent is the postmaster.
            postmaster = _processes().get(int(backend))
            if postmaster is not None:
                roots[postmaster.parent] = "postgres"
        finally:
            await conn.close()
    broker = _listening(kafka_port)
    if broker is not None:
        roots[broker] = "kafka"
    return roots


def _listening(port: int) -> int | None:
    """The pid of the process listening on TCP ``port`` on this machine, if it can be seen
    (/proc/net/tcp gives the socket's inode, a process's fd/ links name it)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{entry}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/fd/{fd}") in inodes:
                        return int(entry)
    return None


@dataclass
class HostCpu:
    """Cumulative CPU seconds per group since the sampler started."""

    # The stack's root processes and their groups (``stack_roots``); empty: by command.
    roots: dict[int, str] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(GROUPS, 0.0))
    _last: dict[int, _Proc] = field(default_factory=dict)

    def _group(self, pid: int, proc: _Proc, stack: dict[int, str]) -> str:
        if pid in stack:
            return stack[pid]
        # A group whose root was not found (a broker in a container) goes by command name.
        by_command = STACK_COMMANDS.get(proc.command, "others")
        return "others" if by_command in self.roots.values() else by_command

    def sample(self) -> None:
        procs = _processes()
        ours = _descendants(os.getpid(), procs)
        stack = {
            pid: group for root, group in self.roots.items() for pid in _descendants(root, procs)
        }
        if self._last:
            for pid, proc in procs.items():
                before = self._last.get(pid)
                same = before is not None and before.started == proc.started
                # A process new since the last sample counts all it used.
                ticks = proc.ticks - before.ticks if same and before else proc.ticks
                group = "bench" if pid in ours else self._group(pid, proc, stack)
                self.totals[group] += max(0, ticks) / CLOCK_TICKS
        self._last = procs

    async def run(self) -> None:
        while True:
            self.sample()  # a few ms, on the orchestrator's loop: nothing measured waits on it
            await asyncio.sleep(SAMPLE_SECONDS)

    def snapshot(self) -> tuple[float, dict[str, float]]:
        self.sample()
        return time.monotonic(), dict(self.totals)


@contextlib.asynccontextmanager
async def sampling(roots: dict[int, str] | None = None) -> AsyncIterator[HostCpu]:
    host = HostCpu(roots or {})
    host.sample()
    task = asyncio.create_task(host.run(), name="host-cpu")
    try:
        yield host
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cores(
    start: tuple[float, dict[str, float]], end: tuple[float, dict[str, float]]
) -> dict[str, float]:
    """Mean cores each group used between two snapshots; "stack": postgres + kafka."""
    elapsed = max(end[0] - start[0], 1e-9)
    used = {g: (end[1][g] - start[1][g]) / elapsed for g in GROUPS}
    return used | {"stack": used["postgres"] + used["kafka"]}


def stack_per_event(
    host: HostCpu | None, start: tuple[float, dict[str, float]] | None, events: int
) -> dict[str, float]:
    """CPU ms per event PostgreSQL and Kafka each spent since ``start`` (a snapshot of
    ``host``); nothing without a sampler."""
    if host is None or start is None:
        return {}
    end = host.snapshot()
    used = cores(start, end)
    return {g: 1000 * used[g] * (end[0] - start[0]) / max(events, 1) for g in ("postgres", "kafka")}
