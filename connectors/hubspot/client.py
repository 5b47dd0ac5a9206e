"""HubSpot's CRM v3 objects API for one connection (contacts as customers, deals as jobs).

Reads ask for the properties we map by name (HubSpot returns a bare default set otherwise)
and, for deals, for their contact associations. Incremental polls go through the search API
(the list endpoint cannot filter), which returns no associations: the client reads them
for the whole page in one call to the v4 associations batch API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Final

from connectors.apiclient import ProviderClient, Write
from connectors.http import ProviderError
from connectors.hubspot.mapping import (
    DEFAULT_PIPELINE,
    MODIFIED_PROPERTY,
    OBJECT_TYPES,
    PROPERTIES,
    Mapper,
    status_stage,
)
from connectors.spec import (
    ClientSettings,
    EntityType,
    MappingError,
    OptionalText,
    Page,
    RemoteRecord,
)

# The list endpoint's documented maximum page size.
LIST_PAGE_SIZE: Final = 100
# The search endpoint allows up to 200 per page; 100 keeps both paths' pages alike.
SEARCH_PAGE_SIZE: Final = 100
# "Contact already exists. Existing ID: 123" is HubSpot's 409 message on a duplicate email.
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")


class DuplicateContactError(ProviderError):
    """409 CONFLICT: another contact already has this email (HubSpot keeps emails unique).

    Not transient: retrying creates nothing. ``existing_id`` is the contact HubSpot named,
    which the caller may link to instead of creating.
    """

    def __init__(self, existing_id: str | None, source: ProviderError) -> None:
        super().__init__(
            f"{source.request}: a HubSpot contact with this email already exists"
            + (f" (id {existing_id})" if existing_id else ""),
            status=source.status,
            retry_after=source.retry_after,
            body_excerpt=source.body_excerpt,
            request=source.request,
            provider_message=source.provider_message,
        )
        self.existing_id = existing_id


def _existing_id(body_excerpt: str) -> str | None:
    try:
        message = json.loads(body_excerpt).get("message", "")
    except (ValueError, AttributeError):
        message = body_excerpt
    match = _EXISTING_ID.search(str(message))
    return match.group(1) if match else None


class HubSpotSettings(ClientSettings):
    """What the client reads of a HubSpot connection's settings: where a deal created
    without a status starts (the pipeline's draft stage, mapping.status_stage, unless
    ``default_deal_stage`` says), and in which pipeline (DEFAULT_PIPELINE unless set)."""

    default_deal_stage: OptionalText = None
    deal_pipeline: OptionalText = None


class HubSpotClient(ProviderClient[HubSpotSettings, Mapper]):
    """ApiClient over ``connectors.http.send``; no retries here (the caller owns them)."""

    settings_model = HubSpotSettings
    mapper_type = Mapper
    not_an_object = "body: expected a HubSpot object"

    # --- the ApiClient protocol --------------------------------------------------------------

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        obj = await self.api.call(
            "GET",
            self._object_path(entity_type, external_id),
            params=self._read_params(entity_type),
        )
        return self.record(entity_type, obj)

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        # HubSpot has no idempotency keys; for contacts the unique email makes a repeated
        # create a 409 that names the existing contact (DuplicateContactError).
        entity_type, body, refs = write.entity_type, write.body, write.refs
        if entity_type == "job" and "dealstage" not in body["properties"]:
            # HubSpot requires a stage on create; a job without a status starts as a draft.
            body["properties"]["dealstage"] = str(
                self.options.default_deal_stage or status_stage(self.settings)["draft"]
            )
            body["properties"]["pipeline"] = self.options.deal_pipeline or DEFAULT_PIPELINE
        try:
            obj = await self.api.call("POST", self._collection_path(entity_type), json_body=body)
        except ProviderError as exc:
            raise self._conflict(entity_type, exc) from None
        record = self.record(entity_type, obj)
        if "associations" in body:
            # The 201 body carries no associations; the create made exactly this one.
            record = replace(record, refs={"customer_id": refs["customer_id"]})
        return record

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        # HubSpot objects carry no concurrency token: the last write wins.
        entity_type, body, refs = write.entity_type, write.body, write.refs
        path = self._object_path(entity_type, external_id)
        if body["properties"]:
            try:
                await self.api.call("PATCH", path, json_body={"properties": body["properties"]})
            except ProviderError as exc:
                raise self._conflict(entity_type, exc) from None
        record = await self.fetch(entity_type, external_id)
        wanted = refs.get("customer_id")
        if entity_type == "job" and wanted and record.refs.get("customer_id") != wanted:
            await self._move_contact(external_id, record.refs.get("customer_id"), wanted)
            record = replace(record, refs={**record.refs, "customer_id": wanted})
        return record

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        # DELETE archives: the record goes to HubSpot's recycle bin (restorable for 90 days).
        await self.api.call("DELETE", self._object_path(entity_type, external_id))

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        if modified_since is None:
            params = {**self._read_params(entity_type), "limit": str(LIST_PAGE_SIZE)}
            if cursor:
                params["after"] = cursor
            answer = await self.api.call("GET", self._collection_path(entity_type), params=params)
            records = [self.record(entity_type, obj) for obj in _results(answer)]
        else:
            answer = await self.api.call(
                "POST",
                f"{self._collection_path(entity_type)}/search",
                json_body=self._search_body(entity_type, cursor, modified_since),
            )
            records = [self.record(entity_type, obj) for obj in _results(answer)]
            if entity_type == "job" and records:
                records = await self._with_contacts(records)
        return Page(records=tuple(records), next_cursor=_next_after(answer))

    # --- HubSpot specifics ---------------------------------------------------------------------

    def _search_body(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime
    ) -> dict[str, Any]:
        """Records modified at or after ``modified_since``, oldest first.

        Date filters take epoch milliseconds. GTE rather than GT: a record changed in the
        same millisecond as the last one seen is read again, never skipped.
        """
        modified = MODIFIED_PROPERTY[entity_type]
        body: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": modified,
                            "operator": "GTE",
                            "value": str(int(modified_since.timestamp() * 1000)),
                        }
                    ]
                }
            ],
            "sorts": [{"propertyName": modified, "direction": "ASCENDING"}],
            "properties": list(PROPERTIES[entity_type]),
            "limit": SEARCH_PAGE_SIZE,
        }
        if cursor:
            body["after"] = cursor
        return body

    async def _with_contacts(self, records: list[RemoteRecord]) -> list[RemoteRecord]:
        """Deals from a search, with their contact read from the v4 associations batch API."""
        answer = await self.api.call(
            "POST",
            "/crm/v4/associations/deals/contacts/batch/read",
            json_body={"inputs": [{"id": record.external_id} for record in records]},
        )
        contacts: dict[str, str] = {}
        for result in _results(answer):
            deal = str((result.get("from") or {}).get("id", ""))
            targets = sorted(
                (str(t.get("toObjectId")) for t in result.get("to") or [] if isinstance(t, dict)),
                key=lambda value: (len(value), value),
            )
            if deal and targets:
                contacts[deal] = str(targets[0])
        return [
            replace(record, refs={"customer_id": contacts[record.external_id]})
            if record.external_id in contacts
            else record
            for record in records
        ]

    async def _move_contact(self, deal_id: str, old: str | None, new: str) -> None:
        """Point the deal at ``new`` (HubSpot's default deal-contact association), then
        drop ``old``: the canonical job has one customer."""
        await self.api.call(
            "PUT", f"/crm/v4/objects/deals/{deal_id}/associations/default/contacts/{new}"
        )
        if old:
            await self.api.call(
                "DELETE", f"/crm/v4/objects/deals/{deal_id}/associations/contacts/{old}"
            )

    def _conflict(self, entity_type: EntityType, exc: ProviderError) -> ProviderError:
        if entity_type == "customer" and exc.status == 409:
            return DuplicateContactError(_existing_id(exc.body_excerpt), exc)
        return exc

    @staticmethod
    def _read_params(entity_type: EntityType) -> dict[str, str]:
        params = {"properties": ",".join(PROPERTIES[entity_type])}
        if entity_type == "job":
            params["associations"] = "contacts"
        return params

    @staticmethod
    def _collection_path(entity_type: EntityType) -> str:
        if entity_type not in OBJECT_TYPES:
            raise MappingError("unsupported_entity", f"{entity_type}: HubSpot has no such object")
        return f"/crm/v3/objects/{OBJECT_TYPES[entity_type]}"

    def _object_path(self, entity_type: EntityType, external_id: str) -> str:
        return f"{self._collection_path(entity_type)}/{external_id}"


def _results(answer: Any) -> list[Mapping[str, Any]]:
    if not isinstance(answer, Mapping) or not isinstance(answer.get("results"), list):
        raise MappingError("schema_violation", "results: expected a list")
    for index, obj in enumerate(answer["results"]):
        if not isinstance(obj, Mapping):
            raise MappingError("schema_violation", f"results.{index}: expected an object")
    return list(answer["results"])


def _next_after(answer: Mapping[str, Any]) -> str | None:
    paging = answer.get("paging")
    if not isinstance(paging, Mapping):
        return None
    following = paging.get("next")
    if not isinstance(following, Mapping) or following.get("after") in (None, ""):
        return None
    return str(following["after"])


# ApiSpec.make_client: ``base_url`` is https://api.hubapi.com or a simulator's root.
make_client = HubSpotClient.make
