"""The demo's story on the real pipeline: Ascora, Xero and Stripe simulators and an
internal service of one tenant, created and edited on every side (a conflicting pair of
edits included), must converge field by field with no dead letter."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from crmsync.demo import scenario
from schemas import topics
from tests.e2e.sync_harness import running_stack


async def test_every_system_converges_and_the_report_says_so(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with (
        running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack,
        aiohttp.ClientSession() as session,
    ):
        lag = scenario.LagProbe(
            kafka_bootstrap,
            f"crmsync-{topic_prefix}processor",
            [topic_prefix + t.name for t in topics.ALL if t is not topics.RECORDS_CHANGED],
        )
        await lag.start()
        world = await scenario.setup(
            stack.pool, stack.keyring, session, ingest_url=stack.ingest_url, lag=lag
        )
        said: list[str] = []
        try:
            await scenario.story(world, said.append)
            assert await scenario.settle(world), "the pipeline never went quiet"
            result = await scenario.report(world)
        finally:
            await scenario.stop(world)
            await lag.close()
    text = "\n".join(said + result.lines)
    assert result.converged, text
    figures = result.figures
    # 8 customers, each in 3 CRMs: 6 created in a CRM reach 2 others, 2 internal reach 3.
    assert figures["canonical"]["customer"] == 8, text
    assert figures["pushes"] >= 6 * 2 + 2 * 3, text
    assert figures["echoes"] >= 1, text
    assert "latency_in" in figures, text
    assert "latency_out" in figures, text
