"""A RecordMapper's to_canonical and from_canonical, for a provider whose entity types each
have a reader and a writer of their own (Shopify, Square, PayPal, MYOB, Xero, Stripe).

Each of those mappers picked the pair by entity type in an ``if`` chain of its own and
refused the rest with ``unsupported_entity``; the chains differed only in the functions
they named. A mapper now names them in a table (``kinds``) and the lookup and the refusal
are written once, here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.spec import EntityType, Fields, MappingError, Refs, RemoteRecord, Settings

# (provider object, connection settings) -> the record it is
Reader = Callable[[Fields, Settings], RemoteRecord]
# (canonical data, provider refs, connection settings) -> the create/update body
Writer = Callable[[Fields, Refs, Settings], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """How one entity type is read from the provider and written to it."""

    read: Reader
    write: Writer


# (provider object, the path its errors name) -> the record it is
PathReader = Callable[[Fields, str], RemoteRecord]


def settings_free(
    customer: tuple[PathReader, str, Callable[[Fields], dict[str, Any]]],
    invoice: tuple[PathReader, str, Callable[[Fields, Refs], dict[str, Any]]],
    payment: tuple[PathReader, str, Callable[[Fields, Refs], dict[str, Any]]],
) -> dict[EntityType, Kind]:
    """The ``kinds`` of a mapper that reads no settings (Shopify, Square, PayPal): each
    type's reader with the path its errors name (the provider's name for the object) and
    its writer (a customer's needs no refs)."""
    read_customer, customer_path, write_customer = customer
    read_invoice, invoice_path, write_invoice = invoice
    read_payment, payment_path, write_payment = payment
    return {
        "customer": Kind(
            read=lambda obj, settings: read_customer(obj, customer_path),
            write=lambda data, refs, settings: write_customer(data),
        ),
        "invoice": Kind(
            read=lambda obj, settings: read_invoice(obj, invoice_path),
            write=lambda data, refs, settings: write_invoice(data, refs),
        ),
        "payment": Kind(
            read=lambda obj, settings: read_payment(obj, payment_path),
            write=lambda data, refs, settings: write_payment(data, refs),
        ),
    }


class KindMapper:
    """to_canonical/from_canonical by the ``kinds`` table; an entity type not in it is
    refused with MappingError("unsupported_entity", "<type>: <unsupported>")."""

    kinds: ClassVar[Mapping[EntityType, Kind]]
    # The refusal's wording after the entity type, e.g. "Square has no such records".
    unsupported: ClassVar[str]

    def kind(self, entity_type: EntityType) -> Kind:
        kind = self.kinds.get(entity_type)
        if kind is None:
            raise MappingError("unsupported_entity", f"{entity_type}: {self.unsupported}")
        return kind

    def to_canonical(
        self, entity_type: EntityType, obj: Fields, settings: Settings
    ) -> RemoteRecord:
        return self.kind(entity_type).read(obj, settings)

    def from_canonical(
        self, entity_type: EntityType, data: Fields, refs: Refs, settings: Settings
    ) -> dict[str, Any]:
        return self.kind(entity_type).write(data, refs, settings)
