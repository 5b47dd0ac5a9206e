"""MYOB Business (AccountRight): customers, sale invoices and customer payments of one
company file, over OAuth2. MYOB sends no webhooks: its changes are polled."""

from connectors.base import Connector, NoWebhooksScheme
from connectors.myob.capabilities import CAPABILITIES
from connectors.myob.client import make_client
from connectors.myob.mapping import Mapper
from connectors.spec import ApiSpec, RateLimit, received_payments_only

# MYOB publishes two limits per API key (developer.myob.com, API overview): 8 calls a
# second and 1,000,000 a day. 8 a second with a burst of 8 never puts a 9th call in a
# second; the day's million is 11.6 a second on average, so the per-second cap binds first.
MYOB_RATE_LIMIT = RateLimit(rate=8, per_seconds=1, burst=8)
# How often a company file is polled for what changed (README, "Polling"): one list call
# per kind per poll, 3 calls a minute, 4,320 a day, 0.43% of the key's daily million and
# 0.6% of the 8 a second; a minute is the freshness webhooks would beat, and
# the same key can poll ~230 company files a minute inside the daily cap.
POLL_SECONDS = 60.0

CONNECTOR = Connector(
    slug="myob",
    scheme=NoWebhooksScheme(),
    kept_headers=(),
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # A payment made elsewhere is recorded as money received: a pending one waits.
        holds_back=received_payments_only("MYOB"),
        rate_limit=MYOB_RATE_LIMIT,
        auth_kind="oauth2",
        make_client=make_client,
        # MYOB's token endpoint (authorisation code grant, refresh_token to renew); access
        # tokens last 20 minutes, refresh tokens one week.
        token_url="https://secure.myob.com/oauth2/v1/authorize",  # noqa: S106 - a URL
        default_base_url="https://api.myob.com/accountright",
        deletable=("customer", "invoice", "payment"),
        poll_seconds=POLL_SECONDS,
        # A PUT at the RowVersion outbound read first: an edit made since is MYOB's 409,
        # handed to the merge instead of overwritten (README, "Concurrent edits"). MYOB
        # sends no webhooks, so this read is also how such an edit reaches us before the
        # next poll.
        update_precondition="version",
    ),
    webhooks=False,
)

__all__ = ["CAPABILITIES", "CONNECTOR"]
