"""The generic ApiClient: the endpoints, paging and auth a mapping file declares.

Requests go through ``connectors.http.send``, so errors, 401 handling and Retry-After are
exactly those of the built-in connectors. An API object the mapping cannot read raises
MappingError (a dead letter), as the mapper would for the same object in a webhook.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from yarl import URL

from connectors.apiclient import ProviderClient, Write
from connectors.generic import convert
from connectors.generic.config import (
    AuthConfig,
    EndpointKind,
    EntityMapping,
    GenericMapping,
    Pagination,
    mapping_from_settings,
)
from connectors.generic.mapping import Handshake, Mapper
from connectors.generic.paths import MISSING, read, write
from connectors.http import Auth, StaticAuth, UnsupportedOperationError, page_number
from connectors.spec import EntityType, MappingError, Page, RemoteRecord


class GenericClient(ProviderClient[GenericMapping, Mapper]):
    """One generic connection's API, as its mapping describes it."""

    mapper_type = Mapper

    def parse_options(self, settings: Mapping[str, Any]) -> GenericMapping:
        return mapping_from_settings(settings)

    @property
    def mapping(self) -> GenericMapping:
        return self.options

    def api_root(self, base_url: str) -> str:
        base = base_url or self.mapping.api.base_url
        if not base:
            raise ValueError("no base URL: pass one or set api.base_url in the mapping")
        self.base_url = base.rstrip("/")
        # Endpoint URLs come whole from the mapping (they carry the base URL already).
        return ""

    def api_headers(self) -> Mapping[str, str]:
        return self.mapping.api.headers

    def map_body(self, write: Write) -> dict[str, Any]:
        return self.mapper.from_canonical(
            write.entity_type, write.data, write.refs, self.settings, operation=write.operation
        )

    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord:
        entity, url, method = self._endpoint(entity_type, "fetch", external_id)
        body = await self.api.call(method, url)
        return self._single(entity_type, entity, body, method, url)

    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        entity, url, method = self._endpoint(write.entity_type, "create")
        header = self.mapping.api.idempotency_header
        extra = {header: idempotency_key} if header else {}
        body = await self.api.call(method, url, json_body=write.body, headers=extra)
        return self._single(write.entity_type, entity, body, method, url)

    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        entity, url, method = self._endpoint(write.entity_type, "update", external_id)
        body = await self.api.call(method, url, json_body=write.body)
        if body is None:
            # Some APIs answer an update with 204: the record as stored is one GET away.
            return await self.fetch(write.entity_type, external_id)
        return self._single(write.entity_type, entity, body, method, url)

    async def delete(self, entity_type: EntityType, external_id: str) -> None:
        entity, url, method = self._endpoint(entity_type, "delete", external_id)
        if method not in {"PUT", "PATCH"}:
            await self.api.call(method, url)
            return
        # A soft delete (FreshBooks' vis_state 1): the record's deleted flag, written as
        # an update body would carry it (EntityMapping makes sure there is a flag).
        assert entity.deleted is not None  # noqa: S101 - EntityMapping validation
        flagged: dict[str, Any] = {}
        write(flagged, entity.deleted.path, entity.deleted.value)
        body = flagged
        if entity.request_wrap is not None:
            body = {}
            write(body, entity.request_wrap, flagged)
        await self.api.call(method, url, json_body=body)

    async def confirm(self, handshake: Handshake) -> None:
        """Send a subscription's verification code back, as the mapping's
        ``webhook.verification.confirm`` says; the provider's 2xx is what makes the code
        trustworthy as the subscription's signing secret (ProviderError otherwise)."""
        hooks = self.mapping.webhook
        spec = hooks.verification if hooks is not None else None
        if spec is None:
            raise UnsupportedOperationError(
                "confirm: the mapping has no webhook.verification", request="confirm"
            )
        endpoint = spec.confirm_endpoint()
        body: dict[str, Any] = {}
        write(body, spec.body, handshake.verifier)
        url = endpoint.url(self.base_url, **handshake.values)
        await self.api.call(endpoint.method, url, json_body=body)

    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page:
        entity, url, method = self._endpoint(entity_type, "list")
        paging = entity.pagination
        if paging is None:  # excluded by EntityMapping validation
            raise UnsupportedOperationError(f"list {entity_type}: no pagination in the mapping")
        params = dict(paging.params)
        page = paging.first_page
        if paging.style == "page":
            page = page_number(cursor, "a page number from this client", first=paging.first_page)
            params[paging.page_param] = str(page)
        elif paging.style == "offset":
            page = page_number(cursor, "an offset from this client", first=0)
            params[paging.offset_param] = str(page)
        elif cursor is not None:
            params[paging.cursor_param] = cursor
        if paging.page_size_param is not None:
            params[paging.page_size_param] = str(paging.page_size)
        if modified_since is not None and paging.modified_since is not None:
            since = paging.modified_since
            params[since.param] = str(
                convert.format_timestamp(modified_since, since.format, since.zone)
            )
        body = await self.api.call(method, url, params=params)
        objects = read(body, paging.items)
        if paging.items_keyed and isinstance(objects, Mapping):
            objects = list(objects.values())
        if not isinstance(objects, list):
            raise _bad_body(method, url, f"{paging.items}: expected an array of records")
        records = tuple(self.mapper.to_canonical(entity_type, o, self.settings) for o in objects)
        return Page(records=records, next_cursor=_next_cursor(paging, body, page, len(objects)))

    # --- helpers ---------------------------------------------------------------------------

    def _endpoint(
        self, entity_type: EntityType, kind: EndpointKind, external_id: str | None = None
    ) -> tuple[EntityMapping, str, str]:
        entity = self.mapping.entity(entity_type)
        endpoint = entity.endpoints.get(kind) if entity is not None else None
        if entity is None or endpoint is None:
            raise UnsupportedOperationError(
                f"{kind} {entity_type}: the mapping has no endpoint for it",
                request=f"{kind} {entity_type}",
            )
        return entity, endpoint.url(self.base_url, external_id), endpoint.method

    def _single(
        self, entity_type: EntityType, entity: EntityMapping, body: Any, method: str, url: str
    ) -> RemoteRecord:
        obj = body if entity.response_record is None else read(body, entity.response_record)
        if obj is MISSING or not isinstance(obj, Mapping):
            where = entity.response_record or "body"
            raise _bad_body(method, url, f"{where}: expected the record")
        return self.mapper.to_canonical(entity_type, obj, self.settings)


def _next_cursor(paging: Pagination, body: Any, page: int, count: int) -> str | None:
    if paging.style == "cursor":
        assert paging.next_cursor is not None  # noqa: S101 - Pagination validation
        following = read(body, paging.next_cursor)
        if following is MISSING or following is None or following == "":
            return None
        return str(following)
    if paging.style == "offset":
        following = page + count
        total = read(body, paging.total) if paging.total is not None else MISSING
        if isinstance(total, str) and total.isdigit():
            total = int(total)  # some APIs (Mautic) send the count as text
        if isinstance(total, int) and not isinstance(total, bool) and following >= total:
            return None
        return str(following) if count >= paging.page_size and count > 0 else None
    if paging.has_more is not None:
        return str(page + 1) if read(body, paging.has_more) is True else None
    # No "more" flag: a short page is the last one; a full one may be followed by none.
    return str(page + 1) if count >= paging.page_size else None


def _bad_body(method: str, url: str, detail: str) -> MappingError:
    return MappingError("schema_violation", f"{method} {URL(url).path}: {detail}")


def auth_for(
    mapping: GenericMapping,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Auth:
    """The Auth a connection's credentials give under its mapping's ``api.auth``.

    A connection stores one credential string and the runtime passes it as ``token``; for
    HTTP Basic that string is ``user:password`` (split at the first colon, as RFC 7617
    forbids a colon in the user id), so a basic-auth mapping works in the services too.
    """
    config: AuthConfig = mapping.api.auth
    if config.kind == "basic":
        if token is not None and username is None and password is None:
            username, colon, password = token.partition(":")
            if not colon or not username:
                raise ValueError("basic auth takes its stored credential as user:password")
        if username is None or password is None:
            raise ValueError("basic auth needs a username and a password")
        pair = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        return StaticAuth(f"Basic {pair}")
    if not token:
        raise ValueError("bearer auth needs a token")
    return StaticAuth(f"{config.prefix}{token}", header_name=config.header)


# ApiSpec.make_client for generic connections: the mapping is in ``settings``.
make_client = GenericClient.make


__all__ = ["GenericClient", "auth_for", "make_client"]
