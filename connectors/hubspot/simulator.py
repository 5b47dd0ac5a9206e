"""A HubSpot account behind HubSpot's CRM v3 objects API, for tests and the local demo.

Serves what the client uses: contacts and deals (read, list, create, update, archive,
search), the v4 deal-contact association endpoints, and the OAuth token endpoint at
HubSpot's path. Every change is announced the way HubSpot's webhooks announce it: a JSON
array of thin events (``*.creation`` followed by one ``*.propertyChange`` per property set,
one ``propertyChange`` per property an update changed, ``*.deletion``), batched up to 100
events per request and signed with the v3 signature (HMAC-SHA256 of method + URL + body +
timestamp in milliseconds, base64).

Errors are shaped like HubSpot's: ``{"status": "error", "message", "correlationId",
"category"}``, with the 409 on a duplicate contact email that HubSpot sends.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from connectors.hubspot.mapping import (
    DEAL_TO_CONTACT_TYPE_ID,
    MODIFIED_PROPERTY,
    deal_contact_association,
)
from connectors.simkit import Change, Simulator, json_object
from connectors.spec import EntityType

# HubSpot posts at most 100 events per webhook request (webhooks guide, "Batching").
MAX_EVENTS_PER_REQUEST: Final = 100
# The list endpoint's documented default and maximum page sizes.
LIST_DEFAULT_LIMIT: Final = 10
LIST_MAX_LIMIT: Final = 100
# The search endpoint's documented maximum page size and total result window.
SEARCH_MAX_LIMIT: Final = 200
SEARCH_MAX_RESULTS: Final = 10_000
# Made-up but HubSpot-shaped account and app ids (HubSpot's are plain integers).
DEFAULT_PORTAL_ID: Final = 62515
DEFAULT_APP_ID: Final = 1160452
# HubSpot record ids are integers rendered as strings; these start where a used account's
# might, so ids never look like list positions in tests.
_FIRST_OBJECT_ID: Final = 51
_FIRST_EVENT_ID: Final = 3_816_279_340

_OBJECT_TYPES: Final[dict[str, EntityType]] = {"contacts": "customer", "deals": "job"}
_EVENT_OBJECTS: Final[dict[EntityType, str]] = {"customer": "contact", "job": "deal"}
# Properties a write may set, per object type (a subset of HubSpot's defaults).
_WRITABLE: Final[dict[EntityType, frozenset[str]]] = {
    "customer": frozenset(
        {
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
            "lifecyclestage",
        }
    ),
    "job": frozenset({"dealname", "description", "dealstage", "pipeline", "closedate", "amount"}),
}
# Properties HubSpot maintains itself; writing one is a READ_ONLY_VALUE error.
_READ_ONLY: Final[dict[EntityType, frozenset[str]]] = {
    "customer": frozenset({"createdate", "lastmodifieddate", "hs_object_id"}),
    "job": frozenset({"createdate", "hs_lastmodifieddate", "hs_object_id"}),
}
# What a GET without ``properties`` returns, as HubSpot documents for each object.
_DEFAULT_READ: Final[dict[EntityType, tuple[str, ...]]] = {
    "customer": (
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    ),
    "job": (
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
}
# Always returned, asked for or not.
_ALWAYS: Final[dict[EntityType, tuple[str, ...]]] = {
    "customer": ("createdate", "hs_object_id", "lastmodifieddate"),
    "job": ("createdate", "hs_object_id", "hs_lastmodifieddate"),
}
_DATE_PROPERTIES: Final = frozenset(
    {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "closedate"}
)
# HubSpot maintains these itself: a change to them alone is no propertyChange event (and
# HubSpot does not let apps subscribe to hs_lastmodifieddate).
_UNANNOUNCED: Final = frozenset(
    {"createdate", "lastmodifieddate", "hs_lastmodifieddate", "hs_object_id"}
)
# The default "Sales Pipeline" every HubSpot account has.
PIPELINE_STAGES: Final[dict[str, tuple[str, ...]]] = {
    "default": (
        "appointmentscheduled",
        "qualifiedtobuy",
        "presentationscheduled",
        "decisionmakerboughtin",
        "contractsent",
        "closedwon",
        "closedlost",
    )
}

_FIRST_NAMES: Final = ("Avery", "Jordan", "Priya", "Mateo", "Chloe", "Kenji", "Amara", "Liam")
_LAST_NAMES: Final = ("Nguyen", "Okafor", "Schmidt", "Rossi", "Patel", "Walsh", "Tanaka", "Silva")
_COMPANIES: Final = ("Harbour Dental", "Northside Bakery", "Kestrel Logistics", "Blue Gum Cafe")
_STREETS: Final = ("12 Wattle St", "48 Harbour Rd", "7 Market Ln", "230 King St")
_CITIES: Final = (("Sydney", "NSW", "2000"), ("Melbourne", "VIC", "3000"), ("Perth", "WA", "6000"))
_SERVICES: Final = ("Aircon service", "Switchboard upgrade", "Roof repair", "Hot water install")


def hubspot_error(status: int, category: str, message: str) -> web.HTTPException:
    """An HTTP error with HubSpot's error body."""
    body = json.dumps(
        {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": category,
        }
    )
    classes: dict[int, type[web.HTTPException]] = {
        400: web.HTTPBadRequest,
        404: web.HTTPNotFound,
        409: web.HTTPConflict,
    }
    return classes[status](text=body, content_type="application/json")


def _invalid(errors: list[dict[str, Any]]) -> web.HTTPException:
    return hubspot_error(
        400,
        "VALIDATION_ERROR",
        "Property values were not valid: " + json.dumps(errors, separators=(",", ":")),
    )


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _millis(value: str) -> int | None:
    """A stored or filter time value as epoch milliseconds (ISO 8601 or digits)."""
    if value.isascii() and value.isdigit():
        return int(value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


class HubSpotSimulator(Simulator):
    """HubSpot contacts and deals, with HubSpot's webhooks, search and errors."""

    provider = "hubspot"
    entity_types = ("customer", "job")
    public_paths = ("/oauth/token", "/oauth/v1/token")

    def __init__(
        self,
        *,
        portal_id: int = DEFAULT_PORTAL_ID,
        app_id: int = DEFAULT_APP_ID,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.portal_id = portal_id
        self.app_id = app_id
        self.deal_contacts: dict[str, list[str]] = {}
        self._object_ids = itertools.count(_FIRST_OBJECT_ID)
        self._event_ids = itertools.count(_FIRST_EVENT_ID)
        self._subscription_ids: dict[str, int] = {}
        # The properties each record had when last announced: updates announce the diff.
        self._announced: dict[tuple[EntityType, str], dict[str, str | None]] = {}
        # Records last written through the API rather than "by a user" in the control API.
        self._api_written: set[tuple[EntityType, str]] = set()

    # --- the store -----------------------------------------------------------------------------

    def new_id(self, entity_type: EntityType) -> str:
        return str(next(self._object_ids))

    def get(self, entity_type: EntityType, record_id: str) -> dict[str, Any]:
        obj = self.store.get(entity_type, {}).get(record_id)
        if obj is None or record_id in self.deleted.get(entity_type, set()):
            raise hubspot_error(404, "OBJECT_NOT_FOUND", "resource not found")
        return obj

    def create(
        self, entity_type: EntityType, body: Mapping[str, Any], *, notify: bool = True
    ) -> dict[str, Any]:
        obj = super().create(entity_type, body, notify=notify)
        if not notify:  # seeded: it existed before anyone subscribed
            self._announced[(entity_type, obj["id"])] = dict(obj["properties"])
        return obj

    def new_object(
        self, entity_type: EntityType, record_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        written = self._properties(entity_type, body)
        if entity_type == "job":
            written.setdefault("pipeline", "default")
            missing = [name for name in ("dealname", "dealstage") if not written.get(name)]
            if missing:
                raise _invalid(
                    [
                        {
                            "isValid": False,
                            "message": f"{name} is required",
                            "error": "REQUIRED_PROPERTY",
                            "name": name,
                        }
                        for name in missing
                    ]
                )
            self._check_stage(written)
            contacts = self._association_targets(body.get("associations"))
        else:
            self._check_unique_email(written.get("email"), None)
            contacts = []
        now = _iso(self.clock())
        properties: dict[str, str | None] = {
            **written,
            "createdate": now,
            "hs_object_id": record_id,
            MODIFIED_PROPERTY[entity_type]: now,
        }
        if entity_type == "job":
            self.deal_contacts[record_id] = contacts
        return {
            "id": record_id,
            "properties": properties,
            "createdAt": now,
            "updatedAt": now,
            "archived": False,
        }

    def apply_edit(
        self, entity_type: EntityType, obj: dict[str, Any], body: Mapping[str, Any]
    ) -> dict[str, Any]:
        written = self._properties(entity_type, body)
        if entity_type == "job":
            self._check_stage({**obj["properties"], **written})
        elif "email" in written:
            self._check_unique_email(written["email"], obj["id"])
        properties = {**obj["properties"], **written}
        if properties == obj["properties"]:
            return obj
        now = _iso(self.clock())
        properties[MODIFIED_PROPERTY[entity_type]] = now
        return {**obj, "properties": properties, "updatedAt": now}

    def _properties(
        self, entity_type: EntityType, body: Mapping[str, Any]
    ) -> dict[str, str | None]:
        """The body's properties, validated as HubSpot does, values as HubSpot stores them."""
        properties = body.get("properties")
        if not isinstance(properties, Mapping):
            raise hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON: properties")
        errors: list[dict[str, Any]] = []
        written: dict[str, str | None] = {}
        for name, raw in properties.items():
            if name in _READ_ONLY[entity_type]:
                errors.append(_error(name, "READ_ONLY_VALUE", f"{name} is a read only property"))
                continue
            if name not in _WRITABLE[entity_type]:
                errors.append(
                    _error(name, "PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                )
                continue
            if isinstance(raw, dict | list):
                errors.append(_error(name, "INVALID_VALUE", f"{name} must be a scalar"))
                continue
            value = None if raw is None or raw == "" else str(raw)
            if value is not None and name in _DATE_PROPERTIES:
                millis = _millis(value)
                if millis is None:
                    errors.append(_error(name, "INVALID_DATE", f"{value!r} is not a valid date"))
                    continue
                value = _iso(datetime.fromtimestamp(millis / 1000, UTC))
            if value is not None and name == "email" and "@" not in value:
                errors.append(_error(name, "INVALID_EMAIL", f"Email address {value} is invalid"))
                continue
            written[name] = value
        if errors:
            raise _invalid(errors)
        return written

    @staticmethod
    def _check_stage(properties: Mapping[str, str | None]) -> None:
        pipeline = properties.get("pipeline") or "default"
        stage = properties.get("dealstage")
        if pipeline not in PIPELINE_STAGES:
            raise _invalid([_error("pipeline", "INVALID_OPTION", f"{pipeline} is not a pipeline")])
        if stage is not None and stage not in PIPELINE_STAGES[pipeline]:
            raise _invalid(
                [
                    _error(
                        "dealstage",
                        "INVALID_OPTION",
                        f"{stage} was not one of the allowed options for pipeline {pipeline}",
                    )
                ]
            )

    def _check_unique_email(self, email: str | None, own_id: str | None) -> None:
        if email is None:
            return
        for obj in self.live("customer"):
            other = obj["properties"].get("email")
            if obj["id"] != own_id and other is not None and other.lower() == email.lower():
                raise hubspot_error(
                    409, "CONFLICT", f"Contact already exists. Existing ID: {obj['id']}"
                )

    def _association_targets(self, associations: Any) -> list[str]:
        """Contact ids from a create body's v4-style ``associations`` array."""
        if associations is None:
            return []
        if not isinstance(associations, list):
            raise hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON: associations")
        contacts: list[str] = []
        for association in associations:
            target = association.get("to", {}).get("id") if isinstance(association, dict) else None
            types = association.get("types") if isinstance(association, dict) else None
            if target is None or not isinstance(types, list) or not types:
                raise hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON: associations")
            wanted = {(t.get("associationCategory"), t.get("associationTypeId")) for t in types}
            if ("HUBSPOT_DEFINED", DEAL_TO_CONTACT_TYPE_ID) not in wanted:
                raise hubspot_error(
                    400, "VALIDATION_ERROR", "the simulator associates deals to contacts only"
                )
            contact = str(target)
            self.get("customer", contact)
            contacts.append(contact)
        return contacts

    def seed_object(self, entity_type: EntityType, index: int) -> dict[str, Any]:
        first = _FIRST_NAMES[index % len(_FIRST_NAMES)]
        last = _LAST_NAMES[(index // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
        company = _COMPANIES[index % len(_COMPANIES)]
        if entity_type == "customer":
            city, state, postcode = _CITIES[index % len(_CITIES)]
            return {
                "properties": {
                    "firstname": first,
                    "lastname": last,
                    "email": f"{first}.{last}.{index}@example.com".lower(),
                    "phone": f"+61 2 9{index % 1000:03d} {index % 10000:04d}",
                    "company": company,
                    "address": _STREETS[index % len(_STREETS)],
                    "city": city,
                    "state": state,
                    "zip": postcode,
                    "country": "AU",
                }
            }
        stages = PIPELINE_STAGES["default"]
        close = datetime(2025, 1, 6, 9, 0, tzinfo=UTC) + timedelta(days=3 * index)
        body: dict[str, Any] = {
            "properties": {
                "dealname": f"{company}: {_SERVICES[index % len(_SERVICES)]}",
                "description": f"Quoted after a site visit with {first} {last}.",
                "pipeline": "default",
                "dealstage": stages[index % len(stages)],
                "closedate": _iso(close),
                "amount": f"{450 + 35 * index}.00",
            }
        }
        contacts = self.live("customer")
        if contacts:
            contact = contacts[index % len(contacts)]["id"]
            body["associations"] = deal_contact_association(contact)
        return body

    # --- webhooks ------------------------------------------------------------------------------

    def webhook_requests(self, changes: list[Change]) -> list[tuple[bytes, dict[str, str]]]:
        events: list[dict[str, Any]] = []
        for change in changes:
            events.extend(self._events(change))
        requests = []
        for start in range(0, len(events), MAX_EVENTS_PER_REQUEST):
            body = json.dumps(events[start : start + MAX_EVENTS_PER_REQUEST]).encode()
            requests.append((body, self.signature_headers(body)))
        return requests

    def signature_headers(self, body: bytes, *, now: float | None = None) -> dict[str, str]:
        """HubSpot's v3 headers for ``body`` posted to the app's target URL (``signed_url``
        where it is not where the webhooks are posted)."""
        url = self.signed_url or self.webhook_url
        assert url is not None  # noqa: S101 - only called to deliver
        millis = str(int((time.time() if now is None else now) * 1000))
        message = ("POST" + url).encode() + body + millis.encode()
        key = (self.webhook_secret or "").encode()
        signature = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
        return {"X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": millis}

    def _events(self, change: Change) -> list[dict[str, Any]]:
        key = (change.entity_type, change.record_id)
        obj = self.store[change.entity_type][change.record_id]
        prefix = _EVENT_OBJECTS[change.entity_type]
        source = "INTEGRATION" if key in self._api_written else "CRM_UI"
        if change.op == "delete":
            self._announced.pop(key, None)
            return [self._event(f"{prefix}.deletion", change, source)]
        before = self._announced.get(key, {})
        after: dict[str, str | None] = dict(obj["properties"])
        self._announced[key] = after
        events = []
        if change.op == "create":
            events.append(self._event(f"{prefix}.creation", change, source))
        for name in sorted(after):
            if name in _UNANNOUNCED or after[name] == before.get(name):
                continue
            if change.op == "create" and after[name] is None:
                continue
            events.append(
                self._event(
                    f"{prefix}.propertyChange",
                    change,
                    source,
                    propertyName=name,
                    propertyValue=after[name] or "",
                )
            )
        return events

    def _event(
        self, subscription_type: str, change: Change, source: str, **extra: Any
    ) -> dict[str, Any]:
        subscription = self._subscription_ids.setdefault(
            subscription_type, 1000 + len(self._subscription_ids)
        )
        return {
            "eventId": next(self._event_ids),
            "subscriptionId": subscription,
            "portalId": self.portal_id,
            "appId": self.app_id,
            "occurredAt": int(change.at.timestamp() * 1000),
            "subscriptionType": subscription_type,
            "attemptNumber": 0,
            "objectId": int(change.record_id),
            "changeSource": source,
            **extra,
        }

    # --- the API -------------------------------------------------------------------------------

    def add_api_routes(self, app: web.Application) -> None:
        objects = "/crm/v3/objects/{object_type}"
        app.router.add_get(objects, self._list)
        app.router.add_post(objects, self._create)
        app.router.add_post(objects + "/search", self._search)
        app.router.add_get(objects + "/{object_id}", self._read)
        app.router.add_patch(objects + "/{object_id}", self._update)
        app.router.add_delete(objects + "/{object_id}", self._archive)
        deal = "/crm/v4/objects/deals/{deal_id}/associations"
        app.router.add_put(deal + "/default/contacts/{contact_id}", self._associate)
        app.router.add_delete(deal + "/contacts/{contact_id}", self._dissociate)
        app.router.add_post("/crm/v4/associations/deals/contacts/batch/read", self._batch_contacts)
        app.router.add_post("/oauth/v1/token", self._token)

    def _object_type(self, request: web.Request) -> EntityType:
        name = request.match_info["object_type"]
        if name not in _OBJECT_TYPES:
            raise hubspot_error(
                400, "VALIDATION_ERROR", f"Unable to infer object type from: {name}"
            )
        return _OBJECT_TYPES[name]

    async def _json(self, request: web.Request) -> dict[str, Any]:
        return await json_object(
            request,
            not_json=lambda: hubspot_error(400, "VALIDATION_ERROR", "Invalid input JSON"),
            not_object=lambda: hubspot_error(
                400, "VALIDATION_ERROR", "Invalid input JSON: expected an object"
            ),
        )

    def view(
        self,
        entity_type: EntityType,
        obj: Mapping[str, Any],
        names: list[str] | None,
        *,
        associations: bool = False,
    ) -> dict[str, Any]:
        """``obj`` as HubSpot answers it: the properties asked for (null when unset) plus
        the ones it always sends; deals' contacts when ``associations=contacts``."""
        wanted = names if names else list(_DEFAULT_READ[entity_type])
        known = _WRITABLE[entity_type] | _READ_ONLY[entity_type]
        properties = {
            name: obj["properties"].get(name)
            for name in dict.fromkeys([*wanted, *_ALWAYS[entity_type]])
            if name in known
        }
        answer: dict[str, Any] = {
            "id": obj["id"],
            "properties": properties,
            "createdAt": obj["createdAt"],
            "updatedAt": obj["updatedAt"],
            "archived": obj["archived"],
        }
        contacts = self._live_contacts(obj["id"]) if entity_type == "job" else []
        if associations and contacts:
            answer["associations"] = {
                "contacts": {
                    "results": [{"id": contact, "type": "deal_to_contact"} for contact in contacts]
                }
            }
        return answer

    def _live_contacts(self, deal_id: str) -> list[str]:
        """The deal's contacts, archived ones hidden as HubSpot hides them, ids ascending."""
        gone = self.deleted["customer"]
        return sorted((c for c in self.deal_contacts.get(deal_id, []) if c not in gone), key=int)

    @staticmethod
    def _names(request: web.Request) -> list[str]:
        return [
            name
            for value in request.query.getall("properties", [])
            for name in value.split(",")
            if name
        ]

    async def _read(self, request: web.Request) -> web.Response:
        entity = self._object_type(request)
        obj = self.get(entity, request.match_info["object_id"])
        with_contacts = "contacts" in request.query.get("associations", "").split(",")
        return web.json_response(
            self.view(entity, obj, self._names(request), associations=with_contacts)
        )

    async def _list(self, request: web.Request) -> web.Response:
        entity = self._object_type(request)
        try:
            limit = min(int(request.query.get("limit", LIST_DEFAULT_LIMIT)), LIST_MAX_LIMIT)
            after = int(request.query.get("after", "0"))
        except ValueError:
            raise hubspot_error(
                400, "VALIDATION_ERROR", "limit and after must be numbers"
            ) from None
        ordered = sorted(
            (o for o in self.live(entity) if int(o["id"]) >= after), key=lambda o: int(o["id"])
        )
        names = self._names(request)
        with_contacts = "contacts" in request.query.get("associations", "").split(",")
        answer: dict[str, Any] = {
            "results": [
                self.view(entity, o, names, associations=with_contacts) for o in ordered[:limit]
            ]
        }
        if len(ordered) > limit:
            following = ordered[limit]["id"]
            answer["paging"] = {
                "next": {"after": following, "link": f"{request.path}?after={following}"}
            }
        return web.json_response(answer)

    async def _create(self, request: web.Request) -> web.Response:
        entity = self._object_type(request)
        obj = self.create(entity, await self._json(request))
        self._api_written.add((entity, obj["id"]))
        return web.json_response(self.view(entity, obj, list(obj["properties"])), status=201)

    async def _update(self, request: web.Request) -> web.Response:
        entity = self._object_type(request)
        record_id = request.match_info["object_id"]
        self.get(entity, record_id)
        self._api_written.add((entity, record_id))
        obj = self.update(entity, record_id, await self._json(request))
        return web.json_response(self.view(entity, obj, list(obj["properties"])))

    async def _archive(self, request: web.Request) -> web.Response:
        entity = self._object_type(request)
        record_id = request.match_info["object_id"]
        self.get(entity, record_id)
        self._api_written.add((entity, record_id))
        self.delete(entity, record_id)
        self.store[entity][record_id] = {**self.store[entity][record_id], "archived": True}
        return web.Response(status=204)

    async def _search(self, request: web.Request) -> web.Response:
        entity = self._object_type(request)
        body = await self._json(request)
        try:
            limit = int(body.get("limit", LIST_DEFAULT_LIMIT))
            offset = int(body.get("after") or 0)
        except (TypeError, ValueError):
            raise hubspot_error(
                400, "VALIDATION_ERROR", "limit and after must be numbers"
            ) from None
        if not 0 < limit <= SEARCH_MAX_LIMIT:
            raise hubspot_error(400, "VALIDATION_ERROR", f"limit must be 1..{SEARCH_MAX_LIMIT}")
        if offset + limit > SEARCH_MAX_RESULTS:
            raise hubspot_error(
                400, "VALIDATION_ERROR", f"search pages past {SEARCH_MAX_RESULTS} results"
            )
        groups = body.get("filterGroups") or []
        matched = [
            o for o in self.live(entity) if not groups or any(_matches(o, g) for g in groups)
        ]
        matched.sort(key=lambda o: int(o["id"]))
        for sort in reversed(body.get("sorts") or []):
            name = str(sort.get("propertyName", ""))

            def by_property(obj: Mapping[str, Any], name: str = name) -> tuple[int, int, str]:
                return _sort_key(name, obj["properties"].get(name))

            matched.sort(key=by_property, reverse=sort.get("direction") == "DESCENDING")
        names = [str(name) for name in body.get("properties") or []]
        page = matched[offset : offset + limit]
        answer: dict[str, Any] = {
            "total": len(matched),
            "results": [self.view(entity, o, names) for o in page],
        }
        if offset + limit < len(matched):
            answer["paging"] = {"next": {"after": str(offset + limit)}}
        return web.json_response(answer)

    async def _associate(self, request: web.Request) -> web.Response:
        deal = request.match_info["deal_id"]
        contact = request.match_info["contact_id"]
        self.get("job", deal)
        self.get("customer", contact)
        contacts = self.deal_contacts.setdefault(deal, [])
        if contact not in contacts:
            contacts.append(contact)
        return web.json_response(
            {
                "status": "COMPLETE",
                "results": [
                    {
                        "from": {"id": deal},
                        "to": {"id": contact},
                        "associationSpec": {
                            "associationCategory": "HUBSPOT_DEFINED",
                            "associationTypeId": DEAL_TO_CONTACT_TYPE_ID,
                        },
                    }
                ],
            }
        )

    async def _dissociate(self, request: web.Request) -> web.Response:
        deal = request.match_info["deal_id"]
        self.get("job", deal)
        contacts = self.deal_contacts.get(deal, [])
        if request.match_info["contact_id"] in contacts:
            contacts.remove(request.match_info["contact_id"])
        return web.Response(status=204)

    async def _batch_contacts(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        results = []
        for item in body.get("inputs") or []:
            deal = str(item.get("id")) if isinstance(item, dict) else ""
            contacts = self._live_contacts(deal)
            if deal in self.store["job"] and deal not in self.deleted["job"] and contacts:
                results.append(
                    {
                        "from": {"id": deal},
                        "to": [
                            {
                                "toObjectId": int(contact),
                                "associationTypes": [
                                    {
                                        "category": "HUBSPOT_DEFINED",
                                        "typeId": DEAL_TO_CONTACT_TYPE_ID,
                                        "label": None,
                                    }
                                ],
                            }
                            for contact in contacts
                        ],
                    }
                )
        return web.json_response({"status": "COMPLETE", "results": results})


def _error(name: str, code: str, message: str) -> dict[str, Any]:
    return {"isValid": False, "message": message, "error": code, "name": name}


def _sort_key(name: str, value: str | None) -> tuple[int, int, str]:
    if value is None:
        return (1, 0, "")
    if name in _DATE_PROPERTIES:
        return (0, _millis(value) or 0, "")
    return (0, 0, value.lower())


def _matches(obj: Mapping[str, Any], group: Any) -> bool:
    """Whether ``obj`` passes every filter of one filter group (groups are ORed)."""
    if not isinstance(group, Mapping):
        raise hubspot_error(400, "VALIDATION_ERROR", "filterGroups: expected objects")
    for spec in group.get("filters") or []:
        name = str(spec.get("propertyName", ""))
        operator = spec.get("operator")
        actual = obj["properties"].get(name)
        if operator == "HAS_PROPERTY":
            if actual is None:
                return False
            continue
        if operator == "NOT_HAS_PROPERTY":
            if actual is not None:
                return False
            continue
        if actual is None:
            return False
        left = _sort_key(name, actual)
        right = _sort_key(name, str(spec.get("value", "")))
        outcomes = {
            "EQ": left == right,
            "NEQ": left != right,
            "LT": left < right,
            "LTE": left <= right,
            "GT": left > right,
            "GTE": left >= right,
        }
        if operator not in outcomes:
            raise hubspot_error(400, "VALIDATION_ERROR", f"operator {operator!r} not supported")
        if not outcomes[operator]:
            return False
    return True
