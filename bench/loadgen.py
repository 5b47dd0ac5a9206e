"""The load generator: signed ~1 KiB webhooks over keep-alive HTTP/1.1, as fast as a
small asyncio protocol can write them, in its own process so its CPU time is its own.

``python -m bench.loadgen < spec.json`` prints one JSON object (see :func:`summary`).
Two modes:

- ``rate``: an open loop at a fixed offered load. Request *i* is due at ``t0 + i/rate``;
  its latency runs from that due time, not from when it was written, so a slow server
  cannot hide its queueing by slowing the generator down (no coordinated omission).
  Connections are opened on demand when every open one is busy.
- ``max``: a closed loop on ``concurrency`` connections, each sending its next request
  as soon as the previous answer arrived: the sustained throughput of the server.

Requests are signed as they are built, when due, so timestamps are fresh. Only requests
due (rate) or answered (max) inside the measured window count; a warm-up precedes it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import sys
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from bench.signing import standard_webhooks_headers, stripe_headers

# Connections opened at most in rate mode: far beyond what 2,000/s at 50 ms needs (100).
MAX_CONNECTIONS = 512
# How long after the last due request the generator waits for stragglers.
DRAIN_SECONDS = 15.0


def _padding(template: str, size: int) -> str:
    """Filler that brings a rendered body to about ``size`` bytes."""
    return "x" * max(0, size - len(template))


@dataclass
class Kind:
    """How one provider's requests look: a body template and its signature headers."""

    name: str
    secret: str
    body_bytes: int

    def build(self, n: int) -> tuple[bytes, dict[str, str]]:
        now = time.time()
        seconds = int(now)
        if self.name == "stripe":
            body = _stripe_body(n, seconds, self.body_bytes)
            return body, stripe_headers(self.secret, body, seconds)
        event_id = f"msg_{uuid.uuid4().hex}"
        if self.name == "standard-webhooks":
            body = _standard_body(n, now, self.body_bytes)
        elif self.name == "ascora":
            body = _ascora_body(now)
        else:
            raise ValueError(f"no requests of kind {self.name!r}")
        return body, standard_webhooks_headers(self.secret, body, seconds, event_id)


def _stripe_body(n: int, seconds: int, size: int) -> bytes:
    event = {
        "id": f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2024-06-20",
        "created": seconds,
        "livemode": False,
        "type": "customer.updated",
        "data": {
            "object": {
                "id": f"cus_{n:014d}",
                "object": "customer",
                "email": f"customer{n}@example.com",
                "name": f"Customer {n}",
                "phone": "+61 2 5550 0100",
                "currency": "aud",
                "metadata": {"crm": "bench"},
                "description": "",
            }
        },
    }
    text = json.dumps(event, separators=(",", ":"))
    event["data"]["object"]["description"] = _padding(text, size)  # type: ignore[index]
    return json.dumps(event, separators=(",", ":")).encode()


def _standard_body(n: int, now: float, size: int) -> bytes:
    event = {
        "type": "contact.updated",
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
        "data": {"id": f"ct_{n}", "email": f"contact{n}@example.com", "notes": ""},
    }
    text = json.dumps(event, separators=(",", ":"))
    event["data"]["notes"] = _padding(text, size)  # type: ignore[index]
    return json.dumps(event, separators=(",", ":")).encode()


def _ascora_body(now: float) -> bytes:
    """A customer created in an Ascora instance: a new customer every time."""
    stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")
    stamp = stamp.replace("+00:00", "Z")
    key = uuid.uuid4()
    data = {
        "customerId": str(key),
        "customerNumber": f"C{key.int % 10**8}",
        "customerName": f"Bench Plumbing {key.hex[:8]}",
        "companyName": "Bench Plumbing Pty Ltd",
        "contactFirstName": "Mia",
        "contactLastName": "Nguyen",
        "emailAddress": f"office.{key.hex}@benchplumbing.example",
        "phoneNumber": "(02) 9555 0101",
        "mobileNumber": "0400 555 101",
        "streetLine1": "10 George Street",
        "streetLine2": None,
        "streetSuburb": "Sydney",
        "streetState": "NSW",
        "streetPostcode": "2000",
        "streetCountry": "AU",
        "notes": "Back gate code 4412; dog on site.",
        "dateCreated": stamp,
        "lastModified": stamp,
    }
    event = {"type": "customer.created", "timestamp": stamp, "data": data}
    return json.dumps(event, separators=(",", ":")).encode()


@dataclass
class Target:
    host: str
    port: int
    path: str
    kind: Kind

    def request(self, n: int) -> bytes:
        body, headers = self.kind.build(n)
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


Done = Callable[["Connection", int, float], None]


class Connection(asyncio.Protocol):
    """One keep-alive connection, one request in flight; answers parsed by hand
    (status line and Content-Length are all an aiohttp server's answers need)."""

    def __init__(self, on_done: Done, on_lost: Callable[[Connection, float | None], None]) -> None:
        self.on_done = on_done
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy_since: float | None = None  # the due time of the request in flight
        self.alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, data: bytes, due: float) -> None:
        if self.transport is None:
            raise RuntimeError("send before the connection was made")
        self.busy_since = due
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        del self.buffer[:total]
        status = int(head[9:12])
        due = self.busy_since if self.busy_since is not None else 0.0
        self.busy_since = None
        if b"\r\nconnection: close" in head:
            self.alive = False
        self.on_done(self, status, due)

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        due, self.busy_since = self.busy_since, None
        self.on_lost(self, due)


@dataclass
class Tally:
    window: tuple[float, float] = (0.0, 0.0)
    latencies: list[float] = field(default_factory=list)
    send_lags: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    answered_in_window: int = 0
    ok_in_window: int = 0
    sent: int = 0

    def answered(self, status: int, due: float, now: float) -> None:
        counted = self.window[0] <= due < self.window[1]
        if counted:
            self.latencies.append(now - due)
            self.statuses[status] += 1
        if self.window[0] <= now < self.window[1]:
            self.answered_in_window += 1
            if 200 <= status < 300:
                self.ok_in_window += 1


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds (nearest-rank)."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))] * 1000

    return {
        "n": len(ordered),
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1] * 1000,
    }


class Generator:
    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        self.loop = asyncio.get_running_loop()
        self.tally = Tally()
        self.numbers = itertools.count()
        self.idle: deque[Connection] = deque()
        self.open = 0
        self.opening = 0
        self.queue: deque[tuple[float, bytes]] = deque()
        self.inflight = 0
        self.closed_loop = False
        self.stop_at = float("inf")
        self.all_done = asyncio.Event()
        self.window_set = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def _next_request(self) -> bytes:
        n = next(self.numbers)
        return self.targets[n % len(self.targets)].request(n)

    async def _connect(self) -> None:
        # One host and port for every target of a run (one server per run).
        target = self.targets[0]
        try:
            _, conn = await self.loop.create_connection(
                lambda: Connection(self._done, self._lost), target.host, target.port
            )
        except OSError:
            self.tally.errors += 1
            return
        finally:
            self.opening -= 1
        self.open += 1
        self._ready(conn)

    def _ready(self, conn: Connection) -> None:
        now = time.perf_counter()
        if self.closed_loop:
            if now < self.stop_at:
                self._send(conn, now, self._next_request())
            return
        if self.queue:
            due, data = self.queue.popleft()
            self._send(conn, due, data)
        else:
            self.idle.append(conn)

    def _send(self, conn: Connection, due: float, data: bytes) -> None:
        now = time.perf_counter()
        if self.tally.window[0] <= due < self.tally.window[1]:
            self.tally.send_lags.append(now - due)
        self.inflight += 1
        self.tally.sent += 1
        conn.send(data, now if self.closed_loop else due)

    def _done(self, conn: Connection, status: int, due: float) -> None:
        self.inflight -= 1
        self.tally.answered(status, due, time.perf_counter())
        if conn.alive:
            self._ready(conn)
        else:
            self._replace(conn)
        self._check_done()

    def _lost(self, conn: Connection, due: float | None) -> None:
        if due is not None:
            self.inflight -= 1
            self.tally.errors += 1
        self._replace(conn)
        self._check_done()

    def _replace(self, conn: Connection) -> None:
        self.open -= 1
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.transport is not None:
            conn.transport.close()
        if time.perf_counter() < self.stop_at:
            self._spawn_connect()

    def _check_done(self) -> None:
        if time.perf_counter() >= self.stop_at and self.inflight == 0 and not self.queue:
            self.all_done.set()

    def _set_window(self, t0: float, warmup: float, duration: float) -> None:
        self.tally.window = (t0 + warmup, t0 + warmup + duration)
        self.stop_at = t0 + warmup + duration
        self.window_set.set()

    def _spawn_connect(self) -> None:
        self.opening += 1
        task = self.loop.create_task(self._connect())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def run_rate(self, rate: float, warmup: float, duration: float) -> None:
        total = int(rate * (warmup + duration))
        for _ in range(min(64, max(4, int(rate // 20)))):
            self.opening += 1
            await self._connect()
        t0 = time.perf_counter() + 0.05
        self._set_window(t0, warmup, duration)
        for i in range(total):
            due = t0 + i / rate
            delay = due - time.perf_counter()
            if delay > 0.0005:
                await asyncio.sleep(delay)
            data = self._next_request()
            if self.idle:
                self._send(self.idle.popleft(), due, data)
            else:
                self.queue.append((due, data))
                if self.open + self.opening < MAX_CONNECTIONS:
                    self._spawn_connect()
        await asyncio.sleep(max(0.0, self.stop_at - time.perf_counter()))
        self._check_done()
        try:
            await asyncio.wait_for(self.all_done.wait(), DRAIN_SECONDS)
        except TimeoutError:
            self.tally.errors += self.inflight + len(self.queue)

    async def run_max(self, concurrency: int, warmup: float, duration: float) -> None:
        self.closed_loop = True
        self._set_window(time.perf_counter(), warmup, duration)
        self.opening += concurrency
        await asyncio.gather(*(self._connect() for _ in range(concurrency)))
        await asyncio.sleep(max(0.0, self.stop_at - time.perf_counter()))
        self._check_done()
        try:
            await asyncio.wait_for(self.all_done.wait(), DRAIN_SECONDS)
        except TimeoutError:
            self.tally.errors += self.inflight


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    targets = [
        Target(
            t["host"], int(t["port"]), t["path"], Kind(t["kind"], t["secret"], spec["body_bytes"])
        )
        for t in spec["targets"]
    ]
    generator = Generator(targets)
    warmup, duration = float(spec["warmup"]), float(spec["duration"])
    cpu: dict[str, float] = {}

    async def sample_cpu() -> None:
        # CPU time inside the measured window only (not start-up or drain).
        await asyncio.sleep(max(0.0, generator.tally.window[0] - time.perf_counter()))
        cpu["start"] = _cpu()
        await asyncio.sleep(max(0.0, generator.tally.window[1] - time.perf_counter()))
        cpu["end"] = _cpu()

    if spec["mode"] == "rate":
        work = generator.run_rate(float(spec["rate"]), warmup, duration)
    else:
        work = generator.run_max(int(spec["concurrency"]), warmup, duration)
    sampler = asyncio.ensure_future(_after_window_set(generator, sample_cpu))
    await work
    await sampler
    return summary(generator, duration, cpu["end"] - cpu["start"])


async def _after_window_set(generator: Generator, then: Callable[[], Any]) -> None:
    await generator.window_set.wait()
    await then()


def summary(generator: Generator, duration: float, cpu_seconds: float) -> dict[str, Any]:
    tally = generator.tally
    ok = sum(n for status, n in tally.statuses.items() if 200 <= status < 300)
    return {
        "sent": tally.sent,
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.errors,
        "throughput": tally.ok_in_window / duration,
        "latency_ms": percentiles(tally.latencies),
        "send_lag_ms": percentiles(tally.send_lags),
        "cpu_seconds": cpu_seconds,
        "cpu_percent": 100.0 * cpu_seconds / duration,
        "connections": generator.open,
    }


def main() -> None:
    spec = json.loads(sys.stdin.read())
    print(json.dumps(asyncio.run(run(spec))))


if __name__ == "__main__":
    main()
