"""The generic RecordMapper: provider JSON <-> canonical data, driven by a mapping file.

Every method reads the connection's mapping from ``settings["generic_mapping"]`` (see
``connectors.generic.config``); nothing about any provider is written here. Webhook bodies
are parsed with ``parse_float=Decimal`` so a JSON number with a fraction stays exact.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

from pydantic import ValidationError

from connectors.base import (
    body_hash_id,
    bounded_event_id,
    header_event_id,
    json_path_id,
    scalar_id,
)
from connectors.generic import convert
from connectors.generic.config import (
    EntityMapping,
    FieldMapping,
    GenericMapping,
    Timestamp,
    WebhookMapping,
    dotted,
    mapping_from_settings,
)
from connectors.generic.paths import MISSING, read, select, write
from connectors.generic.signature import GenericSchemeConfig
from connectors.spec import (
    REFERENCE_FIELDS,
    EntityType,
    MappingError,
    Op,
    RemoteRecord,
    WebhookItem,
    WebhookParse,
)
from schemas.records import ENTITY_MODELS

# A form field name: a name, then any number of [key] or [] steps (PHP's convention).
_FORM_NAME = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_FORM_STEP = re.compile(r"\[([^\[\]]*)\]")
# Mailchimp's deepest field is data[merges][ADDRESS][addr1] (4 steps); a bound, as the JSON
# parser's recursion limit bounds JSON, so a crafted name cannot build a deep object.
_FORM_MAX_STEPS = 32
Operation = Literal["create", "update"]
# What a handshake's values may be. They are unsigned and go into the confirm URL's path
# (FreshBooks' account id "6BApk" and callback id "2001"): letters, digits, "-" and "_"
# only, so no "/", "." or escape can move the call elsewhere. The code becomes a webhook
# secret: printable ASCII, no space, bounded (FreshBooks' are short random strings; a
# kilobyte is far above any code and keeps a hostile post from storing megabytes).
HANDSHAKE_VALUE_CHARS = re.compile(r"[A-Za-z0-9_-]{1,128}")
HANDSHAKE_CODE_CHARS = re.compile(r"[!-~]{1,1024}")


@dataclass(frozen=True)
class Handshake:
    """A subscription's verification post: the code to send back (a secret once accepted,
    so never in a repr) and the values the confirm endpoint's placeholders take."""

    verifier: str = dataclasses.field(repr=False)
    values: dict[str, str]


def connection_mapping(settings: Mapping[str, Any]) -> GenericMapping:
    """The connection's mapping, or MappingError("invalid_mapping") naming what is wrong."""
    try:
        return mapping_from_settings(settings)
    except ValueError as exc:
        first = str(exc).splitlines()[0]
        raise MappingError("invalid_mapping", f"generic_mapping: {first}") from None


class Mapper:
    """RecordMapper for generic connections; stateless, one instance serves them all."""

    def parse_webhook(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> WebhookParse:
        mapping = connection_mapping(settings)
        hooks = mapping.webhook
        if hooks is None:
            raise MappingError("unsupported_entity", "generic_mapping.webhook: not configured")
        document = _document(body, hooks)
        delivery, hashed = _delivery_id(body, headers, settings)
        # No item id, no time, a delivery known only by its bytes: the next identical
        # notice (a second edit of the same record) would look like a redelivery.
        per_receipt = hooks.event_id is None and hooks.occurred_at == "received" and hashed
        items: list[WebhookItem] = []
        ignored = 0
        handshake = hooks.verification.event if hooks.verification is not None else None
        for position, (where, item, event_type, type_at) in enumerate(
            _webhook_items(document, headers, hooks)
        ):
            route = hooks.events.get(event_type)
            if route is None and event_type == handshake:
                ignored += 1  # a subscription's handshake maps no record (see verification)
                continue
            if route is None:
                if hooks.unknown_events == "error":
                    raise MappingError(
                        "unknown_event_type", f"{type_at}: {event_type!r} is not mapped"
                    )
                ignored += 1
                continue
            entity = _entity(mapping, route.entity_type)
            if entity.webhook is None:  # excluded by GenericMapping.problems()
                raise MappingError("invalid_mapping", f"entities.{route.entity_type}.webhook")
            external_id = _id(item, route.entity_id or entity.webhook.entity_id, where)
            event_id = (
                _text(item, hooks.event_id, where)
                if hooks.event_id is not None
                else f"{delivery}:{position}"
            )
            record = None
            if route.op == "upsert" and entity.webhook.record is not None:
                record_path = entity.webhook.record
                obj = read(item, record_path)
                record = _record(route.entity_type, entity, obj, _at(where, record_path))
                if record.external_id != external_id:
                    raise MappingError(
                        "schema_violation",
                        f"{_at(where, record_path)}: record {record.external_id!r} in an "
                        f"event about {external_id!r}",
                    )
            items.append(
                WebhookItem(
                    event_id=bounded_event_id(event_id),
                    entity_type=route.entity_type,
                    external_id=external_id,
                    op=_op(route.op, entity),
                    occurred_at=(
                        None
                        if hooks.occurred_at == "received"
                        else _timestamp(item, hooks.occurred_at, where)
                    ),
                    record=record,
                    per_receipt=per_receipt and (route.op == "delete" or record is None),
                )
            )
        return WebhookParse(items=tuple(items), ignored=ignored)

    def verification(
        self, body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
    ) -> Handshake | None:
        """The subscription handshake ``body`` is, as the mapping's ``webhook.verification``
        describes it, or None when it is anything else (a body that does not parse, or
        names another event). Unverified by nature: the code is only to be trusted once the
        provider accepts it back (``GenericClient.confirm``).

        A handshake without its code or a placeholder value, or with a value that is not a
        plain token, raises MappingError: its values go into the confirm URL's path, which
        our credentials are sent to, so ``../`` or a ``/`` must never reach it."""
        mapping = connection_mapping(settings)
        hooks = mapping.webhook
        if hooks is None or hooks.verification is None:
            return None
        spec = hooks.verification
        try:
            items = list(_webhook_items(_document(body, hooks), headers, hooks))
        except MappingError:
            return None  # not a body of this provider's shape, so no handshake either
        for where, item, event_type, _ in items:
            if event_type != spec.event:
                continue
            values = {
                name: _token(item, path, where, HANDSHAKE_VALUE_CHARS)
                for name, path in spec.placeholders.items()
            }
            verifier = _token(item, spec.verifier, where, HANDSHAKE_CODE_CHARS)
            for name, setting in spec.own.items():
                mine = settings.get(setting)
                if isinstance(mine, str) and mine and values[name] != mine:
                    raise MappingError(
                        FOREIGN_ACCOUNT,
                        f"{_at(where, spec.placeholders[name])}: {values[name]!r} is not this"
                        f" connection's {name} ({setting} {mine!r}): a handshake of another"
                        " account",
                    )
            return Handshake(verifier=verifier, values=values)
        return None

    def to_canonical(
        self, entity_type: EntityType, obj: Mapping[str, Any], settings: Mapping[str, Any]
    ) -> RemoteRecord:
        entity = _entity(connection_mapping(settings), entity_type)
        return _record(entity_type, entity, obj, "$")

    def from_canonical(
        self,
        entity_type: EntityType,
        data: Mapping[str, Any],
        refs: Mapping[str, str],
        settings: Mapping[str, Any],
        *,
        operation: Operation | None = None,
    ) -> dict[str, Any]:
        """The create/update body; reference fields in ``data`` are ignored (the provider
        ids in ``refs`` are what the provider understands), fields the mapping does not
        write are left out, and so are those ``only_on`` another ``operation`` (all of
        them when the operation is not said)."""
        entity = _entity(connection_mapping(settings), entity_type)
        own = {k: v for k, v in data.items() if k not in REFERENCE_FIELDS}
        try:
            model = ENTITY_MODELS[entity_type].model_validate(own)
        except ValidationError as exc:
            raise MappingError("schema_violation", _first_error(exc, "data")) from None
        canonical = model.model_dump(mode="json", exclude_unset=True)
        body: dict[str, Any] = {}
        for mapping in entity.fields:
            if mapping.writes_on(operation):
                write_field(body, mapping, canonical, canonical)
        for field, path, _ in entity.ref_paths():
            if field in refs:
                _write(body, path, refs[field])
        if entity.request_wrap is None:
            return body
        wrapped: dict[str, Any] = {}
        _write(wrapped, entity.request_wrap, body)
        return wrapped


# --- webhooks ---------------------------------------------------------------------------------


def _document(body: bytes, hooks: WebhookMapping) -> Any:
    """The webhook body as JSON (numbers with fractions exact) or as a decoded form."""
    if hooks.format == "form":
        try:
            return form_document(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise MappingError("unparseable", "body: not UTF-8 form data") from None
    try:
        return json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise MappingError("unparseable", "body: not JSON") from None


def form_document(text: str) -> dict[str, Any]:
    """An x-www-form-urlencoded body as the object its bracketed names spell:
    ``a[b][c]=1`` is ``{"a": {"b": {"c": "1"}}}`` and ``a[]=1&a[]=2`` is ``{"a": ["1", "2"]}``.
    A name used both as a value and as an object is a schema violation."""
    document: dict[str, Any] = {}
    for name, value in parse_qsl(text, keep_blank_values=True):
        match = _FORM_NAME.fullmatch(name)
        if match is None:
            raise MappingError("schema_violation", f"form field {name[:64]!r}: not a name")
        keys = [match.group(1), *_FORM_STEP.findall(match.group(2))]
        if len(keys) > _FORM_MAX_STEPS:
            raise MappingError("schema_violation", f"form field {name[:64]!r}: nested too deep")
        node: Any = document
        for position, key in enumerate(keys):
            last = position == len(keys) - 1
            if key == "" and isinstance(node, list):
                if last:
                    node.append(value)
                    break
                node.append({})
                node = node[-1]
                continue
            if not isinstance(node, dict) or key == "":
                raise MappingError("schema_violation", f"form field {name[:64]!r}: mixed shapes")
            if last:
                if key in node:
                    raise MappingError("schema_violation", f"form field {name[:64]!r}: repeated")
                node[key] = value
            else:
                child = node.setdefault(key, [] if keys[position + 1] == "" else {})
                node = child
    return document


def _webhook_items(
    document: Any, headers: Mapping[str, str], hooks: WebhookMapping
) -> Iterator[tuple[str, Mapping[str, Any], str, str]]:
    """(where, item, event type, where the type was) for each item, in body order."""
    if hooks.groups is not None:
        groups = read(document, hooks.groups)
        if not isinstance(groups, Mapping):
            raise MappingError("schema_violation", f"{hooks.groups}: expected an object")
        for event_type, group in groups.items():
            members = [group] if isinstance(group, Mapping) else group
            if not isinstance(members, list):
                continue  # a scalar beside the groups (a delivery timestamp) is no group
            base = _at(hooks.groups, str(event_type)) if hooks.groups != "$" else event_type
            for index, item in enumerate(members):
                yield f"{base}[{index}]", _object(item, f"{base}[{index}]"), str(event_type), base
        return
    found = select(document, hooks.items)
    if not found and not _empty_batch(document, hooks.items):
        raise MappingError("schema_violation", f"{hooks.items}: no webhook items there")
    header_type: str | None = None
    if hooks.event_type_header is not None:
        header_type = (headers.get(hooks.event_type_header) or "").strip()
        if not header_type:
            raise MappingError("schema_violation", f"{hooks.event_type_header} header: missing")
    for where, found_item in found:
        item = _object(found_item, where)
        if header_type is not None:
            yield where, item, header_type, f"{hooks.event_type_header} header"
        else:
            assert hooks.event_type is not None  # noqa: S101 - WebhookMapping: one is set
            yield where, item, _text(item, hooks.event_type, where), _at(where, hooks.event_type)


def _op(op: Op, entity: EntityMapping) -> Op:
    """A thin delete of a record the provider keeps, flagged (FreshBooks' vis_state 1), is
    hydrated like an update: the fetched record reads as deleted and says, in the provider's
    own updated-at, when; the notice's receipt is only for records that are gone."""
    webhook = entity.webhook
    if op == "delete" and entity.deleted is not None and webhook is not None:
        return "upsert" if webhook.delivery == "thin" else op
    return op


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MappingError("schema_violation", f"{where}: expected an object")
    return value


def _empty_batch(document: Any, items_path: str) -> bool:
    """True when ``items_path`` selects nothing only because the batch array is empty."""
    if "[*]" not in items_path:
        return False
    return isinstance(read(document, items_path[: items_path.index("[*]")]), list)


def _delivery_id(
    body: bytes, headers: Mapping[str, str], settings: Mapping[str, Any]
) -> tuple[str, bool]:
    """The delivery's id as GenericScheme computes it (header, body path, else body hash),
    and whether it is the body's hash."""
    raw = settings.get("generic")
    config: GenericSchemeConfig | None = None
    if isinstance(raw, GenericSchemeConfig):
        config = raw
    elif isinstance(raw, Mapping):
        try:
            config = GenericSchemeConfig.model_validate(raw)
        except ValidationError:
            config = None
    found: str | None = None
    if config is not None and config.event_id_header is not None:
        found = header_event_id(headers, config.event_id_header)
    if found is None and config is not None and config.event_id_path is not None:
        found = json_path_id(body, config.event_id_path)
    return (found, False) if found else (body_hash_id(body), True)


# --- provider -> canonical -------------------------------------------------------------------


def _record(entity_type: EntityType, entity: EntityMapping, obj: Any, where: str) -> RemoteRecord:
    if not isinstance(obj, Mapping):
        raise MappingError("schema_violation", f"{where}: expected an object")
    data: dict[str, Any] = {}
    # Money needs the record's currency, which another mapping may read: currencies first.
    ordered = sorted(entity.fields, key=lambda m: m.transform == "money" or m.items is not None)
    for mapping in ordered:
        if mapping.reads:
            read_field(data, mapping, obj, where, data)
    model = ENTITY_MODELS[entity_type]
    try:
        validated = model.model_validate(data)
    except ValidationError as exc:
        raise MappingError("schema_violation", _first_error(exc, where, entity)) from None
    refs: dict[str, str] = {}
    for field, path, none in entity.ref_paths():
        value = read(obj, path)
        if value is MISSING or value is None or value in none:
            continue
        ref = scalar_id(value)
        if ref is None:
            raise MappingError("schema_violation", f"{_at(where, path)}: expected an id")
        refs[field] = ref
    version: str | None = None
    if entity.version is not None:
        raw_version = read(obj, entity.version)
        if raw_version is not MISSING and raw_version is not None:
            version = scalar_id(raw_version) or str(raw_version)
    deleted = entity.deleted is not None and read(obj, entity.deleted.path) == entity.deleted.value
    return RemoteRecord(
        entity_type=entity_type,
        external_id=_id(obj, entity.id, where),
        updated_at=_timestamp(obj, entity.updated_at, where),
        data=validated.model_dump(mode="json", exclude_unset=True),
        refs=refs,
        deleted=deleted,
        version=version,
    )


def read_field(
    out: dict[str, Any],
    mapping: FieldMapping,
    obj: Mapping[str, Any],
    where: str,
    root: Mapping[str, Any],
) -> None:
    assert mapping.canonical is not None  # noqa: S101 - FieldMapping: reads need canonical
    if mapping.transform == "constant":
        _put(out, mapping.canonical, mapping.value)
        return
    if mapping.paths is not None:
        joined = _joined(mapping, obj)
        if joined is not MISSING:
            _put(out, mapping.canonical, joined)
        return
    assert mapping.path is not None  # noqa: S101 - FieldMapping: non-constants need path
    raw = read(obj, mapping.path, null_through=True)
    if raw is MISSING:
        return
    if mapping.blank_is_null and isinstance(raw, str) and not raw.strip():
        raw = None
    location = _at(where, mapping.path)
    try:
        value = None if raw is None else _inbound(mapping, raw, location, root)
    except convert.ConversionError as exc:
        raise MappingError("schema_violation", f"{location}: {exc}") from None
    _put(out, mapping.canonical, value)


def _joined(mapping: FieldMapping, obj: Mapping[str, Any]) -> Any:
    """The non-blank texts at ``paths`` joined; MISSING when no path is there at all."""
    assert mapping.paths is not None  # noqa: S101 - only called for join
    found = [read(obj, path, null_through=True) for path in mapping.paths]
    if all(value is MISSING for value in found):
        return MISSING
    parts = [
        _plain_in(mapping, value, "", {}) if not isinstance(value, str) else value.strip()
        for value in found
        if value is not MISSING and value is not None
    ]
    text = mapping.separator.join(str(part) for part in parts if str(part).strip())
    return text or None


def _inbound(mapping: FieldMapping, raw: Any, location: str, root: Mapping[str, Any]) -> Any:
    if mapping.items is not None:
        return _inbound_items(mapping.items, raw, location, root)
    return _INBOUND[mapping.transform](mapping, raw, location, root)


def _money_in(mapping: FieldMapping, raw: Any, location: str, root: Mapping[str, Any]) -> int:
    return convert.to_minor_units(raw, _currency(mapping, root, location))


def _enum_in(mapping: FieldMapping, raw: Any, _location: str, _root: Mapping[str, Any]) -> str:
    word = scalar_id(raw)
    values = mapping.values or {}
    if word is None or word not in values:
        raise convert.ConversionError(f"{raw!r} is not one of {', '.join(map(repr, values))}")
    return values[word]


def _datetime_in(mapping: FieldMapping, raw: Any, _location: str, _root: Mapping[str, Any]) -> str:
    moment = convert.parse_timestamp(raw, mapping.format or "iso8601", mapping.zone)
    return moment.isoformat()


def _plain_in(_mapping: FieldMapping, raw: Any, _location: str, _root: Mapping[str, Any]) -> Any:
    if isinstance(raw, Decimal):
        # A JSON number with a fraction where text is mapped: keep what the provider wrote.
        return format(raw, "f")
    return raw


_INBOUND: dict[str, Callable[[FieldMapping, Any, str, Mapping[str, Any]], Any]] = {
    "none": _plain_in,
    "money": _money_in,
    "minor_units": lambda _m, raw, _l, _r: convert.integer(raw),
    "decimal": lambda _m, raw, _l, _r: convert.decimal_text(raw),
    "datetime": _datetime_in,
    "date": lambda m, raw, _l, _r: convert.parse_date(raw, m.format or "iso"),
    "enum": _enum_in,
}


def _inbound_items(
    items: tuple[FieldMapping, ...], raw: Any, location: str, root: Mapping[str, Any]
) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise convert.ConversionError("expected an array")
    elements = []
    for index, element in enumerate(raw):
        where = f"{location}[{index}]"
        if not isinstance(element, Mapping):
            raise MappingError("schema_violation", f"{where}: expected an object")
        mapped: dict[str, Any] = {}
        for item in items:
            if item.reads:
                read_field(mapped, item, element, where, root)
        elements.append(mapped)
    return elements


def _currency(mapping: FieldMapping, canonical: Mapping[str, Any], location: str) -> str:
    code = canonical.get(mapping.currency_field) if mapping.currency_field else None
    if code is None:
        code = mapping.currency
    if not isinstance(code, str):
        raise MappingError(
            "schema_violation",
            f"{location}: no currency for the amount ({mapping.currency_field} absent)",
        )
    return code


def _put(out: dict[str, Any], canonical: str, value: Any) -> None:
    head, _, rest = canonical.partition(".")
    if rest:
        nested = out.setdefault(head, {})
        if isinstance(nested, dict):
            nested[rest] = value
    else:
        out[head] = value


def _first_error(exc: ValidationError, where: str, entity: EntityMapping | None = None) -> str:
    error = exc.errors(include_url=False)[0]
    canonical = dotted(error["loc"])
    source = ""
    if entity is not None:
        head = canonical.split("[")[0]
        path = next((m.path for m in entity.fields if m.canonical == head and m.path), None)
        source = f"{_at(where, path)} -> " if path else ""
    return f"{source}{canonical}: {error['msg']}"


# --- canonical -> provider -------------------------------------------------------------------


def write_field(
    body: dict[str, Any],
    mapping: FieldMapping,
    canonical: Mapping[str, Any],
    root: Mapping[str, Any],
) -> None:
    if mapping.paths is not None:
        assert mapping.canonical is not None  # noqa: S101 - FieldMapping: join is canonical
        _write_split(body, mapping, _canonical_value(canonical, mapping.canonical))
        return
    assert mapping.path is not None  # noqa: S101 - FieldMapping: writes need path
    if mapping.transform == "constant":
        _write(body, mapping.path, mapping.value)
        return
    assert mapping.canonical is not None  # noqa: S101 - FieldMapping: non-constants need it
    value = _canonical_value(canonical, mapping.canonical)
    if value is MISSING:
        return
    try:
        out = None if value is None else _outbound(mapping, value, root)
    except convert.ConversionError as exc:
        raise MappingError("schema_violation", f"{mapping.canonical}: {exc}") from None
    _write(body, mapping.path, out)


def _outbound(mapping: FieldMapping, value: Any, root: Mapping[str, Any]) -> Any:
    transform = mapping.transform
    if mapping.items is not None:
        elements = []
        for element in value:
            written: dict[str, Any] = {}
            for item in mapping.items:
                if item.writes:
                    write_field(written, item, element, root)
            elements.append(written)
        return elements
    if transform == "money":
        assert mapping.canonical is not None  # noqa: S101 - FieldMapping: money is canonical
        return convert.from_minor_units(value, _currency(mapping, root, mapping.canonical))
    if transform == "datetime":
        moment = convert.parse_canonical_timestamp(value)
        return convert.format_timestamp(moment, mapping.format or "iso8601", mapping.zone)
    if transform == "date":
        return convert.format_date(value, mapping.format or "iso")
    if transform == "enum":
        word = mapping.provider_word(str(value))
        if word is None:
            raise convert.ConversionError(f"{value!r} has no value at the provider")
        return word
    return value  # none, minor_units and decimal are already in the provider's form


def _write_split(body: dict[str, Any], mapping: FieldMapping, value: Any) -> None:
    """A joined text back to its paths: split on the separator, the last path taking the
    rest, paths without a part written empty ("Cher" is first name "Cher", last "")."""
    assert mapping.paths is not None  # noqa: S101 - only called for join
    if value is MISSING:
        return
    count = len(mapping.paths)
    if value is None:
        parts: list[Any] = [None] * count
    else:
        parts = str(value).split(mapping.separator, count - 1)
        parts += [""] * (count - len(parts))
    for path, part in zip(mapping.paths, parts, strict=True):
        _write(body, path, part)


def _canonical_value(canonical: Mapping[str, Any], field: str) -> Any:
    head, _, rest = field.partition(".")
    value = canonical.get(head, MISSING)
    if not rest or value is MISSING:
        return value
    if value is None:
        return None  # the whole address was cleared: so is each of its parts
    return value.get(rest, MISSING) if isinstance(value, Mapping) else MISSING


def _write(body: dict[str, Any], path: str, value: Any) -> None:
    try:
        write(body, path, value)
    except ValueError as exc:
        raise MappingError("schema_violation", str(exc)) from None


# --- shared ----------------------------------------------------------------------------------


def _entity(mapping: GenericMapping, entity_type: str) -> EntityMapping:
    entity = mapping.entity(entity_type)
    if entity is None:
        raise MappingError("unsupported_entity", f"generic_mapping.entities.{entity_type}: absent")
    return entity


def _at(where: str, path: str) -> str:
    return path if where == "$" else f"{where}.{path}"


def _id(obj: Mapping[str, Any], path: str, where: str) -> str:
    found = scalar_id(read(obj, path))
    if found is None:
        raise MappingError("schema_violation", f"{_at(where, path)}: expected an id")
    return found


def _text(obj: Mapping[str, Any], path: str, where: str) -> str:
    return _id(obj, path, where)


# The MappingError reason of a handshake naming another account than the connection's.
FOREIGN_ACCOUNT = "foreign_account"


def _token(obj: Mapping[str, Any], path: str, where: str, pattern: re.Pattern[str]) -> str:
    """A handshake's value at ``path``: present, and all of it matching ``pattern``."""
    value = _text(obj, path, where)
    if pattern.fullmatch(value) is None:
        raise MappingError(
            "schema_violation", f"{_at(where, path)}: not a plain token ({pattern.pattern})"
        )
    return value


def _timestamp(obj: Mapping[str, Any], spec: Timestamp, where: str) -> datetime:
    raw: Any = MISSING
    location = _at(where, spec.path)
    for path in spec.paths:
        raw = read(obj, path)
        # "" is "not set" only where there is a fallback to try; alone, it is malformed.
        if raw is not MISSING and raw is not None and (raw != "" or not spec.fallbacks):
            location = _at(where, path)
            break
    else:
        tried = " or ".join(_at(where, path) for path in spec.paths)
        raise MappingError("schema_violation", f"{tried}: missing")
    try:
        return convert.parse_timestamp(raw, spec.format, spec.zone)
    except convert.ConversionError as exc:
        raise MappingError("schema_violation", f"{location}: {exc}") from None
