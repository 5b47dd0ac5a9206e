"""Square: customers, invoices (with their orders) and payments; webhooks signed over the
notification URL and the body."""

from connectors.base import Connector
from connectors.spec import ApiSpec, RateLimit, received_payments_only
from connectors.square.capabilities import CAPABILITIES
from connectors.square.client import make_client
from connectors.square.mapping import Mapper
from connectors.square.signature import SquareScheme

CONNECTOR = Connector(
    slug="square",
    scheme=SquareScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # A payment made elsewhere is recorded as money received: a pending one waits.
        holds_back=received_payments_only("Square"),
        # Square publishes no figure ("Square does have rate limits but we don't document
        # them"; a 429 RATE_LIMITED asks for backoff with jitter). 10 a second with a burst
        # of 20 is a conservative pace; a 429 still slows the connection down (Retry-After
        # or backoff), and a connection may set its own `rate_limit`.
        rate_limit=RateLimit(rate=10, per_seconds=1, burst=20),
        auth_kind="bearer",
        make_client=make_client,
        default_base_url="https://connect.squareup.com",
        deletable=("customer", "invoice"),
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "SquareScheme"]
