"""Provider simulators as running HTTP servers, each connected to a tenant.

A profile says what a simulator needs to match its connection: the provider's tenant /
realm / portal ids in both, and the kind of credentials (an API token, or OAuth2 tokens
the simulator issues). Connections persist in Postgres; simulators do not. So a
simulator started again *adopts* its existing connection — it accepts the stored
webhook secret and API credentials — instead of a new connection being made each time
(which would duplicate every record it syncs).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web

from connectors.base import Connector
from connectors.generic import (
    CATALOGUE,
    GenericMapping,
    GenericSchemeConfig,
    connector_for,
    declares_handshake,
    load_mapping_file,
    mapping_settings,
)
from connectors.http import OAuthTokens
from connectors.registry import connector
from connectors.runtime import credentials_context, credentials_json, parse_credentials
from connectors.simkit import Simulator
from connectors.simulators import simulator_for
from crmsync.application.connections import first_secret
from crmsync.common.connections import (
    HANDSHAKE_WINDOW,
    await_handshakes,
    create_connection,
    find_by_name,
    readopt,
    secret_context,
)
from crmsync.common.crypto import KeyRing
from schemas.changes import EntityType

OAUTH_CLIENT = ("crmsync-demo-client", "crmsync-demo-client-secret")


@dataclass(frozen=True)
class Profile:
    provider: str
    # Simulator keyword arguments and the connection settings that match them.
    sim_kwargs: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    oauth: bool = False
    # The connection's API key is the OAuth2 client's "id:secret" (the client-credentials
    # grant, PayPal): the simulator checks it at its token endpoint.
    client_credentials: bool = False
    # The connection's provider when it is not the simulator's name (a provider connected
    # by a mapping file we ship is a generic connection).
    connects_as: str | None = None
    # Customers exist there only as the recipients of its invoices (PayPal): none is made
    # or edited there on its own, and it holds those its invoices address.
    customers_as_recipients: bool = False

    @property
    def connection_provider(self) -> str:
        return self.connects_as or self.provider


def _profiles() -> dict[str, Profile]:
    from connectors.hubspot.simulator import DEFAULT_PORTAL_ID  # noqa: PLC0415
    from connectors.quickbooks.simulator import DEFAULT_REALM  # noqa: PLC0415
    from connectors.square.simulator import SIM_LOCATION_ID  # noqa: PLC0415
    from connectors.xero.simulator import SIM_TENANT_ID  # noqa: PLC0415

    return {
        "ascora": Profile("ascora", {"company_code": "DEMO"}, {"company_code": "DEMO"}),
        "xero": Profile(
            "xero",
            # The demo business is Australian (its invoices are in AUD, as Ascora's are).
            {"tenant_id": SIM_TENANT_ID, "oauth_client": OAUTH_CLIENT, "base_currency": "AUD"},
            {
                "xero_tenant_id": SIM_TENANT_ID,
                "xero_payment_account_code": "090",
                "xero_base_currency": "AUD",
            },
            oauth=True,
        ),
        "stripe": Profile("stripe"),
        "quickbooks": Profile(
            "quickbooks",
            {"realm_id": DEFAULT_REALM, "oauth_client": OAUTH_CLIENT},
            {"realm_id": DEFAULT_REALM},
            oauth=True,
        ),
        "hubspot": Profile(
            "hubspot", {"portal_id": DEFAULT_PORTAL_ID}, {"portal_id": DEFAULT_PORTAL_ID}
        ),
        # A CRM with no built-in connector, connected by its declarative mapping file.
        "generic": Profile("generic", {}, _acme_settings()),
        # Providers connected by the mapping files we ship, simulated from those files.
        **{
            name: Profile(
                name,
                {},
                {**_mapping_settings(path), **_CATALOGUE_SETTINGS.get(name, {})},
                connects_as="generic",
            )
            for name, path in CATALOGUE.items()
        },
        # Last, so the ports `crmsync simulate` gave the others stay theirs.
        "square": Profile(
            "square",
            {"location_id": SIM_LOCATION_ID, "currency": "AUD"},
            {"square_location_id": SIM_LOCATION_ID},
        ),
        "paypal": Profile(
            "paypal",
            {"oauth_client": OAUTH_CLIENT, "currency": "AUD"},
            client_credentials=True,
            customers_as_recipients=True,
        ),
        "shopify": Profile("shopify", {"currency": "AUD"}),
        # No webhooks: the outbound's reconcile schedule polls it (connectors/myob/README.md).
        "myob": Profile("myob", {"oauth_client": OAUTH_CLIENT}, _myob_settings(), oauth=True),
    }


def _myob_settings() -> dict[str, Any]:
    from connectors.myob import simulator  # noqa: PLC0415

    return {
        "myob_company_file_id": simulator.SIM_COMPANY_FILE_ID,
        "myob_currency": "AUD",
        "myob_item_uid": simulator.SIM_ITEM_UID,
        "myob_tax_code_uid": simulator.SIM_GST_UID,
        "myob_free_tax_code_uid": simulator.SIM_FRE_UID,
    }


# WooCommerce numbers and totals its orders itself (the mapping reads them inbound only),
# and the simulator made from the mapping file does not compute them: the demo syncs its
# customers, and its orders are the shop's, received, not pushed (connectors/generic/
# examples/README.md). FreshBooks computes an invoice's status and totals the same way.
_CATALOGUE_SETTINGS: dict[str, dict[str, Any]] = {
    "woocommerce": {"entity_types": ["customer"]},
    # The simulator's account (its .sim.json verification values): a handshake naming
    # another account is refused (connectors/generic/examples/README.md).
    "freshbooks": {"entity_types": ["customer"], "freshbooks_account_id": "xazq5"},
}

ACME_MAPPING = Path(__file__).resolve().parents[2] / "connectors/generic/examples/acme.json"


def _acme_settings() -> dict[str, Any]:
    return _mapping_settings(ACME_MAPPING)


def _mapping_settings(path: Path) -> dict[str, Any]:
    signature, mapping = load_mapping_file(path)
    return {
        "generic": signature.model_dump(mode="json"),
        "generic_mapping": mapping_settings(mapping),
    }


def connector_of(provider: str, settings: dict[str, Any]) -> Connector:
    """The connector of a connection's provider and settings: a generic connection's is
    made from its mapping (the catalogue's providers are generic connections)."""
    if provider == "generic":
        return connector_for(
            GenericSchemeConfig.model_validate(settings["generic"]),
            GenericMapping.model_validate(settings["generic_mapping"]),
        )
    return connector(provider)


PROFILES: dict[str, Profile] = _profiles()
# Ports of `crmsync simulate`, in this order from --port-base + 1.
PROVIDERS: tuple[str, ...] = tuple(PROFILES)


@dataclass
class RunningSim:
    provider: str
    sim: Simulator
    runner: web.AppRunner
    base_url: str
    connection_id: uuid.UUID | None = None

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_simulator(
    provider: str, *, host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> RunningSim:
    """The provider's simulator listening on host:port (0: any free port)."""
    profile = PROFILES.get(provider, Profile(provider))
    sim = simulator_for(provider)(**{**profile.sim_kwargs, **kwargs})
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    bound_host, bound_port = runner.addresses[0][:2]
    sim.public_url = f"http://{bound_host}:{bound_port}"
    return RunningSim(provider, sim, runner, sim.public_url)


def _issue_oauth(sim: Simulator) -> OAuthTokens:
    issued = sim.issue_tokens()
    return OAuthTokens(
        access_token=issued["access_token"],
        refresh_token=issued["refresh_token"],
        expires_at=time.time() + float(issued["expires_in"]),
        client_id=OAUTH_CLIENT[0],
        client_secret=OAUTH_CLIENT[1],
        token_url="/oauth/token",  # noqa: S106 - a path, not a secret
    )


def _accept(sim: Simulator, credentials: str | OAuthTokens) -> None:
    """Make the simulator accept credentials we stored for an earlier run of it."""
    if isinstance(credentials, OAuthTokens):
        sim.access_tokens[credentials.access_token] = credentials.expires_at
        sim.refresh_tokens.add(credentials.refresh_token)
    else:
        sim.api_token = credentials


def _issued_settings(sim: Simulator) -> dict[str, Any]:
    """Settings a simulator makes up when it starts: the CA the PayPal simulator signs
    its webhook certificates with is the connection's trust anchor."""
    anchor = getattr(sim, "trust_anchor_pem", None)
    return {"paypal_trust_anchors": anchor.decode()} if isinstance(anchor, bytes) else {}


def customers_as_recipients(running: RunningSim) -> bool:
    return PROFILES.get(running.provider, Profile(running.provider)).customers_as_recipients


def synced_kinds(running: RunningSim) -> tuple[EntityType, ...]:
    """The kinds the demo syncs with this simulator: those it holds, narrowed by its
    profile's ``entity_types`` setting where it has one."""
    profile = PROFILES.get(running.provider, Profile(running.provider))
    wanted = profile.settings.get("entity_types")
    return tuple(k for k in running.sim.entity_types if wanted is None or k in wanted)


async def connect(
    pool: asyncpg.Pool,
    keyring: KeyRing,
    running: RunningSim,
    *,
    tenant: str,
    name: str,
    ingest_url: str,
    public_url: str | None = None,
    settings: dict[str, Any] | None = None,
) -> uuid.UUID:
    """The tenant's connection ``name`` to this simulator: created, or adopted when it
    exists. The simulator then POSTs its webhooks to ``ingest_url``; where it signs the URL
    (Square, HubSpot) it signs the one ingest verifies: under ``public_url`` (ingest's
    ``CRMSYNC_INGEST_PUBLIC_BASE_URL``), where that is not ``ingest_url``."""
    sim = running.sim
    profile = PROFILES.get(running.provider, Profile(running.provider))
    provider = profile.connection_provider
    wanted = {**profile.settings, **_issued_settings(sim), **(settings or {})}
    hooked = connector_of(provider, wanted).webhooks
    # A provider that issues its webhook secret by handshake (FreshBooks) gets none of
    # ours, as `connections add` decides: the simulator registers its callback below.
    handshake = hooked and declares_handshake(wanted)
    secret: str | None = None
    async with pool.acquire() as conn:
        row = await find_by_name(conn, tenant=tenant, name=name)
        if row is not None and row["provider"] != provider:
            raise ValueError(f"{tenant}/{name} is a {row['provider']} connection")
        if row is None:
            handshakes_until = None
            if hooked:
                secret, handshakes_until = first_secret(
                    provider,
                    None,
                    _scheme(provider, wanted),
                    wanted,
                    now=datetime.now(UTC),
                )
            oauth = _issue_oauth(sim) if profile.oauth else None
            token = ":".join(OAUTH_CLIENT) if profile.client_credentials else sim.api_token
            created = await create_connection(
                conn,
                keyring,
                tenant=tenant,
                provider=provider,
                name=name,
                webhook_secret=secret,
                base_url=running.base_url,
                api_credentials=credentials_json(token=token, oauth=oauth),
                settings=wanted,
                handshakes_until=handshakes_until,
            )
            connection_id = created.id
        else:
            connection_id = row["id"]
            stored = await conn.fetchval(
                """
                SELECT secret_encrypted FROM webhook_secrets
                 WHERE connection_id = $1 AND (expires_at IS NULL OR expires_at > now())
                 ORDER BY created_at DESC LIMIT 1
                """,
                connection_id,
            )
            if stored is not None:
                secret = keyring.decrypt(stored, secret_context(connection_id))
            if row["credentials_encrypted"] is not None:
                _accept(
                    sim,
                    parse_credentials(
                        keyring.decrypt(
                            row["credentials_encrypted"], credentials_context(connection_id)
                        )
                    ),
                )
            await readopt(
                conn,
                connection_id,
                tenant_id=row["tenant_id"],
                base_url=running.base_url,
                settings=wanted,
            )
            if handshake and secret is None:
                # Its handshake never completed: a new window, as `connections
                # await-handshake` opens, for the callback registered below.
                await await_handshakes(
                    conn,
                    connection_id,
                    datetime.now(UTC) + HANDSHAKE_WINDOW,
                    tenant_id=row["tenant_id"],
                )
    running.connection_id = connection_id
    if hooked:
        path = f"/webhooks/{provider}/{connection_id}"
        sim.webhook_url = ingest_url.rstrip("/") + path
        sim.signed_url = public_url.rstrip("/") + path if public_url else None
        sim.webhook_secret = secret
        register = getattr(sim, "register_callback", None)
        if handshake and secret is None and callable(register):
            # As its user registers the callback in FreshBooks: its handshake goes to
            # ingest, outbound sends the code back, and the code signs from then on.
            register()
    return connection_id


def awaits_handshake(running: RunningSim) -> bool:
    """Whether the simulator's callback is registered and its code not confirmed yet."""
    return getattr(running.sim, "callback_verified", None) is False


def _scheme(provider: str, settings: dict[str, Any]) -> GenericSchemeConfig | None:
    if provider != "generic":
        return None
    return GenericSchemeConfig.model_validate(settings["generic"])
