"""What the Shopify connector does per record kind (see connectors/capabilities.py)."""

from __future__ import annotations

from connectors.capabilities import FULL_WEBHOOK, Capabilities, KindSupport, na, no, partly, yes

CAPABILITIES: Capabilities = {
    "customer": KindSupport(
        webhook=yes(),
        hydrate=na(FULL_WEBHOOK),
        backfill=yes(),
        reconcile=yes("`updated_at_min`, pages by the `Link` header's `page_info`"),
        create=yes(),
        update=yes("the company and address are the default address, edited in place"),
        delete=partly("a customer with orders cannot be deleted (a `provider_rule` dead letter)"),
        payment=na(),
    ),
    "job": KindSupport.absent("Shopify has no jobs"),
    "invoice": KindSupport(
        webhook=yes("an order is the invoice; `orders/paid` and `orders/cancelled` too"),
        hydrate=na(FULL_WEBHOOK),
        backfill=yes("orders of any status (`status=any`)"),
        reconcile=yes("`updated_at_min`"),
        create=partly(
            "as a pending order with the lines and their tax amounts; drafts wait until "
            "open (the Orders API has no drafts); whole quantities only"
        ),
        update=partly(
            "an order's lines, currency, name and customer are fixed once placed; void "
            "cancels an unpaid order (each refusal a `provider_rule` dead letter)"
        ),
        delete=partly("unpaid orders only; one that took money is refused"),
        payment=yes("transactions settle the order's `financial_status` and outstanding total"),
    ),
    "payment": KindSupport(
        webhook=yes("`order_transactions/create` of kind sale or capture"),
        hydrate=na(FULL_WEBHOOK),
        backfill=yes("the transactions of each order"),
        reconcile=yes("the transactions of the orders changed since"),
        create=partly("a successful `sale` of money received outside Shopify, succeeded only"),
        update=partly(
            "transactions are created, never edited: a change to one is a `provider_rule` "
            "dead letter"
        ),
        delete=no("Shopify cannot delete a transaction"),
        payment=yes("a transaction of the order it pays"),
    ),
}
