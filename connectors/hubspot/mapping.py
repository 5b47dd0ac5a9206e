"""HubSpot CRM v3 objects <-> canonical records, and HubSpot's thin webhook batches.

Contacts are canonical customers, deals canonical jobs; HubSpot has nothing we map to
invoices or payments. Every HubSpot property value is a string (or null when never set),
timestamps are ISO 8601 with milliseconds, and an empty string clears a property on write.
See README.md in this folder for the field table and the reasons behind each choice.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from connectors.overrides import with_field_overrides
from connectors.spec import (
    EntityType,
    MappingError,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
    json_body,
)
from schemas.records import ENTITY_MODELS

# CRM v3 object type names in URLs, per canonical entity we sync.
OBJECT_TYPES: Final[dict[EntityType, str]] = {"customer": "contacts", "job": "deals"}

# The properties we read, asked for by name on every GET (HubSpot returns only a default
# handful otherwise). Contacts keep their modified time in ``lastmodifieddate``, deals in
# ``hs_lastmodifieddate``: these are also the properties the search API filters on.
CONTACT_PROPERTIES: Final = (
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "address",
    "city",
    "state",
    "zip",
    "country",
    "lastmodifieddate",
)
DEAL_PROPERTIES: Final = (
    "dealname",
    "description",
    "dealstage",
    "pipeline",
    "closedate",
    "hs_lastmodifieddate",
)
PROPERTIES: Final[dict[EntityType, tuple[str, ...]]] = {
    "customer": CONTACT_PROPERTIES,
    "job": DEAL_PROPERTIES,
}
MODIFIED_PROPERTY: Final[dict[EntityType, str]] = {
    "customer": "lastmodifieddate",
    "job": "hs_lastmodifieddate",
}

# HubSpot's default deal pipeline ("Sales Pipeline") stage ids, as the deals API documents
# them, and the job status each one means. Connections on a custom pipeline override both
# directions with settings["deal_stage_status"] / settings["status_deal_stage"].
DEFAULT_STAGE_STATUS: Final[dict[str, str]] = {
    "appointmentscheduled": "scheduled",
    "qualifiedtobuy": "draft",
    "presentationscheduled": "scheduled",
    "decisionmakerboughtin": "in_progress",
    "contractsent": "in_progress",
    "closedwon": "completed",
    "closedlost": "cancelled",
}
DEFAULT_STATUS_STAGE: Final[dict[str, str]] = {
    "draft": "qualifiedtobuy",
    "scheduled": "appointmentscheduled",
    "in_progress": "decisionmakerboughtin",
    "completed": "closedwon",
    "cancelled": "closedlost",
}
# The pipeline id HubSpot gives the default pipeline in every account.
DEFAULT_PIPELINE: Final = "default"

# HubSpot-defined association type id for deal -> contact (associations v4 type table).
DEAL_TO_CONTACT_TYPE_ID: Final = 3

# Generic ("object.*") webhook subscriptions name the object by objectTypeId.
_OBJECT_TYPE_IDS: Final[dict[str, EntityType]] = {"0-1": "customer", "0-3": "job"}
_LEGACY_OBJECTS: Final[dict[str, EntityType]] = {"contact": "customer", "deal": "job"}
# What each subscription action means for the record it names (HubSpot's webhooks guide
# lists creation, deletion, propertyChange, privacyDeletion, merge, restore and
# associationChange).
_UPSERT_ACTIONS: Final = frozenset({"creation", "propertyChange", "restore", "merge"})
_DELETE_ACTIONS: Final = frozenset({"deletion", "privacyDeletion"})
_KNOWN_ACTIONS: Final = _UPSERT_ACTIONS | _DELETE_ACTIONS | {"associationChange"}
# The other object types HubSpot's webhooks name: their events are ignored, not errors.
_OTHER_OBJECTS: Final = frozenset({"company", "ticket", "product", "line_item", "conversation"})
# Association changes that move a deal's customer: the deal is re-read to pick it up.
_DEAL_CONTACT_ASSOCIATION: Final = "DEAL_TO_CONTACT"


def deal_contact_association(contact_id: str) -> list[dict[str, Any]]:
    """The ``associations`` of a deal created with its contact (the default deal-contact
    association, HUBSPOT_DEFINED type DEAL_TO_CONTACT_TYPE_ID)."""
    return [
        {
            "to": {"id": contact_id},
            "types": [
                {
                    "associationCategory": "HUBSPOT_DEFINED",
                    "associationTypeId": DEAL_TO_CONTACT_TYPE_ID,
                }
            ],
        }
    ]


def _text(value: Any) -> str | None:
    """A property value as text; HubSpot's null and "" both mean "no value"."""
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    return value or None


def parse_time(value: Any, path: str) -> datetime:
    """A HubSpot timestamp (ISO 8601, or epoch milliseconds as legacy properties hold) in UTC."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    if isinstance(value, str) and value:
        if value.isascii() and value.isdigit():
            return datetime.fromtimestamp(int(value) / 1000, UTC)
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise MappingError("schema_violation", f"{path}: not an ISO 8601 time") from None
        if parsed.tzinfo is None:
            raise MappingError("schema_violation", f"{path}: time without a zone")
        return parsed.astimezone(UTC)
    raise MappingError("schema_violation", f"{path}: expected a timestamp")


def format_time(value: datetime) -> str:
    """HubSpot's own timestamp form: UTC, millisecond precision, ``Z`` suffix."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stage_status(settings: Mapping[str, Any]) -> dict[str, str]:
    return {**DEFAULT_STAGE_STATUS, **dict(settings.get("deal_stage_status") or {})}


def status_stage(settings: Mapping[str, Any]) -> dict[str, str]:
    return {**DEFAULT_STATUS_STAGE, **dict(settings.get("status_deal_stage") or {})}


def split_name(name: str) -> tuple[str, str]:
    """``name`` as (firstname, lastname): split at the first space, the rest is the last name.

    "Mary Ann Smith" becomes ("Mary", "Ann Smith"); one word is a first name alone. Joining
    the two with one space gives the name back unchanged, so a round trip is lossless.
    """
    first, _, last = name.partition(" ")
    return first, last


def join_name(first: str | None, last: str | None) -> str | None:
    parts = [part for part in (first, last) if part]
    return " ".join(parts) or None


def _entity(entity_type: str) -> EntityType:
    for known in OBJECT_TYPES:
        if known == entity_type:
            return known
    raise MappingError("unsupported_entity", f"{entity_type}: HubSpot syncs customer and job only")


# Where each canonical field comes from in a HubSpot object, to name it in an error.
_PROPERTY_PATHS: Final[dict[str, str]] = {
    "name": "properties.firstname",
    "email": "properties.email",
    "phone": "properties.phone",
    "company": "properties.company",
    "address": "properties.address",
    "title": "properties.dealname",
    "description": "properties.description",
    "scheduled_end": "properties.closedate",
}


def _validated(
    entity_type: EntityType, data: dict[str, Any], paths: Mapping[str, str]
) -> dict[str, Any]:
    """``data`` checked against the canonical model, in its canonical JSON spelling.

    ``paths`` names each field where the input held it, so the error points there.
    """
    try:
        model = ENTITY_MODELS[entity_type].model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else ""
        where = ".".join(str(part) for part in error["loc"])
        raise MappingError(
            "schema_violation", f"{paths.get(field, where) or 'body'}: {error['msg']}"
        ) from None
    return model.model_dump(mode="json", exclude_unset=True)


@with_field_overrides
class Mapper:
    """HubSpot's RecordMapper: pure, so the processor and tests call it without I/O."""

    # --- webhooks ----------------------------------------------------------------------------

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        events = json_body(body)
        if not isinstance(events, list):
            raise MappingError("schema_violation", "body: expected a JSON array of events")
        portal = settings.get("portal_id")
        items: list[WebhookItem] = []
        ignored = 0
        for index, event in enumerate(events):
            item = self._event_item(event, f"[{index}]", portal)
            if item is None:
                ignored += 1
            else:
                items.append(item)
        return WebhookParse(items=tuple(items), ignored=ignored)

    def _event_item(self, event: Any, at: str, portal: Any) -> WebhookItem | None:
        if not isinstance(event, dict):
            raise MappingError("schema_violation", f"{at}: expected an object")
        # HubSpot's older documentation names the field eventType; deliveries use
        # subscriptionType. Accepting both costs nothing and reads either.
        kind = event.get("subscriptionType", event.get("eventType"))
        if not isinstance(kind, str):
            raise MappingError("schema_violation", f"{at}.subscriptionType: missing")
        if portal is not None and str(event.get("portalId")) != str(portal):
            raise MappingError(
                "portal_mismatch", f"{at}.portalId: not the connection's HubSpot account"
            )
        _, _, action = kind.partition(".")
        entity = self._event_entity(event, kind, at)
        if entity is None:
            return None
        if action not in _KNOWN_ACTIONS:
            raise MappingError("unknown_event_type", f"{at}.subscriptionType: {kind!r}")
        if action == "associationChange" and not self._moves_deal_customer(event, entity):
            return None
        event_id = _scalar(event.get("eventId"), f"{at}.eventId")
        occurred_at = parse_time(event.get("occurredAt"), f"{at}.occurredAt")
        if action == "associationChange":
            deal = _scalar(event.get("fromObjectId"), f"{at}.fromObjectId")
            return WebhookItem(event_id, "job", deal, "upsert", occurred_at)
        if action in _DELETE_ACTIONS:
            object_id = _scalar(event.get("objectId"), f"{at}.objectId")
            return WebhookItem(event_id, entity, object_id, "delete", occurred_at)
        object_id = self._surviving_id(event, action, at)
        return WebhookItem(event_id, entity, object_id, "upsert", occurred_at)

    @staticmethod
    def _event_entity(event: Mapping[str, Any], kind: str, at: str) -> EntityType | None:
        """The entity a subscription type names; None for objects we do not sync."""
        obj = kind.partition(".")[0]
        if obj in _LEGACY_OBJECTS:
            return _LEGACY_OBJECTS[obj]
        if obj == "object":
            type_id = event.get("objectTypeId")
            if not isinstance(type_id, str):
                raise MappingError("schema_violation", f"{at}.objectTypeId: missing")
            return _OBJECT_TYPE_IDS.get(type_id)
        if obj in _OTHER_OBJECTS:
            return None
        raise MappingError("unknown_event_type", f"{at}.subscriptionType: {kind!r}")

    @staticmethod
    def _moves_deal_customer(event: Mapping[str, Any], entity: EntityType) -> bool:
        """Whether an association change moved a deal's contact (else it is ignored).

        Both sides of a deal-contact association fire an event; the deal side
        (DEAL_TO_CONTACT) is the one that changes a field we sync, the job's customer.
        """
        return entity == "job" and event.get("associationType") == _DEAL_CONTACT_ASSOCIATION

    @staticmethod
    def _surviving_id(event: Mapping[str, Any], action: str, at: str) -> str:
        """The object to re-read; for a merge, the record that survived it.

        HubSpot's merge event names the result in ``newObjectId`` when the merge made a new
        record, else in ``primaryObjectId``. The merged-away ids are not deleted: a delete
        would spread to every other CRM, whose copies may own jobs and invoices.
        """
        if action == "merge":
            for field in ("newObjectId", "primaryObjectId"):
                value = event.get(field)
                if value not in (None, 0, ""):
                    return _scalar(value, f"{at}.{field}")
        return _scalar(event.get("objectId"), f"{at}.objectId")

    # --- API objects -> canonical --------------------------------------------------------------

    def to_canonical(
        self, entity_type: EntityType, obj: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> RemoteRecord:
        entity = _entity(entity_type)
        external_id = _scalar(obj.get("id"), "id")
        properties = obj.get("properties")
        if not isinstance(properties, Mapping):
            raise MappingError("schema_violation", "properties: expected an object")
        if entity == "customer":
            data = self._contact_data(properties)
            refs: dict[str, str] = {}
        else:
            data = self._deal_data(properties, settings)
            refs = self._deal_refs(obj)
        modified = f"properties.{MODIFIED_PROPERTY[entity]}"
        if obj.get("updatedAt") is not None:
            updated_at = parse_time(obj["updatedAt"], "updatedAt")
        elif properties.get(MODIFIED_PROPERTY[entity]) is not None:
            updated_at = parse_time(properties[MODIFIED_PROPERTY[entity]], modified)
        else:
            raise MappingError("schema_violation", "updatedAt: missing")
        return RemoteRecord(
            entity_type=entity,
            external_id=external_id,
            updated_at=updated_at,
            data=_validated(entity, data, _PROPERTY_PATHS),
            refs=refs,
            deleted=obj.get("archived") is True,
        )

    @staticmethod
    def _contact_data(props: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if "firstname" in props or "lastname" in props:
            data["name"] = join_name(_text(props.get("firstname")), _text(props.get("lastname")))
        for canonical, prop in (("email", "email"), ("phone", "phone"), ("company", "company")):
            if prop in props:
                data[canonical] = _text(props[prop])
        address_props = ("address", "city", "state", "zip", "country")
        if any(prop in props for prop in address_props):
            data["address"] = _address(props)
        return data

    @staticmethod
    def _deal_data(props: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if "dealname" in props:
            data["title"] = _text(props["dealname"])
        if "description" in props:
            data["description"] = _text(props["description"])
        stage = _text(props.get("dealstage"))
        # A stage outside the table (a custom pipeline nobody mapped) leaves status unset
        # rather than guessing; operators map it with settings["deal_stage_status"].
        if stage is not None and stage in stage_status(settings):
            data["status"] = stage_status(settings)[stage]
        if "closedate" in props:
            close = _text(props["closedate"])
            data["scheduled_end"] = (
                None if close is None else format_time(parse_time(close, "properties.closedate"))
            )
        return data

    @staticmethod
    def _deal_refs(obj: Mapping[str, Any]) -> dict[str, str]:
        """The deal's contact as its customer: the first one HubSpot lists (ids ascending)."""
        associations = obj.get("associations")
        if not isinstance(associations, Mapping):
            return {}
        contacts = associations.get("contacts")
        if not isinstance(contacts, Mapping):
            return {}
        results = contacts.get("results")
        if not isinstance(results, list) or not results:
            return {}
        first = results[0]
        if not isinstance(first, Mapping):
            raise MappingError("schema_violation", "associations.contacts.results.0: not an object")
        return {"customer_id": _scalar(first.get("id"), "associations.contacts.results.0.id")}

    # --- canonical -> API bodies ---------------------------------------------------------------

    def from_canonical(
        self,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        settings: Mapping[str, Any],
    ) -> dict[str, Any]:
        """``{"properties": {...}}`` plus, for a deal with a customer, ``associations``.

        Only fields present in ``data`` are written (a partial update); a field present as
        None is sent as "", which is how HubSpot clears a property. ``associations`` is only
        accepted by the create endpoint: the client moves an existing deal's contact with
        the associations API instead.
        """
        entity = _entity(entity_type)
        canonical = _validated(entity, dict(data), {})
        if entity == "customer":
            return {"properties": self._contact_properties(canonical)}
        body: dict[str, Any] = {"properties": self._deal_properties(canonical, settings)}
        customer = refs.get("customer_id")
        if customer:
            body["associations"] = deal_contact_association(customer)
        return body

    @staticmethod
    def _contact_properties(data: Mapping[str, Any]) -> dict[str, str]:
        props: dict[str, str] = {}
        if "name" in data:
            first, last = split_name(data["name"] or "")
            props["firstname"] = first
            props["lastname"] = last
        for canonical in ("email", "phone", "company"):
            if canonical in data:
                props[canonical] = data[canonical] or ""
        if "address" in data:
            address = data["address"] or {}
            lines = [address.get("line1") or "", address.get("line2") or ""]
            # HubSpot has one street property: a second line follows the first after a
            # newline, where the reverse mapping finds it.
            props["address"] = "\n".join(lines) if lines[1] else lines[0]
            props["city"] = address.get("city") or ""
            props["state"] = address.get("region") or ""
            props["zip"] = address.get("postal_code") or ""
            props["country"] = address.get("country") or ""
        return props

    @staticmethod
    def _deal_properties(data: Mapping[str, Any], settings: Mapping[str, Any]) -> dict[str, str]:
        props: dict[str, str] = {}
        if "title" in data:
            props["dealname"] = data["title"] or ""
        if "description" in data:
            props["description"] = data["description"] or ""
        status = data.get("status")
        # A deal always has a stage: a cleared canonical status leaves the stage as it is.
        if status is not None:
            stage = status_stage(settings).get(status)
            if stage is None:
                raise MappingError("schema_violation", f"status: no deal stage for {status!r}")
            props["dealstage"] = stage
            props["pipeline"] = str(settings.get("deal_pipeline") or DEFAULT_PIPELINE)
        if "scheduled_end" in data:
            end = data["scheduled_end"]
            props["closedate"] = (
                "" if end is None else format_time(parse_time(end, "scheduled_end"))
            )
        return props


def _address(props: Mapping[str, Any]) -> dict[str, Any] | None:
    street = _text(props.get("address"))
    line1, _, line2 = (street or "").partition("\n")
    country = _text(props.get("country"))
    address: dict[str, Any] = {
        "line1": line1 or None,
        "line2": line2 or None,
        "city": _text(props.get("city")),
        "region": _text(props.get("state")),
        "postal_code": _text(props.get("zip")),
    }
    # HubSpot's country is free text ("United States", "us"); only a two-letter value is an
    # ISO 3166 code we can carry. Anything else is left out rather than guessed.
    if country is not None and len(country) == 2 and country.isascii() and country.isalpha():
        address["country"] = country.upper()
    present = {key: value for key, value in address.items() if value is not None}
    return present or None


def _scalar(value: Any, path: str) -> str:
    """A HubSpot id (JSON integer or numeric string) as text, or MappingError naming ``path``."""
    if isinstance(value, bool):
        raise MappingError("schema_violation", f"{path}: expected an id")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value:
        return value
    raise MappingError("schema_violation", f"{path}: expected an id")
