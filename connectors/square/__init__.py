"""Square: customers, invoices (with their orders) and payments; webhooks signed over the
notification URL and the body."""

from connectors.capabilities import declared
from connectors.declared import declared_connector
from connectors.square.client import make_client
from connectors.square.mapping import Mapper
from connectors.square.signature import SquareScheme

# What it does per record kind, with the reasons (the README's matrix rows).
CAPABILITIES = declared(__name__)

CONNECTOR = declared_connector(
    __name__, scheme=SquareScheme(), mapper=Mapper(), make_client=make_client
)

__all__ = ["CAPABILITIES", "CONNECTOR", "SquareScheme"]
