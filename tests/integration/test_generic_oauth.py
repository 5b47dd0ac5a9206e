"""A generic connection whose credentials are OAuth2 tokens (FreshBooks': access tokens last
12 hours, refresh tokens are single-use) refreshes its access token with the stored refresh
token before it expires, and stores the rotated pair: the runtime's OAuth2 path, the same
for a mapping file as for a built-in connector."""

from __future__ import annotations

import os

import aiohttp
import asyncpg

from connectors.http import OAuthTokens
from connectors.runtime import credentials_context, credentials_json, parse_credentials
from crmsync.application.connection_runtime import load_connection, stored_clients
from crmsync.common.crypto import KeyRing
from crmsync.demo.sims import OAUTH_CLIENT, PROFILES
from tests.e2e.sync_harness import simulated
from tests.integration.connections import lone_connection


async def test_a_freshbooks_connection_refreshes_its_expired_token_and_keeps_the_new_pair(
    pool: asyncpg.Pool,
) -> None:
    keyring = KeyRing.parse(os.environ["CRMSYNC_MASTER_KEYS"])
    async with simulated("freshbooks", oauth_client=OAUTH_CLIENT) as crm:
        sim = crm.sim
        issued = sim.issue_tokens()
        sim.create("customer", sim.seed_object("customer", 1), notify=False)
        expired = OAuthTokens(
            access_token="at-expired",
            refresh_token=issued["refresh_token"],
            expires_at=0,
            client_id=OAUTH_CLIENT[0],
            client_secret=OAUTH_CLIENT[1],
            token_url="/oauth/token",
        )
        created = await lone_connection(
            pool,
            keyring,
            provider="generic",
            name="freshbooks",
            webhook_secret="verifier-of-a-callback",
            base_url=crm.base_url,
            api_credentials=credentials_json(oauth=expired),
            settings=dict(PROFILES["freshbooks"].settings),
        )
        info = await load_connection(pool, created.id, tenant_id=None)
        assert info is not None
        async with aiohttp.ClientSession() as session:
            handle = await stored_clients(pool, keyring, session).get(info)
            page = await handle.client.list_page("customer", None, None)
        assert [r.data.get("email") for r in page.records] == ["client1@example.com"]
        assert sim.refresh_calls == 1
        stored = await pool.fetchval(
            "SELECT credentials_encrypted FROM connections WHERE id = $1", created.id
        )
        tokens = parse_credentials(keyring.decrypt(stored, credentials_context(created.id)))
        assert isinstance(tokens, OAuthTokens)
        assert tokens.access_token != "at-expired"
        assert tokens.access_token in sim.access_tokens
        # The refresh token is single-use: the new one is kept for the next refresh.
        assert tokens.refresh_token != issued["refresh_token"]
        assert tokens.refresh_token in sim.refresh_tokens
