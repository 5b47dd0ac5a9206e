"""Generated requests against ingest (real Kafka and PostgreSQL) and the admin API: no
answer is a 5xx, and nothing unsigned, garbled or unkeyed gets a 2xx. The generators live
in tests/fuzzing.py; ``scripts/fuzz`` sends ten thousand of them to a running stack.

Bounded: a fixed number of examples per generator, about 20 s in all here.
"""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from services.admin.routes import routes
from tests.fuzzing import (
    Client,
    Probe,
    Targets,
    WebhookTarget,
    admin_bodies,
    admin_queries,
    admin_routes_of,
    changes,
    garbled_webhooks,
    signed_webhooks,
    unsigned_webhooks,
    violations,
)
from tests.ingest_harness import PUBLIC_BASE, Ingest
from tests.integration.test_admin_api import running_admin
from tests.integration.test_ingest import GENERIC, SECRETS

# Examples per generator; each is one request.
EXAMPLES = {
    "changes": 400,
    "unsigned": 300,
    "garbled": 300,
    "signed": 250,
    "admin-body": 250,
    "admin-query": 150,
}


def _run(client: Client, strategy: st.SearchStrategy[Probe], examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(probe=strategy)
    def check(probe: Probe) -> None:
        answer = client.send(probe)
        problems = violations(probe, answer)
        assert not problems, f"{problems}: {probe.describe()} -> {answer.body[:300]!r}"
        if answer.status >= 400 and not probe.path.startswith("/webhooks/xero/"):
            # Errors are RFC 9457 problem details (Xero's answers have no body at all).
            assert answer.content_type.startswith("application/problem+json"), probe.describe()

    try:
        check()
    finally:
        client.close()


async def _ingest_targets(ingest: Ingest) -> Targets:
    webhooks = []
    for provider, secret in SECRETS.items():
        extra = {"generic": GENERIC.model_dump(mode="json")} if provider == "generic" else None
        conn = await ingest.connect(provider, secret, settings=extra)
        path = f"/webhooks/{provider}/{conn.id}"
        generic = GENERIC if provider == "generic" else None
        webhooks.append(WebhookTarget(provider, path, PUBLIC_BASE + path, secret, generic))
    internal = await ingest.connect("internal", None)
    assert internal.api_key
    return Targets(tuple(webhooks), internal.api_key)


def _client(ingest: Ingest) -> Client:
    server = ingest.client.server
    return Client(str(server.host), int(server.port or 0))


async def test_changes_never_5xx_and_never_accepted_without_the_key(ingest: Ingest) -> None:
    targets = await _ingest_targets(ingest)
    await asyncio.to_thread(_run, _client(ingest), changes(targets), EXAMPLES["changes"])


@pytest.mark.parametrize(
    ("name", "generator"),
    [("unsigned", unsigned_webhooks), ("garbled", garbled_webhooks), ("signed", signed_webhooks)],
)
async def test_webhooks_unsigned_or_garbled_never_2xx_and_signed_with_any_body_never_5xx(
    ingest: Ingest, name: str, generator: object
) -> None:
    targets = await _ingest_targets(ingest)
    strategy = generator(targets)  # type: ignore[operator]
    await asyncio.to_thread(_run, _client(ingest), strategy, EXAMPLES[name])


async def test_admin_any_body_or_query_never_5xx_and_never_2xx_without_the_key(
    database_url: str,
) -> None:
    async with running_admin(database_url) as admin:
        targets = Targets((), "", admin.key, admin_routes_of(routes()))
        server = admin.client.server
        client = Client(str(server.host), int(server.port or 0))
        for name, strategy in (
            ("admin-body", admin_bodies(targets)),
            ("admin-query", admin_queries(targets)),
        ):
            await asyncio.to_thread(_run, client, strategy, EXAMPLES[name])
