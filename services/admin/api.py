"""A small typed route table for aiohttp: every route declares its scope, path, query,
body and response models; the same table serves requests and generates the OpenAPI 3.1
document, so the document cannot drift from what the handlers accept and return.

A request is authenticated (Bearer API key) and authorised by scope before anything else
is read; query, path and body are validated into models (422 with per-field errors);
operations raise ``AdminError``s, answered as RFC 9457 problem details.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from multidict import MultiDict, MultiMapping
from pydantic import BaseModel, RootModel, ValidationError
from pydantic.json_schema import models_json_schema

from crmsync.application.context import Context, KafkaTarget
from crmsync.application.errors import AdminError
from crmsync.application.models import Problem
from crmsync.application.operations import OPERATIONS
from crmsync.common.apikeys import LastUsedRecorder, Principal, authenticate, bearer_token
from crmsync.common.crypto import KeyRing
from crmsync.common.faults import describe, is_transient
from crmsync.common.jsonbody import NotJsonError, parse_json
from crmsync.common.problems import from_http_exception, problem
from schemas.errors import RefuseInput

log = logging.getLogger(__name__)

Scope = Literal["read", "admin"]


@dataclass(frozen=True)
class Services:
    """What handlers reach, built once by the app factory."""

    pool: asyncpg.Pool
    keyring: KeyRing = field(repr=False)
    public_base_url: str
    kafka: KafkaTarget
    recorder: LastUsedRecorder
    allow_private_provider_urls: bool = False


# An application-layer operation, called ``operation(conn, ctx, **arguments(...))``.
Operation = Callable[..., Awaitable[BaseModel | None]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    scope: Scope
    summary: str
    tag: str
    operation_id: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    # Statuses beyond the ones every route can answer (401, 403, 422 and 404 with ids).
    errors: tuple[int, ...] = ()

    @property
    def operation(self) -> Operation:
        """The application operation this route runs: the one of its operationId, the
        same function the CLI calls in local mode."""
        return OPERATIONS[self.operation_id]

    @property
    def path_params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    def statuses(self) -> list[int]:
        codes = {401, 403, 422, *self.errors}
        if self.path_params or (self.query is not None and "connection" in self.query.model_fields):
            # An id in the path, or a connection filter, names something that may not exist.
            codes.add(404)
        if self.body is not None:
            codes.add(400)
        return sorted(codes)


SERVICES = web.AppKey("admin_services", Services)


def arguments(
    route: Route, path: dict[str, uuid.UUID], query: Any, body: Any, now: datetime | None
) -> dict[str, Any]:
    """What a route passes its operation besides the connection and the context, by name:
    each path id, the validated ``query`` or ``body`` (a root model's value, not the model),
    and ``now`` unless None. Constants (a collection's entity type, the status an action
    sets) are bound into the operation with ``functools.partial``."""
    out: dict[str, Any] = dict(path)
    if route.query is not None:
        out["query"] = query
    if route.body is not None:
        out["body"] = body.root if isinstance(body, RootModel) else body
    if now is not None:
        out["now"] = now
    return out


def takes_now(route: Route) -> bool:
    """Whether the route's operation takes the request's time. Read once, when the route is
    added, and checked then: an operation that cannot take what its route gives it (a
    misnamed path id, a body it does not read) fails at start-up, not on a request."""
    signature = inspect.signature(route.operation)
    wants_now = "now" in signature.parameters
    ids = dict.fromkeys(route.path_params, uuid.UUID(int=0))
    sample = arguments(route, ids, None, None, datetime.now(UTC) if wants_now else None)
    try:
        signature.bind(None, None, **sample)
    except TypeError as exc:
        raise TypeError(f"{route.operation_id}: {exc}") from None
    return wants_now


def _field_errors(exc: ValidationError, where: str) -> list[dict[str, str]]:
    return [
        {
            "loc": "/" + "/".join([where, *(str(p) for p in e["loc"])]),
            "msg": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors(include_url=False)
    ]


class RequestInvalidError(RefuseInput):
    """The request is refused before any operation runs."""

    def __init__(
        self,
        status: int,
        detail: str,
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.headers = headers

    def response(self) -> web.Response:
        if self.errors:
            return problem(self.status, self.detail, headers=self.headers, errors=self.errors)
        return problem(self.status, self.detail, headers=self.headers)


def _parse_path(route: Route, given: Mapping[str, str]) -> dict[str, uuid.UUID]:
    out: dict[str, uuid.UUID] = {}
    errors = []
    for name in route.path_params:
        try:
            out[name] = uuid.UUID(given[name])
        except ValueError:
            errors.append({"loc": f"/path/{name}", "msg": "not a UUID", "type": "uuid_parsing"})
    if errors:
        raise RequestInvalidError(422, "invalid path parameter", errors)
    return out


def _nul_at(value: Any, loc: str) -> str | None:
    """Where a NUL character hides in ``value``: PostgreSQL stores none (text or jsonb)."""
    if isinstance(value, str):
        return loc if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            found = _nul_at(key, loc) or _nul_at(item, f"{loc}/{key}")
            if found:
                return found
    if isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_at(item, f"{loc}/{i}")
            if found:
                return found
    return None


def _refuse_nul(value: Any, loc: str) -> None:
    found = _nul_at(value, loc)
    if found is not None:
        raise RequestInvalidError(
            422,
            "invalid input",
            [{"loc": found, "msg": "NUL characters are not allowed", "type": "string_nul"}],
        )


def _parse_query(route: Route, query: MultiMapping[str]) -> Any:
    values: dict[str, str] = {}
    _refuse_nul({k: query.getall(k) for k in query}, "/query")
    for key in query:
        given = query.getall(key)
        if len(given) > 1:
            raise RequestInvalidError(
                422,
                "invalid query",
                [{"loc": f"/query/{key}", "msg": "given more than once", "type": "duplicate"}],
            )
        values[key] = given[0]
    if route.query is None:
        if values:
            raise RequestInvalidError(
                422,
                "invalid query",
                [
                    {
                        "loc": f"/query/{k}",
                        "msg": "Extra inputs are not permitted",
                        "type": "extra_forbidden",
                    }
                    for k in values
                ],
            )
        return None
    try:
        return route.query.model_validate(values)
    except ValidationError as exc:
        raise RequestInvalidError(422, "invalid query", _field_errors(exc, "query")) from None


async def _parse_body(route: Route, request: web.Request) -> Any:
    if route.body is None:
        return None
    raw = await request.read()
    try:
        # An empty body is an empty object: requests whose fields all have defaults need none.
        data = parse_json(raw) if raw.strip() else {}
    except NotJsonError as exc:
        raise RequestInvalidError(400, f"the body is not JSON: {exc}") from None
    return _validate_body(route, data)


def _validate_body(route: Route, data: Any) -> Any:
    if route.body is None:
        return None
    _refuse_nul(data, "/body")
    try:
        return route.body.model_validate(data)
    except ValidationError as exc:
        raise RequestInvalidError(422, "invalid body", _field_errors(exc, "body")) from None


async def _authorise(route: Route, services: Services, request: web.Request) -> Principal:
    return await authorise(route, services, bearer_token(request.headers.get("Authorization")))


async def authorise(route: Route, services: Services, token: str | None) -> Principal:
    """The key's principal, if the key is valid and its scope allows ``route``."""
    principal = await authenticate(services.pool, token) if token else None
    if principal is None:
        raise RequestInvalidError(
            401,
            "a valid API key is required",
            headers={"WWW-Authenticate": 'Bearer realm="crmsync"'},
        )
    if principal.scope not in ("admin", "read") or (
        route.scope == "admin" and principal.scope != "admin"
    ):
        raise RequestInvalidError(403, f"this needs a key of scope {route.scope}")
    services.recorder.touch(principal.key_id)
    return principal


async def _run(
    route: Route,
    services: Services,
    principal: Principal,
    *,
    path: dict[str, uuid.UUID],
    query: Any,
    body: Any,
    wants_now: bool,
) -> BaseModel | None:
    ctx = Context(
        tenant_id=principal.tenant_id,
        keyring=services.keyring,
        public_base_url=services.public_base_url,
        kafka=services.kafka,
        actor=f"api-key:{principal.key_id}",
        allow_private_provider_urls=services.allow_private_provider_urls,
    )
    now = datetime.now(UTC) if wants_now else None
    given = arguments(route, path, query, body, now)
    async with services.pool.acquire() as conn:
        return await route.operation(conn, ctx, **given)


async def invoke(
    route: Route,
    services: Services,
    token: str | None,
    *,
    path: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    body: Any = None,
) -> BaseModel | None:
    """Run ``route`` as its HTTP handler would, for a caller that is not an HTTP client of
    the API (the console): the same key check, scope, validation and operation. Raises
    ``RequestInvalidError`` (401, 403, 422) or the operation's ``AdminError``."""
    principal = await authorise(route, services, token)
    ids = _parse_path(route, path or {})
    parsed_query = _parse_query(route, MultiDict(query or {}))
    parsed_body = _validate_body(route, {} if body is None else body)
    return await _run(
        route,
        services,
        principal,
        path=ids,
        query=parsed_query,
        body=parsed_body,
        wants_now=takes_now(route),
    )


def handler_for(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    wants_now = takes_now(route)

    async def handle(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        try:
            principal = await _authorise(route, services, request)
            path = _parse_path(route, request.match_info)
            query = _parse_query(route, request.query)
            body = await _parse_body(route, request)
            result = await _run(
                route, services, principal, path=path, query=query, body=body, wants_now=wants_now
            )
        except RequestInvalidError as exc:
            return exc.response()
        except AdminError as exc:
            return problem(exc.status, exc.detail, **exc.extensions)
        if result is None:
            return web.Response(status=204)
        return web.json_response(result.model_dump(mode="json"), status=route.status)

    return handle


@web.middleware
async def problems_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp's own errors (unknown path, wrong method) as problem details too."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        return from_http_exception(exc)
    except Exception as exc:
        if is_transient(exc):
            # PostgreSQL restarting or failing over (CannotConnectNowError, a connection cut
            # mid-query, ...): the caller may simply try again.
            log.warning("a dependency is unavailable: %s", describe(exc))
            return problem(
                503, "the database is unavailable; try again", headers={"Retry-After": "5"}
            )
        # A bug: logged with its traceback, answered without one.
        log.exception("unhandled error in %s %s", request.method, request.path)
        return problem(500, "internal error; it was logged")


def add_routes(app: web.Application, routes: list[Route]) -> None:
    for route in routes:
        app.router.add_route(route.method, route.path, handler_for(route))


# -- OpenAPI ------------------------------------------------------------------------------

_REF = "#/components/schemas/{model}"
PROBLEM_TYPE = "application/problem+json"
_DESCRIPTIONS = {
    400: "The body is not JSON (NaN, or nested deeper than 200 levels, is not JSON here).",
    401: "No API key, or an unknown, revoked or expired one.",
    403: "The key's scope does not allow this.",
    404: "Nothing of that id in the key's tenant.",
    409: "Conflicts with the current state.",
    422: "Invalid input; `errors` says which field and why.",
    503: "Kafka did not acknowledge; nothing was changed, try again.",
}


def _non_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent or a value, never JSON null: drop null alternatives."""
    options = schema.get("anyOf")
    if not options:
        return schema
    kept = [o for o in options if o.get("type") != "null"]
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    if len(kept) == 1:
        return {**rest, **kept[0]}
    return {**rest, "anyOf": kept}


def openapi(routes: list[Route], *, title: str, version: str) -> dict[str, Any]:
    wanted: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (Problem, "serialization")
    ]
    for r in routes:
        if r.body is not None:
            wanted.append((r.body, "validation"))
        if r.response is not None:
            wanted.append((r.response, "serialization"))
    unique = list(dict.fromkeys(wanted))
    refs, top = models_json_schema(unique, ref_template=_REF)
    components: dict[str, Any] = dict(top.get("$defs", {}))

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        parameters: list[dict[str, Any]] = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            }
            for name in r.path_params
        ]
        if r.query is not None:
            schema = r.query.model_json_schema(ref_template=_REF)
            components.update(schema.get("$defs", {}))
            required = set(schema.get("required", []))
            for name, prop in schema["properties"].items():
                param: dict[str, Any] = {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _non_null(prop),
                }
                if "description" in prop:
                    param["description"] = prop["description"]
                parameters.append(param)
        responses: dict[str, Any] = {}
        if r.response is None:
            responses[str(r.status)] = {"description": "Done."}
        else:
            responses[str(r.status)] = {
                "description": "OK",
                "content": {"application/json": {"schema": refs[(r.response, "serialization")]}},
            }
        for code in r.statuses():
            responses[str(code)] = {
                "description": _DESCRIPTIONS.get(code, "Error."),
                "content": {PROBLEM_TYPE: {"schema": refs[(Problem, "serialization")]}},
            }
        op: dict[str, Any] = {
            "operationId": r.operation_id,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": parameters,
            "responses": responses,
            "x-scope": r.scope,
        }
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(r.body, "validation")]}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }
