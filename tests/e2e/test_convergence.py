"""Issue 17 at CI size, in the default run (so in CI): a seeded plan of customer creates,
updates and deletes made concurrently in every simulated CRM and through ``POST
/v1/changes``, with injected 429s, 500s, a dropped webhook (the final reconciliation must
catch it) and a deliberate dead letter. Every system must end up holding the same records
through its connector's mapping: no duplicates, nothing pushed once quiet, no dead letter
the test did not make.

The full size runs from ``scripts/converge`` (README, "Convergence test"). To widen this
test as more kinds cross between systems, add them to KINDS.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from crmsync.common.settings import CommonSettings
from tests.convergence.plan import PROVIDERS, Kind, generate
from tests.convergence.run import run
from tests.convergence.stack import running_systems

# The kinds that converge between every system on main today.
KINDS: list[list[Kind]] = [["customer"]]
OPS = 200
# Chosen so the plan injects each fault kind at least once (asserted below); another seed
# from CRMSYNC_CONVERGENCE_SEED (README, "Convergence test").
SEED = int(os.environ.get("CRMSYNC_CONVERGENCE_SEED", "17"))


@pytest.mark.convergence
@pytest.mark.parametrize("kinds", KINDS, ids="+".join)
async def test_every_system_converges_after_a_seeded_run_with_faults(
    kinds: list[Kind], tmp_path: Path, common_settings: CommonSettings
) -> None:
    # Fresh values: an edit never writes back a value the record had before (that A→B→A
    # case loses the edit on main; see the README's convergence section).
    plan = generate(SEED, OPS, kinds, fresh_values=True)
    injected = Counter(f.kind for f in plan.faults)
    assert {"429", "500", "drop_webhook", "dead_letter"} <= set(injected), injected
    said: list[str] = []
    async with running_systems(tmp_path, PROVIDERS, kinds, said.append, common_settings) as systems:
        result = await run(plan, systems, said.append, within=120.0)
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
