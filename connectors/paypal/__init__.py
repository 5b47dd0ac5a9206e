"""PayPal: Invoicing v2 invoices, captures and recorded payments, invoice recipients as
customers; webhooks signed with a PayPal certificate (SHA256withRSA), verified offline."""

from connectors.base import Connector
from connectors.paypal.capabilities import CAPABILITIES
from connectors.paypal.client import make_client
from connectors.paypal.mapping import Mapper
from connectors.paypal.signature import PayPalScheme
from connectors.spec import ApiSpec, RateLimit, received_payments_only

CONNECTOR = Connector(
    slug="paypal",
    scheme=PayPalScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # A payment made elsewhere is recorded as money received: a pending one waits.
        holds_back=received_payments_only("PayPal"),
        # PayPal publishes no figure ("we do not publish a rate limiting policy"; too many
        # requests answer 429 RATE_LIMIT_REACHED). 10 a second with a burst of 20 keeps a
        # sync far from abusive; a 429 still slows the connection down, and a connection
        # may set its own `rate_limit`.
        rate_limit=RateLimit(rate=10, per_seconds=1, burst=20),
        auth_kind="client_credentials",
        make_client=make_client,
        # PayPal's OAuth2 token endpoint; access tokens last about 9 hours (`expires_in`).
        token_url="/v1/oauth2/token",  # noqa: S106 - a path, not a secret
        default_base_url="https://api-m.paypal.com",
        deletable=("invoice", "payment"),
        # Customers are listed from the invoices' recipients: one no invoice addresses is
        # not listed, and not gone.
        listed_partly=("customer",),
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "PayPalScheme"]
