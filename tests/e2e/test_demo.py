"""The demo's story on the real pipeline: Ascora, Xero and Stripe simulators and an
internal service of one tenant, created and edited on every side (a conflicting pair of
edits included), then a job → invoice (two lines, one taxed) → part payment in Ascora and
the rest paid by card at Stripe, must converge field by field, for every kind each system
holds, with no dead letter; what Stripe cannot hold is reported as its documented rule."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from crmsync.demo import compare, scenario, sims
from tests.e2e.sync_harness import running_stack


@contextlib.asynccontextmanager
async def demo_world(
    database_url: str,
    kafka_bootstrap: str,
    topic_prefix: str,
    tmp_path: Path,
    *,
    public: bool = False,
    **setup: Any,
) -> AsyncIterator[scenario.World]:
    """The demo's world (``scenario.setup``, ``setup``: its other arguments) on a running
    stack, with the processor's lag probed; ``public``: simulators sign ingest's public
    URL. Its simulators and the probe are stopped after the block."""
    async with (
        running_stack(database_url, kafka_bootstrap, topic_prefix, tmp_path) as stack,
        aiohttp.ClientSession() as session,
    ):
        lag = scenario.LagProbe(kafka_bootstrap, f"crmsync-{topic_prefix}processor", topic_prefix)
        await lag.start()
        if public:
            setup["public_url"] = stack.public_url
        world = await scenario.setup(
            stack.pool, stack.keyring, session, ingest_url=stack.ingest_url, lag=lag, **setup
        )
        try:
            yield world
        finally:
            await scenario.stop(world)
            await lag.close()


async def told(
    world: scenario.World, part_paid: Callable[[], Awaitable[None]] | None = None
) -> tuple[list[str], scenario.Report]:
    """The demo's story told in ``world`` until the pipeline is quiet: what it said, and
    the report."""
    said: list[str] = []
    await scenario.story(world, said.append, part_paid=part_paid)
    assert await scenario.settle(world), "the pipeline never went quiet"
    return said, await scenario.report(world)


async def test_every_system_converges_and_the_report_says_so(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    async with demo_world(database_url, kafka_bootstrap, topic_prefix, tmp_path) as world:
        part_paid: list[scenario.Report] = []

        async def checkpoint() -> None:
            assert await scenario.settle(world), "the pipeline never went quiet, part paid"
            part_paid.append(await scenario.report(world))

        said, result = await told(world, checkpoint)
    text = "\n".join(said + result.lines)
    assert result.converged, text
    figures = result.figures
    # 8 customers, each in 3 CRMs: 6 created in a CRM reach 2 others, 2 internal reach 3;
    # the job stays in Ascora (the only one that holds jobs), the invoice and both payments
    # reach the 2 others.
    assert figures["canonical"] == {"customer": 8, "job": 1, "invoice": 1, "payment": 2}, text
    assert figures["pushes"] >= 6 * 2 + 2 * 3 + 3 * 2, text
    # Every kind each system holds was compared, and only those.
    assert figures["compared"] == {
        "ascora:customer": 8,
        "ascora:job": 1,
        "ascora:invoice": 1,
        "ascora:payment": 2,
        "xero:customer": 8,
        "xero:invoice": 1,
        "xero:payment": 2,
        "stripe:customer": 8,
        "stripe:invoice": 1,
        "stripe:payment": 2,
    }, text
    # Paid in full: Ascora's part payment and Stripe's card payment settle it everywhere.
    invoice = await _canonical(database_url, world, "invoices")
    assert (invoice["status"], invoice["total"], invoice["amount_due"]) == ("paid", 43_350, 0)
    assert invoice["tax"] == 2_850, text
    # Stripe holds Ascora's part payment as an unconfirmed PaymentIntent: said, with its rule.
    [exception] = figures["exceptions"]
    assert exception.startswith("stripe payment "), text
    assert compare.STRIPE_UNCONFIRMED.rule in exception, text
    assert compare.STRIPE_UNCONFIRMED.rule in "\n".join(result.lines), text
    # Part paid, every system agreed too, Stripe's amount due excepted by its rule (its
    # invoice stays open with the whole amount remaining until the rest is paid).
    [half] = part_paid
    half_text = "\n".join(half.lines)
    assert half.converged, half_text
    assert sorted(e.split(" — ")[1].split(" [")[0] for e in half.figures["exceptions"]) == sorted(
        [compare.STRIPE_PART_PAID.rule, compare.STRIPE_UNCONFIRMED.rule]
    ), half_text
    assert figures["echoes"] >= 1, text
    assert "latency_in" in figures, text
    assert "latency_out" in figures, text


async def _canonical(database_url: str, world: scenario.World, table: str) -> dict[str, object]:
    """The tenant's one record in ``table``."""
    conn = await asyncpg.connect(database_url)
    try:
        [row] = await conn.fetch(
            f"SELECT data::text FROM {table} WHERE tenant_id = $1",  # noqa: S608
            world.tenant_id,
        )
    finally:
        await conn.close()
    found: dict[str, object] = json.loads(row[0])
    return found


async def test_every_simulated_provider_converges_on_the_whole_story(
    database_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    """``crmsync demo --providers`` with every simulated provider: the generic CRM's
    connector comes from its connection's mapping file (it holds the job too), QuickBooks
    keeps no tax per line, and PayPal holds customers only as its invoices' recipients,
    which the report says with each one's rule. Square and HubSpot sign the URL ingest
    verifies (its public one), not the one they post to."""
    async with demo_world(
        database_url, kafka_bootstrap, topic_prefix, tmp_path, public=True, providers=sims.PROVIDERS
    ) as world:
        said, result = await told(world)
    text = "\n".join(said + result.lines)
    assert result.converged, text
    compared = result.figures["compared"]
    assert compared["generic:job"] == 1, text
    assert compared["generic:invoice"] == compared["quickbooks:invoice"] == 1, text
    assert compared["quickbooks:payment"] == 2, text
    assert compared["square:invoice"] == compared["hubspot:job"] == 1, text
    assert compared["square:payment"] == compared["paypal:payment"] == 2, text
    # PayPal holds the one customer its invoice addresses, by its e-mail.
    assert compared["paypal:customer"] == compared["paypal:invoice"] == 1, text
    exceptions = result.figures["exceptions"]
    rules = sorted(e.split(" — ")[1].split(" [")[0] for e in exceptions)
    assert rules == sorted(
        [compare.QUICKBOOKS_LINE_TAX.rule, compare.STRIPE_UNCONFIRMED.rule]
        + [compare.PAYPAL_RECIPIENT.rule] * 2
    ), text
    # What the recipient of an invoice crmsync addressed by e-mail does not carry.
    paypal = sorted(e.split(":")[0].rsplit(" ", 1)[1] for e in exceptions if e.startswith("paypal"))
    assert paypal == ["name", "phone"], text
