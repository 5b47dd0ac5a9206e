"""HubSpot: CRM contacts, companies and deals; thin event batches signed with v3 signatures.

Contacts sync as customers and deals as jobs (see README.md in this folder).
"""

from connectors.base import Connector
from connectors.capabilities import declared
from connectors.hubspot.client import make_client
from connectors.hubspot.mapping import Mapper
from connectors.hubspot.signature import HubSpotScheme
from connectors.spec import ApiSpec, RateLimit

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

API = ApiSpec(
    entity_types=("customer", "job"),
    # HubSpot's published burst limit for private apps is 100 requests per 10 seconds per
    # account on Free and Starter (190 on Professional and Enterprise); the lowest tier is
    # the safe default. Search endpoints have their own 5 requests/second per account.
    rate_limit=RateLimit(rate=100, per_seconds=10, burst=100),
    # A private-app access token sent as a bearer token; public apps use OAuth2 with the
    # same header and refresh against token_url.
    auth_kind="bearer",
    make_client=make_client,
    token_url="/oauth/v1/token",  # noqa: S106 - HubSpot's token endpoint path, no secret
    default_base_url="https://api.hubapi.com",
    # DELETE archives contacts and deals (HubSpot's recycle bin keeps them 90 days).
    deletable=("customer", "job"),
    # No conditional write: an update reads the record first, and an edit made in HubSpot
    # that we have not heard goes to the merge instead of being overwritten (README).
    update_precondition="read",
)

# Event types live in each array element (subscriptionType); no header beyond the type.
CONNECTOR = Connector(
    slug="hubspot",
    scheme=HubSpotScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=API,
)

__all__ = [
    "API",
    "CAPABILITIES",
    "CONNECTOR",
    "HubSpotScheme",
    "Mapper",
]
