"""QuickBooks Online: accounting; thin webhooks signed with the verifier token."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.quickbooks.client import make_client
from connectors.quickbooks.mapping import Mapper, holds_back
from connectors.quickbooks.signature import QuickBooksScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__,
    scheme=QuickBooksScheme(),
    mapper=Mapper(),
    make_client=make_client,
    holds_back=holds_back,
)

__all__ = ["CAPABILITIES", "CONNECTOR", "QuickBooksScheme"]
