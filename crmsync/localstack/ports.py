"""Ports for servers that tests, benchmarks and the fault stacks start on this machine.

Drawn below Linux's ephemeral range (32768 and up, ``net.ipv4.ip_local_port_range``): a
port the kernel picked for ``bind(0)`` and released can be handed to some process's
outgoing connection before the server binds it. Under load that happened to the fault
suite ("address already in use" on a port chosen a second before) and to
``crmsync simulate``'s test. Below that range only another listener can take it.
"""

from __future__ import annotations

import contextlib
import random
import socket

LOW, HIGH = 20_000, 32_000


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    return free_port_run(1) + 1


def free_port_run(count: int) -> int:
    """A base port whose next ``count`` ports are all free now, for a command that listens
    on BASE+1 .. BASE+count."""
    rng = random.Random()  # noqa: S311 - a port, not a secret
    for _ in range(200):
        base = rng.randrange(LOW, HIGH - count)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base + 1, base + count + 1):
                    stack.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError(f"no run of {count} free ports between {LOW} and {HIGH}")
