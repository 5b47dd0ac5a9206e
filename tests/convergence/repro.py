"""``python -m tests.convergence.repro NAME``: the short operation sequences that
reproduce what the convergence test found on main (2026-12-05), one record each, every
op settled (pushed everywhere) and a whole second apart before the next.

Exit status 1 while the bug is there (the comparison names the lost edit), 0 once fixed.

- ``revert``: a customer made in Xero, renamed in Ascora, renamed back in Ascora. The
  second Ascora edit states what we once pushed to Ascora, so the processor takes it for
  the echo of that push (services/processor/decide.py, ``last_pushed_hash ==
  incoming_hash``) and pushes the newer canonical name back over it: the revert is lost
  everywhere.
- ``stripe-same-second``: a customer edited in Ascora, then in Stripe within the same
  second. Stripe dates events in whole seconds, so the Stripe edit looks older than the
  Ascora one and newest-wins drops it (``no_op``); Stripe keeps its value, every other
  system the Ascora one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.convergence.plan import INTERNAL, Op, Plan
from tests.convergence.run import Runner
from tests.convergence.stack import default_workdir, running_systems

_CUSTOMER = {"name": "Harbour Plumbing", "email": "k1@converge.example", "phone": "+61 2 5550 0101"}
_INTERNAL_CUSTOMER = {
    "name": "Summit Roofing",
    "email": "k1@converge.example",
    "phone": "+61 2 5550 0303",
}
# name -> (ops, wait for the next whole second between ops)
SCENARIOS: dict[str, tuple[tuple[Op, ...], bool]] = {
    "revert": (
        (
            Op(0, "xero", "customer", "create", "k1", _CUSTOMER),
            Op(1, "ascora", "customer", "update", "k1", {"name": "Kauri Electrical"}),
            Op(2, "ascora", "customer", "update", "k1", {"name": "Harbour Plumbing"}),
        ),
        True,
    ),
    "stripe-same-second": (
        (
            Op(0, "ascora", "customer", "create", "k1", _CUSTOMER),
            Op(1, "ascora", "customer", "update", "k1", {"name": "Harbour Plumbing v1"}),
            Op(2, "stripe", "customer", "update", "k1", {"name": "Harbour Plumbing v2"}),
        ),
        False,
    ),
    "null-echo": (
        (
            Op(0, "internal", "customer", "create", "k1", _INTERNAL_CUSTOMER),
            Op(1, "quickbooks", "customer", "update", "k1", {"name": "Summit Roofing v1"}),
        ),
        False,
    ),
}
# Systems a scenario needs besides those its ops are made in (the one whose read the
# merge mistook), and scenarios whose next op goes as soon as its record got there
# instead of once the last op reached every system (a user does not wait for that).
ALSO: dict[str, tuple[str, ...]] = {"null-echo": ("hubspot",)}
UNSETTLED = frozenset({"null-echo"})


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


async def reproduce(name: str, workdir: Path) -> bool:
    ops, whole_seconds = SCENARIOS[name]
    plan = Plan(0, ("customer",), ops, ())
    systems_used = {op.system for op in ops} | set(ALSO.get(name, ()))
    providers = sorted(systems_used - {INTERNAL})
    async with running_systems(workdir, providers, ["customer"], _say) as systems:
        runner = Runner(plan, systems, _say)
        for op in ops:
            made_at = datetime.now(UTC)
            await runner.apply(op)
            if name in UNSETTLED:
                _say(f"#{op.index} {op.action} in {op.system} {dict(op.values)}: made")
                continue
            settled = await runner.settled(op, made_at)
            _say(f"#{op.index} {op.action} in {op.system} {dict(op.values)}: settled {settled}")
            if whole_seconds:
                await asyncio.sleep(1.0 - time.time() % 1.0)
        runner.result.quiet = await runner.wait_quiet(60.0)
        await runner.compare()
    print(runner.result.report())
    return not runner.result.mismatches


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in SCENARIOS:
        print(f"usage: python -m tests.convergence.repro {'|'.join(SCENARIOS)}", file=sys.stderr)
        return 2
    name = sys.argv[1]
    workdir = default_workdir() / f"repro-{name}-{time.strftime('%H%M%S')}"
    return 0 if asyncio.run(reproduce(name, workdir)) else 1


if __name__ == "__main__":
    sys.exit(main())
