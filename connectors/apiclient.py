"""What every provider's ApiClient shares: typed settings, the Endpoint, the mapper, the
protocol's signatures. A provider's client says only what is its own.

How a new connector (``connectors/<slug>/client.py``) uses it::

    class PayPalSettings(ClientSettings):
        # Only the keys this client reads, typed; a bad value is a ValueError naming it.
        merchant_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
        messages: ClassVar[dict[str, str]] = {
            "merchant_id": "a PayPal connection needs settings['merchant_id']",
        }


    class PayPalClient(ProviderClient[PayPalSettings, Mapper]):
        settings_model = PayPalSettings
        mapper_type = Mapper
        api_path = "/v2"  # appended to the connection's base URL

        def api_headers(self) -> Mapping[str, str]:  # sent on every call (optional)
            return {"PayPal-Partner-Attribution-Id": self.options.merchant_id}

        async def fetch(self, entity_type, external_id): ...
        async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
            obj = await self.api.call("POST", "/orders", json_body=write.body)
            return self.record(write.entity_type, obj)
        async def _update(self, write: Write, external_id: str) -> RemoteRecord: ...
        async def delete(self, entity_type, external_id): ...
        async def list_page(self, entity_type, cursor, modified_since): ...


    make_client = PayPalClient.make  # ApiSpec(make_client=make_client, ...)

The base parses the settings once (``self.options``), keeps the raw dict for the mapper
(``self.settings``: mapping options and overrides live there too), builds ``self.api``
(connectors.http.Endpoint: every call goes through connectors.http.send) and takes the
mapper a test passes or a new ``mapper_type()``. ``create`` and ``update`` hand the
subclass a Write whose ``body`` is the provider body the mapper makes of the canonical
data, mapped when first read (a client that refuses an operation refuses it before any
mapping, as before). Retries, rate limits and circuit breaking stay with the caller
(connectors.spec.ApiClient).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Generic, Literal, Self, TypeVar, cast

import aiohttp

from connectors.http import Auth, Endpoint, ProviderError, StaleVersionError
from connectors.spec import (
    ClientSettings,
    EntityType,
    MappingError,
    Page,
    RecordMapper,
    RemoteRecord,
)
from schemas.errors import ProviderRuleError

OptionsT = TypeVar("OptionsT")


def answer_list(body: Any, key: str) -> list[dict[str, Any]]:
    """The list of objects under ``key`` in a provider's JSON answer (none: an empty
    answer); anything else is the provider's error, not ours."""
    if body is None:
        return []
    value = body.get(key, []) if isinstance(body, Mapping) else None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ProviderError(f"answer's {key!r} is not a list of objects", status=200)
    return value


MapperT = TypeVar("MapperT", bound=RecordMapper)


@dataclass
class Write:
    """One create or update as the client receives it: canonical ``data``, provider
    ``refs``, and (``body``) what the connector's mapper makes of them."""

    client: ProviderClient[Any, Any] = field(repr=False)
    entity_type: EntityType
    data: Mapping[str, Any]
    refs: Mapping[str, str]
    operation: Literal["create", "update"]
    _body: dict[str, Any] | None = field(default=None, repr=False)
    # An update made only if the record is still at this version (ApiClient.update).
    expected_version: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        """The provider's body, mapped on first read; the same dict after that, so a
        client may edit it before sending."""
        if self._body is None:
            self._body = self.client.map_body(self)
        return self._body


class ProviderClient(ABC, Generic[OptionsT, MapperT]):
    """The shared half of a connector's ApiClient (see the module docstring)."""

    # The typed settings this client reads (a ClientSettings); parse_options may replace it.
    settings_model: ClassVar[type[ClientSettings]] = ClientSettings
    # Built when the caller passes no mapper.
    mapper_type: ClassVar[type[Any]]
    # Appended to the connection's base URL to make the API root.
    api_path: ClassVar[str] = ""
    # The dead letter's detail when an answer is not an object ({entity_type} filled in).
    not_an_object: ClassVar[str] = "{entity_type}: expected an object"

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        auth: Auth,
        settings: Mapping[str, Any],
        *,
        mapper: MapperT | None = None,
    ) -> None:
        self.options: OptionsT = self.parse_options(settings)
        self.settings = settings  # the mapper's too: overrides, time zone, account codes
        self.mapper: MapperT = mapper if mapper is not None else self.mapper_type()
        self.api = Endpoint(
            session,
            self.api_root(base_url.rstrip("/")),
            self.api_auth(auth),
            headers=self.api_headers(),
            params=self.api_params(),
        )

    @classmethod
    def make(
        cls, session: aiohttp.ClientSession, base_url: str, auth: Auth, settings: Mapping[str, Any]
    ) -> Self:
        """connectors.spec.ApiSpec.make_client for this provider."""
        return cls(session, base_url, auth, settings)

    # --- what a provider may say differently --------------------------------------------------

    def parse_options(self, settings: Mapping[str, Any]) -> OptionsT:
        """The connection's settings as this client reads them; ValueError naming a bad one."""
        return cast(OptionsT, self.settings_model.parse(settings))

    def api_root(self, base_url: str) -> str:
        """Where the API is, given the connection's base URL (no trailing slash)."""
        return base_url + self.api_path

    def api_auth(self, auth: Auth) -> Auth:
        """How the connection's credentials are sent (a provider's own header)."""
        return auth

    def api_headers(self) -> Mapping[str, str]:
        """Headers every call carries (a tenant, a company, an API version)."""
        return {}

    def api_params(self) -> Mapping[str, str]:
        """Query parameters every call carries (a minor version)."""
        return {}

    def map_body(self, write: Write) -> dict[str, Any]:
        """The provider body of a create or update (Write.body)."""
        return self.mapper.from_canonical(write.entity_type, write.data, write.refs, self.settings)

    def record(self, entity_type: EntityType, obj: Any) -> RemoteRecord:
        """An API object as a RemoteRecord; MappingError (a dead letter) when the answer is
        not an object."""
        if not isinstance(obj, Mapping):
            detail = self.not_an_object.format(entity_type=entity_type)
            raise MappingError("schema_violation", detail)
        return self.mapper.to_canonical(entity_type, obj, self.settings)

    # --- connectors.spec.ApiClient ------------------------------------------------------------

    async def create(
        self,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        idempotency_key: str,
    ) -> RemoteRecord:
        return await self._create(Write(self, entity_type, data, refs, "create"), idempotency_key)

    async def update(
        self,
        entity_type: EntityType,
        external_id: str,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        *,
        expected_version: str | None = None,
    ) -> RemoteRecord:
        write = Write(self, entity_type, data, refs, "update", expected_version=expected_version)
        return await self._update(write, external_id)

    @abstractmethod
    async def _create(self, write: Write, idempotency_key: str) -> RemoteRecord:
        """Create ``write`` and return the record as stored (ApiClient.create)."""

    @abstractmethod
    async def _update(self, write: Write, external_id: str) -> RemoteRecord:
        """Update ``external_id`` with ``write`` and return it as stored (ApiClient.update)."""

    @abstractmethod
    async def fetch(self, entity_type: EntityType, external_id: str) -> RemoteRecord: ...

    @abstractmethod
    async def delete(self, entity_type: EntityType, external_id: str) -> None: ...

    @abstractmethod
    async def list_page(
        self, entity_type: EntityType, cursor: str | None, modified_since: datetime | None
    ) -> Page: ...


async def retry_once_if_stale(
    update: Callable[[], Awaitable[RemoteRecord]],
    stale: Callable[[ProviderError], bool],
    what: str,
    *,
    again: bool = True,
) -> RemoteRecord:
    """``update()``, and once more when the provider refuses it as ``stale`` (the record
    changed between the read the update was built on and the write; ``update`` reads it
    again). A second stale refusal is a StaleVersionError: ``what`` changed again.
    ``again=False``: the first refusal is one (a caller that wrote at a version it read
    reads again and decides: a second try at a fresh version would overwrite the edit the
    refusal announced)."""
    for attempt in (1, 2):
        try:
            return await update()
        except ProviderError as exc:
            if not stale(exc):
                raise
            if attempt == 2 or not again:
                raise StaleVersionError(
                    f"{what}: changed again while updated ({exc.provider_message or exc})",
                    status=exc.status,
                    body_excerpt=exc.body_excerpt,
                    request=exc.request,
                    provider_message=exc.provider_message,
                ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def unchanged(
    current: RemoteRecord, changed: Iterable[str], refusal: Callable[[str], str]
) -> RemoteRecord:
    """An update of a record the provider never edits (a recorded payment): ``current``
    when none of the fields it holds would change, else a ProviderRuleError that keeps
    ``current`` as written, its detail ``refusal`` of the changed fields (comma-separated)."""
    fields = sorted(changed)
    if fields:
        raise ProviderRuleError(refusal(", ".join(fields)), written=current)
    return current


def refused_or(written: RemoteRecord, what: str, refused: Sequence[str]) -> RemoteRecord:
    """The end of an update the provider took in part: ``written`` (the record as it now
    stands there) when nothing was refused, else a ProviderRuleError that keeps it as
    written, its detail ``what`` and each refusal ("Square invoice 42: a PAID invoice …")."""
    if refused:
        raise ProviderRuleError(f"{what}: " + "; ".join(refused), written=written)
    return written
