"""What a connector provides beyond webhook verification: mapping, API client, limits.

The processor and the outbound service see a provider only through these types. Every
provider folder (``connectors/<slug>/``) fills them in; adding a provider touches no
service code.

Vocabulary:

- *canonical data* is a JSON-ready dict of one canonical record's fields, exactly as
  ``schemas.records.<Model>.model_dump(mode="json", exclude_unset=True)`` spells them:
  money as integer minor units, timestamps as ISO 8601 UTC strings, quantities as decimal
  strings. Reference fields (``customer_id``, ``job_id``, ``invoice_id``) are never in it:
  they travel in ``refs`` as the provider's ids, because only the sync engine knows how
  a provider's id maps to a canonical id.
- *external id* is the provider's own id of a record (``cus_123``, a Xero ContactID).
- *version* is the provider's optimistic-concurrency token where it has one (QuickBooks
  ``SyncToken``), passed back on update.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Protocol, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from schemas.errors import DeadLetter
from schemas.records import ENTITY_MODELS

EntityType = Literal["customer", "job", "invoice", "payment"]
ENTITY_TYPES: tuple[EntityType, ...] = ("customer", "job", "invoice", "payment")
# The canonical reference fields and the entity each one points at.
REFERENCE_FIELDS: dict[str, EntityType] = {
    "customer_id": "customer",
    "job_id": "job",
    "invoice_id": "invoice",
}
# The vocabulary above as types: a provider's object or canonical data, a record's provider
# refs (reference field -> the provider's id), and a connection's settings.
Fields = Mapping[str, Any]
Refs = Mapping[str, str]
Settings = Mapping[str, Any]


@dataclass(frozen=True)
class RemoteRecord:
    """One provider record, in canonical terms.

    ``updated_at`` is the provider's own last-modified time (timezone-aware UTC): the merge
    never lets an older one overwrite a newer one. ``refs`` maps a canonical reference field
    to the provider's id of the referenced record (``{"customer_id": "cus_9"}``).
    ``deleted`` is True for a record the provider reports deleted, archived or voided in a
    way that ends its life (a voided invoice is *not* deleted: it is status ``void``).
    """

    entity_type: EntityType
    external_id: str
    updated_at: datetime
    data: dict[str, Any]
    refs: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    version: str | None = None


Op = Literal["upsert", "delete"]


@dataclass(frozen=True)
class WebhookItem:
    """One record change a webhook announces.

    ``event_id`` is unique per connection and stable across redeliveries (the dedup key):
    the provider's per-item id where it has one, else the envelope's event id plus the
    item's position. ``record`` is the full record for providers that send it (Stripe,
    Ascora); None for thin webhooks (Xero, QuickBooks, HubSpot), which the processor
    hydrates with ``ApiClient.fetch``. A delete needs no record. ``occurred_at`` is None
    when the webhook carries no time (FreshBooks'): the processor then orders a delete by
    when ingest received it (an upsert by its record's own updated-at, as always).
    ``per_receipt``: nothing in the notice tells it from the next identical one (no id, no
    time: FreshBooks' second ``client.update`` of a client is byte for byte its first), so
    the processor keys it by the receipt; a redelivery is then applied again, which for a
    thin notice (hydrated afresh) or a delete changes nothing.
    """

    event_id: str
    entity_type: EntityType
    external_id: str
    op: Op
    occurred_at: datetime | None
    record: RemoteRecord | None = None
    per_receipt: bool = False


class MappingError(DeadLetter):
    """A verified webhook or API body that cannot be mapped: it becomes a dead letter.

    ``reason`` is a short snake_case label (a bounded metric label): ``unparseable``,
    ``unknown_event_type``, ``schema_violation``, ``unsupported_entity``. ``detail`` names
    the path that failed ("data.object.amount_due: expected an integer"), never a secret.
    """


@dataclass(frozen=True)
class WebhookParse:
    """What a webhook body means: the items to sync, and how many events were ignored
    on purpose (event types the provider sends that carry no record we sync, such as
    Stripe's ``checkout.session.completed``)."""

    items: tuple[WebhookItem, ...]
    ignored: int = 0

    @classmethod
    def of(cls, item: WebhookItem | None) -> WebhookParse:
        """A delivery that carries one event: its item, or one ignored event for None."""
        if item is None:
            return cls(items=(), ignored=1)
        return cls(items=(item,))


class RecordMapper(Protocol):
    """The pure half of a connector: provider shapes <-> canonical data. No I/O."""

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Settings
    ) -> WebhookParse:
        """The items in a verified webhook, or MappingError. ``headers`` lower-case."""
        ...

    def to_canonical(
        self, entity_type: EntityType, obj: Fields, settings: Settings
    ) -> RemoteRecord:
        """A provider API object (as its API returns it) as a RemoteRecord."""
        ...

    def from_canonical(
        self, entity_type: EntityType, data: Fields, refs: Refs, settings: Settings
    ) -> dict[str, Any]:
        """The provider's create/update body for canonical ``data`` (+ provider ``refs``)."""
        ...


@dataclass(frozen=True)
class Page:
    records: tuple[RemoteRecord, ...]
    next_cursor: str | None  # None: this was the last page


class ApiClient(Protocol):
    """One connection's API. Raises connectors.http.ProviderError (or a subclass) on
    failure; retries, rate limits and circuit breaking belong to the caller."""

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        """The record as it is now; NotFoundError when the provider has no such record."""
        ...

    async def create(
        self,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        idempotency_key: str,
    ) -> RemoteRecord:
        """Create and return the record as the provider stored it (its id, its updated-at).

        ``idempotency_key`` is stable for one canonical record's first push: providers with
        idempotency support (Stripe) send it; others ignore it.
        """
        ...

    async def update(
        self,
        entity_type: EntityType,
        external_id: str,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        *,
        expected_version: str | None = None,
    ) -> RemoteRecord:
        """Update and return the stored record. Clients with optimistic concurrency
        (QuickBooks SyncToken, MYOB RowVersion) read the current token themselves and, on
        a stale-token answer, re-read and retry once before raising StaleVersionError.
        ``expected_version`` (only where the ApiSpec's ``update_precondition`` is
        "version"): write only if the record is still at that version, else raise
        StaleVersionError without writing: the caller read it and decides what next."""
        ...

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        """Delete, archive or void, as the provider allows; NotFoundError is success
        for the caller (already gone). UnsupportedOperationError when it cannot."""
        ...

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        """One page of records, oldest change first where the API allows; ``cursor`` is
        opaque (None for the first page)."""
        ...


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``rate`` requests per ``per_seconds``, bursts up to ``burst``."""

    rate: float
    per_seconds: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.rate / self.per_seconds


# "client_credentials": the connection stores ``client_id:client_secret`` and access
# tokens come from the OAuth2 client-credentials grant (RFC 6749 §4.4; PayPal).
AuthKind = Literal["bearer", "oauth2", "basic", "client_credentials"]


@dataclass(frozen=True)
class ApiSpec:
    """How to reach and use one provider's API.

    ``make_client(session, base_url, auth, settings)`` builds a client for one connection:
    ``session`` is the shared session of connectors.egress.provider_session (calls reach
    public addresses only; clients send through connectors.http.send, which follows no
    redirect and caps the answer), ``auth`` a connectors.http.Auth giving the request
    headers, ``settings`` the connection's settings (realm id, Xero tenant id, field
    overrides). ``token_url`` is the OAuth2 token endpoint path or URL (relative
    paths resolve against the connection's base URL: the simulators serve it).
    """

    entity_types: tuple[EntityType, ...]
    rate_limit: RateLimit
    auth_kind: AuthKind
    make_client: Any  # Callable[[ClientSession, str, Auth, Mapping[str, Any]], ApiClient]
    token_url: str | None = None
    default_base_url: str | None = None
    # Which entity types have a delete/void at the provider (the rest raise Unsupported).
    deletable: tuple[EntityType, ...] = ()
    # Kinds the provider lists only through other records (PayPal's customers are its
    # invoices' recipients): a linked one missing from a full listing may still be there
    # (one pushed to it that no invoice addresses yet), so a full reconciliation infers no
    # delete of these.
    listed_partly: tuple[EntityType, ...] = ()
    # A provider without webhooks is kept in sync by the reconcile schedule's incremental
    # poll: this is its default interval (a connection's reconcile_interval_seconds still
    # wins); None leaves the service's default, the backstop for webhook providers.
    poll_seconds: float | None = None
    # What the provider cannot hold yet: ``holds_back(entity_type, data)`` names why a
    # record in this state is not sent (a pending payment, to Xero, which records money
    # received only), or None. Outbound holds such a version back, logged with why; the
    # version it can hold (the payment succeeded) is pushed when it comes.
    holds_back: Callable[[EntityType, Mapping[str, Any]], str | None] | None = None
    # How coarse the provider's own timestamps are (Stripe: whole seconds). A full webhook
    # stamped within this of our last write to its record cannot be ordered against that
    # write by time: the processor reads the record's current state instead of trusting
    # the webhook's copy (services.processor.normalize). 0: fine enough to order by.
    clock_resolution_seconds: float = 0.0
    # What outbound does before it updates a record there (issue 17: a user's edit made
    # there while our push was on its way must not be overwritten). "none": write at once.
    # "read": read the record first; a state we have not seen goes to the merge and the
    # merged record is pushed next (what is left: an edit between that read and our write,
    # some milliseconds). "version": the same, and the write is made conditional on the
    # version read (QuickBooks SyncToken, MYOB RowVersion), which leaves no window.
    update_precondition: Literal["none", "read", "version"] = "none"
    # The provider's record version (``RemoteRecord.version``) is a counter that rises with
    # every write to the record (QuickBooks' SyncToken): the processor orders a record's
    # states by it, a lower one is older whatever its timestamp (services.processor.decide,
    # rule 1). False: none, or one opaque to us that a write is conditional on (MYOB's
    # RowVersion).
    versions_ordered: bool = False
    # Per kind, the canonical fields the provider sets by its own rules and no write of
    # ours sets (Stripe computes an invoice's totals and amount due, and a PaymentIntent's
    # status and payment time are its own: a payment succeeds there only by being charged).
    # The look before an update leaves them out: our write cannot overwrite them, and their
    # moves are no user's edit to hand to the merge (issue 17).
    own_fields: Mapping[EntityType, frozenset[str]] = field(default_factory=dict)


def pending_payments_wait(
    provider: str,
) -> Callable[[EntityType, Mapping[str, Any]], str | None]:
    """An ``ApiSpec.holds_back`` for a target that records money received only: a payment
    still pending (a card payment between Stripe's ``payment_intent.created`` and its
    success) is an intermediate state, held back until the version that succeeded comes.
    A failed or refunded one is not held (it would wait for ever): the mapping refuses it."""

    def holds_back(entity_type: EntityType, data: Mapping[str, Any]) -> str | None:
        if entity_type == "payment" and data.get("status") == "pending":
            return (
                f"{provider} records money received only: a pending payment waits until it succeeds"
            )
        return None

    return holds_back


def _text_or_none(value: Any) -> str | None:
    return str(value) if value else None


# A free-text setting; left empty (None, "", 0) it is not set, so the provider's default
# applies. Anything else is read as text (HubSpot's stage ids are often numbers).
OptionalText = Annotated[str | None, BeforeValidator(_text_or_none)]


class ClientSettings(BaseModel):
    """The settings one provider's API client reads, parsed once when the client is built.

    A connection's settings hold more (mapping options, field overrides, sync direction),
    which other readers take from the same dict; only this client's keys are read here.
    A bad value is a ValueError naming the setting: ``messages`` gives the text per field
    (``{value}`` is what the connection holds), so an operator sees the same words
    whichever check failed.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")
    messages: ClassVar[dict[str, str]] = {}

    @classmethod
    def parse(cls, settings: Mapping[str, Any]) -> Self:
        try:
            return cls.model_validate(dict(settings))
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0]) if error["loc"] else ""
            message = cls.messages.get(name)
            if message is None:
                raise ValueError(f"settings[{name!r}]: {error['msg']}") from None
            raise ValueError(message.format(value=error.get("input"))) from None


def canonical_data(
    entity_type: EntityType, raw: Mapping[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """``raw`` (a provider object read into canonical field names) validated by the
    canonical model and spelled as it dumps to JSON; else MappingError("schema_violation")
    naming the first invalid field after ``prefix`` (where in the provider object)."""
    try:
        model = ENTITY_MODELS[entity_type].model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise MappingError("schema_violation", f"{prefix}{where}: {first['msg']}") from None
    return model.model_dump(mode="json", exclude_unset=True)


def json_body(body: bytes, problem: str = "body: not JSON") -> Any:
    """A webhook body parsed as JSON, or MappingError("unparseable", ``problem``): a body
    that is not JSON (or nests too deep to parse) can only be dead-lettered."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise MappingError("unparseable", problem) from None


def json_body_object(body: bytes, what: str) -> dict[str, Any]:
    """A webhook body that must be one JSON object (``what`` says which, for the refusal)."""
    obj = json_body(body)
    if not isinstance(obj, dict):
        raise MappingError("schema_violation", f"body: expected a JSON object ({what})")
    return obj


def json_object(value: object, path: str) -> Mapping[str, Any]:
    """``value`` if it is a JSON object, else MappingError("schema_violation") at ``path``."""
    if not isinstance(value, Mapping):
        raise MappingError("schema_violation", f"{path}: expected an object")
    return value


def optional_text(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    """A string field, None when absent, null or empty; anything else is a schema violation."""
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}.{key}: expected a string")
    return value or None


def rfc3339_time(value: object, path: str) -> datetime:
    """An RFC 3339 time with an offset (``Z`` included), in UTC."""
    if not isinstance(value, str):
        raise MappingError("schema_violation", f"{path}: expected an RFC 3339 time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise MappingError("schema_violation", f"{path}: {value!r} is not a time") from None
    if parsed.tzinfo is None:
        raise MappingError("schema_violation", f"{path}: {value!r} has no offset")
    return parsed.astimezone(UTC)


def require(obj: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted ``path`` or MappingError("schema_violation") naming it."""
    node: Any = obj
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, Sequence) and not isinstance(node, str) and part.isdigit():
            index = int(part)
            if index >= len(node):
                raise MappingError("schema_violation", f"{path}: missing")
            node = node[index]
        else:
            raise MappingError("schema_violation", f"{path}: missing")
    return node
