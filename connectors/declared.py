"""A fixed connector's facts as data: the ``connector.toml`` beside its code.

What a provider publishes, or what we decided about it (its rate limit, token endpoint
and base URL, the record kinds it has and deletes, the webhook headers ingest keeps), is
a sheet of facts, each with a comment saying where it comes from. The code is the
signature scheme, the mapper and the client (and a ``holds_back`` rule where there is
one). ``declared_connector`` joins the two into the ``Connector`` the registry lists, so
each provider's ``__init__`` names only its code.

A sheet holds ``slug``, the provider's ``name`` where a reason names it, ``kept_headers``
(unless the code passes them: they are built from the scheme's and mapper's header
names), ``webhooks`` (false for a provider that is polled) and an ``[api]`` table of
``connectors.spec.ApiSpec`` fields, ``rate_limit`` an inline table of ``RateLimit``'s,
``holds_back`` the name of a rule written once here (``pending_payments``: the provider
records money received only; a rule of the provider's own is code). A field the code
passes may not be in the file too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import fields
from importlib import resources
from typing import Any, get_args

from connectors.base import Connector, SignatureScheme
from connectors.spec import (
    ENTITY_TYPES,
    ApiSpec,
    AuthKind,
    EntityType,
    RateLimit,
    RecordMapper,
    pending_payments_wait,
)

_SHEET_KEYS = ("slug", "name", "kept_headers", "webhooks", "api")
# ApiSpec's Literal fields, checked here because a dataclass does not check its values.
_CHOICES: dict[str, tuple[str, ...]] = {
    "auth_kind": get_args(AuthKind),
    "update_precondition": ("none", "read", "version"),
}
# ApiSpec's bool fields, checked for the same reason: "yes" would read as true.
_FLAGS = ("versions_ordered",)
# The ``holds_back`` rules a sheet may name, each made for the provider's name; a rule of
# a provider's own (Xero's, QuickBooks', Ascora's) is code.
_HOLDS_BACK: dict[str, Callable[[str], Callable[[EntityType, Any], str | None]]] = {
    "pending_payments": pending_payments_wait,
}


def _kinds(value: Any, where: str) -> tuple[Any, ...]:
    if not isinstance(value, list) or any(kind not in ENTITY_TYPES for kind in value):
        raise ValueError(f"{where}: a list of {', '.join(ENTITY_TYPES)}")
    return tuple(value)


def _own_fields(table: Any, where: str) -> dict[Any, frozenset[str]]:
    """``[api.own_fields]``: per record kind, the fields the provider sets by its own rules."""
    if not isinstance(table, dict) or any(kind not in ENTITY_TYPES for kind in table):
        raise ValueError(f"{where}: a table of {', '.join(ENTITY_TYPES)}")
    own: dict[Any, frozenset[str]] = {}
    for kind, names in table.items():
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{where}.{kind}: a list of field names")
        own[kind] = frozenset(names)
    return own


def _holds_back(rule: Any, name: str | None, where: str) -> Callable[[EntityType, Any], str | None]:
    if not isinstance(rule, str) or rule not in _HOLDS_BACK:
        raise ValueError(f"{where}: {rule!r} is not one of {tuple(_HOLDS_BACK)}")
    if name is None:
        raise ValueError(f"{where}: the sheet's name is required (the reason names the provider)")
    return _HOLDS_BACK[rule](name)


def _check_values(values: dict[str, Any], where: str) -> None:
    for key in _FLAGS:
        if key in values and not isinstance(values[key], bool):
            raise ValueError(f"{where}.{key}: true or false")
    for key, choices in _CHOICES.items():
        if key in values and values[key] not in choices:
            raise ValueError(f"{where}.{key}: {values[key]!r} is not one of {choices}")


def _api(table: Any, code: dict[str, Any], where: str, name: str | None = None) -> ApiSpec:
    if not isinstance(table, dict):
        raise ValueError(f"{where}: a table")
    names = {f.name for f in fields(ApiSpec)}
    if unknown := set(table) - names:
        raise ValueError(f"{where}: unknown {sorted(unknown)}")
    if twice := set(table) & set(code):
        raise ValueError(f"{where}: {sorted(twice)} given by the code too")
    values = dict(table)
    for key in ("entity_types", "deletable", "listed_partly"):
        if key in values:
            values[key] = _kinds(values[key], f"{where}.{key}")
    if "own_fields" in values:
        values["own_fields"] = _own_fields(values["own_fields"], f"{where}.own_fields")
    if "holds_back" in values:
        values["holds_back"] = _holds_back(values["holds_back"], name, f"{where}.holds_back")
    _check_values(values, where)
    try:
        if "rate_limit" in values:
            values["rate_limit"] = RateLimit(**values["rate_limit"])
        return ApiSpec(**values, **code)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def parse_connector(
    text: str,
    where: str,
    *,
    scheme: SignatureScheme,
    mapper: RecordMapper | None = None,
    kept_headers: tuple[str, ...] | None = None,
    **code: Any,
) -> Connector:
    """The connector a sheet (``text``, read from ``where``) and its code make together;
    ``code`` holds the ApiSpec fields that are code (``make_client``, ``holds_back``)."""
    try:
        sheet = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if unknown := set(sheet) - set(_SHEET_KEYS):
        raise ValueError(f"{where}: unknown {sorted(unknown)}")
    if not isinstance(sheet.get("slug"), str):
        raise ValueError(f"{where}: slug: the provider's slug is required")
    if ("kept_headers" in sheet) == (kept_headers is not None):
        raise ValueError(f"{where}: kept_headers: in the file or from the code, once")
    if not isinstance(sheet.get("name", ""), str):
        raise ValueError(f"{where}: name: the provider's name, a string")
    if not isinstance(sheet.get("webhooks", True), bool):
        raise ValueError(f"{where}: webhooks: true or false")
    name = sheet.get("name")
    if "api" not in sheet and code:
        raise ValueError(f"{where}: {sorted(code)} given for an [api] the file lacks")
    return Connector(
        slug=sheet["slug"],
        scheme=scheme,
        kept_headers=tuple(sheet["kept_headers"]) if kept_headers is None else kept_headers,
        mapper=mapper,
        api=_api(sheet["api"], code, f"{where}: api", name) if "api" in sheet else None,
        webhooks=sheet.get("webhooks", True),
    )


def declared_connector(
    package: str,
    *,
    scheme: SignatureScheme,
    mapper: RecordMapper | None = None,
    kept_headers: tuple[str, ...] | None = None,
    **code: Any,
) -> Connector:
    """The connector of ``package``: its connector.toml joined with its code."""
    text = resources.files(package).joinpath("connector.toml").read_text(encoding="utf-8")
    return parse_connector(
        text,
        f"{package.replace('.', '/')}/connector.toml",
        scheme=scheme,
        mapper=mapper,
        kept_headers=kept_headers,
        **code,
    )


__all__ = ["declared_connector", "parse_connector"]
