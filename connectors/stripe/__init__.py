"""Stripe: payments, customers and invoices; webhooks signed with ``Stripe-Signature``."""

from connectors.base import Connector
from connectors.spec import ApiSpec, RateLimit
from connectors.stripe.capabilities import CAPABILITIES
from connectors.stripe.client import make_client
from connectors.stripe.mapping import Mapper
from connectors.stripe.signature import StripeScheme

# Stripe's event type is in the body; nothing beyond the content type is worth keeping.
CONNECTOR = Connector(
    slug="stripe",
    scheme=StripeScheme(),
    kept_headers=("content-type",),
    mapper=Mapper(),
    api=ApiSpec(
        entity_types=("customer", "invoice", "payment"),
        # Stripe's published limit: 100 read/write operations per second in live mode (25 in
        # test mode), per its "Rate limits" docs and PROVIDERS.md. The live figure is used.
        rate_limit=RateLimit(rate=100, per_seconds=1, burst=100),
        auth_kind="bearer",
        make_client=make_client,
        default_base_url="https://api.stripe.com",
        # Customers are deleted, invoices deleted as drafts or voided; payments cannot be.
        deletable=("customer", "invoice"),
        # Every Stripe timestamp (an Event's or an object's ``created``) is a whole second.
        clock_resolution_seconds=1.0,
        # No conditional write: an update reads the object first, and an edit made at
        # Stripe that we have not heard goes to the merge instead of being overwritten
        # (README, "Concurrency"). One read per update of a 100/s budget.
        update_precondition="read",
        # What Stripe computes or moves by its own rules, never a write of ours: the look
        # leaves them out (a PaymentIntent made for a payment from elsewhere stays
        # unconfirmed there; an invoice's totals follow its lines, its amount due its
        # payments). The invoice's status is ours to move too (finalize, pay, void).
        own_fields={
            "payment": frozenset({"status", "paid_at"}),
            "invoice": frozenset({"subtotal", "tax", "total", "amount_due"}),
        },
    ),
)

__all__ = ["CAPABILITIES", "CONNECTOR", "StripeScheme"]
