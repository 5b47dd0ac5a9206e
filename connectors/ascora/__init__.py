"""Ascora: the seed field-service CRM (customers, jobs, invoices); Standard Webhooks signing.

Ascora publishes no API specification: the API shape the client and simulator speak is
the one assumed in connectors/ascora/README.md, to be checked against a real instance.
"""

from connectors.ascora.client import make_client
from connectors.ascora.mapping import Mapper, holds_back
from connectors.ascora.signature import AscoraScheme
from connectors.base import Connector
from connectors.capabilities import declared
from connectors.spec import ApiSpec, RateLimit
from connectors.standard_webhooks import KEPT_HEADERS

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

API = ApiSpec(
    entity_types=("customer", "job", "invoice", "payment"),
    # Ascora publishes no rate limit. Each company runs on its own instance, often a
    # small one, and the seed product admitted it had no limiting at all; 10 requests a
    # second (bursts of 10) keeps a full resync well away from hurting the instance that
    # the company's field staff are using at the same time.
    rate_limit=RateLimit(rate=10, per_seconds=1.0, burst=10),
    auth_kind="bearer",
    make_client=make_client,
    # No OAuth: a connection holds a static API token (and its company code).
    token_url=None,
    # Every company has its own instance (https://{instance}.ascora.com): the connection's
    # API URL is required, there is no shared default.
    default_base_url=None,
    # Invoices are voided (status Void), customers, jobs and payments deleted.
    deletable=("customer", "job", "invoice", "payment"),
    holds_back=holds_back,
    # No conditional write: an update reads the record first, and an edit made in Ascora
    # that we have not heard goes to the merge instead of being overwritten (README,
    # "Concurrency"). One read per update, a tenth of the budget's second.
    update_precondition="read",
)

CONNECTOR = Connector(
    slug="ascora",
    scheme=AscoraScheme(),
    kept_headers=KEPT_HEADERS,
    mapper=Mapper(),
    api=API,
)

__all__ = [
    "API",
    "CAPABILITIES",
    "CONNECTOR",
    "AscoraScheme",
    "Mapper",
    "make_client",
]
