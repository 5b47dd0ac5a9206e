"""Issue 17 at CI size, in the default run (so in CI): a seeded plan of creates, updates
and deletes of customers, jobs, invoices and payments, with their references, made
concurrently in Ascora, Xero and Stripe (QuickBooks and HubSpot at a smaller size) and
through ``POST /v1/changes``, with injected 429s, 500s, a dropped webhook (the final
reconciliation must catch it) and a deliberate dead letter. Every system must end up
holding the same records through its connector's mapping: no duplicates, nothing pushed
once quiet, no dead letter the test did not make but those a named provider rule explains
(tests/convergence/rules.py), and no difference but those such a rule allows.

The full size, and Square and PayPal, run from ``scripts/converge`` (README, "Convergence
test").
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from crmsync.common.settings import CommonSettings
from tests.convergence.plan import KINDS, Kind, generate
from tests.convergence.run import run
from tests.convergence.stack import running_systems

# Issue 17's systems. Square and PayPal (issue 21) take part in the full size only: PayPal
# names a customer by its recipient, which the runner cannot make there yet.
PROVIDERS = ("ascora", "xero", "stripe", "quickbooks", "hubspot")
OPS = 200
# Operations in flight at once: half of them wait on a record or a reference, and an edit
# Stripe sends no event for (a PaymentIntent's description) waits for a reconciliation, so
# 16 keeps the test near 2 minutes (8: about 3) with the same plan.
CONCURRENCY = 16
# Chosen so the plan injects each fault kind at least once (asserted below); another seed
# from CRMSYNC_CONVERGENCE_SEED (README, "Convergence test").
SEED = int(os.environ.get("CRMSYNC_CONVERGENCE_SEED", "17"))


@pytest.mark.convergence
async def test_every_system_converges_after_a_seeded_run_with_faults(
    tmp_path: Path, common_settings: CommonSettings
) -> None:
    kinds: list[Kind] = list(KINDS)
    # Fresh values: an edit never writes back a value the record had before (that A→B→A
    # case loses the edit on main; see the README's convergence section).
    plan = generate(SEED, OPS, kinds, fresh_values=True, providers=PROVIDERS)
    assert {op.kind for op in plan.ops} == set(KINDS)
    injected = Counter(f.kind for f in plan.faults)
    assert {"429", "500", "drop_webhook", "dead_letter"} <= set(injected), injected
    said: list[str] = []
    async with running_systems(tmp_path, PROVIDERS, kinds, said.append, common_settings) as systems:
        result = await run(plan, systems, said.append, concurrency=CONCURRENCY, within=120.0)
    report = result.report() + "\n" + "\n".join(said)
    assert result.quiet, report
    assert not result.skipped, report
    assert result.duplicates == 0, report
    assert not result.mismatches, report
    assert result.pushes_after_quiet == 0, report
    assert not result.foreign_dead_letters, report
    assert sum(result.dead_letters.values()) == injected["dead_letter"], report
    assert result.pushes > 0, report
    assert result.converged, report
